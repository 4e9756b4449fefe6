//! `cargo release-bundle systemd-unit`: a unit for the deployed layout on a host (or here).

use anyhow::{Context, Result, bail};

use crate::cli::SystemdUnitOpts;
use crate::deploy::resolve;
use crate::deploy::unit;
use crate::deploy::{fleet, keeper};
use crate::output::Output;

pub fn run(opts: &SystemdUnitOpts, shell: &Output) -> Result<u8> {
    let lookup = super::deploy::lookup(&opts.hosts, &opts.manifest);
    let flags = super::deploy::flags(&opts.hosts, &crate::cli::RestartOpts::default(), None, None);
    let hosts = resolve::hosts(&lookup, flags)?;
    let targets = &hosts.targets;
    // The layout is the same on every host; the first one answers.
    let target = targets.first().context("no host")?;
    let state = fleet::states(std::slice::from_ref(target))
        .pop()
        .context("no answer")??;
    // The release name: the package's (a fact this tool holds) when run in the package; else
    // the installed release's, which the deploy user could have rewritten, so validated.
    let name = match (hosts.name.clone(), fleet::release_name(&state)) {
        (Some(name), _) => name,
        (None, Ok(name)) => name,
        (None, Err(e)) => {
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
    let current = state.current.as_deref();
    // The package's configuration when run in it, else what the current release ships.
    let has_keeper = hosts
        .listen
        .unwrap_or_else(|| current.is_some_and(|v| keeper::ships_keeper(target, v)));
    if opts.socket {
        let installed = current.filter(|v| keeper::ships_keeper(target, v));
        let Some(version) = installed else {
            bail!(
                "{}: the current release has no `listen` (no keeper), so there are no sockets to hold; deploy a release with `listen` first",
                target.label
            );
        };
        let sockets = keeper::sockets(target, version, &name)?;
        shell.out(unit::render_socket(&name, &sockets)?.trim_end());
        return Ok(0);
    }
    let user = match (&opts.user, &state.user) {
        (Some(user), _) => user.clone(),
        (None, Some(user)) if user != "root" => user.clone(),
        (None, _) => bail!(
            "{}: the deploy user is root (or unknown); name the user the service runs as with `--user` (`--user root` to run it as root)",
            target.label
        ),
    };
    let spec = unit::UnitSpec {
        root: &root,
        name: &name,
        user: &user,
        keeper: has_keeper,
    };
    let text = unit::render(&spec).with_context(|| format!("{}: {}", target.label, root))?;
    shell.out(text.trim_end());
    Ok(0)
}
