//! `cargo release-bundle sign BUNDLE... --key KEY`: write `BUNDLE.sig` (and the signature of
//! its provenance beside it).

use anyhow::{Result, bail};

use crate::cli::{SignOpts, Signer};
use crate::shell::Shell;
use crate::sign;
use crate::verify;

pub fn run(opts: &SignOpts, shell: &Shell) -> Result<u8> {
    for bundle in &opts.bundles {
        if opts.signer == Signer::Minisign {
            // The trusted comment names the release: read from the bundle, which must verify.
            let report = verify::verify_file(bundle, None, verify::Limits::default(), &[], None)?;
            let m = match &report.manifest {
                Some(m) if report.passes(false) => m,
                _ => bail!("`{bundle}` does not verify; it is not signed"),
            };
            let name = bundle.file_name().unwrap_or_default();
            let commit = m.git.as_ref().map(|g| g.commit.as_str());
            let comment = sign::trusted_comment(name, &m.name, &m.version, commit);
            let path = sign::sign_minisign(&opts.key, bundle, &comment)?;
            shell.status("Signed", format!("{bundle} ({path})"));
            continue;
        }
        let written = sign::sign_release(&opts.key, bundle)?;
        let names: Vec<&str> = written.iter().map(|p| p.as_str()).collect();
        shell.status("Signed", format!("{bundle} ({})", names.join(", ")));
    }
    Ok(0)
}
