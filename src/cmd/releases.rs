//! `cargo release-bundle releases --host/--dest | --path`: per host, the installed releases,
//! which is current, which are marked bad, and when each was staged.

use anyhow::Result;

use crate::cli::ReleasesOpts;
use crate::deploy::fleet;
use crate::deploy::resolve;
use crate::output::MessageFormat;
use crate::output::Output;

pub fn run(opts: &ReleasesOpts, shell: &Output) -> Result<u8> {
    let lookup = super::deploy::lookup(&opts.hosts, &opts.manifest);
    let flags = super::deploy::flags(&opts.hosts, &crate::cli::RestartOpts::default(), None, None);
    let hosts = resolve::hosts(&lookup, flags)?;
    let targets = &hosts.targets;
    let several = targets.len() > 1;
    for (target, state) in targets.iter().zip(fleet::states(targets)) {
        let state = state?;
        let history = state.history();
        if several && opts.output.message_format == MessageFormat::Human {
            shell.out(format!("{}:", target.label));
        }
        for version in state.installed() {
            let current = state.current.as_deref() == Some(version.as_str());
            let bad = history.bad.contains(&version);
            let staged = history
                .staged
                .iter()
                .find(|(v, _, _)| *v == version)
                .map(|(_, _, t)| *t);
            if opts.output.message_format == MessageFormat::Json {
                shell.json(&serde_json::json!({
                    "reason": "release",
                    "host": target.label,
                    "release": {"version": version, "current": current, "bad": bad, "staged": staged},
                }));
                continue;
            }
            let mut marks = Vec::new();
            if current {
                marks.push("current".to_string());
            }
            if bad {
                marks.push("marked bad".to_string());
            }
            if let Some(t) = staged {
                marks.push(format!("deployed {}", crate::util::utc(t)));
            }
            let indent = if several { "  " } else { "" };
            shell.out(format!("{indent}{version} ({})", marks.join(", ")));
        }
    }
    Ok(0)
}
