//! The install sequence on this machine: lock, stage (verify and extract into a new
//! `releases/<version>`), switch `current` atomically, restart through the launchers with a
//! health wait and an automatic revert, prune, unlock. Each step is recorded in the log.

use std::fs;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use super::{Event, History, Layout};
use crate::shell::Shell;
use crate::unpack::Extractor;
use crate::verify::{self, Limits};

/// How an install or rollback runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stop the running release and start the new one (otherwise only switch `current`).
    pub restart: bool,
    /// Releases kept after pruning.
    pub keep: usize,
    /// How long the new release must stay up to count as healthy.
    pub healthy_for: Duration,
    /// Remove a lock whose holder is gone.
    pub break_lock: bool,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn read_events(layout: &Layout) -> Result<Vec<Event>> {
    let path = layout.log();
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("`{path}`: cannot read")),
    };
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("`{path}`:{}: not an event", i + 1))
        })
        .collect()
}

fn record(layout: &Layout, event: &Event) -> Result<()> {
    let path = layout.log();
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("`{path}`: cannot open"))?;
    let line = serde_json::to_string(event)?;
    writeln!(file, "{line}").with_context(|| format!("`{path}`: cannot write"))
}

/// The installed versions (directories under `releases/`, temporary ones left out), sorted.
pub fn installed(layout: &Layout) -> Result<Vec<String>> {
    let dir = layout.releases();
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("`{dir}`: cannot read")),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("`{dir}`: cannot read"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.file_type()?.is_dir() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// The version `current` points at.
pub fn current(layout: &Layout) -> Option<String> {
    let target = fs::read_link(layout.current()).ok()?;
    target.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// The deploy lock: an atomic `mkdir`, with its holder inside; removed when dropped.
struct Lock(Utf8PathBuf);

impl Lock {
    fn take(layout: &Layout, what: &str, break_lock: bool) -> Result<Lock> {
        let dir = layout.lock();
        for _ in 0..2 {
            match fs::create_dir(&dir) {
                Ok(()) => {
                    let holder = format!("{} {what} {}\n", std::process::id(), now());
                    fs::write(dir.join("holder"), holder)
                        .with_context(|| format!("`{dir}`: cannot write the holder"))?;
                    return Ok(Lock(dir));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("`{dir}`: cannot create")),
            }
            let holder = fs::read_to_string(dir.join("holder")).unwrap_or_default();
            let pid: Option<i32> = holder
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok());
            // SAFETY: kill with signal 0 only checks that the process exists.
            let alive = pid.is_some_and(|p| p > 0 && unsafe { libc::kill(p, 0) } == 0);
            if alive {
                bail!(
                    "`{dir}`: another install holds the lock ({}); wait for it to finish",
                    holder.trim()
                );
            }
            if !break_lock {
                bail!(
                    "`{dir}`: a stale lock is left by an install that is gone ({}); pass --break-lock to remove it",
                    holder.trim()
                );
            }
            fs::remove_dir_all(&dir).with_context(|| format!("`{dir}`: cannot remove"))?;
        }
        bail!("`{dir}`: cannot take the lock")
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Point `current` at `releases/<version>`: a new link under a temporary name, renamed over.
fn switch(layout: &Layout, version: &str) -> Result<()> {
    let temp = layout.root.join(format!(".current.{}", std::process::id()));
    let _ = fs::remove_file(&temp);
    std::os::unix::fs::symlink(format!("releases/{version}"), &temp)
        .with_context(|| format!("`{temp}`: cannot create a symlink"))?;
    fs::rename(&temp, layout.current())
        .with_context(|| format!("`{}`: cannot switch", layout.current()))
}

/// Run `bin/<name> <command>` of a release; its output on failure.
fn launcher(release: &Utf8Path, name: &str, command: &str) -> Result<(), String> {
    let program = release.join("bin").join(name);
    let out = Command::new(&program)
        .arg(command)
        .output()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{program} {command}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// Start `version` and wait until it has stayed up for `healthy_for`.
fn start_healthy(
    layout: &Layout,
    name: &str,
    version: &str,
    healthy_for: Duration,
) -> Result<(), String> {
    let release = layout.release(version);
    launcher(&release, name, "daemon")?;
    let start = Instant::now();
    while start.elapsed() < healthy_for {
        std::thread::sleep(Duration::from_millis(100));
        launcher(&release, name, "status").map_err(|e| format!("it stopped running: {e}"))?;
    }
    Ok(())
}

/// The last lines of the service's log, for a failure report.
fn log_tail(layout: &Layout, name: &str) -> String {
    let path = layout.shared().join("tmp/log").join(format!("{name}.log"));
    let text = fs::read_to_string(&path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Stop what runs, switch to `to`, start it; on failure switch back to `from` and start it.
/// Errors say what failed and whether the previous release is serving again.
fn restart_into(
    layout: &Layout,
    name: &str,
    from: Option<&str>,
    to: &str,
    opts: &Options,
    shell: &Shell,
) -> Result<()> {
    if let Some(from) = from
        && opts.restart
    {
        launcher(&layout.release(from), name, "stop").map_err(anyhow::Error::msg)?;
    }
    switch(layout, to)?;
    record(
        layout,
        &Event::Switched {
            from: from.map(String::from),
            to: to.into(),
            time: now(),
        },
    )?;
    shell.status("Switched", format!("{} -> releases/{to}", layout.current()));
    if !opts.restart {
        return Ok(());
    }
    match start_healthy(layout, name, to, opts.healthy_for) {
        Ok(()) => {
            record(
                layout,
                &Event::Healthy {
                    version: to.into(),
                    time: now(),
                },
            )?;
            shell.status("Healthy", format!("{name} {to}"));
            Ok(())
        }
        Err(why) => {
            let tail = log_tail(layout, name);
            let _ = launcher(&layout.release(to), name, "stop");
            record(
                layout,
                &Event::Failed {
                    version: to.into(),
                    why: why.clone(),
                    time: now(),
                },
            )?;
            record(
                layout,
                &Event::MarkedBad {
                    version: to.into(),
                    time: now(),
                },
            )?;
            let Some(from) = from else {
                bail!("{name} {to} did not come up: {why}\nlast lines of its log:\n{tail}");
            };
            switch(layout, from)?;
            record(
                layout,
                &Event::Reverted {
                    from: to.into(),
                    to: from.into(),
                    time: now(),
                },
            )?;
            let back = match start_healthy(layout, name, from, opts.healthy_for) {
                Ok(()) => format!("switched back to {from}, which is serving"),
                Err(e) => format!("switched back to {from}, which did not come up either: {e}"),
            };
            bail!(
                "{name} {to} did not come up: {why}; it is marked bad and {back}\nlast lines of its log:\n{tail}"
            );
        }
    }
}

/// What an install did.
#[derive(Debug, Clone)]
pub struct Installed {
    pub name: String,
    pub version: String,
    /// False when the same bundle was already installed.
    pub staged: bool,
    pub previous: Option<String>,
    pub pruned: Vec<String>,
}

/// Install `bundle` under `path`: verify and stage it, switch `current`, restart when asked.
pub fn install(
    bundle: &Utf8Path,
    path: &Utf8Path,
    opts: &Options,
    shell: &Shell,
) -> Result<Installed> {
    let layout = Layout::new(path);
    for dir in [
        layout.releases(),
        layout.shared(),
        layout.root.join(".deploy"),
    ] {
        fs::create_dir_all(&dir).with_context(|| format!("`{dir}`: cannot create"))?;
    }
    let file_name = bundle.file_name().unwrap_or_default();
    let _lock = Lock::take(&layout, &format!("install {file_name}"), opts.break_lock)?;
    // One pass: verify while extracting into a temporary directory under releases/, which
    // becomes releases/<version> only when everything verified (the version is known then).
    let mut extractor = Extractor::new(&layout.releases().join(".incoming"))?;
    let report = verify::verify_file(bundle, None, Limits::default(), &[], Some(&mut extractor))?;
    if !report.passes(false) {
        let first = report
            .findings
            .iter()
            .find(|f| f.severity == verify::Severity::Error)
            .map(|f| f.message.clone())
            .unwrap_or_default();
        bail!("`{bundle}` does not verify ({first}); nothing was installed");
    }
    let (Some(name), Some(version)) = (report.name.clone(), report.version.clone()) else {
        bail!("`{bundle}`: its manifest names no release");
    };
    let history = History::from_events(&read_events(&layout)?);
    let dest = layout.release(&version);
    let staged = if dest.exists() {
        // The extracted copy is dropped (its temporary directory removed).
        match history.digest_of(&version) {
            Some(d) if d == report.sha256 => false,
            Some(d) => bail!(
                "`{dest}` is already installed from another bundle (sha256 {d}); an installed release is never changed: bundle a new version"
            ),
            None => bail!("`{dest}` exists but was not installed by this tool; move it away first"),
        }
    } else {
        extractor.finish(&dest)?;
        record(
            &layout,
            &Event::Staged {
                version: version.clone(),
                sha256: report.sha256.clone(),
                time: now(),
            },
        )?;
        shell.status("Staged", format!("{name} {version} in {dest}"));
        true
    };
    let previous = current(&layout);
    if previous.as_deref() != Some(version.as_str()) {
        restart_into(&layout, &name, previous.as_deref(), &version, opts, shell)?;
    }
    let pruned = prune(&layout, opts.keep)?;
    Ok(Installed {
        name,
        version,
        staged,
        previous,
        pruned,
    })
}

/// Remove releases beyond `keep` (see [`History::to_prune`]).
fn prune(layout: &Layout, keep: usize) -> Result<Vec<String>> {
    let history = History::from_events(&read_events(layout)?);
    let installed = installed(layout)?;
    let gone = history.to_prune(current(layout).as_deref(), &installed, keep);
    for version in &gone {
        let dir = layout.release(version);
        fs::remove_dir_all(&dir).with_context(|| format!("`{dir}`: cannot remove"))?;
        record(
            layout,
            &Event::Pruned {
                version: version.clone(),
                time: now(),
            },
        )?;
    }
    Ok(gone)
}

/// Switch back to `version`, or to the newest earlier release not marked bad.
pub fn rollback(
    path: &Utf8Path,
    version: Option<&str>,
    opts: &Options,
    shell: &Shell,
) -> Result<(String, String)> {
    let layout = Layout::new(path);
    let _lock = Lock::take(&layout, "rollback", opts.break_lock)?;
    let history = History::from_events(&read_events(&layout)?);
    let installed = installed(&layout)?;
    let Some(from) = current(&layout) else {
        bail!(
            "`{}` does not exist: nothing is installed under `{path}`",
            layout.current()
        );
    };
    let to = match version {
        Some(v) if !installed.iter().any(|i| i == v) => {
            bail!("{v} is not installed under `{path}` (installed: {})", installed.join(", "))
        }
        Some(v) => v.to_string(),
        None => history.rollback_target(&from, &installed).with_context(|| {
            format!("no earlier release under `{path}` to roll back to (installed: {}; marked bad: {})", installed.join(", "), history.bad.join(", "))
        })?,
    };
    let name = release_name(&layout.release(&to))?;
    restart_into(&layout, &name, Some(&from), &to, opts, shell)?;
    Ok((from, to))
}

/// Install `file` as the host's environment, `shared/env`, mode 0600 from the start (a temp
/// file renamed into place; the content is never printed).
pub fn install_env_file(path: &Utf8Path, file: &Utf8Path) -> Result<()> {
    let layout = Layout::new(path);
    fs::create_dir_all(layout.shared())
        .with_context(|| format!("`{}`: cannot create", layout.shared()))?;
    crate::fsutil::copy_atomically(file, &layout.shared().join("env"), 0o600)
}

/// A systemd unit running the release `current` points at (`Type=exec`: `start` execs the
/// service, so systemd supervises it directly; no pid file).
pub fn systemd_unit(path: &Utf8Path, user: Option<&str>) -> Result<String> {
    let layout = Layout::new(path);
    let root = layout
        .root
        .canonicalize_utf8()
        .with_context(|| format!("`{path}`: cannot resolve the deploy path"))?;
    let name = release_name(&layout.current())?;
    let user = user.map(|u| format!("User={u}\n")).unwrap_or_default();
    Ok(format!(
        "[Unit]\nDescription={name} (installed by cargo release-bundle under {root})\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\nType=exec\n{user}EnvironmentFile=-{root}/shared/env\nExecStart={root}/current/bin/{name} start\nRestart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n"
    ))
}

/// The release name, from a release's `MANIFEST.json`.
fn release_name(release: &Utf8Path) -> Result<String> {
    let manifest = release.join(crate::archive::MANIFEST);
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("`{manifest}`: cannot read"))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("`{manifest}`: not JSON"))?;
    value["name"]
        .as_str()
        .map(String::from)
        .with_context(|| format!("`{manifest}`: no name"))
}

/// One installed release, for `releases`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReleaseInfo {
    pub version: String,
    pub current: bool,
    pub bad: bool,
    /// Unix time it was staged, when the log knows.
    pub staged: Option<u64>,
}

pub fn releases(path: &Utf8Path) -> Result<Vec<ReleaseInfo>> {
    let layout = Layout::new(path);
    let history = History::from_events(&read_events(&layout)?);
    let current = current(&layout);
    Ok(installed(&layout)?
        .into_iter()
        .map(|v| ReleaseInfo {
            current: current.as_deref() == Some(v.as_str()),
            bad: history.bad.contains(&v),
            staged: history
                .staged
                .iter()
                .find(|(s, _, _)| *s == v)
                .map(|(_, _, t)| *t),
            version: v,
        })
        .collect())
}
