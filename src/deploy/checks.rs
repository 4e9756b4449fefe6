//! What is checked on hosts before anything switches: an installed version is never changed
//! (`check_staging`), a release installed earlier still matches its `SHA256SUMS`
//! (`verify_installed`, `release_intact`), and every host's environment gives the release what
//! it requires (`check_environments`). The deploy and its dry run ask the same questions.

use anyhow::{Result, bail};

use super::notes::{Happened, HostNotes, Notes};
use super::session::{Session, output_of};
use super::state::HostState;
use super::{Event, Release, Target, now};

/// Whether `release` may be staged on a host in `state` (or is there already from the same
/// bytes): an installed version is never changed. The deploy and its dry run both ask this.
pub fn check_staging(target: &Target, state: &HostState, release: &Release) -> Result<()> {
    let version = &release.manifest.version;
    if !state.releases.contains_key(version) {
        return Ok(());
    }
    match state.history().digest_of(version) {
        Some(d) if d == release.sha256 => Ok(()),
        Some(d) => bail!(
            "{}: {version} is already installed there from another bundle (sha256 {d}); an installed release is never changed: bundle a new version",
            target.label
        ),
        None => bail!(
            "{}: `{}/releases/{version}` exists but was not installed by this tool; move it away first",
            target.label,
            target.path
        ),
    }
}

/// What this release is called on the hosts: its version, unless a host holds that version
/// from other bytes (a rebuild without a version bump, a config change): then
/// `<version>+<commit>` (a clean git build) or `<version>+<digest>` (its first 12), the
/// first that no host holds from other bytes, so both stay side by side and rollback works
/// between them.
pub fn release_id(release: &Release, states: &[&HostState]) -> String {
    let m = &release.manifest;
    let other_bytes = |id: &str| {
        states.iter().any(|s| {
            s.releases.contains_key(id)
                && s.history()
                    .digest_of(id)
                    .is_some_and(|d| d != release.sha256)
        })
    };
    let commit = m.git.as_ref().filter(|g| !g.dirty && g.commit.len() >= 8);
    let candidates = [
        Some(m.version.clone()),
        commit.map(|g| format!("{}+{}", m.version, &g.commit[..8])),
        Some(format!(
            "{}+{}",
            m.version,
            &release.sha256[..12.min(release.sha256.len())]
        )),
    ];
    let mut last = m.version.clone();
    for id in candidates.into_iter().flatten() {
        if !other_bytes(&id) {
            return id;
        }
        last = id;
    }
    last
}

/// Whether `version`, installed on `target` earlier, still matches its SHA256SUMS there
/// (read-only: for dry runs; a deploy marks a mismatch bad, see `verify_installed`).
pub fn release_intact(target: &Target, version: &str) -> Result<()> {
    let cmd = target
        .transport
        .single_step(&target.path, "verify-release", &[version]);
    output_of(cmd, "verify-release", &target.label, None).map(drop)
}

/// Before anything switches: every host's environment gives the release every variable it
/// requires. A missing one is the host's fault, not the release's: nothing is marked bad.
pub(super) fn check_environments(sessions: &[Session], name: &str, version: &str) -> Result<()> {
    let missing = super::parallel(sessions.iter().collect(), |s| {
        s.step("missing-env", &[version, name])
    });
    for (s, missing) in sessions.iter().zip(missing) {
        let vars: Vec<String> = missing?.lines().map(String::from).collect();
        if !vars.is_empty() {
            bail!(
                "{}: {name} {version} requires {}, which the host's environment (`{}/shared/env`, or --env-file) does not set; no host was switched",
                s.target.label,
                vars.join(", "),
                s.target.path
            );
        }
    }
    Ok(())
}

/// Check on each of `sessions` that `version`, installed earlier, still matches its
/// SHA256SUMS. Where it does not, it is marked bad there with the reason (in the host's log
/// and the report), and the error names the first such host.
pub(super) fn verify_installed(sessions: &[&Session], version: &str, tx: &Notes) -> Result<()> {
    let results = super::parallel(sessions.to_vec(), |s| s.step("verify-release", &[version]));
    let mut first = None;
    for (s, result) in sessions.iter().zip(results) {
        let Err(e) = result else { continue };
        let why = format!("{e:#}");
        let notes = HostNotes {
            tx,
            host: &s.target.label,
        };
        let time = now();
        s.log(&Event::Failed {
            version: version.into(),
            why: why.clone(),
            time,
        })?;
        s.log(&Event::MarkedBad {
            version: version.into(),
            time,
        })?;
        notes.push(Happened::Failed {
            version: version.into(),
            why: why.clone(),
            log_tail: String::new(),
        });
        notes.push(Happened::MarkedBad {
            version: version.into(),
        });
        first.get_or_insert(why);
    }
    match first {
        Some(why) => bail!("{why}; {version} is marked bad"),
        None => Ok(()),
    }
}
