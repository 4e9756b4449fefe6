//! The deploy sequence over every host (one host, this machine, for `install`):
//!
//! 1. lock every host (sorted order; the lock holder is the session that keeps the
//!    connection open), sweep what a killed deploy left, read each host's state;
//! 2. stage on every host while the old release serves: send only the files no installed
//!    release holds, check the transfer's digest, hard-link the rest, `sha256sum -c`, rename;
//! 3. batch by batch: stop, switch `current`, start, wait for health; on failure switch that
//!    host back, start the previous release, mark the new one bad, stop;
//! 4. prune, unlock, report.
//!
//! Decisions come from the pure parts ([`History`](super::History), the `state` module);
//! hosts are reached through a [`Transport`]. Work on several hosts runs on threads; what
//! each does is sent as a note through a channel as it happens, for the command to print.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use super::checks::{check_environments, check_staging, verify_installed};
use super::config::OnFailure;
use super::notes::{DeploySummary, Happened, HostNotes, HostOutcome, Notes};
use super::restart::{Moved, ensure_running, move_host, prune, revert, went_back};
use super::session::{Session, lock_all, on_each, output_of, unlock_all};
use super::stage::stage_group;
use super::state::{HostState, TransferPlan, Wire, batches, parse_state, plan_transfer};
use super::transport::Transport;
use super::{Event, Options, Release, Target, now};

fn untouched(targets: &[Target]) -> BTreeMap<String, HostOutcome> {
    targets
        .iter()
        .map(|t| {
            (
                t.label.clone(),
                HostOutcome {
                    host: t.label.clone(),
                    outcome: "untouched".into(),
                    current: None,
                    bytes_sent: 0,
                },
            )
        })
        .collect()
}

fn summary(
    targets: &[Target],
    mut outcomes: BTreeMap<String, HostOutcome>,
    error: Option<anyhow::Error>,
) -> DeploySummary {
    DeploySummary {
        hosts: targets
            .iter()
            .filter_map(|t| outcomes.remove(&t.label))
            .collect(),
        error,
    }
}

/// Deploy (or install) `release` on every target; notes go to `tx` as they happen.
pub fn deploy(release: &Release, targets: &[Target], opts: &Options, tx: &Notes) -> DeploySummary {
    let mut outcomes = untouched(targets);
    let version = release.manifest.version.clone();
    let error = (|| -> Result<()> {
        let mut sessions = lock_all(targets, opts, &version, tx)?;
        let result = deploy_locked(release, &mut sessions, opts, tx, &mut outcomes);
        let unlocked = unlock_all(sessions);
        result.and(unlocked)
    })()
    .err();
    summary(targets, outcomes, error)
}

/// After the locks: sweep, install env files, read the state.
fn prepare(sessions: &mut [Session], opts: &Options, tx: &Notes) -> Result<()> {
    for s in sessions.iter_mut() {
        let label = s.target.label.clone();
        let notes = HostNotes { tx, host: &label };
        for path in s.step("sweep", &[])?.lines() {
            notes.push(Happened::Swept { path: path.into() });
        }
        if let Some(dirs) = &opts.settings.whole.shared_dirs {
            let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
            s.step("shared-dirs", &dirs)?;
        }
        if let Some(env) = opts.env.get(&label) {
            let cmd = s.target.transport.step(&s.target.path, "env-file", &[]);
            output_of(cmd, "env-file", &label, Some(env))?;
            notes.push(Happened::EnvInstalled);
        }
        s.refresh()?;
    }
    Ok(())
}

fn deploy_locked(
    release: &Release,
    sessions: &mut [Session],
    opts: &Options,
    tx: &Notes,
    outcomes: &mut BTreeMap<String, HostOutcome>,
) -> Result<()> {
    prepare(sessions, opts, tx)?;
    // The same version from other bytes goes beside the installed one, as <version>+<id>.
    let states: Vec<&HostState> = sessions.iter().map(|s| &s.state).collect();
    let id = super::checks::release_id(release, &states);
    if id == release.manifest.version {
        return deploy_prepared(release, sessions, opts, tx, outcomes);
    }
    let named = release
        .named(&id)
        .context("cannot reopen the bundle's manifest")?;
    deploy_prepared(&named, sessions, opts, tx, outcomes)
}

/// The deploy once every host is locked and prepared: refuse, stage, check, migrate, switch
/// in batches, prune.
fn deploy_prepared(
    release: &Release,
    sessions: &mut [Session],
    opts: &Options,
    tx: &Notes,
    outcomes: &mut BTreeMap<String, HostOutcome>,
) -> Result<()> {
    let name = release.manifest.name.as_str();
    let version = release.manifest.version.as_str();
    // An installed version is never changed: refuse before anything is sent anywhere.
    for s in sessions.iter() {
        check_staging(&s.target, &s.state, release)?;
    }
    // A version installed earlier is switched to only if its files still match.
    let earlier: Vec<&Session> = sessions
        .iter()
        .filter(|s| {
            s.state.releases.contains_key(version) && s.state.current.as_deref() != Some(version)
        })
        .collect();
    verify_installed(&earlier, version, tx).context("no host was switched")?;
    stage_all(release, sessions, tx, outcomes)?;
    if opts.stage_only {
        for s in sessions.iter() {
            if let Some(o) = outcomes.get_mut(&s.target.label) {
                o.outcome = "staged".into();
                o.current = s.state.current.clone();
            }
        }
        return Ok(());
    }
    if opts.restart {
        check_environments(sessions, name, version)?;
        super::release_command::run(sessions, release, opts, tx)?;
    }
    switch_in_batches(release, sessions, opts, tx, outcomes)?;
    for s in sessions.iter_mut() {
        let label = s.target.label.clone();
        prune(s, opts.settings.keep, &HostNotes { tx, host: &label })?;
    }
    Ok(())
}

/// Hosts that would receive the same transfer the same way, grouped: one stream each.
fn transfer_groups(
    release: &Release,
    sessions: &[Session],
    tx: &Notes,
) -> Result<Vec<(TransferPlan, Wire, Vec<usize>)>> {
    let version = release.manifest.version.as_str();
    let format = release.format();
    let mut groups: Vec<(TransferPlan, Wire, Vec<usize>)> = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        if s.state.releases.contains_key(version) {
            HostNotes {
                tx,
                host: &s.target.label,
            }
            .push(Happened::AlreadyStaged {
                version: version.into(),
            });
            continue;
        }
        let plan = plan_transfer(release, &s.state)?;
        let local = matches!(s.target.transport, Transport::Local);
        let wire = Wire::choose(local, &s.state, &plan, format);
        match groups.iter_mut().find(|(p, w, _)| *p == plan && *w == wire) {
            Some((_, _, members)) => members.push(i),
            None => groups.push((plan, wire, vec![i])),
        }
    }
    Ok(groups)
}

/// Stage everywhere while the old release serves: hosts that hold the same files get one
/// stream, compressed once. Any failure stops the deploy before a switch.
fn stage_all(
    release: &Release,
    sessions: &[Session],
    tx: &Notes,
    outcomes: &mut BTreeMap<String, HostOutcome>,
) -> Result<()> {
    let groups = transfer_groups(release, sessions, tx)?;
    let staged: Vec<Vec<(usize, Result<Happened>)>> =
        super::parallel(groups.iter().collect(), |(plan, wire, members)| {
            let group: Vec<&Session> = members.iter().map(|&i| &sessions[i]).collect();
            members
                .iter()
                .copied()
                .zip(stage_group(&group, release, plan, *wire))
                .collect()
        });
    let mut results: Vec<(usize, Result<Happened>)> = staged.into_iter().flatten().collect();
    results.sort_by_key(|(i, _)| *i);
    let mut first_error = None;
    for (i, r) in results {
        let label = &sessions[i].target.label;
        match r {
            Ok(what) => {
                if let (Happened::Staged { bytes_sent, .. }, Some(o)) =
                    (&what, outcomes.get_mut(label))
                {
                    o.bytes_sent = *bytes_sent;
                }
                HostNotes { tx, host: label }.push(what);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e.context("staging failed; no host was switched")),
        None => Ok(()),
    }
}

/// Batch by batch: move each host to the release (or make sure it runs, where it is current
/// already); the first failing batch marks the release bad and stops the deploy.
fn switch_in_batches(
    release: &Release,
    sessions: &mut [Session],
    opts: &Options,
    tx: &Notes,
    outcomes: &mut BTreeMap<String, HostOutcome>,
) -> Result<()> {
    let name = release.manifest.name.as_str();
    let version = release.manifest.version.as_str();
    let labels: Vec<&str> = sessions.iter().map(|s| s.target.label.as_str()).collect();
    let ranges = super::roles::batch_ranges(&labels, &opts.settings.roles, opts.settings.batch);
    let mut switched: Vec<(usize, Option<String>)> = Vec::new();
    for range in ranges {
        let results = on_each(&mut sessions[range.clone()], |s| {
            let notes = HostNotes {
                tx,
                host: &s.target.label,
            };
            let from = s.state.current.clone();
            let r = if from.as_deref() == Some(version) {
                ensure_running(s, opts, name, version, &notes)
            } else {
                move_host(s, opts, name, from.as_deref(), version, false, &notes).map(Some)
            };
            (r, from)
        });
        let mut failure: Option<String> = None;
        for (i, (r, from)) in range.clone().zip(results) {
            let label = sessions[i].target.label.clone();
            let o = outcomes
                .get_mut(&label)
                .context("every host has an outcome")?;
            let who = format!("{label}: {name}");
            match settle(o, r, from.clone(), version, "deployed", &who) {
                Ok(true) => switched.push((i, from)),
                Ok(false) => {}
                Err(why) => {
                    failure.get_or_insert(why);
                }
            }
        }
        if let Some(why) = failure {
            fail_batch(release, sessions, opts, tx, outcomes, &switched)?;
            let later = sessions.len() - range.end;
            let untouched = if later > 0 {
                format!("; the {later} host(s) in later batches were not touched")
            } else {
                String::new()
            };
            bail!("{why}; {version} is marked bad{untouched}");
        }
    }
    Ok(())
}

/// After a failed batch: mark the version bad on every host (so no rollback goes to it) and,
/// with `revert-all`, move the hosts of earlier batches back too.
fn fail_batch(
    release: &Release,
    sessions: &[Session],
    opts: &Options,
    tx: &Notes,
    outcomes: &mut BTreeMap<String, HostOutcome>,
    switched: &[(usize, Option<String>)],
) -> Result<()> {
    let name = release.manifest.name.as_str();
    let version = release.manifest.version.as_str();
    for s in sessions {
        let marked = s.log(&Event::MarkedBad {
            version: version.into(),
            time: now(),
        });
        if marked.is_ok() {
            HostNotes {
                tx,
                host: &s.target.label,
            }
            .push(Happened::MarkedBad {
                version: version.into(),
            });
        }
    }
    if opts.settings.on_failure != OnFailure::RevertAll {
        return Ok(());
    }
    for (i, from) in switched {
        let (s, Some(from)) = (&sessions[*i], from) else {
            continue;
        };
        let notes = HostNotes {
            tx,
            host: &s.target.label,
        };
        revert(s, opts, name, version, from, &notes)?;
        if let Some(o) = outcomes.get_mut(&s.target.label) {
            o.outcome = "reverted".into();
            o.current = Some(from.clone());
        }
    }
    Ok(())
}

/// Roll every target back to `version`, or to the newest earlier release that is not
/// marked bad (on any host) and is installed on every host.
pub fn rollback(
    targets: &[Target],
    version: Option<&str>,
    opts: &Options,
    tx: &Notes,
) -> DeploySummary {
    let mut outcomes = untouched(targets);
    let error = (|| -> Result<()> {
        let mut sessions = lock_all(targets, opts, "rollback", tx)?;
        let result = rollback_locked(&mut sessions, version, opts, tx, &mut outcomes);
        let unlocked = unlock_all(sessions);
        result.and(unlocked)
    })()
    .err();
    summary(targets, outcomes, error)
}

fn rollback_locked(
    sessions: &mut [Session],
    version: Option<&str>,
    opts: &Options,
    tx: &Notes,
    outcomes: &mut BTreeMap<String, HostOutcome>,
) -> Result<()> {
    for s in sessions.iter_mut() {
        s.refresh()?;
    }
    let mut bad: Vec<String> = sessions
        .iter()
        .flat_map(|s| s.state.history().bad)
        .collect();
    // The target's files must still match on every host; one that does not is marked bad
    // and the next candidate is tried (a version asked for by name is not replaced).
    let to = loop {
        let hosts: Vec<(&Target, &HostState)> =
            sessions.iter().map(|s| (&s.target, &s.state)).collect();
        let to = pick_rollback(&hosts, version, &bad)?;
        let all: Vec<&Session> = sessions.iter().collect();
        match verify_installed(&all, &to, tx) {
            Ok(()) => break to,
            Err(e) if version.is_some() => return Err(e.context("nothing was switched")),
            Err(_) => bad.push(to),
        }
    };
    let to = to.as_str();
    for range in batches(sessions.len(), opts.settings.batch.size(sessions.len())) {
        let results = on_each(&mut sessions[range.clone()], |s| {
            let notes = HostNotes {
                tx,
                host: &s.target.label,
            };
            let from = s.state.current.clone();
            let r = (|| {
                let name = release_name(&s.state)
                    .with_context(|| format!("{}: {}", s.target.label, s.target.path))?;
                if from.as_deref() == Some(to) {
                    return ensure_running(s, opts, &name, to, &notes);
                }
                move_host(s, opts, &name, from.as_deref(), to, true, &notes).map(Some)
            })();
            (r, from)
        });
        for (i, (r, from)) in range.zip(results) {
            let label = sessions[i].target.label.clone();
            let o = outcomes
                .get_mut(&label)
                .context("every host has an outcome")?;
            settle(o, r, from, to, "rolled-back", &label).map_err(anyhow::Error::msg)?;
        }
    }
    Ok(())
}

/// Record where a host ended after a move to `to` (`done` names a move that happened):
/// whether it moved, or what went wrong (`who` starts the message).
fn settle(
    o: &mut HostOutcome,
    r: Result<Option<Moved>>,
    from: Option<String>,
    to: &str,
    done: &str,
    who: &str,
) -> Result<bool, String> {
    let (outcome, current, result) = match r {
        Ok(None) => ("unchanged", Some(to.to_string()), Ok(false)),
        Ok(Some(Moved::Done)) => (done, Some(to.to_string()), Ok(true)),
        Ok(Some(Moved::Started)) => ("started", Some(to.to_string()), Ok(false)),
        Ok(Some(Moved::Reverted(why, back))) => (
            "reverted",
            back.as_ref().map(|(v, _)| v.clone()),
            Err(format!(
                "{who} {to} did not come up: {why}; {}",
                went_back(&back)
            )),
        ),
        Err(e) => ("failed", from, Err(format!("{e:#}"))),
    };
    o.outcome = outcome.into();
    o.current = current;
    result
}

/// Where a rollback goes on hosts in these states: `version` when given (installed on every
/// host), else the release that was current before `current` on the first host, still
/// installed on every host and not in `bad`. The rollback and its dry run both ask this.
pub fn pick_rollback(
    hosts: &[(&Target, &HostState)],
    version: Option<&str>,
    bad: &[String],
) -> Result<String> {
    let (first, first_state) = *hosts.first().context("no hosts")?;
    let on_all = |v: &str| hosts.iter().all(|(_, s)| s.releases.contains_key(v));
    if let Some(v) = version {
        if let Some((t, s)) = hosts.iter().find(|(_, s)| !s.releases.contains_key(v)) {
            bail!(
                "{}: {v} is not installed under `{}` (installed: {})",
                t.label,
                t.path,
                s.installed().join(", ")
            );
        }
        return Ok(v.to_string());
    }
    let Some(current) = first_state.current.clone() else {
        bail!(
            "{}: nothing is installed under `{}`",
            first.label,
            first.path
        );
    };
    let installed: Vec<String> = first_state
        .installed()
        .into_iter()
        .filter(|v| on_all(v) && !bad.contains(v))
        .collect();
    first_state
        .history()
        .rollback_target(&current, &installed)
        .with_context(|| {
            format!(
                "{}: no earlier release to roll back to that is installed on every host and not marked bad (installed: {}; marked bad: {})",
                first.label,
                first_state.installed().join(", "),
                bad.join(", ")
            )
        })
}

/// The release name, from the `MANIFEST.json` of the current release the host reported.
pub fn release_name(state: &HostState) -> Result<String> {
    let text = state
        .manifest
        .as_deref()
        .context("`current` has no MANIFEST.json")?;
    let value: serde_json::Value =
        serde_json::from_str(text).context("the current MANIFEST.json is not JSON")?;
    value["name"]
        .as_str()
        .map(String::from)
        .context("the current MANIFEST.json names no release")
}

/// Read each host's state without locking (for `releases` and `--dry-run`).
pub fn states(targets: &[Target]) -> Vec<Result<HostState>> {
    super::parallel(targets.iter().collect(), |t| {
        let cmd = t.transport.single_step(&t.path, "state", &[]);
        let text = output_of(cmd, "state", &t.label, None)?;
        parse_state(&text).with_context(|| format!("{}: cannot read the deploy state", t.label))
    })
}
