//! A host while this deploy holds its lock: running `host.sh` steps there, and taking and
//! releasing the locks of every host. The lock holder is the step that keeps the connection
//! open (over SSH, the connection master): it lives exactly as long as this process does.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::notes::{Happened, HostNotes, Notes};
use super::state::{HostState, parse_state};
use super::{Event, Options, Target};

/// What a failing step's stderr may show: its last bytes up to this, escaped.
const STDERR_LIMIT: u64 = 64 * 1024;

/// Run one step to completion: its stdout, or an error with its stderr (read up to
/// [`STDERR_LIMIT`], the rest drained unread, control characters escaped).
pub fn output_of(
    mut cmd: Command,
    what: &str,
    label: &str,
    input: Option<&[u8]>,
) -> Result<String> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{label}: cannot run the {what} step (is `ssh` installed?)"))?;
    let stdin = child.stdin.take();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (sent, out, err) = std::thread::scope(|scope| {
        let errors = scope.spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut e) = stderr {
                let _ = (&mut e).take(STDERR_LIMIT).read_to_end(&mut kept);
                let _ = std::io::copy(&mut e, &mut std::io::sink());
            }
            kept
        });
        let sent = match (input, stdin) {
            (Some(input), Some(mut stdin)) => stdin.write_all(input),
            _ => Ok(()),
        };
        let mut out = Vec::new();
        let read = stdout.map_or(Ok(0), |mut o| o.read_to_end(&mut out));
        let err = errors.join().unwrap_or_default();
        (sent.and(read.map(drop)), out, err)
    });
    let status = child
        .wait()
        .with_context(|| format!("{label}: the {what} step"))?;
    if !status.success() {
        let err = crate::output::printable(&err, 40);
        bail!("{label}: {what} failed ({status}): {}", err.trim());
    }
    sent.with_context(|| format!("{label}: cannot talk to the {what} step"))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A host while its lock is held.
pub struct Session {
    pub target: Target,
    keeper: Child,
    keeper_pid: String,
    pub state: HostState,
    /// The holder of a stale lock `--break-lock` removed to take this one.
    pub broke: Option<String>,
}

impl Session {
    pub fn step(&self, step: &str, args: &[&str]) -> Result<String> {
        let cmd = self.target.transport.step(&self.target.path, step, args);
        output_of(cmd, step, &self.target.label, None)
    }

    /// Run a step with `input` on its stdin (what must not be on a command line).
    pub fn step_with_input(&self, step: &str, args: &[&str], input: &[u8]) -> Result<String> {
        let cmd = self.target.transport.step(&self.target.path, step, args);
        output_of(cmd, step, &self.target.label, Some(input))
    }

    /// Append one event to the host's log, sent through stdin.
    pub fn log(&self, event: &Event) -> Result<()> {
        let mut line = serde_json::to_string(event).context("an event always serializes")?;
        line.push('\n');
        self.step_with_input("log", &[], line.as_bytes()).map(drop)
    }

    pub fn refresh(&mut self) -> Result<()> {
        self.state = parse_state(&self.step("state", &[])?)
            .with_context(|| format!("{}: cannot read the deploy state", self.target.label))?;
        Ok(())
    }

    fn unlock(mut self) -> Result<()> {
        let result = self.step("unlock", &[&self.keeper_pid.clone()]);
        drop(self.keeper.stdin.take());
        let _ = self.keeper.wait();
        result.map(drop)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Ends the lock holder (and over SSH the connection); the lock stays if `unlock` was
        // not reached, and the next deploy reports it as stale.
        drop(self.keeper.stdin.take());
        let _ = self.keeper.wait();
    }
}

enum LockAttempt {
    Taken(Box<Session>),
    Held(String),
}

fn try_lock(target: &Target, who: &str, version: &str, break_lock: bool) -> Result<LockAttempt> {
    let label = &target.label;
    let mut cmd = target.transport.master_step(
        &target.path,
        "lock",
        &[who, version, if break_lock { "1" } else { "0" }],
    );
    let errors = tempfile::tempfile().context("cannot create a temporary file")?;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(
        errors
            .try_clone()
            .context("cannot duplicate a file handle")?,
    );
    let mut keeper = cmd
        .spawn()
        .with_context(|| format!("{label}: cannot run the lock step (is `ssh` installed?)"))?;
    // Lines until the verdict (`locked PID`, `held …`, `stale …`), read a byte at a time:
    // the keeper's stdout stays open while it holds the lock.
    let mut broke = None;
    let first = loop {
        let mut line = Vec::new();
        if let Some(out) = keeper.stdout.as_mut() {
            let mut byte = [0u8; 1];
            while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
                line.push(byte[0]);
            }
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        match line.strip_prefix("broke ") {
            Some(holder) => broke = Some(holder.to_string()),
            None => break line,
        }
    };
    if let Some(pid) = first.strip_prefix("locked ") {
        let session = Session {
            target: target.clone(),
            keeper,
            keeper_pid: pid.trim().to_string(),
            state: HostState::default(),
            broke,
        };
        return Ok(LockAttempt::Taken(Box::new(session)));
    }
    drop(keeper.stdin.take());
    let status = keeper
        .wait()
        .with_context(|| format!("{label}: the lock step"))?;
    let mut err = String::new();
    let mut errors = errors;
    use std::io::Seek;
    let _ = errors.seek(std::io::SeekFrom::Start(0));
    let _ = errors.read_to_string(&mut err);
    if let Some(holder) = first.strip_prefix("held ") {
        return Ok(LockAttempt::Held(holder.to_string()));
    }
    if let Some(holder) = first.strip_prefix("stale ") {
        bail!(
            "{label}: `{}/.deploy/lock` is stale: left by a deploy that is gone ({holder}); check the host, then pass --break-lock to remove it",
            target.path
        );
    }
    bail!(
        "{label}: cannot take the deploy lock ({status}): {}",
        err.trim()
    )
}

fn lock(target: &Target, opts: &Options, version: &str) -> Result<Session> {
    let start = Instant::now();
    loop {
        match try_lock(target, &opts.who, version, opts.break_lock)? {
            LockAttempt::Taken(s) => return Ok(*s),
            LockAttempt::Held(holder) => {
                if start.elapsed() >= opts.lock_wait {
                    bail!(
                        "{}: another deploy holds `{}/.deploy/lock` ({holder}); wait for it, or pass --lock-wait DURATION",
                        target.label,
                        target.path
                    );
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Lock every host in sorted order; on any failure the locks taken so far are released.
pub fn lock_all(
    targets: &[Target],
    opts: &Options,
    version: &str,
    tx: &Notes,
) -> Result<Vec<Session>> {
    let mut order: Vec<&Target> = targets.iter().collect();
    order.sort_by(|a, b| a.label.cmp(&b.label));
    let mut sessions = Vec::new();
    for target in order {
        match lock(target, opts, version) {
            Ok(s) => {
                let notes = HostNotes {
                    tx,
                    host: &target.label,
                };
                if let Some(holder) = &s.broke {
                    notes.push(Happened::BrokeLock {
                        holder: holder.clone(),
                    });
                }
                notes.push(Happened::Locked);
                sessions.push(s)
            }
            Err(e) => {
                for s in sessions {
                    let _ = s.unlock();
                }
                return Err(e);
            }
        }
    }
    // Back to the order the user gave (batches follow it).
    sessions.sort_by_key(|s| targets.iter().position(|t| t.label == s.target.label));
    Ok(sessions)
}

pub fn unlock_all(sessions: Vec<Session>) -> Result<()> {
    let mut first = None;
    for s in sessions {
        if let Err(e) = s.unlock() {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Run `f` on every session at once, each on its own thread; results in session order.
pub fn on_each<T: Send>(sessions: &mut [Session], f: impl Fn(&mut Session) -> T + Sync) -> Vec<T> {
    super::parallel(sessions.iter_mut().collect(), f)
}
