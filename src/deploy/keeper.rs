//! What a host says about a release's keeper (the release has `listen`): whether the release
//! ships one, and its sockets with the host's values, for `systemd-unit`.

use anyhow::Result;

use super::Target;
use super::session::output_of;
use super::unit::Socket;

/// Whether `version` on `target` ships the keeper.
pub fn ships_keeper(target: &Target, version: &str) -> bool {
    let cmd = target
        .transport
        .single_step(&target.path, "keeper", &[version]);
    output_of(cmd, "keeper", &target.label, None).is_ok()
}

/// The sockets of `version` on `target`, `${VAR}` filled in from the host's `shared/env`.
pub fn sockets(target: &Target, version: &str, name: &str) -> Result<Vec<Socket>> {
    let cmd = target
        .transport
        .single_step(&target.path, "launcher", &[version, name, "__listen"]);
    let out = output_of(cmd, "listen", &target.label, None)?;
    out.lines()
        .map(|l| Socket::parse(l).map_err(|e| e.context(format!("{}: {version}", target.label))))
        .collect()
}
