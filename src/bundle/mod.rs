//! The bundle pipeline, top to bottom: `prepare` (config → scan → plan for every selected
//! package, nothing built) feeds both `plan` and `bundle`; `bundle` then builds each package
//! and assembles its archive. Commands in [`crate::cmd`] print what it returns.

pub mod assemble;
pub mod compile;
mod environment;
pub mod fixed_root;
pub mod keeper;
pub mod launcher;
pub mod machine_paths;
pub mod plan;
mod prepare;
pub mod rustflags;
pub mod sources;

pub use prepare::{Planned, Prepared, Request, prepare};

use std::time::Instant;

use anyhow::Result;
use cargo_metadata::Package;

use crate::archive;
use crate::archive::manifest::{FORMAT_VERSION, Manifest, Rustc};
use crate::attest::{provenance, sbom};
use crate::config::project;
use crate::output::Output;
use crate::util::display_path;
use environment::Environment;
use machine_paths::MachinePaths;
use plan::BundlePlan;

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

/// Bundle every selected package: prepare them all (nothing is built on bad input), decide
/// the shared build environment once, then build, assemble and attest each in turn. `done`
/// hears of each bundle as it is finished.
pub fn bundle(
    opts: &Request,
    shell: &Output,
    done: &mut dyn FnMut(&Package, &BundlePlan, &assemble::Bundle),
) -> Result<()> {
    // Each bundle's time runs from the end of the previous one (the first from the start,
    // preparation included), so in `--workspace` runs the times add up to the whole run.
    let mut started = Instant::now();
    let mut prepared = prepare(opts, shell)?;
    // A signing key that is not there fails now, before any build, not after the bundle is
    // written (which would leave it unsigned under its final name).
    for p in &prepared.planned {
        if let Some(key) = p.sign_key.as_ref().filter(|k| !k.exists()) {
            anyhow::bail!("{}: no such signing key `{key}`", p.sign_key_from);
        }
    }
    let env = environment::environment(opts, &mut prepared, shell)?;
    let Prepared {
        ws,
        rustc,
        planned,
        out_dir,
        ..
    } = prepared;
    let run = Run {
        opts,
        ws: &ws,
        rustc: &rustc,
        env: &env,
        out_dir: &out_dir,
        shell,
    };
    for p in &planned {
        let (plan, bundle) = run.one(p, started)?;
        started = Instant::now();
        done(&p.package, &plan, &bundle);
    }
    Ok(())
}

/// What every package's bundle shares within one run.
struct Run<'a> {
    opts: &'a Request,
    ws: &'a project::Workspace,
    rustc: &'a Rustc,
    env: &'a Environment,
    out_dir: &'a camino::Utf8Path,
    shell: &'a Output,
}

impl Run<'_> {
    /// One package: build, the SBOM, assemble, its image, provenance and signatures.
    fn one(&self, p: &Planned, started: Instant) -> Result<(BundlePlan, assemble::Bundle)> {
        let (opts, shell) = (self.opts, self.shell);
        let plan = &p.plan;
        shell.status(
            "Bundling",
            format!(
                "{} v{} ({}, {})",
                plan.name, plan.version, opts.profile, plan.target
            ),
        );
        let (artifacts, plan) = self.build(p)?;
        let manifest = self.manifest(p, &plan, &artifacts)?;
        let recorded = manifest.clone();
        let mut bundle = self.assemble(p, &plan, &artifacts, manifest)?;
        if let Some(spec) = &p.image {
            bundle.image = Some(self.image(spec, &bundle, &recorded)?);
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
            p.sign_key.as_deref(),
            opts.signer,
            shell,
        )?;
        self.finished(&bundle, started);
        Ok((plan, bundle))
    }

    /// The dependency graph (for the SBOM), then cargo's build; the plan with its SBOM.
    fn build(&self, p: &Planned) -> Result<(compile::Artifacts, BundlePlan)> {
        let (opts, env, ws) = (self.opts, self.env, self.ws);
        let no_remap = compile::PathRemap::default();
        let remap = if p.reproducible {
            &env.remap
        } else {
            &no_remap
        };
        let features = project::Features {
            features: opts.features.clone(),
            all_features: opts.all_features,
            no_default_features: opts.no_default_features,
        };
        let build = compile::BuildOpts {
            auditable: p.auditable,
            ..env.build.clone()
        };
        // The graph before the build, not beside it: two cargo processes at once wait on
        // each other's package-cache lock, and the build then prints "Blocking waiting for
        // file lock on package cache" on every bundle.
        let graph = project::resolved_graph(&ws.manifest, &p.plan.target, &features, &opts.locate)?;
        let mut artifacts = compile::build(
            &build,
            &env.manifest,
            &p.package,
            &env.package_manifest(&p.package),
            &p.plan.binaries,
            remap,
            self.shell,
        )?;
        if p.plan.keeper {
            let exe = self.keeper(&build, &p.plan.target)?;
            artifacts.executables.insert(keeper::ARTIFACT.into(), exe);
        }
        // After the build, which may have created or updated the lock file.
        let lock_text = std::fs::read_to_string(ws.root().join("Cargo.lock")).unwrap_or_default();
        let bom = sbom::document(
            &graph,
            &p.package.id,
            &sbom::lock_checksums(&lock_text),
            ws.root(),
            env.timestamp.epoch,
            p.auditable,
        )?;
        let mut plan = p.plan.clone();
        plan.set_generated(sbom::SBOM, bom)?;
        Ok((artifacts, plan))
    }

    /// The keeper's executable for `target`: reused when built from the same inputs, else
    /// built (see `bundle::keeper`).
    fn keeper(&self, build: &compile::BuildOpts, target: &str) -> Result<camino::Utf8PathBuf> {
        let dir = self.ws.target_dir.join("release-bundle").join("keeper");
        let rustc = format!("{} {}", self.rustc.release, self.rustc.commit_hash);
        let digest = keeper::inputs_digest(target, build.builder.name(), &rustc);
        if let Some(exe) = keeper::reuse(&dir, &digest) {
            return Ok(exe);
        }
        let manifest = keeper::write_crate(&dir)?;
        let exe = compile::build_keeper(
            build,
            &manifest,
            self.ws.root(),
            keeper::REMAPPED,
            self.shell,
        )?;
        keeper::record(&dir, &digest, &exe)?;
        Ok(exe)
    }

    /// What `MANIFEST.json` records about this bundle (its file list is added as it is
    /// written).
    fn manifest(
        &self,
        p: &Planned,
        plan: &BundlePlan,
        artifacts: &compile::Artifacts,
    ) -> Result<Manifest> {
        let reproducible = if p.reproducible {
            vec![
                rustflags::REMAP_WORKSPACE.into(),
                rustflags::REMAP_CARGO_HOME.into(),
            ]
        } else {
            Vec::new()
        };
        Ok(Manifest {
            format_version: FORMAT_VERSION,
            generator: format!("cargo-release-bundle {}", env!("CARGO_PKG_VERSION")),
            name: plan.name.clone(),
            package: p.package.name.to_string(),
            version: plan.version.clone(),
            profile: self.opts.profile.clone(),
            target: plan.target.clone(),
            top_dir: plan.top_dir.clone(),
            rustc: self.rustc.clone(),
            features: artifacts.features.clone(),
            timestamp: self.env.timestamp.clone(),
            git: self.env.git.clone(),
            cargo_lock_sha256: project::cargo_lock_sha256(self.ws.root())?,
            compression: assemble::compression_info(p.compression),
            path_remap: reproducible,
            allow_paths: p.allow_paths.clone(),
            outside_path_dependencies: self.env.outside_dependencies(self.ws, &p.package),
            files: Vec::new(),
        })
    }

    /// The archive, guarded against this machine's paths, with a progress bar.
    fn assemble(
        &self,
        p: &Planned,
        plan: &BundlePlan,
        artifacts: &compile::Artifacts,
        manifest: Manifest,
    ) -> Result<assemble::Bundle> {
        let machine: Vec<(&str, &'static str)> = self
            .env
            .machine
            .iter()
            .map(|(p, w)| (p.as_str(), *w))
            .collect();
        let guard = assemble::LeakGuard {
            paths: MachinePaths::new(&machine, &p.allow_paths),
            executables: p.reproducible,
        };
        let settings = assemble::WriteSettings {
            compression: p.compression,
            workers: archive::zstd_workers(self.opts.jobs),
            guard: &guard,
        };
        let mut bar = self
            .shell
            .progress(assemble::total_bytes(&p.totals, artifacts));
        let mut progress = |n: u64| {
            if let Some(bar) = bar.as_mut() {
                bar.advance(n);
            }
        };
        assemble::assemble(
            plan,
            artifacts,
            manifest,
            &settings,
            self.out_dir,
            &mut progress,
        )
    }

    /// The OCI image of a bundle, dated and labelled as the bundle is.
    fn image(
        &self,
        spec: &crate::image::Spec,
        bundle: &assemble::Bundle,
        recorded: &Manifest,
    ) -> Result<crate::image::build::Built> {
        let mut spec = spec.clone();
        spec.created = recorded.timestamp.epoch;
        spec.revision = recorded.git.as_ref().map(|g| g.commit.clone());
        let built = crate::image::build::build(&bundle.path, recorded, &spec, self.out_dir)?;
        self.shell.status(
            "Image",
            format!(
                "{} ({}, {})",
                display_path(&built.path),
                human_size(built.size),
                built.digest
            ),
        );
        Ok(built)
    }

    fn finished(&self, bundle: &assemble::Bundle, started: Instant) {
        let shell = self.shell;
        shell.status(
            "Finished",
            format!(
                "{} ({}, {} files) in {:.1}s",
                display_path(&bundle.path),
                human_size(bundle.size),
                bundle.files,
                started.elapsed().as_secs_f64()
            ),
        );
        if let Some(old) = &bundle.replaced {
            shell.warn(format!(
                "{} replaced a bundle of the same version with other bytes (sha256 {old} before, {} now); a host that installed the old one gets this one as <version>+<id> beside it",
                display_path(&bundle.path),
                bundle.sha256
            ));
        }
        shell.status(
            "Next",
            format!("cargo release-bundle verify {}", display_path(&bundle.path)),
        );
        if let Some(peak) = peak_memory() {
            shell.verbose_status(
                "Memory",
                format!("peak resident {peak} (this process, not cargo)"),
            );
        }
    }
}
