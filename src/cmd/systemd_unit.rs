//! `cargo release-bundle systemd-unit`: a unit for the deployed layout on a host (or here).

use anyhow::{Context, Result};

use crate::cli::SystemdUnitOpts;
use crate::deploy::fleet;
use crate::deploy::resolve;
use crate::shell::Shell;

pub fn run(opts: &SystemdUnitOpts, shell: &Shell) -> Result<u8> {
    let lookup = super::deploy::lookup(&opts.hosts, &opts.manifest);
    let flags = super::deploy::flags(&opts.hosts, &crate::cli::RestartOpts::default(), None);
    let hosts = resolve::hosts(&lookup, flags)?;
    let targets = &hosts.targets;
    // The layout is the same on every host; the first one answers.
    let target = targets.first().context("no host")?;
    let state = fleet::states(std::slice::from_ref(target))
        .pop()
        .context("no answer")??;
    let name = fleet::release_name(&state).with_context(|| {
        format!(
            "{}: nothing is installed under `{}`; deploy first",
            target.label, target.path
        )
    })?;
    let root = state
        .root
        .clone()
        .context("the host did not report its deploy path")?;
    let unit = crate::deploy::systemd_unit(&root, &name, opts.user.as_deref());
    shell.out(unit.trim_end());
    Ok(0)
}
