//! `cargo release-bundle sign BUNDLE... --key KEY`: sign each bundle, and the image built
//! beside it when there is one, through the one signing path (`sign::sign_file`).

use anyhow::{Result, bail};

use camino::Utf8Path;

use crate::attest::sign;
use crate::cli::SignOpts;
use crate::output::Output;
use crate::verify;

pub fn run(opts: &SignOpts, shell: &Output) -> Result<u8> {
    for bundle in &opts.bundles {
        // The release is read from the bundle, which must verify: minisign's trusted comment
        // names it, and the image beside it is found by it.
        let report = verify::verify_file(bundle, None, verify::Limits::default(), &[], None)?;
        let m = match &report.manifest {
            Some(m) if report.passes(false) => m,
            _ => bail!("`{bundle}` does not verify; it is not signed"),
        };
        let release = sign::Signed {
            name: &m.name,
            version: &m.version,
            commit: m.git.as_ref().map(|g| g.commit.as_str()),
        };
        let image = bundle.parent().unwrap_or(Utf8Path::new("")).join(
            crate::archive::companions::image_file(&m.name, &m.version, &m.target),
        );
        let mut files = vec![bundle.clone()];
        if image.is_file() {
            files.push(image);
        }
        for file in files {
            let written = sign::sign_file(opts.signer, &opts.key, &file, &release)?;
            let names: Vec<&str> = written.iter().map(|p| p.as_str()).collect();
            shell.status("Signed", format!("{file} ({})", names.join(", ")));
        }
    }
    Ok(0)
}
