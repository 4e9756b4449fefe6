//! The bundle pipeline, top to bottom: `prepare` (config → scan → plan for every selected
//! package, nothing built) feeds both `plan` and `bundle`; `bundle` then builds each package
//! and assembles its archive. Commands in [`crate::cmd`] print what it returns.

pub mod assemble;
pub mod compile;
pub mod fixed_root;
pub mod launcher;
pub mod machine_paths;
pub mod plan;
pub mod rustflags;
pub mod sources;

use std::time::Instant;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use cargo_metadata::Package;

use crate::archive::Compression;
use crate::archive::Format;
use crate::archive::manifest::FileKind;
use crate::archive::manifest::{FORMAT_VERSION, Manifest};
use crate::attest::{provenance, sbom};
use crate::config::Overrides;
use crate::config::project;
use crate::output::Shell;
use crate::{archive, config, image};
use fixed_root::FixedRoot;
use machine_paths::MachinePaths;
use plan::BundlePlan;

/// What to bundle and how: the library's own request, which `cli` fills from the command
/// line (this module never sees clap types).
#[derive(Debug, Clone)]
pub struct Request {
    pub selection: project::Selection,
    pub locate: project::Locate,
    pub build: compile::BuildOpts,
    pub profile: String,
    pub target: Option<String>,
    pub features: Vec<String>,
    pub all_features: bool,
    pub no_default_features: bool,
    pub jobs: Option<std::num::NonZeroU32>,
    pub out_dir: Option<Utf8PathBuf>,
    pub sign_key: Option<Utf8PathBuf>,
    pub signer: crate::attest::sign::Signer,
    /// Also write the release as an OCI image.
    pub image: bool,
    /// The archive format, when the command line names one.
    pub format: Option<Format>,
    /// Warnings are errors.
    pub strict: bool,
}

/// One package, planned and checked, ready to build.
pub struct Planned {
    pub package: Package,
    pub plan: BundlePlan,
    /// From the checking pass over the plan's entries.
    pub totals: plan::Totals,
    pub compression: Compression,
    pub reproducible: bool,
    /// Built through `cargo auditable`.
    pub auditable: bool,
    pub allow_paths: Vec<String>,
    /// What the OCI image runs, when one is wanted (`--image`, the `image` key).
    pub image: Option<image::Spec>,
    /// The key to sign with (`--sign-key`, the `sign.key` setting).
    pub sign_key: Option<Utf8PathBuf>,
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

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

/// This process's peak resident memory (Linux `VmHWM`), for `-v`.
fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(human_size(kb * 1024))
}

/// Everything decided before building: the workspace, the toolchain, and one plan per package.
pub struct Prepared {
    pub ws: project::Workspace,
    pub rustc: archive::manifest::Rustc,
    /// `rustc --print cfg` for the target, running since preparation began.
    pub cfgs: std::thread::JoinHandle<Result<Vec<cargo_metadata::cargo_platform::Cfg>>>,
    pub target: String,
    pub planned: Vec<Planned>,
    pub out_dir: Utf8PathBuf,
    pub source_date_epoch: Option<String>,
}

/// Config → scan → plan for every selected package. Fails on any configuration problem
/// before anything is built; builds nothing itself.
pub fn prepare(opts: &Request, shell: &Shell) -> Result<Prepared> {
    // Validate what does not depend on the project first: nothing is built on bad input.
    let source_date_epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    if let Some(value) = &source_date_epoch {
        project::parse_source_date_epoch(value)?;
    }
    compile::check_builder(&opts.build.clone())?;
    // `cargo metadata` and `rustc -vV` run side by side (rustc from the manifest's directory,
    // where rustup finds the same toolchain file).
    let locate = opts.locate.clone();
    let manifest_dir = project::find_manifest(&locate)
        .ok()
        .and_then(|m| m.parent().map(Utf8Path::to_owned))
        .unwrap_or_else(|| Utf8PathBuf::from("."));
    let (ws, rustc) = side_by_side(|| project::load(&locate), || project::rustc(&manifest_dir));
    let ws = ws?;
    let rustc = rustc?;
    // The target's cfgs (for finding rustflags) while the trees are walked and checked.
    let cfgs = {
        let (dir, target) = (
            ws.root().to_owned(),
            opts.target.clone().unwrap_or_else(|| rustc.host.clone()),
        );
        std::thread::spawn(move || project::rustc_cfgs(&dir, &target))
    };
    project::check_profile(&ws, &opts.profile)?;
    let packages = project::select(&ws, &opts.selection)?;
    let target = opts.target.clone().unwrap_or_else(|| rustc.host.clone());
    let overrides = Overrides {
        profile: opts.profile.clone(),
        format: opts.format,
    };

    // Config → scan → plan for every package before anything is built.
    let mut planned = Vec::new();
    for &package in &packages {
        let loaded = config::load(
            &package.name,
            &ws.workspace_table(),
            &ws.package_table(package),
            &overrides,
        )?;
        for warning in &loaded.warnings {
            if opts.strict {
                bail!(
                    "{}\nnote: `--strict` turns configuration warnings into errors",
                    warning.as_error()
                );
            }
            shell.warn(warning);
        }
        // Cargo gives a package without `version` 0.0.0; releases are told apart by version.
        if package.version.to_string() == "0.0.0" {
            shell.warn(format!(
                "`{}`: package `{}` has version 0.0.0 (is `version` missing from [package]?); every bundle of it will be {} 0.0.0",
                crate::util::display_path(&package.manifest_path),
                package.name,
                package.name
            ));
        }
        let root = package.manifest_path.parent().unwrap_or(ws.root());
        let sources = sources::scan(root, ws.root(), &ws.target_dir, &loaded.config)?;
        let facts = plan::PackageFacts {
            name: package.name.to_string(),
            version: package.version.to_string(),
            manifest: crate::util::display_path(&package.manifest_path),
            bin_targets: project::bin_targets(package),
        };
        let mut plan = plan::plan(&facts, &loaded.config, sources, &target)?;
        // Its place in the bundle now (so `plan` shows it and conflicts show before the
        // build); its content once the build has resolved the features.
        plan.add_generated(sbom::SBOM, Vec::new(), FileKind::Sbom)?;
        let totals = plan.check(&sources::walk)?;
        // The top directory, the planned entries, MANIFEST.json and SHA256SUMS.
        crate::verify::within_entry_limit(totals.entries as u64 + 3).map_err(|e| {
            anyhow::anyhow!("{}: {e}", crate::util::display_path(&package.manifest_path))
        })?;
        let compression = Compression {
            format: loaded.config.format,
            level: loaded.config.compression_level,
        };
        shell.verbose_status("Config", format!("{}: {}", package.name, loaded.config));
        shell.verbose_status(
            "Planned",
            format!(
                "{}: {} entries, {} bytes of package files (plus the executables once built)",
                package.name, totals.entries, totals.bytes
            ),
        );
        if loaded.config.auditable {
            compile::check_auditable(&opts.build.clone())?;
        }
        let release = image::Release {
            name: &plan.name,
            version: &plan.version,
            target: &plan.target,
            main: plan.main.as_deref(),
        };
        let image = image::spec_for(&ws, package, &loaded.config, &release, opts.image)?;
        let sign_key = match &opts.sign_key {
            Some(k) => Some(k.clone()),
            None => crate::attest::sign::configured_key(&ws, package)?,
        };
        planned.push(Planned {
            package: package.clone(),
            plan,
            totals,
            compression,
            reproducible: loaded.config.reproducible,
            auditable: loaded.config.auditable,
            allow_paths: loaded.config.allow_paths.clone(),
            image,
            sign_key,
        });
    }

    let out_dir = match &opts.out_dir {
        Some(dir) => dir.clone(),
        None => ws.target_dir.join("release-bundle").join(&opts.profile),
    };
    let out_dir = std::path::absolute(&out_dir)
        .ok()
        .and_then(|p| Utf8PathBuf::from_path_buf(p).ok())
        .unwrap_or(out_dir);
    Ok(Prepared {
        ws,
        rustc,
        cfgs,
        target,
        planned,
        out_dir,
        source_date_epoch,
    })
}

/// `here` on this thread while `there` runs on another (never two cargo processes: they
/// contend for cargo's locks); both results.
fn side_by_side<A, B: Send>(here: impl FnOnce() -> A, there: impl FnOnce() -> B + Send) -> (A, B) {
    std::thread::scope(|scope| {
        let there = scope.spawn(there);
        let a = here();
        let b = there
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (a, b)
    })
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

/// Validate everything, then build and bundle each selected package, handing each finished
/// bundle to `done`.
pub fn bundle(
    opts: &Request,
    shell: &Shell,
    done: &mut dyn FnMut(&Package, &BundlePlan, &assemble::Bundle),
) -> Result<()> {
    // Each bundle's time runs from the end of the previous one (the first from the start,
    // preparation included), so in `--workspace` runs the times add up to the whole run.
    let mut started = Instant::now();
    let Prepared {
        ws,
        rustc,
        cfgs,
        target,
        planned,
        out_dir,
        source_date_epoch,
    } = prepare(opts, shell)?;
    let git = project::git(ws.root(), &[&ws.target_dir, &out_dir]);
    // A workspace inside a larger repository with path dependencies elsewhere in it is built
    // through a fixed path, so those dependencies' paths are the same in every checkout.
    let repo = git
        .as_ref()
        .and_then(|(g, _)| repository_root(ws.root(), &g.workspace));
    let needs_fixed = repo.as_deref().is_some_and(|r| {
        planned.iter().any(|p| {
            let outside = path_dependencies_outside(&ws, &p.package, None).len();
            p.reproducible && path_dependencies_outside(&ws, &p.package, Some(r)).len() < outside
        })
    });
    let fixed = match (&repo, needs_fixed) {
        (Some(r), true) => Some(FixedRoot::acquire(r)?),
        _ => None,
    };
    let covered = fixed.as_ref().and(repo.as_deref());
    let selected: Vec<&Package> = planned.iter().map(|p| &p.package).collect();
    for warning in reproducibility_warnings(&ws, &selected, git.as_ref().map(|(g, _)| g), covered) {
        if opts.strict {
            bail!("{warning}\nnote: `--strict` turns warnings into errors");
        }
        shell.warn(warning);
    }
    let remap = if planned.iter().any(|p| p.reproducible) {
        let cargo_home = crate::config::project::cargo_home().context(
            "cannot find CARGO_HOME (set CARGO_HOME or HOME), needed to remap its paths",
        )?;
        let cfgs = cfgs
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
        let cwd = Utf8PathBuf::from_path_buf(
            std::env::current_dir().context("cannot read the working directory")?,
        )
        .map_err(|p| anyhow::anyhow!("`{}`: working directory is not UTF-8", p.display()))?;
        let sources = rustflags::discover(&cwd, Some(&cargo_home), &target, &cfgs, &env)?;
        let mut pairs = rustflags::remaps(ws.root(), &cargo_home);
        let through = fixed.as_ref().and_then(|f| f.through(ws.root()));
        if let (Some(f), Some(through)) = (&fixed, &through) {
            pairs.push((f.path(), rustflags::REMAP_REPO));
            pairs.push((through, rustflags::REMAP_WORKSPACE));
        }
        // The repository's own root, resolved as the kernel resolves rustc's working
        // directory (debug info records it as DW_AT_comp_dir, whatever path cargo used).
        let resolved: Vec<Utf8PathBuf> = [repo.as_deref(), Some(ws.root())]
            .into_iter()
            .flatten()
            .filter_map(|p| p.canonicalize_utf8().ok())
            .collect();
        if let (Some(r), Some(w)) = (repo.as_deref(), resolved.last()) {
            if let Some(rr) = resolved.first().filter(|rr| rr.as_path() != r) {
                pairs.push((rr, rustflags::REMAP_REPO));
            }
            if w.as_path() != ws.root() {
                pairs.push((w, rustflags::REMAP_WORKSPACE));
            }
        }
        compile::PathRemap::new(&sources, &target, &pairs)
    } else {
        compile::PathRemap::default()
    };
    let mut build_opts = opts.build.clone();
    // The remapping flags are part of the build's flags: in cargo's own target directory they
    // would make the next plain `cargo build` rebuild everything (and the other way round).
    // Unless `--target-dir` says otherwise, bundles build in a directory of their own, so
    // both stay warm. (Through the fixed path, cargo would also put its target directory
    // there.)
    if build_opts.target_dir.is_none() && (remap.injection.is_some() || fixed.is_some()) {
        build_opts.target_dir = Some(ws.target_dir.join("release-bundle").join("cargo"));
    }
    let build_manifest = match &fixed {
        Some(f) => f
            .through(&ws.manifest)
            .unwrap_or_else(|| ws.manifest.clone()),
        None => ws.manifest.clone(),
    };
    // This machine's paths, which no shipped file may hold.
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo_home = crate::config::project::cargo_home()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let repo_root = repo.as_ref().map(|r| r.to_string()).unwrap_or_default();
    let machine: Vec<(&str, &'static str)> = vec![
        (ws.root().as_str(), "the workspace root"),
        (repo_root.as_str(), "the repository root"),
        (ws.target_dir.as_str(), "the target directory"),
        (cargo_home.as_str(), "CARGO_HOME"),
        (home.as_str(), "your HOME"),
    ];
    let timestamp =
        project::timestamp(source_date_epoch.as_deref(), git.as_ref().map(|(_, t)| *t))?;
    for Planned {
        package,
        plan,
        totals,
        compression,
        reproducible,
        auditable,
        allow_paths,
        image,
        sign_key,
    } in &planned
    {
        shell.status(
            "Bundling",
            format!(
                "{} v{} ({}, {})",
                plan.name, plan.version, opts.profile, plan.target
            ),
        );
        let no_remap = compile::PathRemap::default();
        let remap_for = if *reproducible { &remap } else { &no_remap };
        let package_manifest = fixed
            .as_ref()
            .and_then(|f| f.through(&package.manifest_path))
            .unwrap_or_else(|| package.manifest_path.clone());
        // The dependency graph for the SBOM resolves while cargo builds (both only read the
        // lock file when it is up to date; cargo serialises any update).
        let features = project::Features {
            features: opts.features.clone(),
            all_features: opts.all_features,
            no_default_features: opts.no_default_features,
        };
        let locate = opts.locate.clone();
        let package_opts = compile::BuildOpts {
            auditable: *auditable,
            ..build_opts.clone()
        };
        // The graph before the build, not beside it: two cargo processes at once wait on
        // each other's package-cache lock, and the build then prints "Blocking waiting for
        // file lock on package cache" on every bundle.
        let graph = project::resolved_graph(&ws.manifest, &plan.target, &features, &locate)?;
        let artifacts = compile::build(
            &package_opts,
            &build_manifest,
            package,
            &package_manifest,
            &plan.binaries,
            remap_for,
            shell,
        )?;
        // After the build, which may have created or updated the lock file.
        let cargo_lock = project::cargo_lock_sha256(ws.root())?;
        let lock_text = std::fs::read_to_string(ws.root().join("Cargo.lock")).unwrap_or_default();
        let bom = sbom::document(
            &graph,
            &package.id,
            &sbom::lock_checksums(&lock_text),
            ws.root(),
            timestamp.epoch,
            *auditable,
        )?;
        let mut plan = plan.clone();
        plan.set_generated(sbom::SBOM, bom)?;
        let plan = &plan;
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            generator: format!("cargo-release-bundle {}", env!("CARGO_PKG_VERSION")),
            name: plan.name.clone(),
            package: package.name.to_string(),
            version: plan.version.clone(),
            profile: opts.profile.clone(),
            target: plan.target.clone(),
            top_dir: plan.top_dir.clone(),
            rustc: rustc.clone(),
            features: artifacts.features.clone(),
            timestamp: timestamp.clone(),
            git: git.as_ref().map(|(g, _)| g.clone()),
            cargo_lock_sha256: cargo_lock,
            compression: assemble::compression_info(*compression),
            path_remap: if *reproducible {
                vec![
                    rustflags::REMAP_WORKSPACE.into(),
                    rustflags::REMAP_CARGO_HOME.into(),
                ]
            } else {
                Vec::new()
            },
            allow_paths: allow_paths.clone(),
            outside_path_dependencies: path_dependencies_outside(&ws, package, covered),
            files: Vec::new(),
        };
        let mut bar = shell.progress(assemble::total_bytes(totals, &artifacts));
        let mut progress = |n: u64| {
            if let Some(bar) = bar.as_mut() {
                bar.advance(n);
            }
        };
        let guard = assemble::Guard {
            paths: MachinePaths::new(&machine, allow_paths),
            executables: *reproducible,
        };
        let settings = assemble::Settings {
            compression: *compression,
            workers: archive::zstd_workers(opts.jobs),
            guard: &guard,
        };
        let recorded = manifest.clone();
        let bundle = assemble::assemble(
            plan,
            &artifacts,
            manifest,
            &settings,
            &out_dir,
            &mut progress,
        )?;
        drop(bar);
        let mut bundle = bundle;
        if let Some(spec) = image {
            let mut spec = spec.clone();
            spec.created = recorded.timestamp.epoch;
            spec.revision = recorded.git.as_ref().map(|g| g.commit.clone());
            let built = image::build::build(&bundle.path, &recorded, &spec, &out_dir)?;
            shell.status(
                "Image",
                format!(
                    "{} ({}, {})",
                    crate::util::display_path(&built.path),
                    human_size(built.size),
                    built.digest
                ),
            );
            bundle.image = Some(built);
        }
        let image = bundle.image.as_ref().map(|i| provenance::ImageFile {
            path: &i.path,
            digest: &i.digest,
            base_digest: i.base_digest.as_deref(),
        });
        provenance::attest(
            (&bundle.path, &bundle.sha256),
            image,
            &recorded,
            sign_key.as_deref(),
            opts.signer,
            shell,
        )?;
        shell.status(
            "Finished",
            format!(
                "{} ({}, {} files) in {:.1}s",
                crate::util::display_path(&bundle.path),
                human_size(bundle.size),
                bundle.files,
                started.elapsed().as_secs_f64()
            ),
        );
        started = Instant::now();
        shell.status(
            "Next",
            format!(
                "cargo release-bundle verify {}",
                crate::util::display_path(&bundle.path)
            ),
        );
        if let Some(peak) = peak_memory() {
            shell.verbose_status(
                "Memory",
                format!("peak resident {peak} (this process, not cargo)"),
            );
        }
        done(package, plan, &bundle);
    }
    Ok(())
}
