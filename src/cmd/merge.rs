//! `cargo release-bundle merge DIR... --out DIR`: gather CI matrix outputs into one place.

use anyhow::Result;

use crate::cli::MergeOpts;
use crate::output::MessageFormat;
use crate::output::Output;
use crate::publish;

/// 0 merged, 1 refused (a bundle failed verification, a duplicate or a version conflict).
pub fn run(opts: &MergeOpts, shell: &Output) -> Result<u8> {
    let gathered = publish::gather(&opts.dirs)?;
    if !gathered.problems.is_empty() {
        for p in &gathered.problems {
            shell.error(p);
        }
        shell.error(format!(
            "refusing to merge: {} problem(s); nothing was written",
            gathered.problems.len()
        ));
        return Ok(1);
    }
    let entries = publish::write(&gathered, &opts.out)?;
    if let Some(key) = &opts.sign_key {
        // SHA256SUMS names every archive with its digest: one signature over it covers them
        // all (`ssh-keygen -Y verify ... -s SHA256SUMS.sig < SHA256SUMS`).
        let sums = opts.out.join("SHA256SUMS");
        let text = std::fs::read_to_string(&sums)
            .map_err(|e| anyhow::anyhow!("`{sums}`: cannot read: {e}"))?;
        let signature = crate::attest::sign::sign(key, &text)?;
        let path = crate::attest::sign::signature_path(&sums);
        crate::util::write_atomically(&path, &signature)?;
        shell.status("Signed", &path);
    }
    if opts.output.message_format == MessageFormat::Json {
        for e in &entries {
            shell.json(&serde_json::json!({"reason": "merged", "bundle": e}));
        }
    }
    shell.status(
        "Merged",
        format!(
            "{} bundle(s) into {} (SHA256SUMS, index.json)",
            entries.len(),
            opts.out
        ),
    );
    Ok(0)
}
