//! `cargo release-bundle plan`: print what each bundle would contain, without building.

use anyhow::Result;

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
            let head = serde_json::json!({
                "reason": "plan",
                "package": package.name.to_string(),
                "name": plan.name,
                "version": plan.version,
                "profile": opts.profile,
                "target": plan.target,
                "path": path,
                "top_dir": plan.top_dir,
                "binaries": plan.binaries,
            });
            // Entries are serialized as they are listed: a plan of a million files is never
            // held in memory.
            let entries = plan.entries(&sources::walk).map(|e| {
                let e = e?;
                let (kind, source) = plan::describe(&e);
                let mode = format!("{:04o}", e.mode);
                Ok(serde_json::json!({"path": e.path, "mode": mode, "kind": kind, "source": source}))
            });
            shell.json_with_list(&head, "entries", entries)?;
            continue;
        }
        shell.out(format!(
            "{} {} -> {}",
            plan.name,
            plan.version,
            crate::util::display_path(&path)
        ));
        shell.out(format!(
            "  builds: {} (package `{}`, profile `{}`, target {})",
            plan.binaries.join(", "),
            package.name,
            opts.profile,
            plan.target
        ));
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
                "  {:04o} {:<10} {}/{}{from}",
                e.mode, kind, plan.top_dir, e.path
            ));
        }
        shell.out(format!(
            "  0644 {:<10} {}/{}, {}/{}  <- generated",
            "metadata",
            plan.top_dir,
            archive::MANIFEST,
            plan.top_dir,
            archive::SHA256SUMS
        ));
    }
    Ok(0)
}
