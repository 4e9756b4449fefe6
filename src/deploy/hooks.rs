//! The deploying machine's side of a deploy: the `deploy.hooks` (pre-/post-deploy and
//! -rollback executables, with a stable `RELEASE_BUNDLE_*` environment and never a secret),
//! and each host's `shared/env` assembled from `--env-file`, `deploy.env-command` and
//! `deploy.env-file`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::Target;
use super::config::Settings;
use super::whole::{Hook, Whole};

/// What a hook is told, as `RELEASE_BUNDLE_<KEY>` variables.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    pub name: String,
    pub version: String,
    pub destination: Option<String>,
    pub hosts: Vec<String>,
    pub roles: Vec<String>,
    pub performer: String,
    pub bundle: Option<String>,
}

/// Run `hook` if configured; each line it writes (stdout or stderr) goes to `line` as it
/// comes, for the report. A non-zero exit is an error naming the hook and its code.
/// `outcome` for `post-*` hooks.
pub fn run(
    whole: &Whole,
    hook: Hook,
    env: &HookEnv,
    outcome: Option<&str>,
    line: &mut dyn FnMut(&str),
) -> Result<()> {
    let Some(path) = whole.hooks.get(&hook) else {
        return Ok(());
    };
    let mut cmd = Command::new(path);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in [
        ("NAME", env.name.clone()),
        ("VERSION", env.version.clone()),
        ("DESTINATION", env.destination.clone().unwrap_or_default()),
        ("HOSTS", env.hosts.join(" ")),
        ("ROLES", env.roles.join(" ")),
        ("PERFORMER", env.performer.clone()),
        ("BUNDLE", env.bundle.clone().unwrap_or_default()),
        ("OUTCOME", outcome.unwrap_or_default().to_string()),
    ] {
        cmd.env(format!("RELEASE_BUNDLE_{key}"), value);
    }
    let name = hook.name();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("the {name} hook `{path}` could not run"))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let streams: Vec<Box<dyn Read + Send>> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    std::thread::scope(|scope| {
        for stream in streams {
            let tx = tx.clone();
            scope.spawn(move || {
                for l in BufReader::new(stream).split(b'\n').map_while(|l| l.ok()) {
                    let _ = tx.send(crate::output::printable(&l, 1).trim_end().to_string());
                }
            });
        }
        drop(tx);
        for l in rx {
            line(&l);
        }
    });
    let status = child
        .wait()
        .with_context(|| format!("the {name} hook `{path}`"))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => bail!("the {name} hook `{path}` exited {code}"),
        None => bail!("the {name} hook `{path}` was killed ({status})"),
    }
}

/// The output of `deploy.env-command` (`sh -c`, run here): at most 1 MiB, never printed.
fn env_command(command: &str) -> Result<Vec<u8>> {
    let mut child = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("deploy.env-command: cannot run `sh`")?;
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        stdout
            .take(1 << 20)
            .read_to_end(&mut out)
            .context("deploy.env-command: cannot read its output")?;
    }
    let status = child.wait().context("deploy.env-command")?;
    if !status.success() {
        bail!("deploy.env-command exited with {status}; nothing was deployed");
    }
    Ok(out)
}

/// Each host's `shared/env`: its `--env-file` (per host, else for all), then its roles'
/// `env-file`s, then the env command's output, then `deploy.env-file`, one after the other.
/// In the env-file grammar the first line that sets a variable wins, so that is their
/// precedence.
pub fn host_env(
    from_flags: BTreeMap<String, Vec<u8>>,
    settings: &Settings,
    targets: &[Target],
) -> Result<BTreeMap<String, Vec<u8>>> {
    let whole = &settings.whole;
    let mut shared = Vec::new();
    if let Some(command) = &whole.env_command {
        shared.extend(env_command(command)?);
        shared.push(b'\n');
    }
    if let Some(file) = &whole.env_file {
        let bytes = std::fs::read(file)
            .with_context(|| format!("deploy.env-file `{file}`: cannot read it"))?;
        shared.extend(bytes);
        shared.push(b'\n');
    }
    let by_role = settings.roles.values().any(|r| r.env_file.is_some());
    if shared.is_empty() && !by_role {
        return Ok(from_flags);
    }
    let mut out = BTreeMap::new();
    for t in targets {
        let mut env = from_flags.get(&t.label).cloned().unwrap_or_default();
        env.push(b'\n');
        for role in settings
            .roles
            .values()
            .filter(|r| r.hosts.contains(&t.label))
        {
            if let Some(file) = &role.env_file {
                let bytes = std::fs::read(file)
                    .with_context(|| format!("a role's env-file `{file}`: cannot read it"))?;
                env.extend(bytes);
                env.push(b'\n');
            }
        }
        env.extend(&shared);
        out.insert(t.label.clone(), env);
    }
    Ok(out)
}
