//! `status`: what each host is doing, read without taking its lock: the current release, the
//! service's process and the release it runs, the deploy lock, the last event and the
//! releases marked bad. Pure parsing and judging; the host reports through `host.sh status`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{Event, History, Target};

/// The service's process on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    pub pid: u32,
    /// The release its executable belongs to (`?` when it is not one of this layout's).
    pub release: String,
    pub uptime_secs: u64,
}

/// The deploy lock on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lock {
    /// Its holder is alive (`false`: stale, left by a deploy that is gone).
    pub live: bool,
    pub holder: String,
}

/// One host's status: the stable JSON schema `status --message-format json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub reachable: bool,
    /// Why it could not be read, when it could not.
    pub error: Option<String>,
    pub current: Option<String>,
    pub process: Option<Process>,
    pub lock: Option<Lock>,
    pub last_event: Option<Event>,
    pub bad: Vec<String>,
    /// What is wrong (down, running another release than `current`, unreachable).
    pub problems: Vec<String>,
}

impl HostStatus {
    /// A reachable host about which nothing is known yet.
    fn blank(host: &str) -> Self {
        HostStatus {
            host: host.into(),
            reachable: true,
            error: None,
            current: None,
            process: None,
            lock: None,
            last_event: None,
            bad: Vec::new(),
            problems: Vec::new(),
        }
    }
}

/// Parse `host.sh status` output.
pub fn parse(host: &str, text: &str) -> Result<HostStatus> {
    let mut status = HostStatus::blank(host);
    let (head, log) = text
        .split_once("@@rb log\n")
        .context("the host's status report has no log section")?;
    if !log.trim_end().ends_with("@@rb end") {
        bail!("the host's status report ended early");
    }
    for line in head.lines() {
        let Some(rest) = line.strip_prefix("@@rb ") else {
            continue;
        };
        let (word, arg) = rest.split_once(' ').unwrap_or((rest, ""));
        match word {
            "current" => status.current = Some(arg.to_string()).filter(|c| !c.is_empty()),
            "process" => status.process = parse_process(arg),
            "lock" => {
                let (live, holder) = arg.split_once(' ').unwrap_or((arg, ""));
                status.lock = Some(Lock {
                    live: live == "live",
                    holder: holder.to_string(),
                });
            }
            _ => bail!("unexpected line from the host: {line:?}"),
        }
    }
    let events: Vec<Event> = log
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("@@rb "))
        .map(|l| serde_json::from_str(l).with_context(|| format!("not an event: {l:?}")))
        .collect::<Result<_>>()?;
    status.bad = History::from_events(&events).bad;
    status.last_event = events.last().cloned();
    status.problems = problems(&status);
    Ok(status)
}

fn parse_process(arg: &str) -> Option<Process> {
    let mut fields = arg.split(' ');
    Some(Process {
        pid: fields.next()?.parse().ok()?,
        release: fields.next()?.to_string(),
        uptime_secs: fields.next()?.parse().ok()?,
    })
}

/// What makes a host's status a failure.
pub fn problems(s: &HostStatus) -> Vec<String> {
    let mut out = Vec::new();
    match (&s.current, &s.process) {
        (None, _) => out.push("nothing is current".to_string()),
        (Some(_), None) => out.push("the service is not running".to_string()),
        (Some(current), Some(p)) if p.release != *current => out.push(format!(
            "pid {} runs release {}, not the current {current}",
            p.pid, p.release
        )),
        _ => {}
    }
    out
}

/// Each target's status, side by side; a host that does not answer within `timeout` is
/// reported unreachable (not fatal for the others).
pub fn statuses(targets: &[Target], name: &str, timeout: Duration) -> Vec<HostStatus> {
    super::parallel(targets.iter().collect(), |t| {
        read_one(t, name, timeout).unwrap_or_else(|e| HostStatus {
            reachable: false,
            error: Some(format!("{e:#}")),
            problems: vec!["unreachable".into()],
            ..HostStatus::blank(&t.label)
        })
    })
}

fn read_one(t: &Target, name: &str, timeout: Duration) -> Result<HostStatus> {
    let mut cmd = t.transport.single_step(&t.path, "status", &[name]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd
        .spawn()
        .with_context(|| format!("{}: cannot run the status step", t.label))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    // Output is read as it comes (a long log must not fill the pipe while we wait).
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(out) => out?,
        Err(_) => {
            // SAFETY: our own child, not reaped until the waiting thread's wait returns, so
            // the pid cannot have been reused.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let _ = waiter.join();
            bail!("{}: no answer within {timeout:?}", t.label);
        }
    };
    let _ = waiter.join();
    if !out.status.success() {
        let err = crate::output::printable(&out.stderr, 5);
        bail!("{}: {}", t.label, err.trim());
    }
    parse(&t.label, &String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("{}: cannot read the status report", t.label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse_and_judge() {
        let text = "@@rb current 1.3.0\n@@rb process 42 1.2.0 7\n@@rb lock stale pid=9 who=x\n@@rb log\n{\"event\":\"marked-bad\",\"version\":\"1.4.0\",\"time\":1}\n@@rb end\n";
        let s = parse("h1", text).unwrap();
        assert_eq!(s.current.as_deref(), Some("1.3.0"));
        assert_eq!(s.process.as_ref().map(|p| p.pid), Some(42));
        assert_eq!(s.lock.as_ref().map(|l| l.live), Some(false));
        assert_eq!(s.bad, ["1.4.0"]);
        assert_eq!(
            s.problems,
            ["pid 42 runs release 1.2.0, not the current 1.3.0"]
        );
        let down = parse(
            "h1",
            "@@rb current 1.3.0\n@@rb process\n@@rb log\n@@rb end\n",
        )
        .unwrap();
        assert_eq!(down.problems, ["the service is not running"]);
        assert!(parse("h1", "@@rb current 1.3.0\n@@rb log\n").is_err());
    }
}
