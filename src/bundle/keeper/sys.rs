//! The few operating-system calls std does not offer, declared by hand (the keeper is
//! std-only), and the sockets the keeper holds: bound here, or adopted from systemd.

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::spec::Listen;

#[allow(non_camel_case_types)]
type c_int = i32;

unsafe extern "C" {
    fn signal(signum: c_int, handler: usize) -> usize;
    fn write(fd: c_int, buf: *const u8, count: usize) -> isize;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn dup2(old: c_int, new: c_int) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn setpgid(pid: c_int, pgid: c_int) -> c_int;
}

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGQUIT: i32 = 3;
pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;
const F_SETFD: c_int = 2;
const FD_CLOEXEC: c_int = 1;
const F_DUPFD_CLOEXEC: c_int = 1030;
/// Held sockets live at or above this fd, so placing them at 3, 4, ... in a child never
/// overwrites one not yet placed.
const HIGH_FD: c_int = 64;

/// Where the signal handler writes: the sending end of a socket pair.
static SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: c_int) {
    let byte = sig as u8;
    // Only async-signal-safe calls here: one write(2); a full pair drops the byte, which
    // loses nothing the keeper has not already been told.
    unsafe {
        write(SIGNAL_FD.load(Ordering::Relaxed), &byte, 1);
    }
}

/// Route SIGTERM, SIGINT, SIGQUIT and SIGHUP to a stream the caller reads, one byte each.
pub fn catch_signals() -> io::Result<UnixStream> {
    let (reader, writer) = UnixStream::pair()?;
    writer.set_nonblocking(true)?;
    SIGNAL_FD.store(writer.into_raw_fd(), Ordering::Relaxed);
    for sig in [SIGTERM, SIGINT, SIGQUIT, SIGHUP] {
        // Invariant: on_signal has the handler's signature.
        unsafe {
            signal(sig, on_signal as *const () as usize);
        }
    }
    Ok(reader)
}

/// Send `sig` to `pid`. Callers hold the un-reaped child, so the pid cannot be another
/// process's yet.
pub fn signal_pid(pid: u32, sig: i32) {
    unsafe {
        kill(pid as c_int, sig);
    }
}

/// In a forked child before exec: each held socket at 3, 4, ... (close-on-exec cleared),
/// and a process group of its own (the terminal's Ctrl-C reaches the keeper, which
/// forwards it). Only async-signal-safe calls.
pub fn place_fds(fds: &[RawFd]) -> io::Result<()> {
    for (i, fd) in fds.iter().enumerate() {
        if unsafe { dup2(*fd, 3 + i as c_int) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if unsafe { setpgid(0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Move `fd` above [`HIGH_FD`], close-on-exec, closing the original.
fn lift(fd: RawFd) -> io::Result<RawFd> {
    let high = unsafe { fcntl(fd, F_DUPFD_CLOEXEC, HIGH_FD) };
    if high < 0 {
        return Err(io::Error::last_os_error());
    }
    // Invariant: `fd` is open and owned by us; closing it through File.
    drop(unsafe { std::fs::File::from_raw_fd(fd) });
    Ok(high)
}

/// One held socket: its name, fd, and the Unix socket file to remove at exit (when bound
/// here).
pub struct Held {
    pub name: String,
    pub fd: RawFd,
    pub unix_path: Option<std::path::PathBuf>,
}

/// systemd's sockets (`LISTEN_PID` is this process) matched to the configured names, or
/// `None` when systemd passed none.
pub fn adopt(listen: &[Listen]) -> Result<Option<Vec<Held>>, String> {
    let ours = std::env::var("LISTEN_PID").ok() == Some(std::process::id().to_string());
    let count: usize = match std::env::var("LISTEN_FDS") {
        Ok(n) if ours => n
            .parse()
            .map_err(|_| format!("LISTEN_FDS={n:?} is not a count"))?,
        _ => return Ok(None),
    };
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(String::from).collect())
        .unwrap_or_default();
    for i in 0..count {
        unsafe { fcntl(3 + i as c_int, F_SETFD, FD_CLOEXEC) };
    }
    // By name; else, when systemd named them otherwise (one .socket unit with several
    // ListenStream= gives each fd the unit's name), in order, which is name order.
    let by_name = listen.iter().all(|l| {
        names
            .iter()
            .position(|n| *n == l.name)
            .is_some_and(|at| at < count)
    });
    let mut held = Vec::new();
    for (i, l) in listen.iter().enumerate() {
        let at = match names.iter().position(|n| *n == l.name) {
            Some(at) if by_name => at,
            _ if !by_name && count == listen.len() => i,
            _ => {
                return Err(format!(
                    "systemd passed {count} socket(s) named {:?}, none named {:?} (listen.{}): set FileDescriptorName={} in the .socket unit",
                    names.join(":"),
                    l.name,
                    l.name,
                    l.name
                ));
            }
        };
        let fd = lift(3 + at as c_int).map_err(|e| format!("listen.{}: {e}", l.name))?;
        held.push(Held {
            name: l.name.clone(),
            fd,
            unix_path: None,
        });
    }
    Ok(Some(held))
}

/// Bind every configured address (already expanded), in name order.
pub fn bind(listen: &[(Listen, String)]) -> Result<Vec<Held>, String> {
    let mut held = Vec::new();
    for (l, address) in listen {
        let what = format!("listen.{} ({address})", l.name);
        let unix_path = address.strip_prefix("unix:").map(std::path::PathBuf::from);
        let fd = match &unix_path {
            Some(path) => bind_unix(path, l.mode),
            None => bind_tcp(address),
        }
        .map_err(|e| format!("{what}: {e}"))?;
        let fd = lift(fd).map_err(|e| format!("{what}: {e}"))?;
        held.push(Held {
            name: l.name.clone(),
            fd,
            unix_path,
        });
    }
    Ok(held)
}

fn bind_tcp(address: &str) -> io::Result<RawFd> {
    let addr: std::net::SocketAddr = address
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not an IP address and port"))?;
    Ok(std::net::TcpListener::bind(addr)?.into_raw_fd())
}

/// A Unix stream socket at `path`: a stale socket file (nobody accepting) is replaced, any
/// other file is refused.
fn bind_unix(path: &Path, mode: Option<u32>) -> io::Result<RawFd> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::other(
                "exists and is not a socket; not replacing it",
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::other("another process is accepting on it"));
        }
        std::fs::remove_file(path)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    let mode = mode.unwrap_or(0o666);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener.into_raw_fd())
}
