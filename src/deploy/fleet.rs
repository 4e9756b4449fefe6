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
//! Decisions come from the pure parts ([`History`], [`Held`], [`parse_state`]);
//! hosts are reached through a [`Transport`]. Work on several hosts runs on threads; what
//! they did is reported from the main thread, host by host.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use camino::Utf8Path;
use sha2::{Digest, Sha256};

use super::config::{self, Health, OnFailure, Service, Settings};
use super::transport::Transport;
use super::{Event, History};
use crate::archive::manifest::{FileKind, FileRecord, Manifest};
use crate::archive::{self, Format};

/// One host: how to reach it and where the layout lives there.
#[derive(Debug, Clone)]
pub struct Target {
    /// As the user named it (`deploy@web-1`, `local`).
    pub label: String,
    pub transport: Transport,
    pub path: String,
}

/// The release being deployed: a bundle that verified.
pub struct Release<'a> {
    pub bundle: &'a Utf8Path,
    pub sha256: String,
    /// Without its file list (see `manifest_spool`).
    pub manifest: Manifest,
    /// The bundle's `MANIFEST.json`, for streaming its file list per host.
    pub manifest_spool: std::fs::File,
}

/// How a deploy, install or rollback runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub settings: Settings,
    /// Stop the running release and start the new one (`install` without `--restart` only
    /// switches).
    pub restart: bool,
    pub break_lock: bool,
    /// How long to wait for a lock another deploy holds.
    pub lock_wait: Duration,
    /// Written into each lock: who deploys, from where.
    pub who: String,
    /// Env files to install as `shared/env`, by host label (sent through stdin).
    pub env: BTreeMap<String, Vec<u8>>,
}

/// Something that happened on a host, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Note {
    pub host: String,
    #[serde(flatten)]
    pub what: What,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum What {
    Locked,
    /// `shared/env` was installed (its content is never reported).
    EnvInstalled,
    Swept {
        path: String,
    },
    BrokeLock {
        holder: String,
    },
    Staged {
        version: String,
        bytes_sent: u64,
        files_sent: usize,
        files_linked: usize,
    },
    AlreadyStaged {
        version: String,
    },
    Stopped {
        version: String,
    },
    Switched {
        from: Option<String>,
        to: String,
    },
    Started {
        version: String,
    },
    Healthy {
        version: String,
    },
    Failed {
        version: String,
        why: String,
        log_tail: String,
    },
    Reverted {
        from: String,
        to: String,
        healthy: bool,
    },
    MarkedBad {
        version: String,
    },
    Pruned {
        version: String,
    },
}

/// Where notes go as they happen: the command prints them on its own thread.
pub type Notes = mpsc::Sender<Note>;

/// The notes of one host.
pub struct HostNotes<'a> {
    pub tx: &'a Notes,
    pub host: &'a str,
}

impl HostNotes<'_> {
    fn push(&self, what: What) {
        // The receiver only goes away when the command is ending anyway.
        let _ = self.tx.send(Note {
            host: self.host.into(),
            what,
        });
    }
}

/// Where each host ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostOutcome {
    pub host: String,
    /// `deployed`, `unchanged`, `reverted`, `failed`, `untouched`, `rolled-back`.
    pub outcome: String,
    pub current: Option<String>,
    pub bytes_sent: u64,
}

/// What a deploy did: per host, and the error that stopped it (if any).
pub struct Summary {
    pub hosts: Vec<HostOutcome>,
    pub error: Option<anyhow::Error>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------
// Pure parts.

/// What `host.sh state` reports about one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// The deploy path, absolute, as the host resolves it.
    pub root: Option<String>,
    pub current: Option<String>,
    /// Installed versions with their `SHA256SUMS` lines (digest, path).
    pub releases: BTreeMap<String, Vec<(String, String)>>,
    /// `MANIFEST.json` of the current release.
    pub manifest: Option<String>,
    pub events: Vec<Event>,
}

impl HostState {
    pub fn installed(&self) -> Vec<String> {
        self.releases.keys().cloned().collect()
    }
    pub fn history(&self) -> History {
        History::from_events(&self.events)
    }
}

pub fn parse_state(text: &str) -> Result<HostState> {
    let mut state = HostState::default();
    let mut section = "";
    let mut version = String::new();
    let mut manifest = String::new();
    let mut ended = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("@@rb ") {
            let (word, arg) = rest.split_once(' ').unwrap_or((rest, ""));
            match word {
                "root" => state.root = Some(arg.to_string()),
                "current" => state.current = Some(arg.to_string()).filter(|v| !v.is_empty()),
                "release" => {
                    version = arg.to_string();
                    state.releases.insert(version.clone(), Vec::new());
                }
                "manifest" | "log" => {}
                "end" => ended = true,
                _ => bail!("unexpected line from the host: {line:?}"),
            }
            section = word;
            continue;
        }
        match section {
            "release" => {
                if let Some((digest, path)) = line.split_once("  ")
                    && let Some(list) = state.releases.get_mut(&version)
                {
                    list.push((digest.to_string(), path.to_string()));
                }
            }
            "manifest" => {
                manifest.push_str(line);
                manifest.push('\n');
            }
            "log" if !line.trim().is_empty() => state.events.push(
                serde_json::from_str(line)
                    .with_context(|| format!(".deploy/log.jsonl: not an event: {line:?}"))?,
            ),
            _ => {}
        }
    }
    if !ended {
        bail!("the host's report ended early");
    }
    state.manifest = Some(manifest).filter(|m| !m.trim().is_empty());
    Ok(state)
}

/// One file of the new release that the host already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Under `releases/`: `<version>/<path>`.
    pub from: String,
    pub to: String,
    /// As `stat -c %a` prints it (`755`).
    pub mode: String,
}

/// The files an installed release on a host holds, by digest (the current release's copies
/// first), so that a new release's files with those digests are hard-linked, not sent.
pub struct Held<'s> {
    by_digest: BTreeMap<&'s str, String>,
}

impl<'s> Held<'s> {
    pub fn new(state: &'s HostState) -> Held<'s> {
        let mut by_digest = BTreeMap::new();
        let mut order: Vec<&String> = state.releases.keys().collect();
        // The current release last, so that its copies win.
        order.sort_by_key(|v| Some(v.as_str()) == state.current.as_deref());
        for version in order {
            for (digest, path) in &state.releases[version] {
                by_digest.insert(digest.as_str(), format!("{version}/{path}"));
            }
        }
        Held { by_digest }
    }

    /// The link for one file of the new release, when the host holds its content.
    pub fn link(&self, file: &FileRecord) -> Option<Link> {
        if file.kind == FileKind::Symlink {
            return None;
        }
        let from = self.by_digest.get(file.sha256.as_deref()?)?;
        let mode = u32::from_str_radix(&file.mode, 8).ok()?;
        Some(Link {
            from: from.clone(),
            to: file.path.clone(),
            mode: format!("{mode:o}"),
        })
    }
}

/// What goes to one host: the links, and what is sent (files and their size before
/// compression).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferPlan {
    pub links: Vec<Link>,
    pub files_sent: usize,
    pub bytes_sent_uncompressed: u64,
}

/// Plan the transfer to a host from the release's spooled `MANIFEST.json`, streamed (the
/// file list is never held whole).
pub fn plan_transfer(release: &Release, state: &HostState) -> Result<TransferPlan> {
    let held = Held::new(state);
    let mut plan = TransferPlan::default();
    let parsed =
        crate::archive::manifest::parse_streaming(&release.manifest_spool, &mut |f| match held
            .link(&f)
        {
            Some(link) => plan.links.push(link),
            None if f.kind != FileKind::Symlink => {
                plan.files_sent += 1;
                plan.bytes_sent_uncompressed += f.size;
            }
            None => {}
        })
        .context("cannot read the spooled manifest")?;
    parsed.context("the bundle's MANIFEST.json does not parse")?;
    Ok(plan)
}

/// Copy the bundle's `MANIFEST.json` into an anonymous temporary file (one pass over the
/// bundle; it is the second-to-last entry).
pub fn spool_manifest(bundle: &Utf8Path, top_dir: &str) -> Result<std::fs::File> {
    let file = crate::fsutil::open_regular(bundle)
        .with_context(|| format!("`{bundle}`: cannot open the bundle"))?;
    let format = archive::format_of(bundle.as_str()).unwrap_or(Format::TarZst);
    let mut tar = tar::Archive::new(archive::decoder(format, BufReader::new(file))?);
    let want = format!("{top_dir}/{}", archive::MANIFEST);
    for entry in tar
        .entries()
        .with_context(|| format!("`{bundle}`: cannot read"))?
    {
        let mut entry = entry.with_context(|| format!("`{bundle}`: cannot read"))?;
        if entry.path_bytes().as_ref() == want.as_bytes() {
            let mut spool = tempfile::tempfile().context("cannot create a temporary file")?;
            std::io::copy(&mut entry, &mut spool)
                .with_context(|| format!("`{bundle}`: cannot read {want}"))?;
            return Ok(spool);
        }
    }
    bail!("`{bundle}`: no {want}")
}

/// Hosts in batches of `size`, in order.
pub fn batches(hosts: usize, size: usize) -> Vec<std::ops::Range<usize>> {
    (0..hosts)
        .step_by(size.max(1))
        .map(|s| s..(s + size.max(1)).min(hosts))
        .collect()
}

/// The status of an HTTP reply, from its first line.
pub fn http_status(reply: &[u8]) -> Option<u16> {
    let line = reply.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    words.next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Running steps on a host.

fn output_of(mut cmd: Command, what: &str, label: &str, input: Option<&[u8]>) -> Result<String> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{label}: cannot run the {what} step (is `ssh` installed?)"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input)
            .with_context(|| format!("{label}: cannot send to the {what} step"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("{label}: the {what} step"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{label}: {what} failed ({}): {}", out.status, err.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A host while its lock is held.
pub struct Session {
    pub target: Target,
    keeper: Child,
    keeper_pid: String,
    pub state: HostState,
}

impl Session {
    fn step(&self, step: &str, args: &[&str]) -> Result<String> {
        let cmd = self.target.transport.step(&self.target.path, step, args);
        output_of(cmd, step, &self.target.label, None)
    }

    fn log(&self, event: &Event) -> Result<()> {
        let line = serde_json::to_string(event).context("an event always serializes")?;
        self.step("log", &[&line]).map(drop)
    }

    fn refresh(&mut self) -> Result<()> {
        self.state = parse_state(&self.step("state", &[])?)
            .with_context(|| format!("{}: cannot read the deploy state", self.target.label))?;
        Ok(())
    }

    fn unlock(mut self) -> Result<()> {
        let result = self.step("unlock", &[&self.keeper_pid.clone()]);
        drop(self.keeper.stdin.take());
        let _ = self.keeper.wait();
        result.map(drop)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Ends the lock holder (and over SSH the connection); the lock stays if `unlock` was
        // not reached, and the next deploy reports it as stale.
        drop(self.keeper.stdin.take());
        let _ = self.keeper.wait();
    }
}

enum LockAttempt {
    Taken(Box<Session>),
    Held(String),
}

fn try_lock(target: &Target, who: &str, version: &str, break_lock: bool) -> Result<LockAttempt> {
    let label = &target.label;
    let mut cmd = target.transport.master_step(
        &target.path,
        "lock",
        &[who, version, if break_lock { "1" } else { "0" }],
    );
    let errors = tempfile::tempfile().context("cannot create a temporary file")?;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(
        errors
            .try_clone()
            .context("cannot duplicate a file handle")?,
    );
    let mut keeper = cmd
        .spawn()
        .with_context(|| format!("{label}: cannot run the lock step (is `ssh` installed?)"))?;
    let mut first = Vec::new();
    if let Some(out) = keeper.stdout.as_mut() {
        let mut byte = [0u8; 1];
        while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            first.push(byte[0]);
        }
    }
    let first = String::from_utf8_lossy(&first).into_owned();
    if let Some(pid) = first.strip_prefix("locked ") {
        let session = Session {
            target: target.clone(),
            keeper,
            keeper_pid: pid.trim().to_string(),
            state: HostState::default(),
        };
        return Ok(LockAttempt::Taken(Box::new(session)));
    }
    drop(keeper.stdin.take());
    let status = keeper
        .wait()
        .with_context(|| format!("{label}: the lock step"))?;
    let mut err = String::new();
    let mut errors = errors;
    use std::io::Seek;
    let _ = errors.seek(std::io::SeekFrom::Start(0));
    let _ = errors.read_to_string(&mut err);
    if let Some(holder) = first.strip_prefix("held ") {
        return Ok(LockAttempt::Held(holder.to_string()));
    }
    if let Some(holder) = first.strip_prefix("stale ") {
        bail!(
            "{label}: `{}/.deploy/lock` is stale: left by a deploy that is gone ({holder}); check the host, then pass --break-lock to remove it",
            target.path
        );
    }
    bail!(
        "{label}: cannot take the deploy lock ({status}): {}",
        err.trim()
    )
}

fn lock(target: &Target, opts: &Options, version: &str) -> Result<Session> {
    let start = Instant::now();
    loop {
        match try_lock(target, &opts.who, version, opts.break_lock)? {
            LockAttempt::Taken(s) => return Ok(*s),
            LockAttempt::Held(holder) => {
                if start.elapsed() >= opts.lock_wait {
                    bail!(
                        "{}: another deploy holds `{}/.deploy/lock` ({holder}); wait for it, or pass --lock-wait DURATION",
                        target.label,
                        target.path
                    );
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Lock every host in sorted order; on any failure the locks taken so far are released.
fn lock_all(targets: &[Target], opts: &Options, version: &str, tx: &Notes) -> Result<Vec<Session>> {
    let mut order: Vec<&Target> = targets.iter().collect();
    order.sort_by(|a, b| a.label.cmp(&b.label));
    let mut sessions = Vec::new();
    for target in order {
        match lock(target, opts, version) {
            Ok(s) => {
                HostNotes {
                    tx,
                    host: &target.label,
                }
                .push(What::Locked);
                sessions.push(s)
            }
            Err(e) => {
                for s in sessions {
                    let _ = s.unlock();
                }
                return Err(e);
            }
        }
    }
    // Back to the order the user gave (batches follow it).
    sessions.sort_by_key(|s| targets.iter().position(|t| t.label == s.target.label));
    Ok(sessions)
}

fn unlock_all(sessions: Vec<Session>) -> Result<()> {
    let mut first = None;
    for s in sessions {
        if let Err(e) = s.unlock() {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Run `f` on every session at once, each on its own thread; results in session order.
fn on_each<T: Send>(sessions: &mut [Session], f: impl Fn(&mut Session) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .iter_mut()
            .map(|s| {
                let f = &f;
                scope.spawn(move || f(s))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

// ---------------------------------------------------------------------------------------
// Staging.

/// Counts and hashes what goes to the host.
struct Tally<W: Write> {
    inner: W,
    bytes: u64,
    hash: Sha256,
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Write the transfer: `links` (three lines a file), then `release/...`: every entry of the
/// bundle except the regular files the host already holds.
fn write_transfer(release: &Release, links: &[Link], out: impl Write) -> Result<()> {
    let bundle = release.bundle;
    let linked: std::collections::BTreeSet<&str> = links.iter().map(|l| l.to.as_str()).collect();
    let mut builder = tar::Builder::new(out);
    let mut list = Vec::new();
    for l in links {
        for line in [&l.from, &l.to, &l.mode] {
            list.extend_from_slice(line.as_bytes());
            list.push(b'\n');
        }
    }
    let mut header = tar::Header::new_ustar();
    header.set_size(list.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(release.manifest.timestamp.epoch);
    builder
        .append_data(&mut header, "links", &list[..])
        .context("cannot write the transfer")?;
    let file = crate::fsutil::open_regular(bundle)
        .with_context(|| format!("`{bundle}`: cannot open the bundle"))?;
    let format = archive::format_of(bundle.as_str()).unwrap_or(Format::TarZst);
    let decoder = archive::decoder(format, BufReader::new(file))?;
    let mut tar = tar::Archive::new(decoder);
    let top = format!("{}/", release.manifest.top_dir);
    for entry in tar
        .entries()
        .with_context(|| format!("`{bundle}`: cannot read"))?
    {
        let mut entry = entry.with_context(|| format!("`{bundle}`: cannot read"))?;
        let path = entry
            .path()
            .with_context(|| format!("`{bundle}`: an entry name"))?
            .to_string_lossy()
            .into_owned();
        let Some(rel) = path.strip_prefix(&top) else {
            continue;
        };
        let rel = rel.trim_end_matches('/');
        if rel.is_empty() || linked.contains(rel) {
            continue;
        }
        let mut header = entry.header().clone();
        let name = format!("release/{rel}");
        let kind = header.entry_type();
        if kind.is_symlink() {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .context("a symlink without a target")?
                .into_owned();
            builder
                .append_link(&mut header, &name, target)
                .context("cannot write the transfer")?;
        } else {
            builder
                .append_data(&mut header, &name, &mut entry)
                .context("cannot write the transfer")?;
        }
    }
    builder
        .into_inner()
        .context("cannot write the transfer")?
        .flush()?;
    Ok(())
}

/// Writes the same bytes to every host of a group.
struct FanOut(Vec<std::io::BufWriter<std::process::ChildStdin>>);

impl Write for FanOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for w in &mut self.0 {
            w.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.iter_mut().try_for_each(Write::flush)
    }
}

/// Send the release to hosts that hold the same files (one stream, compressed once, written
/// to each), check on each that it arrived whole, and install it there as
/// `releases/<version>`. One result per host.
fn stage_group(
    members: &[&Session],
    release: &Release,
    plan: &TransferPlan,
    gzip: bool,
) -> Vec<Result<What>> {
    let version = &release.manifest.version;
    let id = format!("{}-{}", std::process::id(), now());
    let mut children = Vec::new();
    let mut stdins = Vec::new();
    for s in members {
        let label = &s.target.label;
        let mut cmd = s.target.transport.step(
            &s.target.path,
            "receive",
            &[&id, if gzip { "gz" } else { "tar" }],
        );
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = cmd
            .spawn()
            .with_context(|| format!("{label}: cannot run the receive step"))
            .and_then(|mut child| {
                let stdin = child.stdin.take().context("a piped stdin")?;
                Ok((child, stdin))
            });
        match spawned {
            Ok((child, stdin)) => {
                children.push(child);
                stdins.push(std::io::BufWriter::with_capacity(256 * 1024, stdin));
            }
            Err(e) => {
                return members
                    .iter()
                    .map(|_| Err(anyhow::anyhow!("{e:#}")))
                    .collect();
            }
        }
    }
    let mut tally = Tally {
        inner: FanOut(stdins),
        bytes: 0,
        hash: Sha256::new(),
    };
    let written = if gzip {
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        super::gzip::compress(&mut tally, workers, 6, |w| {
            write_transfer(release, &plan.links, w)
        })
        .map(drop)
    } else {
        write_transfer(release, &plan.links, &mut tally)
    };
    let sent = tally.bytes;
    let digest = archive::hex(&tally.hash.finalize_reset());
    drop(tally);
    std::thread::scope(|scope| {
        let handles: Vec<_> = members
            .iter()
            .zip(children)
            .map(|(s, child)| {
                let (written, digest, id) = (&written, &digest, &id);
                scope.spawn(move || -> Result<What> {
                    let label = &s.target.label;
                    let out = child
                        .wait_with_output()
                        .with_context(|| format!("{label}: the receive step"))?;
                    if let Err(e) = written {
                        let _ = s.step("discard", &[id]);
                        bail!("{label}: cannot send the release: {e:#}");
                    }
                    if !out.status.success() {
                        let _ = s.step("discard", &[id]);
                        bail!("{label}: receive failed: {}", String::from_utf8_lossy(&out.stderr).trim());
                    }
                    let theirs = String::from_utf8_lossy(&out.stdout).trim().to_string();
                    if theirs != *digest {
                        let _ = s.step("discard", &[id]);
                        bail!(
                            "{label}: the transfer arrived altered (sha256 {theirs} on the host, {digest} sent); nothing was installed"
                        );
                    }
                    s.step("unpack", &[id, version])?;
                    s.log(&Event::Staged {
                        version: version.clone(),
                        sha256: release.sha256.clone(),
                        time: now(),
                    })?;
                    Ok(What::Staged {
                        version: version.clone(),
                        bytes_sent: sent,
                        files_sent: plan.files_sent,
                        files_linked: plan.links.len(),
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

// ---------------------------------------------------------------------------------------
// Stopping, starting, health.

fn service(
    session: &Session,
    service: &Service,
    version: &str,
    name: &str,
    command: &str,
) -> Result<String> {
    match service {
        Service::Launcher => session.step("launcher", &[version, name, command]),
        Service::Systemd { unit } => {
            let verb = match command {
                "daemon" => "start",
                "status" => "is-active",
                other => other,
            };
            session.step("systemctl", &[unit, verb])
        }
    }
}

/// One health probe: the URL answers 2xx/3xx, or the command exits 0.
fn probe(session: &Session, health: &Health, version: &str, name: &str) -> Result<(), String> {
    if let Some(url) = &health.url {
        let vars = config::url_variables(url)?;
        let values = if vars.is_empty() {
            Vec::new()
        } else {
            let mut args = vec![version, name];
            args.extend(vars.iter().map(String::as_str));
            let out = session.step("getenv", &args).map_err(|e| e.to_string())?;
            vars.iter()
                .cloned()
                .zip(out.lines().map(String::from))
                .collect()
        };
        let expanded = config::expand_url(url, &values);
        let u = config::parse_url(&expanded)?;
        let mut tunnel = session
            .target
            .transport
            .connect(&u.host, u.port)
            .map_err(|e| format!("{expanded}: {e:#}"))?;
        let closer = &tunnel.closer();
        let (tx, rx) = mpsc::channel();
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nUser-Agent: cargo-release-bundle\r\n\r\n",
            u.path, u.host, u.port
        );
        let reply = std::thread::scope(|scope| {
            scope.spawn(move || {
                if rx.recv_timeout(health.timeout).is_err() {
                    closer.close();
                }
            });
            let reply = tunnel.exchange(request.as_bytes(), 4096);
            let _ = tx.send(());
            reply
        });
        let status = reply
            .ok()
            .and_then(|r| http_status(&r))
            .ok_or_else(|| format!("{expanded} did not answer within {:?}", health.timeout))?;
        if !(200..400).contains(&status) {
            return Err(format!("{expanded} answered {status}"));
        }
    }
    if let Some(command) = &health.command {
        session
            .step("check", &[version, command])
            .map_err(|e| format!("the health command failed: {e:#}"))?;
    }
    Ok(())
}

/// Wait until `version` is healthy: alive, probes passing, for `healthy_for` in a row.
fn wait_healthy(session: &Session, s: &Settings, version: &str, name: &str) -> Result<(), String> {
    let h = &s.health;
    let start = Instant::now();
    let mut healthy_since: Option<Instant> = None;
    let mut last = String::from("no probe finished");
    loop {
        if let Err(e) = service(session, &s.service, version, name, "status") {
            let label = format!("{}: ", session.target.label);
            return Err(format!(
                "it is not running: {}",
                format!("{e:#}").trim_start_matches(&label)
            ));
        }
        match probe(session, h, version, name) {
            Ok(()) => {
                let since = *healthy_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= h.healthy_for {
                    return Ok(());
                }
            }
            Err(e) => {
                healthy_since = None;
                last = e;
            }
        }
        if start.elapsed() >= h.deadline && healthy_since.is_none() {
            return Err(format!("not healthy within {:?}: {last}", h.deadline));
        }
        std::thread::sleep(h.interval);
    }
}

/// Start `version` and wait for health.
fn start(
    session: &Session,
    s: &Settings,
    version: &str,
    name: &str,
    notes: &HostNotes,
) -> Result<(), String> {
    let label = format!("{}: ", session.target.label);
    service(session, &s.service, version, name, "daemon")
        .map_err(|e| format!("{e:#}").trim_start_matches(&label).to_string())?;
    notes.push(What::Started {
        version: version.into(),
    });
    wait_healthy(session, s, version, name)
}

/// How one host's move ended.
enum Moved {
    Done,
    /// The new release failed: why, and what the host went back to (whether it is healthy).
    Reverted(String, Option<(String, bool)>),
}

/// Stop `from`, switch to `to`, start it; on failure switch back to `from` and start it.
fn move_host(
    session: &Session,
    opts: &Options,
    name: &str,
    from: Option<&str>,
    to: &str,
    rollback: bool,
    notes: &HostNotes,
) -> Result<Moved> {
    let s = &opts.settings;
    if let Some(from) = from
        && opts.restart
    {
        service(session, &s.service, from, name, "stop")?;
        notes.push(What::Stopped {
            version: from.into(),
        });
    }
    session.step("switch", &[to])?;
    let time = now();
    session.log(&match (rollback, from) {
        (true, Some(from)) => Event::RolledBack {
            from: from.into(),
            to: to.into(),
            time,
        },
        _ => Event::Switched {
            from: from.map(String::from),
            to: to.into(),
            time,
        },
    })?;
    notes.push(What::Switched {
        from: from.map(String::from),
        to: to.into(),
    });
    if !opts.restart {
        return Ok(Moved::Done);
    }
    match start(session, s, to, name, notes) {
        Ok(()) => {
            session.log(&Event::Healthy {
                version: to.into(),
                time: now(),
            })?;
            notes.push(What::Healthy { version: to.into() });
            Ok(Moved::Done)
        }
        Err(why) => {
            let log_tail = session.step("tail", &[name]).unwrap_or_default();
            let _ = service(session, &s.service, to, name, "stop");
            session.log(&Event::Failed {
                version: to.into(),
                why: why.clone(),
                time: now(),
            })?;
            notes.push(What::Failed {
                version: to.into(),
                why: why.clone(),
                log_tail,
            });
            let back = match from {
                Some(from) => Some((
                    from.to_string(),
                    revert(session, opts, name, to, from, notes)?,
                )),
                None => None,
            };
            Ok(Moved::Reverted(why, back))
        }
    }
}

/// Switch back from `bad` to `good` and start it; whether it came up healthy.
fn revert(
    session: &Session,
    opts: &Options,
    name: &str,
    bad: &str,
    good: &str,
    notes: &HostNotes,
) -> Result<bool> {
    let s = &opts.settings;
    session.step("switch", &[good])?;
    session.log(&Event::Reverted {
        from: bad.into(),
        to: good.into(),
        time: now(),
    })?;
    let healthy = start(session, s, good, name, notes).is_ok();
    if healthy {
        session.log(&Event::Healthy {
            version: good.into(),
            time: now(),
        })?;
    }
    notes.push(What::Reverted {
        from: bad.into(),
        to: good.into(),
        healthy,
    });
    Ok(healthy)
}

/// The end of a failure message: where the host went back to.
fn went_back(back: &Option<(String, bool)>) -> String {
    match back {
        Some((v, true)) => format!("switched back to {v}, which is serving"),
        Some((v, false)) => format!("switched back to {v}, which did not come up either"),
        None => "there was no earlier release to switch back to".into(),
    }
}

fn prune(session: &mut Session, keep: usize, notes: &HostNotes) -> Result<()> {
    session.refresh()?;
    let history = session.state.history();
    let gone = history.to_prune(
        session.state.current.as_deref(),
        &session.state.installed(),
        keep,
    );
    for version in gone {
        session.step("prune", &[&version])?;
        session.log(&Event::Pruned {
            version: version.clone(),
            time: now(),
        })?;
        notes.push(What::Pruned { version });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The commands.

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
) -> Summary {
    Summary {
        hosts: targets
            .iter()
            .filter_map(|t| outcomes.remove(&t.label))
            .collect(),
        error,
    }
}

/// Deploy (or install) `release` on every target; notes go to `tx` as they happen.
pub fn deploy(release: &Release, targets: &[Target], opts: &Options, tx: &Notes) -> Summary {
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
            notes.push(What::Swept { path: path.into() });
        }
        if let Some(env) = opts.env.get(&label) {
            let cmd = s.target.transport.step(&s.target.path, "env-file", &[]);
            output_of(cmd, "env-file", &label, Some(env))?;
            notes.push(What::EnvInstalled);
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
    let name = release.manifest.name.as_str();
    let version = release.manifest.version.as_str();
    prepare(sessions, opts, tx)?;
    // An installed version is never changed: refuse before anything is sent anywhere.
    for s in sessions.iter() {
        if s.state.releases.contains_key(version) {
            match s.state.history().digest_of(version) {
                Some(d) if d == release.sha256 => {}
                Some(d) => bail!(
                    "{}: {version} is already installed there from another bundle (sha256 {d}); an installed release is never changed: bundle a new version",
                    s.target.label
                ),
                None => bail!(
                    "{}: `{}/releases/{version}` exists but was not installed by this tool; move it away first",
                    s.target.label,
                    s.target.path
                ),
            }
        }
    }
    // Stage everywhere while the old release serves: hosts that hold the same files get one
    // stream, compressed once.
    let mut groups: Vec<(TransferPlan, Vec<usize>)> = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let notes = HostNotes {
            tx,
            host: &s.target.label,
        };
        if s.state.releases.contains_key(version) {
            notes.push(What::AlreadyStaged {
                version: version.into(),
            });
            continue;
        }
        let plan = plan_transfer(release, &s.state)?;
        let gzip = !matches!(s.target.transport, Transport::Local);
        match groups.iter_mut().find(|(p, m)| {
            *p == plan && gzip == !matches!(sessions[m[0]].target.transport, Transport::Local)
        }) {
            Some((_, members)) => members.push(i),
            None => groups.push((plan, vec![i])),
        }
    }
    let mut results: Vec<(usize, Result<What>)> = Vec::new();
    {
        let all: &[Session] = sessions;
        let staged: Vec<Vec<(usize, Result<What>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .iter()
                .map(|(plan, members)| {
                    scope.spawn(move || {
                        let group: Vec<&Session> = members.iter().map(|&i| &all[i]).collect();
                        let gzip = !matches!(group[0].target.transport, Transport::Local);
                        members
                            .iter()
                            .copied()
                            .zip(stage_group(&group, release, plan, gzip))
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        results.extend(staged.into_iter().flatten());
    }
    results.sort_by_key(|(i, _)| *i);
    let staged: Vec<(usize, Result<u64>)> = results
        .into_iter()
        .map(|(i, r)| {
            let notes = HostNotes {
                tx,
                host: &sessions[i].target.label,
            };
            (
                i,
                r.map(|what| {
                    let sent = match &what {
                        What::Staged { bytes_sent, .. } => *bytes_sent,
                        _ => 0,
                    };
                    notes.push(what);
                    sent
                }),
            )
        })
        .collect();
    let mut first_error = None;
    for (i, r) in staged {
        let s = &sessions[i];
        match r {
            Ok(sent) => {
                if let Some(o) = outcomes.get_mut(&s.target.label) {
                    o.bytes_sent = sent;
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e.context("staging failed; no host was switched"));
    }
    // Batch by batch.
    let size = opts.settings.batch.size(sessions.len());
    let mut switched: Vec<(usize, Option<String>)> = Vec::new();
    for range in batches(sessions.len(), size) {
        let results = on_each(&mut sessions[range.clone()], |s| {
            let notes = HostNotes {
                tx,
                host: &s.target.label,
            };
            let from = s.state.current.clone();
            let r = if from.as_deref() == Some(version) {
                ensure_running(s, opts, name, version, &notes).map(|()| None)
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
            match r {
                Ok(None) => {
                    o.outcome = "unchanged".into();
                    o.current = Some(version.into());
                }
                Ok(Some(Moved::Done)) => {
                    o.outcome = "deployed".into();
                    o.current = Some(version.into());
                    switched.push((i, from));
                }
                Ok(Some(Moved::Reverted(why, back))) => {
                    o.outcome = "reverted".into();
                    o.current = back.as_ref().map(|(v, _)| v.clone());
                    failure.get_or_insert(format!(
                        "{label}: {name} {version} did not come up: {why}; it is marked bad and {}",
                        went_back(&back)
                    ));
                }
                Err(e) => {
                    o.outcome = "failed".into();
                    failure.get_or_insert(format!("{e:#}"));
                }
            }
        }
        if let Some(why) = failure {
            // Mark the version bad on every host, so that no rollback goes to it.
            for s in sessions.iter() {
                let marked = s.log(&Event::MarkedBad {
                    version: version.into(),
                    time: now(),
                });
                if marked.is_ok() {
                    HostNotes {
                        tx,
                        host: &s.target.label,
                    }
                    .push(What::MarkedBad {
                        version: version.into(),
                    });
                }
            }
            if opts.settings.on_failure == OnFailure::RevertAll {
                for (i, from) in &switched {
                    let s = &sessions[*i];
                    let notes = HostNotes {
                        tx,
                        host: &s.target.label,
                    };
                    if let Some(from) = from {
                        let _ = service(s, &opts.settings.service, version, name, "stop");
                        revert(s, opts, name, version, from, &notes)?;
                        if let Some(o) = outcomes.get_mut(&s.target.label) {
                            o.outcome = "reverted".into();
                            o.current = Some(from.clone());
                        }
                    }
                }
            }
            let later = sessions.len() - range.end;
            if later > 0 {
                bail!("{why}; the {later} host(s) in later batches were not touched");
            }
            bail!("{why}");
        }
    }
    for s in sessions.iter_mut() {
        let label = s.target.label.clone();
        prune(s, opts.settings.keep, &HostNotes { tx, host: &label })?;
    }
    Ok(())
}

/// `version` is already current (a repeated deploy, or one killed after the switch): make
/// sure it runs and is healthy.
fn ensure_running(
    session: &Session,
    opts: &Options,
    name: &str,
    version: &str,
    notes: &HostNotes,
) -> Result<()> {
    if !opts.restart || service(session, &opts.settings.service, version, name, "status").is_ok() {
        return Ok(());
    }
    start(session, &opts.settings, version, name, notes).map_err(|why| {
        anyhow::anyhow!(
            "{}: {name} {version} is current but not running, and did not come up: {why}",
            session.target.label
        )
    })?;
    session.log(&Event::Healthy {
        version: version.into(),
        time: now(),
    })?;
    notes.push(What::Healthy {
        version: version.into(),
    });
    Ok(())
}

/// Roll every target back to `version`, or to the newest earlier release that is not
/// marked bad (on any host) and is installed on every host.
pub fn rollback(targets: &[Target], version: Option<&str>, opts: &Options, tx: &Notes) -> Summary {
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
    let bad: Vec<String> = sessions
        .iter()
        .flat_map(|s| s.state.history().bad)
        .collect();
    let to = pick_rollback(sessions, version, &bad)?;
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
                    return ensure_running(s, opts, &name, to, &notes).map(|()| None);
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
            match r {
                Ok(None) => {
                    o.outcome = "unchanged".into();
                    o.current = Some(to.into());
                }
                Ok(Some(Moved::Done)) => {
                    o.outcome = "rolled-back".into();
                    o.current = Some(to.into());
                }
                Ok(Some(Moved::Reverted(why, back))) => {
                    o.outcome = "reverted".into();
                    o.current = back.as_ref().map(|(v, _)| v.clone());
                    bail!("{label}: {to} did not come up: {why}; {}", went_back(&back));
                }
                Err(e) => {
                    o.outcome = "failed".into();
                    o.current = from;
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

fn pick_rollback(sessions: &[Session], version: Option<&str>, bad: &[String]) -> Result<String> {
    let first = sessions.first().context("no hosts")?;
    let on_all = |v: &str| sessions.iter().all(|s| s.state.releases.contains_key(v));
    if let Some(v) = version {
        if let Some(s) = sessions.iter().find(|s| !s.state.releases.contains_key(v)) {
            bail!(
                "{}: {v} is not installed under `{}` (installed: {})",
                s.target.label,
                s.target.path,
                s.state.installed().join(", ")
            );
        }
        return Ok(v.to_string());
    }
    let Some(current) = first.state.current.clone() else {
        bail!(
            "{}: nothing is installed under `{}`",
            first.target.label,
            first.target.path
        );
    };
    let installed: Vec<String> = first
        .state
        .installed()
        .into_iter()
        .filter(|v| on_all(v) && !bad.contains(v))
        .collect();
    first
        .state
        .history()
        .rollback_target(&current, &installed)
        .with_context(|| {
            format!(
                "{}: no earlier release to roll back to that is installed on every host and not marked bad (installed: {}; marked bad: {})",
                first.target.label,
                first.state.installed().join(", "),
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
    std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|t| {
                scope.spawn(move || {
                    let cmd = t.transport.single_step(&t.path, "state", &[]);
                    let text = output_of(cmd, "state", &t.label, None)?;
                    parse_state(&text)
                        .with_context(|| format!("{}: cannot read the deploy state", t.label))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a thread panicked")))
            })
            .collect()
    })
}

/// Install `env` as `shared/env` (0600) on a target, through stdin: never on a command line.
pub fn install_env_file(target: &Target, env: &[u8]) -> Result<()> {
    let cmd = target.transport.single_step(&target.path, "env-file", &[]);
    output_of(cmd, "env-file", &target.label, Some(env)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_reports_parse() {
        let text = "@@rb current 1.1.0\n@@rb release 1.0.0\naaa  bin/x\n@@rb release 1.1.0\nbbb  bin/x\nccc  priv/a b\n@@rb manifest 1.1.0\n{\"name\": \"x\"}\n@@rb log\n{\"event\":\"marked-bad\",\"version\":\"1.0.0\",\"time\":1}\n@@rb end\n";
        let s = parse_state(text).unwrap();
        assert_eq!(s.current.as_deref(), Some("1.1.0"));
        assert_eq!(s.installed(), ["1.0.0", "1.1.0"]);
        assert_eq!(s.releases["1.1.0"][1], ("ccc".into(), "priv/a b".into()));
        assert_eq!(s.history().bad, ["1.0.0"]);
        assert!(s.manifest.unwrap().contains("name"));
        assert!(
            parse_state("@@rb current \n").is_err(),
            "a cut-off report is an error"
        );
        let empty = parse_state("@@rb current \n@@rb log\n@@rb end\n").unwrap();
        assert_eq!(empty.current, None);
    }

    #[test]
    fn held_files_are_linked_from_the_current_release_first() {
        let text = "@@rb current 1.1.0\n@@rb release 1.0.0\naaa  bin/x\nbbb  priv/old\n@@rb release 1.1.0\naaa  libexec/x\n@@rb log\n@@rb end\n";
        let state = parse_state(text).unwrap();
        let held = Held::new(&state);
        let file = |path: &str, sha: &str, mode: &str, kind| FileRecord {
            path: path.into(),
            kind,
            mode: mode.into(),
            size: 1,
            sha256: Some(sha.into()),
            target: None,
        };
        let l = held
            .link(&file("libexec/x", "aaa", "0755", FileKind::Executable))
            .unwrap();
        assert_eq!(
            (l.from.as_str(), l.to.as_str(), l.mode.as_str()),
            ("1.1.0/libexec/x", "libexec/x", "755")
        );
        let l = held
            .link(&file("priv/new", "bbb", "0644", FileKind::Priv))
            .unwrap();
        assert_eq!(l.from, "1.0.0/priv/old");
        assert!(
            held.link(&file("priv/c", "ccc", "0644", FileKind::Priv))
                .is_none()
        );
        assert!(
            held.link(&file("bin/l", "aaa", "0777", FileKind::Symlink))
                .is_none()
        );
    }

    #[test]
    fn batches_cover_every_host_once() {
        assert_eq!(batches(5, 2), [0..2, 2..4, 4..5]);
        assert_eq!(batches(3, 3).len(), 1);
        assert_eq!(batches(3, 3)[0], 0..3);
        assert_eq!(batches(0, 1), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn http_statuses() {
        assert_eq!(http_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(http_status(b"HTTP/1.0 503 x\r\n\r\n"), Some(503));
        assert_eq!(http_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(http_status(b""), None);
    }
}
