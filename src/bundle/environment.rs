//! The build environment every package of a run shares: git facts, a fixed build path for a
//! workspace inside a larger repository, the path remapping that keeps executables
//! independent of where they were built, cargo's target directory, and this machine's paths
//! that no shipped file may hold.

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use cargo_metadata::Package;

use super::compile::{self, PathRemap};
use super::fixed_root::FixedRoot;
use super::prepare::{Planned, Prepared, Request};
use super::rustflags;
use crate::archive;
use crate::archive::manifest::{Git, Timestamp};
use crate::config::project;
use crate::output::Output;

/// What every package's build shares.
pub struct Environment {
    pub git: Option<Git>,
    pub timestamp: Timestamp,
    /// Held while building: the monorepo's fixed build path.
    pub fixed: Option<FixedRoot>,
    /// The repository root when a fixed path covers it (path dependencies there are fine).
    pub covered: Option<Utf8PathBuf>,
    pub remap: PathRemap,
    pub build: compile::BuildOpts,
    /// The manifest cargo is given (through the fixed path when there is one).
    pub manifest: Utf8PathBuf,
    /// This machine's paths, with what each is.
    pub machine: Vec<(String, &'static str)>,
}

impl Environment {
    /// The build manifest of `package`, through the fixed path when there is one.
    pub fn package_manifest(&self, package: &Package) -> Utf8PathBuf {
        self.fixed
            .as_ref()
            .and_then(|f| f.through(&package.manifest_path))
            .unwrap_or_else(|| package.manifest_path.clone())
    }

    /// The outside path dependencies a manifest records for `package`.
    pub fn outside_dependencies(&self, ws: &project::Workspace, package: &Package) -> Vec<String> {
        path_dependencies_outside(ws, package, self.covered.as_deref())
    }
}

/// Decide the shared environment once, after preparation.
pub fn environment(opts: &Request, prepared: &mut Prepared, shell: &Output) -> Result<Environment> {
    let (ws, planned, target) = (&prepared.ws, &prepared.planned, &prepared.target);
    let out_dir = &prepared.out_dir;
    let source_date_epoch = prepared.source_date_epoch.as_deref();
    let git = project::git(ws.root(), &[&ws.target_dir, out_dir]);
    let repo = git
        .as_ref()
        .and_then(|(g, _)| repository_root(ws.root(), &g.workspace));
    let fixed = fixed_root(ws, planned, repo.as_deref())?;
    let covered = fixed.as_ref().and(repo.clone());
    let selected: Vec<&Package> = planned.iter().map(|p| &p.package).collect();
    let g = git.as_ref().map(|(g, _)| g);
    for warning in reproducibility_warnings(ws, &selected, g, covered.as_deref()) {
        if opts.strict {
            bail!("{warning}\nnote: `--strict` turns warnings into errors");
        }
        shell.warn(warning);
    }
    let remap = if planned.iter().any(|p| p.reproducible) {
        let cfgs = match prepared.cfgs.take() {
            Some(cfgs) => cfgs
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
            None => Vec::new(),
        };
        remapping(ws, fixed.as_ref(), repo.as_deref(), target, &cfgs)?
    } else {
        PathRemap::default()
    };
    let mut build = opts.build.clone();
    // The remapping flags are part of the build's flags: in cargo's own target directory they
    // would make the next plain `cargo build` rebuild everything (and the other way round).
    // Unless `--target-dir` says otherwise, bundles build in a directory of their own, so
    // both stay warm. (Through the fixed path, cargo would also put its target directory
    // there.)
    if build.target_dir.is_none() && (remap.injection.is_some() || fixed.is_some()) {
        build.target_dir = Some(ws.target_dir.join("release-bundle").join("cargo"));
    }
    let manifest = match &fixed {
        Some(f) => f
            .through(&ws.manifest)
            .unwrap_or_else(|| ws.manifest.clone()),
        None => ws.manifest.clone(),
    };
    let timestamp = project::timestamp(source_date_epoch, git.as_ref().map(|(_, t)| *t))?;
    Ok(Environment {
        machine: machine_paths(ws, repo.as_deref()),
        git: git.map(|(g, _)| g),
        timestamp,
        fixed,
        covered,
        remap,
        build,
        manifest,
    })
}

/// A workspace inside a larger repository with path dependencies elsewhere in it is built
/// through a fixed path, so those dependencies' paths are the same in every checkout.
fn fixed_root(
    ws: &project::Workspace,
    planned: &[Planned],
    repo: Option<&Utf8Path>,
) -> Result<Option<FixedRoot>> {
    let Some(r) = repo else {
        return Ok(None);
    };
    let needs = planned.iter().any(|p| {
        let outside = path_dependencies_outside(ws, &p.package, None).len();
        p.reproducible && path_dependencies_outside(ws, &p.package, Some(r)).len() < outside
    });
    if needs {
        Ok(Some(FixedRoot::acquire(r)?))
    } else {
        Ok(None)
    }
}

/// The `--remap-path-prefix` pairs, added where the user's rustflags source stays in force.
fn remapping(
    ws: &project::Workspace,
    fixed: Option<&FixedRoot>,
    repo: Option<&Utf8Path>,
    target: &str,
    cfgs: &[cargo_metadata::cargo_platform::Cfg],
) -> Result<PathRemap> {
    let cargo_home = project::cargo_home()
        .context("cannot find CARGO_HOME (set CARGO_HOME or HOME), needed to remap its paths")?;
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let cwd = Utf8PathBuf::from_path_buf(
        std::env::current_dir().context("cannot read the working directory")?,
    )
    .map_err(|p| anyhow::anyhow!("`{}`: working directory is not UTF-8", p.display()))?;
    let sources = rustflags::discover(&cwd, Some(&cargo_home), target, cfgs, &env)?;
    let mut pairs = rustflags::remaps(ws.root(), &cargo_home);
    let through = fixed.and_then(|f| f.through(ws.root()));
    if let (Some(f), Some(through)) = (fixed, &through) {
        pairs.push((f.path(), rustflags::REMAP_REPO));
        pairs.push((through, rustflags::REMAP_WORKSPACE));
    }
    // The repository's own root, resolved as the kernel resolves rustc's working directory
    // (debug info records it as DW_AT_comp_dir, whatever path cargo used).
    let resolved: Vec<Utf8PathBuf> = [repo, Some(ws.root())]
        .into_iter()
        .flatten()
        .filter_map(|p| p.canonicalize_utf8().ok())
        .collect();
    if let (Some(r), Some(w)) = (repo, resolved.last()) {
        if let Some(rr) = resolved.first().filter(|rr| rr.as_path() != r) {
            pairs.push((rr, rustflags::REMAP_REPO));
        }
        if w.as_path() != ws.root() {
            pairs.push((w, rustflags::REMAP_WORKSPACE));
        }
    }
    Ok(PathRemap::new(&sources, target, &pairs))
}

/// This machine's paths, which no shipped file may hold.
fn machine_paths(ws: &project::Workspace, repo: Option<&Utf8Path>) -> Vec<(String, &'static str)> {
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo_home = project::cargo_home()
        .map(|h| h.to_string())
        .unwrap_or_default();
    vec![
        (ws.root().to_string(), "the workspace root"),
        (
            repo.map(|r| r.to_string()).unwrap_or_default(),
            "the repository root",
        ),
        (ws.target_dir.to_string(), "the target directory"),
        (cargo_home, "CARGO_HOME"),
        (home, "your HOME"),
    ]
}

/// Whether a path dependency at `path` makes the build depend on where it is checked out:
/// outside the workspace, and outside `covered` (the repository built through a fixed path).
fn outside(ws: &project::Workspace, covered: Option<&Utf8Path>, path: &Utf8Path) -> bool {
    !path.starts_with(ws.root()) && covered.is_none_or(|r| !path.starts_with(r))
}

/// Warnings about what makes a bundle impossible to rebuild bit for bit elsewhere.
fn reproducibility_warnings(
    ws: &project::Workspace,
    packages: &[&Package],
    git: Option<&archive::manifest::Git>,
    covered: Option<&Utf8Path>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(g) = git.filter(|g| g.dirty) {
        out.push(format!(
            "`{}`: the git work tree has uncommitted changes, so this bundle cannot be rebuilt from commit {}",
            crate::util::display_path(ws.root()),
            &g.commit[..g.commit.len().min(12)]
        ));
    }
    for package in packages {
        for dep in &package.dependencies {
            if let Some(path) = dep.path.as_ref().filter(|p| outside(ws, covered, p)) {
                out.push(format!(
                    "`{}`: path dependency `{}` at `{path}` is outside the workspace; its absolute path enters symbol names, so the executables depend on where it is checked out",
                    crate::util::display_path(&package.manifest_path),
                    dep.name
                ));
            }
        }
    }
    out
}

/// The names of `package`'s path dependencies outside the workspace (and outside `covered`,
/// the repository built through a fixed path), sorted.
fn path_dependencies_outside(
    ws: &project::Workspace,
    package: &Package,
    covered: Option<&Utf8Path>,
) -> Vec<String> {
    let mut names: Vec<String> = package
        .dependencies
        .iter()
        .filter(|d| d.path.as_ref().is_some_and(|p| outside(ws, covered, p)))
        .map(|d| d.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The root of the git repository holding the workspace at `root`, `prefix` (git's
/// `--show-prefix`) below it; `None` when the workspace is the repository's root.
fn repository_root(root: &Utf8Path, prefix: &str) -> Option<Utf8PathBuf> {
    if prefix.is_empty() {
        return None;
    }
    let depth = prefix.split('/').filter(|c| !c.is_empty()).count();
    let mut repo = root;
    for _ in 0..depth {
        repo = repo.parent()?;
    }
    Some(repo.to_owned())
}
