//! From the command line and the manifest to the hosts and settings a deploy runs with: finds
//! `[package.metadata.release.deploy]` (through `cargo metadata`, when there is a manifest),
//! merges workspace < package < destination < flags, and makes one [`Target`] per host.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use camino::Utf8PathBuf;

use super::Target;
use super::config::{self, Partial, Settings};
use super::transport::{self, ControlDir, Ssh, Transport};
use crate::config::project::{self, Locate};
use crate::config::{Overrides, TableSource};

/// Where to look for the deploy tables.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub manifest_path: Option<Utf8PathBuf>,
    pub package: Option<String>,
    /// The release being deployed, when known (picks the package in a workspace).
    pub release: Option<String>,
    pub dest: Option<String>,
}

/// The settings, and the release name they were resolved for.
pub struct Resolved {
    pub settings: Settings,
    pub name: Option<String>,
    /// Whether the package's release has `listen` (a keeper), when a package was found.
    pub listen: Option<bool>,
}

fn parse_table(source: &TableSource<'_>) -> Result<config::DeployTable> {
    let mut table = match source.deploy_table() {
        None => return Ok(config::DeployTable::default()),
        Some((value, origin)) => {
            config::parse(value, &origin).map_err(|e| anyhow::anyhow!("{e}"))?
        }
    };
    // An SSH config, hooks and an env file named in the manifest are relative to the
    // manifest, wherever cargo runs.
    let dir = source
        .file
        .parent()
        .map(Utf8PathBuf::from)
        .unwrap_or_default();
    let anchor = |p: &mut Partial| {
        if let Some(c) = &p.ssh_config
            && Utf8PathBuf::from(c).is_relative()
            && !dir.as_str().is_empty()
        {
            p.ssh_config = Some(dir.join(c).to_string());
        }
        if !dir.as_str().is_empty() {
            p.whole = std::mem::take(&mut p.whole).relative_to(&dir);
            for role in p.roles.iter_mut().flat_map(|r| r.values_mut()) {
                if let Some(f) = role
                    .env_file
                    .as_mut()
                    .filter(|f| Utf8PathBuf::from(&**f).is_relative())
                {
                    *f = dir.join(&*f).to_string();
                }
            }
        }
    };
    anchor(&mut table.settings);
    table.destinations.values_mut().for_each(anchor);
    Ok(table)
}

/// The destination named `dest`, or an error listing the known ones.
fn destination(
    destinations: &mut BTreeMap<String, Partial>,
    dest: &str,
    file: &str,
) -> Result<Partial> {
    if let Some(d) = destinations.remove(dest) {
        return Ok(d);
    }
    let known: Vec<&str> = destinations.keys().map(String::as_str).collect();
    bail!(
        "`{file}`: no destination `{dest}` in [package.metadata.release.deploy.destinations] (known: {})",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    );
}

/// Read the deploy tables (none when there is no manifest here and none was named) and merge
/// `flags` over them.
pub fn settings(lookup: &Lookup, flags: Partial) -> Result<Resolved> {
    let locate = Locate {
        manifest_path: lookup.manifest_path.clone(),
        ..Locate::default()
    };
    let found = lookup.manifest_path.is_some() || project::find_manifest(&locate).is_ok();
    let mut name = lookup.release.clone();
    let mut listen = None;
    let mut base = Partial::default();
    let mut destinations: BTreeMap<String, Partial> = BTreeMap::new();
    let mut file = String::from("the manifest");
    if found {
        let ws = project::load(&locate)?;
        file = crate::util::display_path(&ws.root_manifest()).to_string();
        let ws_table = parse_table(&ws.workspace_table())?;
        base = ws_table.settings;
        destinations.extend(ws_table.destinations);
        let overrides = Overrides {
            profile: "release".into(),
            format: None,
        };
        let mut candidates = Vec::new();
        for package in ws.members() {
            if let Some(spec) = &lookup.package
                && package.name.as_str() != spec
            {
                continue;
            }
            let table = ws.package_table(package);
            if !table.has_table() && lookup.package.is_none() {
                continue;
            }
            let loaded =
                crate::config::load(&package.name, &ws.workspace_table(), &table, &overrides)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            let keeps = !loaded.config.launcher.listen.is_empty();
            candidates.push((package, loaded.config.name, keeps));
        }
        if let Some(spec) = &lookup.package
            && candidates.is_empty()
        {
            bail!("`{file}`: no package `{spec}` in this workspace");
        }
        let chosen = match &lookup.release {
            Some(release) => candidates.iter().find(|(_, n, _)| n == release),
            None if candidates.len() == 1 => candidates.first(),
            None => None,
        };
        if let Some((package, release, keeps)) = chosen {
            listen = Some(*keeps);
            let table = ws.package_table(package);
            file = table.file.to_string();
            let pkg = parse_table(&table)?;
            base = base.over(pkg.settings);
            destinations.extend(pkg.destinations);
            name.get_or_insert_with(|| release.clone());
        }
    }
    if let Some(dest) = &lookup.dest {
        base = base.over(destination(&mut destinations, dest, &file)?);
    }
    let merged = base.over(flags);
    if merged.path.is_none() && name.is_none() {
        bail!(
            "no deploy path: pass --path DIR, or set deploy.path in [package.metadata.release.deploy]"
        );
    }
    let settings = merged.resolve(name.as_deref().unwrap_or("release"));
    Ok(Resolved {
        settings,
        name,
        listen,
    })
}

/// What a command acts on: the settings, one target per host, and the directory of their
/// control sockets (removed when this is dropped).
pub struct Hosts {
    pub settings: Settings,
    /// The release the manifest names, when there is one.
    pub name: Option<String>,
    /// Whether that release has `listen`.
    pub listen: Option<bool>,
    pub targets: Vec<Target>,
    _control: ControlDir,
}

/// Resolve the settings and make the targets.
pub fn hosts(lookup: &Lookup, flags: Partial) -> Result<Hosts> {
    let Resolved {
        settings,
        name,
        listen,
    } = settings(lookup, flags)?;
    let control = ControlDir::new()?;
    let targets = targets(&settings, &control)?;
    Ok(Hosts {
        settings,
        name,
        listen,
        targets,
        _control: control,
    })
}

/// One target per host (this machine when there are none), each with its control socket.
pub fn targets(settings: &Settings, control: &ControlDir) -> Result<Vec<Target>> {
    if settings.hosts.is_empty() {
        return Ok(vec![Target {
            label: "local".into(),
            transport: Transport::Local,
            path: settings.path.clone(),
        }]);
    }
    let mut seen = std::collections::BTreeSet::new();
    settings
        .hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            transport::check_destination(host)?;
            if !seen.insert(host.as_str()) {
                bail!("`{host}` is named twice");
            }
            Ok(Target {
                label: host.clone(),
                transport: Transport::Ssh(Ssh {
                    dest: host.clone(),
                    config: settings.ssh_config.clone().map(Utf8PathBuf::from),
                    control: control.socket(i),
                }),
                path: settings.path.clone(),
            })
        })
        .collect()
}

/// `user@machine (pid N)`: who holds a lock, as written into it.
pub fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let host = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".into()
    };
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
            .collect()
    };
    format!("{}@{}", clean(&user), clean(&host))
}

/// Env files for hosts: `FILE` for every host, `HOST=FILE` for one (which wins). Read now,
/// so a missing file fails before anything is locked.
pub fn env_files(specs: &[String], targets: &[Target]) -> Result<BTreeMap<String, Vec<u8>>> {
    env_files_selected(specs, targets, false)
}

/// [`env_files`] when `--role`/`--primary` selected some of the hosts: a `HOST=FILE` for a
/// host left out is skipped (the same flags serve every deploy), not an error.
pub fn env_files_selected(
    specs: &[String],
    targets: &[Target],
    selecting: bool,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut all: Option<Vec<u8>> = None;
    let mut one: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for spec in specs {
        let (host, file) = match spec.split_once('=') {
            Some((h, f)) if targets.iter().any(|t| t.label == h) => (Some(h), f),
            Some((_, f))
                if selecting
                    && !std::path::Path::new(spec).exists()
                    && std::path::Path::new(f).exists() =>
            {
                continue;
            }
            Some((h, _)) if !std::path::Path::new(spec).exists() => {
                bail!("--env-file {spec}: `{h}` is not one of the hosts being deployed to")
            }
            _ => (None, spec.as_str()),
        };
        let bytes =
            std::fs::read(file).with_context(|| format!("`{file}`: cannot read the env file"))?;
        match host {
            Some(h) => {
                one.insert(h.to_string(), bytes);
            }
            None => all = Some(bytes),
        }
    }
    Ok(targets
        .iter()
        .filter_map(|t| {
            one.get(&t.label)
                .or(all.as_ref())
                .map(|b| (t.label.clone(), b.clone()))
        })
        .collect())
}
