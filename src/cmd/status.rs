//! `cargo release-bundle status --host/--dest ...`: each host's state, read without its lock;
//! exit 1 when a host is unreachable, its service is down, or it runs another release than
//! `current`.

use anyhow::Result;

use crate::cli::StatusOpts;
use crate::deploy::resolve;
use crate::deploy::status::{self, HostStatus};
use crate::output::{MessageFormat, Output};

pub fn run(opts: &StatusOpts, shell: &Output) -> Result<u8> {
    let lookup = super::deploy::lookup(&opts.hosts, &opts.manifest);
    let flags = super::deploy::flags(&opts.hosts, &crate::cli::RestartOpts::default(), None, None);
    let hosts = resolve::hosts(&lookup, flags)?;
    let name = super::exec::release_name(&hosts)?;
    let settings = &hosts.settings;
    let expected = |host: &str| settings.processes_of(host);
    let all = status::statuses(&hosts.targets, &name, opts.timeout, &expected);
    for s in &all {
        if opts.output.message_format == MessageFormat::Json {
            let mut v = serde_json::to_value(s)?;
            v["reason"] = "host-status".into();
            shell.json(&v);
        } else {
            print_human(s, shell);
        }
    }
    Ok(u8::from(all.iter().any(|s| !s.problems.is_empty())))
}

fn print_human(s: &HostStatus, shell: &Output) {
    if !s.reachable {
        shell.out(format!(
            "{}: unreachable ({})",
            s.host,
            s.error.as_deref().unwrap_or("no answer")
        ));
        return;
    }
    let current = s.current.as_deref().unwrap_or("nothing");
    let process = match &s.process {
        Some(p) => format!(
            "running (pid {}, release {}, up {}s)",
            p.pid, p.release, p.uptime_secs
        ),
        None => "stopped".into(),
    };
    shell.out(format!("{}: current {current}; {process}", s.host));
    if let Some(k) = &s.keeper {
        let pid = k.pid.map_or("?".to_string(), |p| p.to_string());
        let generation = k.generation.map_or("?".to_string(), |g| g.to_string());
        let state = if k.live { "running" } else { "NOT running" };
        shell.out(format!(
            "  keeper: {state} (pid {pid}), generation {generation} serving"
        ));
    }
    for (name, p) in s.processes.iter().filter(|(n, _)| *n != "web") {
        match p {
            Some(p) => shell.out(format!(
                "  {name}: running (pid {}, release {}, up {}s)",
                p.pid, p.release, p.uptime_secs
            )),
            None => shell.out(format!("  {name}: stopped")),
        }
    }
    match &s.lock {
        Some(l) => shell.out(format!(
            "  lock: {} ({})",
            if l.live { "held" } else { "stale" },
            l.holder
        )),
        None => shell.out("  lock: free"),
    }
    if let Some(e) = &s.last_event {
        shell.out(format!(
            "  last event: {}",
            serde_json::to_string(e).unwrap_or_default()
        ));
    }
    if !s.bad.is_empty() {
        shell.out(format!("  marked bad: {}", s.bad.join(", ")));
    }
    for p in &s.problems {
        shell.out(format!("  problem: {p}"));
    }
}
