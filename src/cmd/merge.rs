//! `cargo release-bundle merge DIR... --out DIR`: gather CI matrix outputs into one place.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use crate::attest::sign::{self, Signer};
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
        let path = sign_sums(&opts.out.join("SHA256SUMS"), key, opts.signer)?;
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

/// One signature over the merged SHA256SUMS, which names every archive with its digest: an
/// SSH signature over its text (`ssh-keygen -Y verify ... -s SHA256SUMS.sig < SHA256SUMS`),
/// or minisign over its bytes (`minisign -V -m SHA256SUMS`).
fn sign_sums(sums: &Utf8Path, key: &Utf8Path, signer: Signer) -> Result<Utf8PathBuf> {
    match signer {
        Signer::Ssh => {
            let text = std::fs::read_to_string(sums)
                .map_err(|e| anyhow::anyhow!("`{sums}`: cannot read: {e}"))?;
            let signature = sign::sign(key, &text)?;
            let path = sign::signature_path(sums);
            crate::util::write_atomically(&path, &signature)?;
            Ok(path)
        }
        Signer::Minisign => sign::sign_minisign(key, sums, "file:SHA256SUMS\tmerged release"),
    }
}
