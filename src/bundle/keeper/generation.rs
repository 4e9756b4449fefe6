//! One generation of the service as the keeper holds it: its process (signalled only while
//! un-reaped), when it was asked to stop, and its `READY=1` listener.

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::spec::Spec;
use crate::{Event, say, sys};

/// One generation of the service.
pub struct Generation {
    pub n: u32,
    pub child: Child,
    pub spec: Spec,
    pub started: Instant,
    /// When it was asked to stop (SIGTERM), for the SIGKILL deadline.
    pub stopping_since: Option<Instant>,
    pub killed: bool,
    pub notify: Option<NotifyReader>,
}

impl Generation {
    pub fn label(&self) -> String {
        format!(
            "generation {} ({}, pid {})",
            self.n,
            self.spec.version,
            self.child.id()
        )
    }

    /// Signal it unless it has been reaped (then its pid may be another process's).
    pub fn signal(&mut self, sig: i32) {
        if matches!(self.child.try_wait(), Ok(None)) {
            sys::signal_pid(self.child.id(), sig);
        }
    }

    pub fn stop(&mut self, sig: i32) {
        if self.stopping_since.is_none() {
            self.stopping_since = Some(Instant::now());
        }
        self.signal(sig);
    }

    /// SIGKILL once its stop-timeout has passed since SIGTERM.
    pub fn enforce_timeout(&mut self) {
        if let Some(since) = self.stopping_since
            && !self.killed
            && since.elapsed() >= self.spec.stop_timeout
        {
            say(&format!(
                "{} did not stop within {:?}; SIGKILL",
                self.label(),
                self.spec.stop_timeout
            ));
            self.signal(sys::SIGKILL);
            self.killed = true;
        }
    }
}

/// A generation waiting to be ready, and who asked for it.
pub struct Pending {
    pub generation: Generation,
    pub client: Option<UnixStream>,
}

/// `READY=1` listener for one generation: a datagram socket read by a thread until dropped.
pub struct NotifyReader {
    pub path: PathBuf,
    pub done: Arc<AtomicBool>,
}

impl NotifyReader {
    pub fn bind(path: PathBuf, n: u32, tx: Sender<Event>) -> Result<NotifyReader, String> {
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)
            .map_err(|e| format!("cannot bind the notify socket {}: {e}", path.display()))?;
        let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
        let done = Arc::new(AtomicBool::new(false));
        let stop = done.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(len) = socket.recv(&mut buf)
                    && String::from_utf8_lossy(&buf[..len])
                        .lines()
                        .any(|l| l == "READY=1")
                {
                    let _ = tx.send(Event::Ready(n));
                }
            }
        });
        Ok(NotifyReader { path, done })
    }
}

impl Drop for NotifyReader {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.path);
    }
}

pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
