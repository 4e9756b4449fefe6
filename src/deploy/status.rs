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

/// The keeper on a host (a release with `listen`): its pid, whether it runs, and the
/// generation serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Keeper {
    pub live: bool,
    pub pid: Option<u32>,
    pub generation: Option<u32>,
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
    /// The web process (the serving generation with a keeper).
    pub process: Option<Process>,
    /// Every process the host reported, by name (`None`: stopped).
    pub processes: std::collections::BTreeMap<String, Option<Process>>,
    pub keeper: Option<Keeper>,
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
            processes: Default::default(),
            keeper: None,
            lock: None,
            last_event: None,
            bad: Vec::new(),
            problems: Vec::new(),
        }
    }
}

/// Parse `host.sh status` output, judging it against the processes the host should run.
pub fn parse(host: &str, text: &str, expected: &[String]) -> Result<HostStatus> {
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
            "process" => {
                let (name, fields) = arg.split_once(' ').unwrap_or((arg, ""));
                let process = parse_process(fields);
                if name == "web" {
                    status.process = process.clone();
                }
                status.processes.insert(name.to_string(), process);
            }
            "keeper" => {
                let mut f = arg.split(' ');
                status.keeper = Some(Keeper {
                    live: f.next() == Some("live"),
                    pid: f.next().and_then(|p| p.parse().ok()),
                    generation: f.next().and_then(|g| g.parse().ok()),
                });
            }
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
    status.problems = problems(&status, expected);
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

/// What makes a host's status a failure: nothing current; an expected process, or one that
/// left a pid file, not running; a process running another release than `current`; a
/// generation serving without its keeper.
pub fn problems(s: &HostStatus, expected: &[String]) -> Vec<String> {
    let Some(current) = &s.current else {
        return vec!["nothing is current".to_string()];
    };
    let mut out = Vec::new();
    let names = expected
        .iter()
        .chain(s.processes.keys().filter(|n| !expected.contains(n)));
    for name in names {
        let label = if name == "web" {
            "the service".to_string()
        } else {
            format!("process {name}")
        };
        match s.processes.get(name).cloned().flatten() {
            None => out.push(format!("{label} is not running")),
            Some(p) if p.release != *current => out.push(format!(
                "{label}: pid {} runs release {}, not the current {current}",
                p.pid, p.release
            )),
            Some(_) => {}
        }
    }
    if let Some(k) = s.keeper.as_ref().filter(|k| !k.live) {
        let g = k.generation.map_or("?".to_string(), |g| g.to_string());
        out.push(format!(
            "the keeper is not running (generation {g} serves without it)"
        ));
    }
    out
}

/// Each target's status, side by side; a host that does not answer within `timeout` is
/// reported unreachable (not fatal for the others).
pub fn statuses(
    targets: &[Target],
    name: &str,
    timeout: Duration,
    expected: &(dyn Fn(&str) -> Vec<String> + Sync),
) -> Vec<HostStatus> {
    super::parallel(targets.iter().collect(), |t| {
        read_one(t, name, timeout, &expected(&t.label)).unwrap_or_else(|e| HostStatus {
            reachable: false,
            error: Some(format!("{e:#}")),
            problems: vec!["unreachable".into()],
            ..HostStatus::blank(&t.label)
        })
    })
}

fn read_one(t: &Target, name: &str, timeout: Duration, expected: &[String]) -> Result<HostStatus> {
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
    parse(&t.label, &String::from_utf8_lossy(&out.stdout), expected)
        .with_context(|| format!("{}: cannot read the status report", t.label))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Vec<String> {
        vec!["web".to_string()]
    }

    #[test]
    fn reports_parse_and_judge() {
        let text = "@@rb current 1.3.0\n@@rb process web 42 1.2.0 7\n@@rb lock stale pid=9 who=x\n@@rb log\n{\"event\":\"marked-bad\",\"version\":\"1.4.0\",\"time\":1}\n@@rb end\n";
        let s = parse("h1", text, &web()).unwrap();
        assert_eq!(s.current.as_deref(), Some("1.3.0"));
        assert_eq!(s.process.as_ref().map(|p| p.pid), Some(42));
        assert_eq!(s.lock.as_ref().map(|l| l.live), Some(false));
        assert_eq!(s.bad, ["1.4.0"]);
        assert_eq!(
            s.problems,
            ["the service: pid 42 runs release 1.2.0, not the current 1.3.0"]
        );
        let down = parse(
            "h1",
            "@@rb current 1.3.0\n@@rb process web\n@@rb log\n@@rb end\n",
            &web(),
        )
        .unwrap();
        assert_eq!(down.problems, ["the service is not running"]);
        assert!(parse("h1", "@@rb current 1.3.0\n@@rb log\n", &web()).is_err());
        // A worker host: web is not expected; the worker is; a dead keeper is reported.
        let text = "@@rb current 2.0.0\n@@rb keeper dead 7 3\n@@rb process web 9 2.0.0 1\n@@rb process worker\n@@rb log\n@@rb end\n";
        let s = parse("h2", text, &["worker".to_string()]).unwrap();
        assert_eq!(
            s.keeper,
            Some(Keeper {
                live: false,
                pid: Some(7),
                generation: Some(3)
            })
        );
        assert_eq!(
            s.problems,
            [
                "process worker is not running",
                "the keeper is not running (generation 3 serves without it)"
            ]
        );
    }
}
