//! Preparing a run: the request checked, the workspace and toolchain read, and config → scan
//! → plan for every selected package, so that everything that can be wrong with the input is
//! found before `cargo build` runs. Builds nothing.

use anyhow::{Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use cargo_metadata::Package;

use super::plan::{self, BundlePlan};
use super::{compile, sources};
use crate::archive::manifest::FileKind;
use crate::archive::{self, Compression, Format};
use crate::attest::sbom;
use crate::config::{self, Overrides, project};
use crate::image;
use crate::output::Output;

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
    /// Where that key was named: the flag, or the file and table that set it.
    pub sign_key_from: String,
}

/// Everything decided before building: the workspace, the toolchain, and one plan per package.
pub struct Prepared {
    pub ws: project::Workspace,
    pub rustc: archive::manifest::Rustc,
    /// `rustc --print cfg` for the target, running since preparation began.
    /// (Taken by the build environment, which is the one to wait for it.)
    pub cfgs: Option<std::thread::JoinHandle<Result<Vec<cargo_metadata::cargo_platform::Cfg>>>>,
    pub target: String,
    pub planned: Vec<Planned>,
    pub out_dir: Utf8PathBuf,
    pub source_date_epoch: Option<String>,
}

/// Config → scan → plan for every selected package. Fails on any configuration problem
/// before anything is built; builds nothing itself.
pub fn prepare(opts: &Request, shell: &Output) -> Result<Prepared> {
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
        Some(std::thread::spawn(move || {
            project::rustc_cfgs(&dir, &target)
        }))
    };
    project::check_profile(&ws, &opts.profile)?;
    let packages = project::select(&ws, &opts.selection)?;
    let target = opts.target.clone().unwrap_or_else(|| rustc.host.clone());
    let overrides = Overrides {
        profile: opts.profile.clone(),
        format: opts.format,
    };

    // Config → scan → plan for every package before anything is built.
    let planned = packages
        .iter()
        .map(|package| plan_package(opts, &ws, package, &overrides, &target, shell))
        .collect::<Result<Vec<_>>>()?;

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

/// One package: its config (warnings printed, or errors with `--strict`), scan, plan and a
/// checking pass over every planned entry; its image and signing key.
fn plan_package(
    opts: &Request,
    ws: &project::Workspace,
    package: &Package,
    overrides: &Overrides,
    target: &str,
    shell: &Output,
) -> Result<Planned> {
    let loaded = config::load(
        &package.name,
        &ws.workspace_table(),
        &ws.package_table(package),
        overrides,
    )?;
    report_warnings(&loaded.warnings, opts.strict, shell)?;
    let shown = crate::util::display_path(&package.manifest_path);
    // Cargo gives a package without `version` 0.0.0; releases are told apart by version.
    if package.version.to_string() == "0.0.0" {
        shell.warn(format!(
            "`{shown}`: package `{}` has version 0.0.0 (is `version` missing from [package]?); every bundle of it will be {} 0.0.0",
            package.name, package.name
        ));
    }
    let root = package.manifest_path.parent().unwrap_or(ws.root());
    let sources = sources::scan(root, ws.root(), &ws.target_dir, &loaded.config)?;
    let facts = plan::PackageFacts {
        name: package.name.to_string(),
        version: package.version.to_string(),
        manifest: shown.clone(),
        bin_targets: project::bin_targets(package),
    };
    let mut plan = plan::plan(&facts, &loaded.config, sources, target)?;
    // Its place in the bundle now (so `plan` shows it and conflicts show before the build);
    // its content once the build has resolved the features.
    plan.add_generated(sbom::SBOM, Vec::new(), FileKind::Sbom)?;
    let totals = plan.check(&sources::walk)?;
    // The top directory, the planned entries, MANIFEST.json and SHA256SUMS.
    crate::verify::within_entry_limit(totals.entries as u64 + 3)
        .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    report_planned(shell, package, &loaded.config, &totals);
    if loaded.config.auditable {
        compile::check_auditable(&opts.build)?;
    }
    let release = image::Release {
        name: &plan.name,
        version: &plan.version,
        target: &plan.target,
        main: plan.main.as_deref(),
    };
    let image = image::spec_for(
        ws,
        package,
        &loaded.config,
        &release,
        &opts.profile,
        opts.image,
    )?;
    let (sign_key, sign_key_from) = signing_key(opts, ws, package)?;
    let config = loaded.config;
    Ok(Planned {
        package: package.clone(),
        plan,
        totals,
        compression: Compression {
            format: config.format,
            level: config.compression_level,
        },
        reproducible: config.reproducible,
        auditable: config.auditable,
        allow_paths: config.allow_paths,
        image,
        sign_key,
        sign_key_from,
    })
}

/// The key to sign with and where it was named: `--sign-key`, else the `sign` table.
fn signing_key(
    opts: &Request,
    ws: &project::Workspace,
    package: &Package,
) -> Result<(Option<Utf8PathBuf>, String)> {
    if let Some(k) = &opts.sign_key {
        return Ok((Some(k.clone()), "--sign-key".to_string()));
    }
    let configured = crate::attest::sign::configured_key(ws, package, &opts.profile)?;
    Ok(match configured {
        Some((key, origin)) => (Some(key), origin),
        None => (None, String::new()),
    })
}

/// Configuration warnings: printed, or with `--strict` the first is an error.
fn report_warnings(warnings: &[config::ConfigWarning], strict: bool, shell: &Output) -> Result<()> {
    for warning in warnings {
        if strict {
            bail!(
                "{}\nnote: `--strict` turns configuration warnings into errors",
                warning.as_error()
            );
        }
        shell.warn(warning);
    }
    Ok(())
}

/// With `-v`: the resolved config and what the plan holds.
fn report_planned(
    shell: &Output,
    package: &Package,
    config: &config::ReleaseConfig,
    totals: &plan::Totals,
) {
    shell.verbose_status("Config", format!("{}: {config}", package.name));
    shell.verbose_status(
        "Planned",
        format!(
            "{}: {} entries, {} bytes of package files (plus the executables once built)",
            package.name, totals.entries, totals.bytes
        ),
    );
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
