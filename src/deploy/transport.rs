//! How the tool reaches a host: this machine's `sh`, or the system OpenSSH client (so the
//! user's `~/.ssh/config`, agents, jump hosts and `known_hosts` apply exactly as for `ssh`;
//! `BatchMode`, never a relaxed host key check). Every host step is `host.sh` run by `sh`;
//! over SSH the session that holds the deploy lock is also the connection master, so every
//! other step, and every health probe (`ssh -W`), reuses one connection per host, and the
//! connection ends with the lock holder.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

/// The host side, run by `sh -c` with `rb-host PATH STEP ARGS...`: the env-file grammar the
/// launcher uses too, then the steps.
pub const SCRIPT: &str = concat!(
    include_str!("../bundle/launcher/env_file.sh"),
    include_str!("host.sh")
);

/// One way to reach one host.
#[derive(Debug, Clone)]
pub enum Transport {
    /// This machine, through `sh`.
    Local,
    Ssh(Ssh),
}

#[derive(Debug, Clone)]
pub struct Ssh {
    /// Anything `ssh` accepts as a destination: `user@host`, an alias from the config.
    pub dest: String,
    /// `-F FILE`.
    pub config: Option<Utf8PathBuf>,
    /// The control socket of this host's master connection.
    pub control: Utf8PathBuf,
}

/// A destination that `ssh` could read as an option or that a shell would split.
pub fn check_destination(dest: &str) -> Result<()> {
    if dest.is_empty()
        || dest.starts_with('-')
        || dest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!("`{dest}`: not an SSH destination (expected user@host or a Host alias)");
    }
    Ok(())
}

/// `text` as one word for a POSIX shell.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl Ssh {
    fn base(&self) -> Command {
        self.base_with("-T")
    }

    /// `tty`: `-T` (no terminal) or `-t` (a terminal when ours is one).
    fn base_with(&self, tty: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args([tty, "-o", "BatchMode=yes", "-o", "ServerAliveInterval=15"]);
        if let Some(config) = &self.config {
            cmd.arg("-F").arg(config);
        }
        cmd
    }

    fn remote(path: &str, step: &str, args: &[&str]) -> String {
        let mut words = vec![
            "sh".to_string(),
            "-c".into(),
            quote(SCRIPT),
            "rb-host".into(),
            quote(path),
            quote(step),
        ];
        words.extend(args.iter().map(|a| quote(a)));
        words.join(" ")
    }
}

/// Which connection an SSH step uses.
#[derive(Clone, Copy)]
enum Connection {
    /// The host's master connection (which must be open).
    Shared,
    /// Opens the master connection; it lives as long as this step does.
    Master,
    /// A connection of its own.
    Own,
}

impl Transport {
    fn command(&self, path: &str, step: &str, args: &[&str], connection: Connection) -> Command {
        match self {
            Transport::Local => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c")
                    .arg(SCRIPT)
                    .arg("rb-host")
                    .arg(path)
                    .arg(step)
                    .args(args);
                cmd
            }
            Transport::Ssh(ssh) => {
                let mut cmd = ssh.base();
                match connection {
                    Connection::Shared => {
                        cmd.args(["-o", "ControlMaster=no", "-S"]).arg(&ssh.control);
                    }
                    Connection::Master => {
                        cmd.args(["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-S"])
                            .arg(&ssh.control);
                    }
                    Connection::Own => {}
                }
                cmd.arg("--")
                    .arg(&ssh.dest)
                    .arg(Ssh::remote(path, step, args));
                cmd
            }
        }
    }

    /// A host step: `sh host.sh PATH STEP ARGS...` on the host, over its open connection.
    pub fn step(&self, path: &str, step: &str, args: &[&str]) -> Command {
        self.command(path, step, args, Connection::Shared)
    }

    /// A step that opens the host's connection (over SSH: the master of the control
    /// socket; it lives as long as this step does).
    pub fn master_step(&self, path: &str, step: &str, args: &[&str]) -> Command {
        self.command(path, step, args, Connection::Master)
    }

    /// A step on its own connection with a terminal when this process has one (`exec -i`).
    pub fn terminal_step(&self, path: &str, step: &str, args: &[&str]) -> Command {
        match self {
            Transport::Local => self.command(path, step, args, Connection::Own),
            Transport::Ssh(ssh) => {
                let mut cmd = ssh.base_with("-t");
                cmd.arg("--")
                    .arg(&ssh.dest)
                    .arg(Ssh::remote(path, step, args));
                cmd
            }
        }
    }

    /// A step on its own connection (read-only commands that hold no lock).
    pub fn single_step(&self, path: &str, step: &str, args: &[&str]) -> Command {
        self.command(path, step, args, Connection::Own)
    }

    /// A byte stream to `host:port` as seen from the host (`ssh -W`; nothing to install).
    pub fn connect(&self, host: &str, port: u16) -> Result<Tunnel> {
        match self {
            Transport::Local => {
                let stream = TcpStream::connect((host, port))
                    .with_context(|| format!("cannot connect to {host}:{port}"))?;
                Ok(Tunnel::Tcp(stream))
            }
            Transport::Ssh(ssh) => {
                let mut cmd = ssh.base();
                cmd.args(["-o", "ControlMaster=no", "-S"])
                    .arg(&ssh.control)
                    .arg("-W")
                    .arg(format!("{host}:{port}"))
                    .arg("--")
                    .arg(&ssh.dest)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null());
                let child = cmd.spawn().context("cannot run `ssh`")?;
                Ok(Tunnel::Ssh(child))
            }
        }
    }
}

/// A connection opened by [`Transport::connect`].
pub enum Tunnel {
    Tcp(TcpStream),
    Ssh(Child),
}

impl Tunnel {
    /// Send `request`, then read the reply up to `limit` bytes (or its end).
    pub fn exchange(&mut self, request: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
        let mut reply = Vec::new();
        match self {
            Tunnel::Tcp(s) => {
                s.write_all(request)?;
                s.take(limit as u64).read_to_end(&mut reply)?;
            }
            Tunnel::Ssh(child) => {
                if let Some(stdin) = child.stdin.as_mut() {
                    stdin.write_all(request)?;
                }
                if let Some(stdout) = child.stdout.as_mut() {
                    stdout.take(limit as u64).read_to_end(&mut reply)?;
                }
            }
        }
        Ok(reply)
    }

    /// A handle that can end the connection from another thread (on a timeout).
    pub fn closer(&self) -> Closer {
        match self {
            Tunnel::Tcp(s) => Closer::Tcp(s.try_clone().ok()),
            Tunnel::Ssh(child) => Closer::Pid(child.id()),
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        if let Tunnel::Ssh(child) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub enum Closer {
    Tcp(Option<TcpStream>),
    Pid(u32),
}

impl Closer {
    pub fn close(&self) {
        match self {
            Closer::Tcp(Some(s)) => {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            Closer::Tcp(None) => {}
            Closer::Pid(pid) => {
                // SAFETY: sending SIGKILL to our own child `ssh -W`, which is not reaped until
                // the Tunnel is dropped, so the pid cannot have been reused.
                unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// A private directory for control sockets, short enough for the Unix socket path limit.
/// Its name says which process made it (`rb-<pid>-<start time>-…`), so that the directories
/// a killed deploy left are found and removed by the next one.
pub struct ControlDir(pub Utf8PathBuf);

/// A process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`, read
/// after the command name, which may hold spaces and parentheses); `None` when it is gone or
/// a zombie.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

impl ControlDir {
    pub fn new() -> Result<ControlDir> {
        remove_stale_control_dirs();
        let pid = std::process::id();
        let start = process_start(pid).unwrap_or(0);
        let dir = tempfile::Builder::new()
            .prefix(&format!("rb-{pid}-{start}-"))
            .tempdir_in("/tmp")
            .context("cannot create a directory for SSH control sockets under /tmp")?;
        let path = Utf8PathBuf::from_path_buf(dir.keep())
            .map_err(|p| anyhow::anyhow!("`{}`: not UTF-8", p.display()))?;
        Ok(ControlDir(path))
    }

    pub fn socket(&self, index: usize) -> Utf8PathBuf {
        self.0.join(format!("h{index}"))
    }

    pub fn path(&self) -> &Utf8Path {
        &self.0
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Remove the control directories of ours whose process is gone (a deploy killed with
/// SIGKILL never ran its `Drop`): ours by owner and name, gone by pid and start time.
fn remove_stale_control_dirs() {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(|n| n.strip_prefix("rb-")) else {
            continue;
        };
        let mut parts = owner.splitn(3, '-');
        let (Some(Ok(pid)), Some(Ok(start))) = (
            parts.next().map(str::parse::<u32>),
            parts.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        // Not following a link: the entry itself must be our directory.
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() && meta.uid() == me && process_start(pid) != Some(start) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_any_text() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert!(check_destination("-oProxyCommand=x").is_err());
        assert!(check_destination("a b").is_err());
        assert!(check_destination("deploy@web-1").is_ok());
    }

    #[test]
    fn a_process_is_known_by_its_start_time_and_a_zombie_is_gone() {
        let me = process_start(std::process::id());
        assert!(me.is_some());
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not waited for: a zombie once it exits.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while process_start(pid).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(process_start(pid), None, "a zombie counts as gone");
        let stale = Utf8PathBuf::from(format!("/tmp/rb-{pid}-1-test"));
        std::fs::create_dir_all(&stale).unwrap();
        let live = Utf8PathBuf::from(format!(
            "/tmp/rb-{}-{}-test",
            std::process::id(),
            me.unwrap()
        ));
        std::fs::create_dir_all(&live).unwrap();
        remove_stale_control_dirs();
        assert!(
            !stale.exists(),
            "the directory of a gone process is removed"
        );
        assert!(live.exists(), "a live process keeps its directory");
        std::fs::remove_dir_all(&live).unwrap();
        let mut child = child;
        child.wait().unwrap();
    }
}
