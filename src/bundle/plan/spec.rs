//! What the release runs, decided once for the launcher and the image: the main binary, and
//! the launcher's spec from the release table.

use anyhow::{Result, bail};

use super::PackageFacts;
use crate::bundle::launcher::{CustomCommand, KeeperSpec, LauncherSpec, ProcessSpec};
use crate::config::{ReleaseConfig, Workdir};

/// What the release runs: `main`, or the only binary, or the one named like the package.
pub(super) fn main_binary(
    package: &PackageFacts,
    config: &ReleaseConfig,
    binaries: &[String],
) -> Result<String> {
    Ok(match &config.launcher.main {
        Some(m) => m.value.clone(),
        None if binaries.len() == 1 => binaries[0].clone(),
        None if binaries.contains(&package.name) => package.name.clone(),
        None => bail!(
            "{}: package `{}` ships several binaries ({}) and none is named like the package\nhelp: set `main` in the release table to the one `start` (and an image) should run",
            package.manifest,
            package.name,
            binaries.join(", ")
        ),
    })
}

/// A working directory as the launcher takes it: `None` for the caller's.
fn workdir(w: &Workdir) -> Option<String> {
    match w {
        Workdir::Caller => None,
        Workdir::Release(dir) => Some(dir.clone()),
    }
}

/// What the launcher is made from.
pub(super) fn launcher_spec(
    package: &PackageFacts,
    config: &ReleaseConfig,
    binaries: &[String],
    main: String,
) -> Result<LauncherSpec> {
    let l = &config.launcher;
    Ok(LauncherSpec {
        name: config.name.clone(),
        version: package.version.clone(),
        main,
        bins: binaries.to_vec(),
        env: l
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect(),
        required_env: l.required_env.iter().map(|v| v.value.clone()).collect(),
        env_file: l.env_file.as_ref().map(|f| f.value.clone()),
        stop_timeout: l.stop_timeout,
        log_max_size: l.log_max_size,
        log_keep: l.log_keep,
        args: l.args.clone(),
        workdir: workdir(&l.workdir),
        processes: l
            .processes
            .iter()
            .map(|(name, p)| ProcessSpec {
                name: name.clone(),
                bin: p.value.bin.value.clone(),
                args: p.value.args.clone(),
                workdir: workdir(p.value.workdir.as_ref().unwrap_or(&l.workdir)),
            })
            .collect(),
        commands: l
            .commands
            .iter()
            .map(|(name, c)| {
                let c = &c.value;
                let command = CustomCommand {
                    bin: c.bin.value.clone(),
                    args: c.args.clone(),
                    description: c.description.clone(),
                };
                (name.clone(), command)
            })
            .collect(),
        keeper: (!l.listen.is_empty()).then(|| KeeperSpec {
            listen: l
                .listen
                .iter()
                .map(|(name, s)| (name.clone(), s.value.address.clone(), s.value.mode))
                .collect(),
            ready: l.ready,
            ready_timeout: l.ready_timeout,
        }),
    })
}
