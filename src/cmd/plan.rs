//! `cargo release-bundle plan`: print what each bundle would contain, without building.

use anyhow::Result;
use camino::Utf8Path;
use cargo_metadata::Package;

use crate::archive;
use crate::bundle::{self, Planned};
use crate::bundle::{plan, sources};
use crate::cli::BundleOpts;
use crate::output::MessageFormat;
use crate::output::Output;

/// `plan`: what the bundles would contain, without building. 0 on success.
pub fn run(opts: &BundleOpts, shell: &Output) -> Result<u8> {
    let p = bundle::prepare(&opts.request(), shell)?;
    for Planned { package, plan, .. } in &p.planned {
        let path = p.out_dir.join(&plan.file_name);
        if opts.output.message_format == MessageFormat::Json {
            print_json(package, plan, &opts.profile, &path, shell)?;
        } else {
            print_human(package, plan, &opts.profile, &path, shell)?;
        }
    }
    Ok(0)
}

/// One `plan` message; its entries are serialized as they are listed, so a plan of a million
/// files is never held in memory.
fn print_json(
    package: &Package,
    plan: &plan::BundlePlan,
    profile: &str,
    path: &Utf8Path,
    shell: &Output,
) -> Result<()> {
    let head = serde_json::json!({
        "reason": "plan",
        "package": package.name.to_string(),
        "name": plan.name,
        "version": plan.version,
        "profile": profile,
        "target": plan.target,
        "path": path,
        "top_dir": plan.top_dir,
        "binaries": plan.binaries,
    });
    let entries = plan.entries(&sources::walk).map(|e| {
        let e = e?;
        let (kind, source) = plan::describe(&e);
        let mode = format!("{:04o}", e.mode);
        Ok(serde_json::json!({"path": e.path, "mode": mode, "kind": kind, "source": source}))
    });
    shell.json_with_list(&head, "entries", entries)
}

/// The bundle, what it builds, then one line per entry with where it comes from.
fn print_human(
    package: &Package,
    plan: &plan::BundlePlan,
    profile: &str,
    path: &Utf8Path,
    shell: &Output,
) -> Result<()> {
    let (name, version) = (&plan.name, &plan.version);
    shell.out(format!(
        "{name} {version} -> {}",
        crate::util::display_path(path)
    ));
    let binaries = plan.binaries.join(", ");
    let (package, target) = (&package.name, &plan.target);
    shell.out(format!(
        "  builds: {binaries} (package `{package}`, profile `{profile}`, target {target})"
    ));
    let top = &plan.top_dir;
    for e in plan.entries(&sources::walk) {
        let e = e?;
        let (kind, source) = plan::describe(&e);
        let source = match &e.content {
            plan::Content::File { source, .. } => crate::util::display_path(source).to_string(),
            _ => source,
        };
        let from = if source.is_empty() {
            String::new()
        } else {
            format!("  <- {source}")
        };
        shell.out(format!(
            "  {:04o} {kind:<10} {top}/{}{from}",
            e.mode, e.path
        ));
    }
    let (manifest, sums) = (archive::MANIFEST, archive::SHA256SUMS);
    let metadata = "metadata";
    shell.out(format!(
        "  0644 {metadata:<10} {top}/{manifest}, {top}/{sums}  <- generated"
    ));
    Ok(())
}
