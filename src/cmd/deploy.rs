//! `cargo release-bundle deploy [BUNDLE] --host HOST... | --dest NAME`: bundle when no bundle
//! is given, verify it, then run the deploy sequence on every host (see `deploy::fleet`).

use anyhow::{Context, Result, bail};

use crate::cli::{BatchOpts, DeployOpts, HostOpts, ManifestOpts, RestartOpts};
use crate::deploy::config::{OnFailure, Partial, Settings};
use crate::output::MessageFormat;
use std::sync::mpsc;

use crate::bundle;
use crate::deploy::fleet;
use crate::deploy::hooks::{self, HookEnv};
use crate::deploy::notes::{DeploySummary, Note, Notes};
use crate::deploy::render;
use crate::deploy::resolve::{self, Lookup};
use crate::deploy::whole::{Hook, Whole};
use crate::deploy::{Options, Release, Target};
use crate::output::Output;

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

fn print_note(note: &Note, format: MessageFormat, shell: &Output) -> Result<()> {
    if format == MessageFormat::Json {
        let mut v = serde_json::to_value(note).context("a note always serializes")?;
        v["reason"] = "deploy-event".into();
        shell.json(&v);
    } else {
        let (verb, text) = render::note(note);
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

/// The bundle given, or the one bundling the project now makes.
fn the_bundle(opts: &DeployOpts, shell: &Output) -> Result<camino::Utf8PathBuf> {
    if let Some(b) = &opts.bundle {
        return Ok(b.clone());
    }
    let mut paths = Vec::new();
    bundle::bundle(&opts.build.request(), shell, &mut |_, _, bundle| {
        paths.push(bundle.path.clone())
    })?;
    match paths.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "deploy takes one bundle, and {} were bundled; select one package with -p",
            paths.len()
        ),
    }
}

pub fn run(opts: &DeployOpts, shell: &Output) -> Result<u8> {
    let bundle = the_bundle(opts, shell)?;
    let trust = opts.trust.trust();
    let release = Release::verified(&bundle, &trust)?;
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
    if hosts.settings.require_signature && !trust.names_a_signer() {
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
            outcome = summary.outcome().into();
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
    let plan = crate::deploy::dry_run::plan(release, targets, settings)?;
    if format == MessageFormat::Json {
        let mut v = serde_json::to_value(&plan).context("a plan always serializes")?;
        v["reason"] = "deploy-plan".into();
        shell.json(&v);
        return Ok(0);
    }
    let (name, version, bundle) = (&plan.name, &plan.version, &plan.bundle);
    shell.out(format!("Would deploy {name} {version} from {bundle}"));
    for p in &plan.hosts {
        shell.out(render::plan_line(p));
    }
    for (i, b) in plan.batches.iter().enumerate() {
        shell.out(format!("  batch {}: {}", i + 1, b.join(", ")));
    }
    shell.out("Nothing was changed (--dry-run).");
    Ok(0)
}
