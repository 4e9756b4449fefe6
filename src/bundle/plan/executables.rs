//! The executables' entries: the shipped binaries, and the keeper for a release with
//! `listen`.

use anyhow::{Result, bail};

use super::{Claimant, Content, Entry, KnownEntries};
use crate::archive::{MODE_EXEC, manifest::FileKind};
use crate::bundle::keeper;
use crate::config::ReleaseConfig;

/// The executables: in `libexec/` behind the launcher, else in `bin/` (`.exe` on Windows).
pub(super) fn add_binaries(
    fixed: &mut KnownEntries,
    binaries: &[String],
    target: &str,
    with_launcher: bool,
) -> Result<()> {
    let exe_dir = if with_launcher { "libexec" } else { "bin" };
    let exe_suffix = if target.contains("windows") {
        ".exe"
    } else {
        ""
    };
    for bin in binaries {
        let entry = Entry {
            path: format!("{exe_dir}/{bin}{exe_suffix}"),
            content: Content::Binary(bin.clone()),
            mode: MODE_EXEC,
            kind: Some(FileKind::Executable),
        };
        fixed.add(entry, Claimant::Binary)?;
    }
    Ok(())
}

/// `libexec/release-keeper` when the release has `listen`; whether it ships.
pub(super) fn add_keeper(
    fixed: &mut KnownEntries,
    config: &ReleaseConfig,
    binaries: &[String],
    with_launcher: bool,
) -> Result<bool> {
    let Some(first) = config.launcher.listen.values().next() else {
        return Ok(false);
    };
    let key = &first.origin;
    if !with_launcher {
        bail!(
            "{key}: `listen` needs the launcher (it starts the keeper that holds the sockets), which is off for this release (`launcher = false`, or a Windows target)"
        );
    }
    if binaries.iter().any(|b| b == keeper::PROGRAM) {
        bail!(
            "{key}: a shipped binary is named `{}`, the keeper's name; rename the bin target",
            keeper::PROGRAM
        );
    }
    let entry = Entry {
        path: keeper::PATH.into(),
        content: Content::Binary(keeper::ARTIFACT.into()),
        mode: MODE_EXEC,
        kind: Some(FileKind::Executable),
    };
    fixed.add(entry, Claimant::Binary)?;
    Ok(true)
}
