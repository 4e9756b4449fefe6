//! `cargo release-bundle sign BUNDLE... --key KEY`: write `BUNDLE.sig`.

use anyhow::{Context, Result};

use crate::cli::SignOpts;
use crate::fsutil::{sha256_of, write_atomically};
use crate::shell::Shell;
use crate::sign;

pub fn run(opts: &SignOpts, shell: &Shell) -> Result<u8> {
    for bundle in &opts.bundles {
        let digest = sha256_of(bundle).with_context(|| format!("`{bundle}`: cannot sign"))?;
        let file_name = bundle.file_name().unwrap_or_default();
        let signature = sign::sign(&opts.key, &sign::message(&digest, file_name))?;
        let path = sign::signature_path(bundle);
        write_atomically(&path, &signature)?;
        shell.status("Signed", format!("{bundle} ({path})"));
    }
    Ok(0)
}
