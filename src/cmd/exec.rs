//! `cargo release-bundle exec --host/--dest ... -- COMMAND [ARGS]`: a launcher command on every
//! host, each output line prefixed with its host; exit 0 only when every host's command did.

use std::sync::mpsc;

use anyhow::{Context, Result, bail};

use crate::cli::ExecOpts;
use crate::deploy::exec::{self, Ended, Line};
use crate::deploy::{fleet, resolve};
use crate::output::{MessageFormat, Output, printable};

/// 0 when the command exited 0 on every host, 1 otherwise (the summary names each failing
/// host and its code); 2 when the hosts cannot be resolved.
pub fn run(opts: &ExecOpts, shell: &Output) -> Result<u8> {
    let lookup = super::deploy::lookup(&opts.hosts, &opts.manifest);
    let flags = super::deploy::flags(&opts.hosts, &crate::cli::RestartOpts::default(), None, None);
    let hosts = resolve::hosts(&lookup, flags)?;
    let targets = &hosts.targets;
    let name = release_name(&hosts)?;
    if opts.raw || opts.interactive {
        let [target] = targets.as_slice() else {
            bail!(
                "--raw and --interactive run on one host, and {} are selected (name one with --host, or use --primary)",
                targets.len()
            );
        };
        let code = exec::attached(target, &name, &opts.command, opts.interactive)?;
        return Ok(u8::try_from(code).unwrap_or(1));
    }
    let batch = opts
        .batch
        .map_or(targets.len(), |b| b.size(targets.len()))
        .max(1);
    let (tx, rx) = mpsc::channel();
    let ended = std::thread::scope(|scope| {
        let worker = scope.spawn(move || exec::exec(targets, &name, &opts.command, batch, &tx));
        for line in rx {
            print_line(&line, opts.output.message_format, shell);
        }
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    Ok(summarize(&ended, opts.output.message_format, shell))
}

fn print_line(line: &Line, format: MessageFormat, shell: &Output) {
    let text = printable(&line.text, 1);
    let text = text.trim_end_matches('\n');
    if format == MessageFormat::Json {
        shell.json(&serde_json::json!({
            "reason": "exec-output",
            "host": line.host,
            "stream": if line.stderr { "stderr" } else { "stdout" },
            "line": text,
        }));
    } else if line.stderr {
        shell.warn(format!("{}: {text}", line.host));
    } else {
        shell.out(format!("{}: {text}", line.host));
    }
}

/// The summary, and the exit code: 0 when every host's command exited 0.
fn summarize(ended: &[Ended], format: MessageFormat, shell: &Output) -> u8 {
    let failed: Vec<String> = ended
        .iter()
        .filter(|e| e.code != Ok(0))
        .map(|e| match &e.code {
            Ok(code) => format!("{} (exit {code})", e.host),
            Err(why) => format!("{} ({why})", e.host),
        })
        .collect();
    if format == MessageFormat::Json {
        let hosts: Vec<serde_json::Value> = ended
            .iter()
            .map(|e| match &e.code {
                Ok(code) => serde_json::json!({"host": e.host, "code": code}),
                Err(why) => serde_json::json!({"host": e.host, "code": null, "error": why}),
            })
            .collect();
        shell.json(&serde_json::json!({
            "reason": "exec-summary",
            "success": failed.is_empty(),
            "hosts": hosts,
        }));
    } else if failed.is_empty() {
        shell.status("Finished", format!("on {} host(s)", ended.len()));
    } else {
        shell.error(format!("failed on {}", failed.join(", ")));
    }
    u8::from(!failed.is_empty())
}

/// The release name: the package's when run in it, else what the first host's current
/// release records.
pub(super) fn release_name(hosts: &resolve::Hosts) -> Result<String> {
    if let Some(name) = &hosts.name {
        return Ok(name.clone());
    }
    // The first host that answers.
    let mut last = anyhow::anyhow!("no hosts");
    for target in &hosts.targets {
        let answer = fleet::states(std::slice::from_ref(target))
            .pop()
            .context("no answer")
            .and_then(|state| fleet::release_name(&state?));
        match answer {
            Ok(name) => return Ok(name),
            Err(e) => last = e.context(target.label.clone()),
        }
    }
    Err(last)
}
