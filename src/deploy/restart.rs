//! Moving one host between releases: stop, switch, start, wait for health (the process stays
//! up, the URL answers through the host's connection, the command exits 0), and on failure
//! switch back and start the previous release. A release with `listen` (it ships the keeper)
//! is not stopped: switch, then `reload` hands the sockets over, and a revert is a handover
//! back. Pruning after.

use std::sync::mpsc;
use std::time::Instant;

use anyhow::Result;

use super::config::{self, Health, Service, Settings};
use super::notes::{Happened, HostNotes};
use super::session::Session;
use super::state::http_status;
use super::{Event, Options, now};

pub fn service(
    session: &Session,
    s: &Settings,
    version: &str,
    name: &str,
    command: &str,
) -> Result<String> {
    match &s.service {
        Service::Launcher => {
            // The host's processes when roles name any besides web; without roles the
            // launcher's own default (every process), so a release with one process gets the
            // launcher call it always got.
            let processes = s.processes_of(&session.target.label).join(" ");
            let by_role = s.role_table;
            // A handover: the launcher's restart is one for a process with a keeper, and
            // stop → start for the host's other processes.
            let command = if command == "reload" {
                "restart"
            } else {
                command
            };
            let mut args = vec![version, name, command];
            if by_role {
                args.push(&processes);
            }
            session.step("launcher", &args)
        }
        Service::Systemd { unit } => {
            let verb = match command {
                "daemon" => "start",
                // ExecReload runs the launcher's reload; an inactive unit is started.
                "reload" => "reload-or-restart",
                "status" => "is-active",
                other => other,
            };
            session.step("systemctl", &[unit, verb])
        }
    }
}

/// Why a probe failed, and whether the service answered (a bad status counts towards
/// `unhealthy-after`; no answer while it starts does not).
struct ProbeFailure {
    why: String,
    answered: bool,
}

impl From<String> for ProbeFailure {
    fn from(why: String) -> ProbeFailure {
        ProbeFailure {
            why,
            answered: false,
        }
    }
}

/// One health probe: the URL answers 2xx/3xx, or the command exits 0.
fn probe(
    session: &Session,
    health: &Health,
    version: &str,
    name: &str,
) -> Result<(), ProbeFailure> {
    if let Some(url) = &health.url {
        let vars = config::url_variables(url)?;
        let values = if vars.is_empty() {
            Vec::new()
        } else {
            let mut args = vec![version, name];
            args.extend(vars.iter().map(String::as_str));
            let out = session.step("getenv", &args).map_err(|e| e.to_string())?;
            vars.iter()
                .cloned()
                .zip(out.lines().map(String::from))
                .collect()
        };
        let expanded = config::expand_url(url, &values);
        // Messages name the template, never the expansion: its values come from the host's
        // secrets file and messages reach the host's log, events and the terminal.
        let u = config::parse_url(&expanded).map_err(|e| format!("{url}: {e}"))?;
        let mut tunnel = session
            .target
            .transport
            .connect(&u.host, u.port)
            .map_err(|e| format!("{url}: {e:#}"))?;
        let closer = &tunnel.closer();
        let (tx, rx) = mpsc::channel();
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nUser-Agent: cargo-release-bundle\r\n\r\n",
            u.path, u.host, u.port
        );
        let reply = std::thread::scope(|scope| {
            scope.spawn(move || {
                if rx.recv_timeout(health.timeout).is_err() {
                    closer.close();
                }
            });
            let reply = tunnel.exchange(request.as_bytes(), 4096);
            let _ = tx.send(());
            reply
        });
        let status = reply
            .ok()
            .and_then(|r| http_status(&r))
            .ok_or_else(|| format!("{url} did not answer within {:?}", health.timeout))?;
        if !(200..400).contains(&status) {
            return Err(ProbeFailure {
                why: format!("{url} answered {status}"),
                answered: true,
            });
        }
    }
    if let Some(command) = &health.command {
        session
            .step("check", &[version, command])
            .map_err(|e| format!("the health command failed: {e:#}"))?;
    }
    Ok(())
}

/// Wait until `version` is healthy: alive, probes passing, for `healthy_for` in a row.
fn wait_healthy(session: &Session, s: &Settings, version: &str, name: &str) -> Result<(), String> {
    let h = &s.health_of(&session.target.label);
    let start = Instant::now();
    let mut healthy_since: Option<Instant> = None;
    let mut bad_answers = 0;
    let mut last = String::from("no probe finished");
    loop {
        if let Err(e) = service(session, s, version, name, "status") {
            let label = format!("{}: ", session.target.label);
            return Err(format!(
                "it is not running: {}",
                format!("{e:#}").trim_start_matches(&label)
            ));
        }
        // A host without web (a worker) has no URL (see `health_of`): healthy when it keeps
        // running and its health command, if any, passes.
        match probe(session, h, version, name) {
            Ok(()) => {
                let since = *healthy_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= h.healthy_for {
                    return Ok(());
                }
            }
            Err(e) => {
                healthy_since = None;
                bad_answers = if e.answered { bad_answers + 1 } else { 0 };
                if bad_answers >= h.unhealthy_after {
                    return Err(format!("{} ({bad_answers} times in a row)", e.why));
                }
                last = e.why;
            }
        }
        if start.elapsed() >= h.deadline && healthy_since.is_none() {
            return Err(format!("not healthy within {:?}: {last}", h.deadline));
        }
        std::thread::sleep(h.interval);
    }
}

/// Whether moving to `version` is a handover: it ships the keeper, and `--cold` is not given.
fn handover(session: &Session, opts: &Options, version: &str) -> bool {
    opts.restart && !opts.cold && session.step("keeper", &[version]).is_ok()
}

/// Start `version` (`verb`: `daemon`, or `reload` for a handover) and wait for health.
pub fn start(
    session: &Session,
    s: &Settings,
    version: &str,
    name: &str,
    verb: &str,
    notes: &HostNotes,
) -> Result<(), String> {
    let label = format!("{}: ", session.target.label);
    service(session, s, version, name, verb)
        .map_err(|e| format!("{e:#}").trim_start_matches(&label).to_string())?;
    notes.push(Happened::Started {
        version: version.into(),
    });
    wait_healthy(session, s, version, name)
}

/// How one host's move ended.
pub enum Moved {
    Done,
    /// It was current already but not running, and it was started (and is healthy).
    Started,
    /// The new release failed: why, and what the host went back to (whether it is healthy).
    Reverted(String, Option<(String, bool)>),
}

/// Stop `from`, switch to `to`, start it (or switch, then hand over to it, when it has a
/// keeper); on failure switch back to `from` and start it.
pub fn move_host(
    session: &Session,
    opts: &Options,
    name: &str,
    from: Option<&str>,
    to: &str,
    rollback: bool,
    notes: &HostNotes,
) -> Result<Moved> {
    let s = &opts.settings;
    let gapless = handover(session, opts, to);
    if let Some(from) = from
        && opts.restart
        && !gapless
    {
        service(session, s, from, name, "stop")?;
        notes.push(Happened::Stopped {
            version: from.into(),
        });
    }
    switch(session, from, to, rollback, notes)?;
    if !opts.restart {
        return Ok(Moved::Done);
    }
    // Where the new process's lines will begin in the shared log (a failure shows those).
    let log_from = session.step("logsize", &[name]).unwrap_or_default();
    let verb = if gapless { "reload" } else { "daemon" };
    match start(session, s, to, name, verb, notes) {
        Ok(()) => {
            healthy(session, to, notes)?;
            Ok(Moved::Done)
        }
        Err(why) => {
            let tail = session
                .step("tail", &[name, log_from.trim()])
                .unwrap_or_default();
            let log_tail = crate::output::printable(tail.as_bytes(), 20);
            failed(session, opts, (name, from, to), why, log_tail, notes)
        }
    }
}

/// `current` -> `to`, logged on the host as a switch (or a rollback's) and noted.
fn switch(
    session: &Session,
    from: Option<&str>,
    to: &str,
    rollback: bool,
    notes: &HostNotes,
) -> Result<()> {
    session.step("switch", &[to])?;
    let time = now();
    session.log(&match (rollback, from) {
        (true, Some(from)) => Event::RolledBack {
            from: from.into(),
            to: to.into(),
            time,
        },
        _ => Event::Switched {
            from: from.map(String::from),
            to: to.into(),
            time,
        },
    })?;
    notes.push(Happened::Switched {
        from: from.map(String::from),
        to: to.into(),
    });
    Ok(())
}

/// `to` did not come up (`why`, its log's new lines in `log_tail`): logged and noted, then
/// back to `from`, or, with nothing to go back to, stopped.
fn failed(
    session: &Session,
    opts: &Options,
    (name, from, to): (&str, Option<&str>, &str),
    why: String,
    log_tail: String,
    notes: &HostNotes,
) -> Result<Moved> {
    if from.is_none() {
        let _ = service(session, &opts.settings, to, name, "stop");
    }
    session.log(&Event::Failed {
        version: to.into(),
        why: why.clone(),
        time: now(),
    })?;
    notes.push(Happened::Failed {
        version: to.into(),
        why: why.clone(),
        log_tail,
    });
    let back = match from {
        Some(from) => Some((
            from.to_string(),
            revert(session, opts, name, to, from, notes)?,
        )),
        None => None,
    };
    Ok(Moved::Reverted(why, back))
}

/// Switch back from `bad` to `good` and start it (stopping `bad` first unless `good` takes
/// over by a handover); whether it came up healthy.
pub fn revert(
    session: &Session,
    opts: &Options,
    name: &str,
    bad: &str,
    good: &str,
    notes: &HostNotes,
) -> Result<bool> {
    let s = &opts.settings;
    let gapless = handover(session, opts, good);
    if !gapless {
        let _ = service(session, s, bad, name, "stop");
    }
    session.step("switch", &[good])?;
    session.log(&Event::Reverted {
        from: bad.into(),
        to: good.into(),
        time: now(),
    })?;
    let verb = if gapless { "reload" } else { "daemon" };
    let up = start(session, s, good, name, verb, notes).is_ok();
    if up {
        healthy(session, good, notes)?;
    }
    notes.push(Happened::Reverted {
        from: bad.into(),
        to: good.into(),
        healthy: up,
    });
    Ok(up)
}

/// The end of a failure message: where the host went back to.
pub fn went_back(back: &Option<(String, bool)>) -> String {
    match back {
        Some((v, true)) => format!("switched back to {v}, which is serving"),
        Some((v, false)) => format!("switched back to {v}, which did not come up either"),
        None => "there was no earlier release to switch back to".into(),
    }
}

pub fn prune(session: &mut Session, keep: usize, notes: &HostNotes) -> Result<()> {
    session.refresh()?;
    let history = session.state.history();
    let gone = history.to_prune(
        session.state.current.as_deref(),
        &session.state.installed(),
        keep,
    );
    for version in gone {
        session.step("prune", &[&version])?;
        session.log(&Event::Pruned {
            version: version.clone(),
            time: now(),
        })?;
        notes.push(Happened::Pruned { version });
    }
    Ok(())
}

/// Record that `version` came up healthy: in the host's log and in the report.
fn healthy(session: &Session, version: &str, notes: &HostNotes) -> Result<()> {
    session.log(&Event::Healthy {
        version: version.into(),
        time: now(),
    })?;
    notes.push(Happened::Healthy {
        version: version.into(),
    });
    Ok(())
}

/// `version` is already current (a repeated deploy, or one killed after the switch): make
/// sure it runs and is healthy. `Some(Moved::Started)` when it had to be started.
pub fn ensure_running(
    session: &Session,
    opts: &Options,
    name: &str,
    version: &str,
    notes: &HostNotes,
) -> Result<Option<Moved>> {
    if !opts.restart || service(session, &opts.settings, version, name, "status").is_ok() {
        return Ok(None);
    }
    // `restart`: a process left running from another release is replaced too.
    start(session, &opts.settings, version, name, "restart", notes).map_err(|why| {
        anyhow::anyhow!(
            "{}: {name} {version} is current but not running, and did not come up: {why}",
            session.target.label
        )
    })?;
    healthy(session, version, notes)?;
    Ok(Some(Moved::Started))
}
