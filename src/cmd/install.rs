//! `cargo release-bundle install`, `rollback` and `releases`: releases side by side under a
//! deploy path on this machine.

use anyhow::Result;

use crate::cli::{
    DeployPathOpts, InstallOpts, MessageFormat, ReleasesOpts, RollbackOpts, SystemdUnitOpts,
};
use crate::deploy::local::{self, Options};
use crate::shell::Shell;

fn options(d: &DeployPathOpts, restart: bool, keep: usize) -> Options {
    Options {
        restart,
        keep,
        healthy_for: d.healthy_for,
        break_lock: d.break_lock,
    }
}

/// 0 installed (and healthy when restarted); errors (exit 1) otherwise.
pub fn install(opts: &InstallOpts, shell: &Shell) -> Result<u8> {
    let o = options(&opts.deploy, opts.restart, opts.keep);
    if let Some(file) = &opts.env_file {
        local::install_env_file(&opts.deploy.path, file)?;
        shell.status(
            "Installed",
            format!("{file} as {}/shared/env (0600)", opts.deploy.path),
        );
    }
    let done = local::install(&opts.bundle, &opts.deploy.path, &o, shell)?;
    for v in &done.pruned {
        shell.status("Pruned", format!("{} {v}", done.name));
    }
    let what = if done.staged { "Installed" } else { "Current" };
    shell.status(
        what,
        format!("{} {} under {}", done.name, done.version, opts.deploy.path),
    );
    Ok(0)
}

pub fn rollback(opts: &RollbackOpts, shell: &Shell) -> Result<u8> {
    let o = options(&opts.deploy, true, usize::MAX);
    let (from, to) = local::rollback(&opts.deploy.path, opts.version.as_deref(), &o, shell)?;
    shell.status(
        "Rolled back",
        format!("{from} -> {to} under {}", opts.deploy.path),
    );
    Ok(0)
}

pub fn releases(opts: &ReleasesOpts, shell: &Shell) -> Result<u8> {
    for r in local::releases(&opts.path)? {
        if opts.message_format == MessageFormat::Json {
            shell.json(&serde_json::json!({"reason": "release", "release": r}));
        } else {
            let mut marks = Vec::new();
            if r.current {
                marks.push("current");
            }
            if r.bad {
                marks.push("marked bad");
            }
            let marks = if marks.is_empty() {
                String::new()
            } else {
                format!(" ({})", marks.join(", "))
            };
            shell.out(format!("{}{marks}", r.version));
        }
    }
    Ok(0)
}

pub fn systemd_unit(opts: &SystemdUnitOpts, shell: &Shell) -> Result<u8> {
    shell.out(local::systemd_unit(&opts.path, opts.user.as_deref())?.trim_end());
    Ok(0)
}
