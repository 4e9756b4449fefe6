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
    // The installed release's name; before the first deploy (the unit has to exist for a
    // deploy with `service = "systemd"` to start anything), the package's.
    let name = match (fleet::release_name(&state), hosts.name.clone()) {
        (Ok(name), _) => name,
        (Err(_), Some(name)) => name,
        (Err(e), None) => {
            return Err(e.context(format!(
                "{}: nothing is installed under `{}` and no package names the release; deploy first or run this in the package",
                target.label, target.path
            )));
        }
    };
    let root = state
        .root
        .clone()
        .context("the host did not report its deploy path")?;
    let unit = crate::deploy::systemd_unit(&root, &name, opts.user.as_deref());
    shell.out(unit.trim_end());
    Ok(0)
}
