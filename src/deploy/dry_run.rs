//! What a deploy would do, decided as the deploy decides and changing nothing: the name the
//! release would have on the hosts, per host what would be sent, linked, stopped and
//! started, and the batches.

use anyhow::{Context, Result};
use serde::Serialize;

use super::config::Settings;
use super::{Release, Target, checks, roles, state};

/// A dry run's plan (the `deploy-plan` report).
#[derive(Debug, Serialize)]
pub struct Plan {
    pub name: String,
    /// As the hosts would name it (`<version>+<id>` beside other bytes of the version).
    pub version: String,
    pub bundle: String,
    /// Per host: `host`, `path`, `current`, `stage`, `files_to_send`,
    /// `bytes_to_send_uncompressed`, `files_to_link`, `stop`, `start`.
    pub hosts: Vec<serde_json::Value>,
    pub batches: Vec<Vec<String>>,
}

/// Read each host's state and take the deploy's decisions on it.
pub fn plan(release: &Release, targets: &[Target], settings: &Settings) -> Result<Plan> {
    let states: Vec<state::HostState> = super::fleet::states(targets)
        .into_iter()
        .collect::<Result<_>>()?;
    let id = checks::release_id(release, &states.iter().collect::<Vec<_>>());
    let named;
    let release = if id == release.manifest.version {
        release
    } else {
        named = release.named(&id)?;
        &named
    };
    let mut hosts = Vec::new();
    for (t, state) in targets.iter().zip(states) {
        hosts.push(host_plan(t, &state, release)?);
    }
    let labels: Vec<&str> = targets.iter().map(|t| t.label.as_str()).collect();
    let batches = roles::batch_ranges(&labels, &settings.roles, settings.batch)
        .into_iter()
        .map(|r| targets[r].iter().map(|t| t.label.clone()).collect())
        .collect();
    let m = &release.manifest;
    Ok(Plan {
        name: m.name.clone(),
        version: m.version.clone(),
        bundle: release.bundle.to_string(),
        hosts,
        batches,
    })
}

/// One host: the decisions the deploy takes before it sends anything, taken the same way.
fn host_plan(t: &Target, state: &state::HostState, release: &Release) -> Result<serde_json::Value> {
    let m = &release.manifest;
    checks::check_staging(t, state, release)?;
    let installed = state.releases.contains_key(&m.version);
    if installed && state.current.as_ref() != Some(&m.version) {
        checks::release_intact(t, &m.version).context("the deploy would refuse to switch")?;
    }
    let transfer = state::plan_transfer(release, state)?;
    let (send_files, send_bytes) = (transfer.files_sent, transfer.bytes_sent_uncompressed);
    let links = transfer.links.len();
    Ok(serde_json::json!({
        "host": t.label,
        "path": t.path,
        "current": state.current,
        "stage": !installed,
        "files_to_send": if installed { 0 } else { send_files },
        "bytes_to_send_uncompressed": if installed { 0 } else { send_bytes },
        "files_to_link": if installed { 0 } else { links },
        "stop": state.current.as_ref().filter(|c| **c != m.version),
        "start": (state.current.as_deref() != Some(m.version.as_str())).then_some(&m.version),
    }))
}
