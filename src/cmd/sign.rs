//! `cargo release-bundle sign BUNDLE... --key KEY`: write `BUNDLE.sig` (and the signature of
//! its provenance beside it).

use anyhow::Result;

use crate::cli::SignOpts;
use crate::shell::Shell;
use crate::sign;

pub fn run(opts: &SignOpts, shell: &Shell) -> Result<u8> {
    for bundle in &opts.bundles {
        let written = sign::sign_release(&opts.key, bundle)?;
        let names: Vec<&str> = written.iter().map(|p| p.as_str()).collect();
        shell.status("Signed", format!("{bundle} ({})", names.join(", ")));
    }
    Ok(0)
}
