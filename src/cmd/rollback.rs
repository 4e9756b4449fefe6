//! `cargo release-bundle rollback --host/--dest | --path [--version V] [--dry-run]`.

use anyhow::{Result, bail};

use crate::cli::RollbackOpts;
use crate::deploy::hooks::HookEnv;
use crate::deploy::resolve;
use crate::deploy::state::HostState;
use crate::deploy::whole::Hook;
use crate::deploy::{Target, fleet};
use crate::output::MessageFormat;
use crate::output::Output;

pub fn run(opts: &RollbackOpts, shell: &Output) -> Result<u8> {
    let lookup = super::deploy::lookup(&opts.hosts, &opts.manifest);
    let flags = super::deploy::flags(&opts.hosts, &opts.restart, Some(&opts.batch), None);
    let hosts = resolve::hosts(&lookup, flags)?;
    if opts.dry_run {
        return dry_run(&hosts.targets, opts, shell);
    }
    let options = super::deploy::options(
        hosts.settings.clone(),
        &opts.restart,
        true,
        Default::default(),
    );
    let env = HookEnv {
        name: hosts.name.clone().unwrap_or_default(),
        version: opts.version.clone().unwrap_or_default(),
        ..super::deploy::hook_env(&opts.hosts, &hosts.settings)
    };
    let whole = (!opts.restart.skip_hooks).then_some(&hosts.settings.whole);
    let pair = (Hook::PreRollback, Hook::PostRollback);
    let format = opts.output.message_format;
    super::deploy::with_hooks(whole, pair, &env, (shell, format), || {
        let mut outcome = String::from("failed");
        let result =
            super::deploy::reporting(opts.output.message_format, shell, "Rolled back", |tx| {
                let summary =
                    fleet::rollback(&hosts.targets, opts.version.as_deref(), &options, tx);
                outcome = summary.outcome().into();
                summary
            });
        (result, outcome)
    })
}

/// Where the rollback would go, decided as the rollback decides (the same pick, the same
/// check of the target's files); nothing is locked, switched or marked.
fn dry_run(targets: &[Target], opts: &RollbackOpts, shell: &Output) -> Result<u8> {
    let states: Vec<HostState> = fleet::states(targets).into_iter().collect::<Result<_>>()?;
    let hosts: Vec<(&Target, &HostState)> = targets.iter().zip(&states).collect();
    let mut bad: Vec<String> = states.iter().flat_map(|s| s.history().bad).collect();
    let mut skipped = Vec::new();
    let to = loop {
        let to = fleet::pick_rollback(&hosts, opts.version.as_deref(), &bad)?;
        let broken: Vec<String> = targets
            .iter()
            .filter_map(|t| crate::deploy::checks::release_intact(t, &to).err())
            .map(|e| format!("{e:#}"))
            .collect();
        if broken.is_empty() {
            break to;
        }
        if opts.version.is_some() {
            bail!("{}; nothing was changed (--dry-run)", broken.join("; "));
        }
        skipped.push((to.clone(), broken));
        bad.push(to);
    };
    if opts.output.message_format == MessageFormat::Json {
        let plan: Vec<serde_json::Value> = hosts
            .iter()
            .map(|(t, s)| serde_json::json!({"host": t.label, "current": s.current, "to": to}))
            .collect();
        let skipped: Vec<serde_json::Value> = skipped
            .iter()
            .map(|(v, why)| serde_json::json!({"version": v, "why": why}))
            .collect();
        shell.json(&serde_json::json!({
            "reason": "rollback-plan", "to": to, "hosts": plan, "skipped": skipped,
        }));
        return Ok(0);
    }
    for (version, why) in &skipped {
        shell.out(format!(
            "Would skip {version} (and mark it bad): {}",
            why.join("; ")
        ));
    }
    for (t, s) in &hosts {
        let from = s.current.as_deref().unwrap_or("nothing");
        shell.out(format!("  {}: {from} -> {to}", t.label));
    }
    shell.out("Nothing was changed (--dry-run).");
    Ok(0)
}
