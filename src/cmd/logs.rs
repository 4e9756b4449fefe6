//! `cargo release-bundle logs [-n N] [--grep TEXT] [--since WHEN] [-f]`: each host's service
//! log, every line prefixed with its host and escaped; exit 1 when a host could not be read.

use std::sync::mpsc;

use anyhow::{Result, bail};

use crate::cli::LogsOpts;
use crate::deploy::config::{Service, parse_duration};
use crate::deploy::exec::{Ended, Line};
use crate::deploy::logs::{self, Query};
use crate::deploy::resolve;
use crate::output::{MessageFormat, Output, printable};

/// `--since` as journalctl reads it: a duration becomes `-<seconds>s`; a time is passed on
/// when it is only digits, `-`, `:`, `T` and spaces.
fn since(text: &str, service: &Service) -> Result<String> {
    if *service == Service::Launcher {
        bail!(
            "--since {text}: the launcher's log lines carry no time; it reads the journal (deploy.service = \"systemd\")"
        );
    }
    if let Ok(d) = parse_duration(text) {
        return Ok(format!("-{}s", d.as_secs()));
    }
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_digit() || b" -:T".contains(&b));
    if text.is_empty() || !plain {
        bail!("--since {text:?}: expected a duration (10m) or a time (2026-12-07 09:00)");
    }
    Ok(text.to_string())
}

pub fn run(opts: &LogsOpts, shell: &Output) -> Result<u8> {
    let lookup = super::deploy::lookup(&opts.hosts, &opts.manifest);
    let flags = super::deploy::flags(&opts.hosts, &crate::cli::RestartOpts::default(), None, None);
    let hosts = resolve::hosts(&lookup, flags)?;
    let name = super::exec::release_name(&hosts)?;
    // A process's log is `<name>-<process>.log`; web's is `<name>.log`.
    let log_name = match opts.process.as_deref() {
        None | Some("web") => name.clone(),
        Some(p) if crate::config::layer::is_command_name(p) => format!("{name}-{p}"),
        Some(p) => bail!("--process {p:?}: not a process name"),
    };
    let service = &hosts.settings.service;
    let query = Query {
        lines: opts.lines,
        follow: opts.follow,
        since: opts
            .since
            .as_deref()
            .map(|s| since(s, service))
            .transpose()?,
        grep: opts.grep.clone(),
    };
    let (tx, rx) = mpsc::channel();
    let targets = &hosts.targets;
    let ended = std::thread::scope(|scope| {
        let worker = scope.spawn(move || logs::logs(targets, &log_name, service, &query, &tx));
        for line in rx {
            print_line(&line, opts.output.message_format, shell);
        }
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    Ok(summarize(&ended, shell))
}

fn print_line(line: &Line, format: MessageFormat, shell: &Output) {
    let text = printable(&line.text, 1);
    let text = text.trim_end_matches('\n');
    if format == MessageFormat::Json {
        let reason = if line.stderr {
            "logs-error"
        } else {
            "log-line"
        };
        shell.json(&serde_json::json!({"reason": reason, "host": line.host, "line": text}));
    } else if line.stderr {
        shell.warn(format!("{}: {text}", line.host));
    } else {
        shell.out(format!("{}: {text}", line.host));
    }
}

/// 1 when a host's log could not be read (its own message was printed as it came).
fn summarize(ended: &[Ended], shell: &Output) -> u8 {
    let failed: Vec<String> = ended
        .iter()
        .filter(|e| e.code != Ok(0))
        .map(|e| e.host.clone())
        .collect();
    if failed.is_empty() {
        return 0;
    }
    shell.error(format!("could not read the log on {}", failed.join(", ")));
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_for_the_journal() {
        let unit = Service::Systemd {
            unit: "a.service".into(),
        };
        assert_eq!(since("10m", &unit).unwrap(), "-600s");
        assert_eq!(
            since("2026-12-07 09:00", &unit).unwrap(),
            "2026-12-07 09:00"
        );
        assert!(since("$(reboot)", &unit).is_err());
        assert!(
            since("10m", &Service::Launcher)
                .unwrap_err()
                .to_string()
                .contains("carry no time")
        );
    }
}
