//! `exec`: one launcher command on every selected host, in the current release with the
//! host's environment (what the service itself gets), batch by batch. Each host's output
//! comes back line by line as it is written; each host's exit code is kept.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc;

use anyhow::{Context, Result};

use super::Target;
use super::state::batches;

/// One line a host wrote.
pub struct Line {
    pub host: String,
    pub stderr: bool,
    pub text: Vec<u8>,
}

/// How the command ended on one host: its exit code, or why it could not run.
pub struct Ended {
    pub host: String,
    pub code: std::result::Result<i32, String>,
}

/// Run `bin/<name> COMMAND ARGS…` of the current release on every target, `batch` at once;
/// lines go to `lines` as they come. The arguments reach the launcher as given (each is
/// quoted for the remote shell, never evaluated by it).
pub fn exec(
    targets: &[Target],
    name: &str,
    command: &[String],
    batch: usize,
    lines: &mpsc::Sender<Line>,
) -> Vec<Ended> {
    let mut ended = Vec::new();
    for range in batches(targets.len(), batch) {
        let batch = targets[range].to_vec();
        ended.extend(super::parallel(batch, |t| Ended {
            host: t.label.clone(),
            code: run_one(&t, name, command, lines).map_err(|e| format!("{e:#}")),
        }));
    }
    ended
}

fn run_one(t: &Target, name: &str, command: &[String], lines: &mpsc::Sender<Line>) -> Result<i32> {
    let mut args = vec![name];
    args.extend(command.iter().map(String::as_str));
    streamed(t, "exec", &args, lines, false)
}

/// `bin/<name> COMMAND ARGS…` on one target with this process's own stdout and stderr (raw
/// bytes), and with `interactive` its stdin on a terminal too (a console); its exit code.
pub fn attached(t: &Target, name: &str, command: &[String], interactive: bool) -> Result<i32> {
    let mut args = vec![name];
    args.extend(command.iter().map(String::as_str));
    let mut cmd = match interactive {
        true => t.transport.terminal_step(&t.path, "exec-tty", &args),
        false => t.transport.single_step(&t.path, "exec", &args),
    };
    if !interactive {
        cmd.stdin(Stdio::null());
    }
    let status = cmd
        .status()
        .with_context(|| format!("{}: cannot run the exec step", t.label))?;
    Ok(status.code().unwrap_or(-1))
}

/// Run one host step whose output comes back line by line (to `lines`, as it is written);
/// its exit code (-1 for a signal, or ssh's own failure). With `hold_stdin` its stdin stays
/// open until this process ends: a step that follows a log stops when it closes.
pub fn streamed(
    t: &Target,
    step: &str,
    args: &[&str],
    lines: &mpsc::Sender<Line>,
    hold_stdin: bool,
) -> Result<i32> {
    let mut cmd = t.transport.single_step(&t.path, step, args);
    let stdin = if hold_stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{}: cannot run the {step} step", t.label))?;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let _held = child.stdin.take();
    std::thread::scope(|scope| {
        scope.spawn(|| forward(out, &t.label, false, lines));
        forward(err, &t.label, true, lines);
    });
    let status = child
        .wait()
        .with_context(|| format!("{}: the {step} step", t.label))?;
    // A signal, or ssh's own failure (255), has no code of the command's: say so as -1.
    Ok(status.code().unwrap_or(-1))
}

/// Every line of `stream` (at most 64 KiB each; longer ones are split) to `lines`.
fn forward(stream: Option<impl Read>, host: &str, stderr: bool, lines: &mpsc::Sender<Line>) {
    let Some(stream) = stream else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let mut text = Vec::new();
        match (&mut reader).take(64 * 1024).read_until(b'\n', &mut text) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if text.last() == Some(&b'\n') {
                    text.pop();
                }
                let _ = lines.send(Line {
                    host: host.to_string(),
                    stderr,
                    text,
                });
            }
        }
    }
}
