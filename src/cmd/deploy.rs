//! `cargo release-bundle deploy [BUNDLE] --host HOST... | --dest NAME`: bundle when no bundle
//! is given, verify it, then run the deploy sequence on every host (see `deploy::fleet`).

use anyhow::{Context, Result, bail};
use camino::Utf8PathBuf;

use crate::cli::{BatchOpts, DeployOpts, HostOpts, ManifestOpts, RestartOpts, TrustOpts};
use crate::deploy::config::{OnFailure, Partial, Settings};
use crate::output::MessageFormat;
use std::sync::mpsc;

use crate::bundle;
use crate::deploy::fleet;
use crate::deploy::hooks::{self, HookEnv};
use crate::deploy::notes::{DeploySummary, Happened, Note, Notes};
use crate::deploy::resolve::{self, Lookup};
use crate::deploy::state;
use crate::deploy::whole::{Hook, Whole};
use crate::deploy::{Options, Release, Target};
use crate::output::Output;
use crate::verify::{self, Limits, Severity};

/// How the sequence runs, from the settings and the flags.
pub(super) fn options(
    settings: Settings,
    flags: &RestartOpts,
    restart: bool,
    env: std::collections::BTreeMap<String, Vec<u8>>,
) -> Options {
    Options {
        settings,
        restart,
        break_lock: flags.break_lock,
        lock_wait: flags.lock_wait,
        who: resolve::who(),
        env,
        stage_only: false,
        cold: flags.cold,
        skip_release_command: flags.skip_release_command,
    }
}

/// Where a command without a bundle finds its deploy tables.
pub(super) fn lookup(hosts: &HostOpts, manifest: &ManifestOpts) -> Lookup {
    Lookup {
        manifest_path: manifest.manifest_path.clone(),
        package: manifest.package.clone(),
        release: None,
        dest: hosts.dest.clone(),
    }
}

/// The flags that override the deploy tables.
pub(super) fn flags(
    hosts: &HostOpts,
    restart: &RestartOpts,
    batch: Option<&BatchOpts>,
    keep: Option<usize>,
) -> Partial {
    Partial {
        hosts: Some(hosts.hosts.clone()).filter(|h| !h.is_empty()),
        path: hosts.path.clone(),
        keep,
        batch: batch.and_then(|b| b.batch),
        on_failure: batch
            .is_some_and(|b| b.revert_all)
            .then_some(OnFailure::RevertAll),
        ssh_config: hosts.ssh_config.as_ref().map(|p| p.to_string()),
        url: restart.health_url.clone(),
        command: restart.health_command.clone(),
        interval: restart.health_interval,
        timeout: restart.health_timeout,
        deadline: restart.health_deadline,
        healthy_for: restart.healthy_for,
        unhealthy_after: restart.unhealthy_after,
        only_roles: hosts.roles.clone(),
        primary_only: hosts.primary,
        ..Partial::default()
    }
}

/// A verify [`Sink`](crate::verify::Sink) that keeps only `MANIFEST.json`, copied into an
/// anonymous temporary file as verify streams it: the deploy reads the bundle once to verify
/// it and to learn its file list.
#[derive(Default)]
struct ManifestCatcher {
    manifest: Option<std::fs::File>,
}

impl crate::verify::Sink for ManifestCatcher {
    fn dir(&mut self, _: &str) {}
    fn symlink(&mut self, _: &str, _: &str) {}
    fn begin_file(&mut self, rel: &str) -> Option<std::fs::File> {
        (rel == crate::archive::MANIFEST)
            .then(|| tempfile::tempfile().ok())
            .flatten()
    }
    fn end_file(&mut self, _: &str, file: std::fs::File, _: u32) {
        self.manifest = Some(file);
    }
    fn fail(&mut self, _: &str, _: std::io::Error) {
        self.manifest = None;
    }
    fn mtime(&mut self, _: u64) {}
}

/// Verify the bundle as `verify` does, with the same digest and signature checks; its
/// manifest and digest when it passes.
pub(super) fn verified<'a>(bundle: &'a Utf8PathBuf, trust: &TrustOpts) -> Result<Release<'a>> {
    let mut catcher = ManifestCatcher::default();
    let mut report = verify::verify_file(
        bundle,
        trust.sha256.as_deref(),
        Limits::default(),
        &[],
        Some(&mut catcher),
    )?;
    verify::check_signature(
        &mut report,
        trust.allowed_signers.as_deref(),
        trust.identity.as_deref(),
    )?;
    if let Some(public) = &trust.minisign_key {
        verify::check_minisign(&mut report, public)?;
    }
    if !report.passes(false) {
        let first = report
            .findings
            .iter()
            .find(|f| f.severity == Severity::Error)
            .map(|f| f.message.clone())
            .unwrap_or_default();
        bail!("`{bundle}` does not verify ({first}); nothing was deployed");
    }
    let manifest = report
        .manifest
        .with_context(|| format!("`{bundle}`: its manifest names no release"))?;
    let manifest_spool = catcher
        .manifest
        .with_context(|| format!("`{bundle}`: its MANIFEST.json could not be kept"))?;
    Ok(Release {
        bundle,
        sha256: report.sha256,
        manifest,
        manifest_spool,
    })
}

fn human(note: &Note) -> (&'static str, String) {
    let h = &note.host;
    match &note.what {
        Happened::Locked => ("Locked", h.to_string()),
        Happened::EnvInstalled => ("Installed", format!("{h}: shared/env (0600)")),
        Happened::Swept { path } => (
            "Removed",
            format!("{h}: {path}, left by a deploy that was killed"),
        ),
        Happened::BrokeLock { holder } => ("Broke", format!("{h}: stale lock ({holder})")),
        Happened::Staged {
            version,
            bytes_sent,
            files_sent,
            files_linked,
        } => (
            "Staged",
            format!(
                "{h}: {version} ({} sent: {files_sent} files; {files_linked} linked from installed releases)",
                crate::bundle::human_size(*bytes_sent)
            ),
        ),
        Happened::AlreadyStaged { version } => {
            ("Staged", format!("{h}: {version} was already installed"))
        }
        Happened::Stopped { version } => ("Stopped", format!("{h}: {version}")),
        Happened::Switched { from, to } => (
            "Switched",
            format!(
                "{h}: current -> releases/{to}{}",
                from.as_ref()
                    .map(|f| format!(" (was {f})"))
                    .unwrap_or_default()
            ),
        ),
        Happened::Started { version } => ("Started", format!("{h}: {version}")),
        Happened::Healthy { version } => ("Healthy", format!("{h}: {version}")),
        Happened::Failed {
            version,
            why,
            log_tail,
        } => (
            "Failed",
            format!(
                "{h}: {version}: {why}{}",
                if log_tail.trim().is_empty() {
                    String::new()
                } else {
                    format!("\nlast lines of its log on {h}:\n{}", log_tail.trim_end())
                }
            ),
        ),
        Happened::Reverted { from, to, healthy } => (
            "Reverted",
            format!(
                "{h}: {from} -> {to}, {}",
                if *healthy {
                    "which is serving"
                } else {
                    "which also did not come up"
                }
            ),
        ),
        Happened::MarkedBad { version } => ("Marked bad", format!("{h}: {version}")),
        Happened::Pruned { version } => ("Pruned", format!("{h}: {version}")),
        other => human_release_command(h, other),
    }
}

/// The release command's notes, in human form.
fn human_release_command(h: &str, what: &Happened) -> (&'static str, String) {
    match what {
        Happened::ReleaseCommand { version, command } => (
            "Running",
            format!("{h}: release command `{command}` from {version}"),
        ),
        Happened::Output { line, .. } => ("", format!("{h}: {line}")),
        Happened::ReleaseCommandDone { code: 0, .. } => {
            ("Ran", format!("{h}: the release command"))
        }
        Happened::ReleaseCommandDone { code, .. } => {
            ("Failed", format!("{h}: the release command exited {code}"))
        }
        Happened::ReleaseCommandSkipped { version } => (
            "Skipped",
            format!("{h}: the release command of {version} (--skip-release-command)"),
        ),
        _ => ("", String::new()),
    }
}

fn print_note(note: &Note, format: MessageFormat, shell: &Output) -> Result<()> {
    if format == MessageFormat::Json {
        let mut v = serde_json::to_value(note).context("a note always serializes")?;
        v["reason"] = "deploy-event".into();
        shell.json(&v);
    } else {
        let (verb, text) = human(note);
        if verb == "Failed" {
            shell.warn(text);
        } else {
            shell.status(verb, text);
        }
    }
    Ok(())
}

/// Run `work` on its own thread and print its notes as they come, then the summary; the
/// error that stopped it, if any, is returned (after everything is printed).
pub(super) fn reporting(
    format: MessageFormat,
    shell: &Output,
    verb: &str,
    work: impl FnOnce(&Notes) -> DeploySummary + Send,
) -> Result<u8> {
    let (tx, rx) = mpsc::channel();
    let summary = std::thread::scope(|scope| -> Result<DeploySummary> {
        let worker = scope.spawn(move || work(&tx));
        for note in rx {
            print_note(&note, format, shell)?;
        }
        Ok(worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })?;
    if format == MessageFormat::Json {
        shell.json(&serde_json::json!({
            "reason": "deploy-summary",
            "success": summary.error.is_none(),
            "hosts": summary.hosts,
        }));
    } else if summary.error.is_none() {
        let hosts: Vec<String> = summary
            .hosts
            .iter()
            .map(|o| format!("{} ({})", o.host, o.outcome))
            .collect();
        shell.status(verb, hosts.join(", "));
    }
    match summary.error {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

pub fn run(opts: &DeployOpts, shell: &Output) -> Result<u8> {
    let bundle = match &opts.bundle {
        Some(b) => b.clone(),
        None => {
            let mut paths = Vec::new();
            bundle::bundle(&opts.build.request(), shell, &mut |_, _, bundle| {
                paths.push(bundle.path.clone())
            })?;
            match paths.as_slice() {
                [one] => one.clone(),
                _ => bail!(
                    "deploy takes one bundle, and {} were bundled; select one package with -p",
                    paths.len()
                ),
            }
        }
    };
    let release = verified(&bundle, &opts.trust)?;
    let lookup = Lookup {
        manifest_path: opts.build.manifest_path.clone(),
        package: opts.build.package.first().cloned(),
        release: Some(release.manifest.name.clone()),
        dest: opts.hosts.dest.clone(),
    };
    let hosts = resolve::hosts(
        &lookup,
        flags(&opts.hosts, &opts.restart, Some(&opts.batch), opts.keep),
    )?;
    if hosts.settings.hosts.is_empty() {
        bail!(
            "no hosts to deploy to: pass --host HOST (repeatable) or --dest NAME, or set deploy.hosts (to install on this machine, use `install`)"
        );
    }
    if hosts.settings.require_signature
        && opts.trust.allowed_signers.is_none()
        && opts.trust.minisign_key.is_none()
    {
        bail!(
            "deploy.require-signature is set and `{bundle}` was not checked against a signer: pass --allowed-signers FILE (SSH signatures) or --minisign-key PUB; nothing was deployed"
        );
    }
    let targets = &hosts.targets;
    if opts.dry_run {
        return dry_run(
            &release,
            targets,
            &hosts.settings,
            opts.build.output.message_format,
            shell,
        );
    }
    let whole = &hosts.settings.whole;
    let hook_env = HookEnv {
        name: release.manifest.name.clone(),
        version: release.manifest.version.clone(),
        bundle: Some(bundle.to_string()),
        ..hook_env(&opts.hosts, &hosts.settings)
    };
    let hooks = (!opts.restart.skip_hooks).then_some(whole);
    let pair = (Hook::PreDeploy, Hook::PostDeploy);
    let format = opts.build.output.message_format;
    with_hooks(hooks, pair, &hook_env, (shell, format), || {
        let selecting = !opts.hosts.roles.is_empty() || opts.hosts.primary;
        let env = resolve::env_files_selected(&opts.env_file, targets, selecting)
            .and_then(|env| hooks::host_env(env, &hosts.settings, targets));
        let env = match env {
            Ok(env) => env,
            Err(e) => return (Err(e), "failed".into()),
        };
        let mut options = options(hosts.settings.clone(), &opts.restart, true, env);
        options.stage_only = opts.stage_only;
        let mut outcome = String::from("failed");
        let result = reporting(opts.build.output.message_format, shell, "Deployed", |tx| {
            let summary = fleet::deploy(&release, targets, &options, tx);
            outcome = outcome_of(&summary).into();
            summary
        });
        (result, outcome)
    })
}

/// What every hook is told about the hosts and who deploys.
pub(super) fn hook_env(flags: &HostOpts, settings: &crate::deploy::config::Settings) -> HookEnv {
    HookEnv {
        destination: flags.dest.clone(),
        hosts: settings.hosts.clone(),
        roles: settings.roles.keys().cloned().collect(),
        performer: resolve::who(),
        ..HookEnv::default()
    }
}

/// How a deploy or rollback ended, for `post-*` hooks: `success`, `reverted` (a host went
/// back) or `failed`.
pub(super) fn outcome_of(summary: &DeploySummary) -> &'static str {
    match &summary.error {
        None => "success",
        Some(_) if summary.hosts.iter().any(|h| h.outcome == "reverted") => "reverted",
        Some(_) => "failed",
    }
}

/// `work` between the `pre` and `post` hooks (`hooks` is `None` with `--skip-hooks`): a
/// failing `pre` hook stops before any host is contacted; the `post` hook hears the outcome,
/// and its failure (which changes nothing on the hosts) makes the exit code non-zero.
pub(super) fn with_hooks(
    hooks: Option<&Whole>,
    (pre, post): (Hook, Hook),
    env: &HookEnv,
    (shell, format): (&Output, MessageFormat),
    work: impl FnOnce() -> (Result<u8>, String),
) -> Result<u8> {
    // Each line a hook writes is in the report.
    let report = |hook: Hook| {
        move |line: &str| match format {
            MessageFormat::Json => shell.json(
                &serde_json::json!({"reason": "hook-output", "hook": hook.name(), "line": line}),
            ),
            _ => shell.status("Hook", format!("{}: {line}", hook.name())),
        }
    };
    if let Some(whole) = hooks {
        crate::deploy::hooks::run(whole, pre, env, None, &mut report(pre))
            .context("no host was contacted")?;
    }
    let (result, outcome) = work();
    if let Some(whole) = hooks {
        let ran = crate::deploy::hooks::run(whole, post, env, Some(&outcome), &mut report(post));
        match (ran, &result) {
            (Err(e), Ok(_)) => return Err(e.context("the hosts are as the report says")),
            (Err(e), Err(_)) => shell.error_chain(&e),
            (Ok(()), _) => {}
        }
    }
    result
}

/// Print what a deploy would do: read each host's state, change nothing.
fn dry_run(
    release: &Release,
    targets: &[Target],
    settings: &crate::deploy::config::Settings,
    format: MessageFormat,
    shell: &Output,
) -> Result<u8> {
    let states: Vec<state::HostState> =
        fleet::states(targets).into_iter().collect::<Result<_>>()?;
    // The name the deploy would give it on the hosts (`<version>+<id>` beside other bytes).
    let id = crate::deploy::checks::release_id(release, &states.iter().collect::<Vec<_>>());
    let named;
    let release = if id == release.manifest.version {
        release
    } else {
        named = release.named(&id)?;
        &named
    };
    let m = &release.manifest;
    let mut plan = Vec::new();
    for (t, state) in targets.iter().zip(states) {
        // The decisions the deploy takes before it sends anything, taken the same way.
        crate::deploy::checks::check_staging(t, &state, release)?;
        if state.releases.contains_key(&m.version) && state.current.as_ref() != Some(&m.version) {
            crate::deploy::checks::release_intact(t, &m.version)
                .context("the deploy would refuse to switch")?;
        }
        let transfer = state::plan_transfer(release, &state)?;
        let (send_files, send_bytes) = (transfer.files_sent, transfer.bytes_sent_uncompressed);
        let links = transfer.links;
        let installed = state.releases.contains_key(&m.version);
        plan.push(serde_json::json!({
            "host": t.label,
            "path": t.path,
            "current": state.current,
            "stage": !installed,
            "files_to_send": if installed { 0 } else { send_files },
            "bytes_to_send_uncompressed": if installed { 0 } else { send_bytes },
            "files_to_link": if installed { 0 } else { links.len() },
            "stop": state.current.as_ref().filter(|c| **c != m.version),
            "start": (state.current.as_deref() != Some(m.version.as_str())).then_some(&m.version),
        }));
    }
    let labels: Vec<&str> = targets.iter().map(|t| t.label.as_str()).collect();
    let batches: Vec<Vec<&str>> =
        crate::deploy::roles::batch_ranges(&labels, &settings.roles, settings.batch)
            .into_iter()
            .map(|r| targets[r].iter().map(|t| t.label.as_str()).collect())
            .collect();
    if format == MessageFormat::Json {
        shell.json(&serde_json::json!({
            "reason": "deploy-plan",
            "name": m.name,
            "version": m.version,
            "bundle": release.bundle,
            "hosts": plan,
            "batches": batches,
        }));
        return Ok(0);
    }
    shell.out(format!(
        "Would deploy {} {} from {}",
        m.name, m.version, release.bundle
    ));
    for p in &plan {
        shell.out(plan_line(p));
    }
    for (i, b) in batches.iter().enumerate() {
        shell.out(format!("  batch {}: {}", i + 1, b.join(", ")));
    }
    shell.out("Nothing was changed (--dry-run).");
    Ok(0)
}

/// One host's line of the human `--dry-run` plan.
fn plan_line(p: &serde_json::Value) -> String {
    let host = p["host"].as_str().unwrap_or_default();
    let mut line = format!("  {host} ({}):", p["path"].as_str().unwrap_or_default());
    if p["stage"].as_bool() == Some(true) {
        line.push_str(&format!(
            " send {} files ({} before compression), link {} from installed releases;",
            p["files_to_send"],
            crate::bundle::human_size(p["bytes_to_send_uncompressed"].as_u64().unwrap_or(0)),
            p["files_to_link"]
        ));
    } else {
        line.push_str(" already staged;");
    }
    match (p["stop"].as_str(), p["start"].as_str()) {
        (Some(old), Some(new)) => line.push_str(&format!(" stop {old}, switch, start {new}")),
        (None, Some(new)) => line.push_str(&format!(" switch, start {new}")),
        _ => line.push_str(" already current; nothing to restart"),
    }
    line
}
