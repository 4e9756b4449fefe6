//! `cargo release-bundle` (no subcommand): build and bundle each selected package.

use anyhow::Result;

use crate::bundle;
use crate::cli::BundleOpts;
use crate::output::MessageFormat;
use crate::output::Output;

/// 0 when every bundle was written; errors (exit 1) otherwise.
pub fn run(opts: &BundleOpts, shell: &Output) -> Result<u8> {
    bundle::bundle(&opts.request(), shell, &mut |package, plan, bundle| {
        if opts.output.message_format == MessageFormat::Json {
            let mut line = serde_json::json!({
                "reason": "bundle",
                "package": package.name.to_string(),
                "name": plan.name,
                "version": plan.version,
                "profile": opts.profile,
                "target": plan.target,
                "path": bundle.path,
                "sha256": bundle.sha256,
                "size": bundle.size,
                "files": bundle.files,
            });
            if let Some(i) = &bundle.image {
                line["image"] =
                    serde_json::json!({"path": i.path, "digest": i.digest, "size": i.size});
            }
            shell.json(&line);
        }
    })?;
    Ok(0)
}
