//! `cargo release-bundle verify PATH...`: check bundles, optionally rebuilding them.

use anyhow::Result;

use crate::cli::VerifyOpts;
use crate::output::Output;
use crate::verify::rebuild;
use crate::verify::{Finding, Report, print, verify_file};

/// `verify PATH...`: exit 0 when every bundle passes, 1 when any has findings, 2 on I/O errors.
pub fn run(opts: &VerifyOpts, shell: &Output) -> Result<u8> {
    let mut code = 0;
    for path in &opts.paths {
        match check(path, opts, shell) {
            Ok(report) => {
                print(
                    &report,
                    opts.check.strict,
                    opts.check.output.message_format,
                    shell,
                );
                if !report.passes(opts.check.strict) && code == 0 {
                    code = 1;
                }
            }
            Err(e) => {
                shell.error_chain(&e);
                code = 2;
            }
        }
    }
    Ok(code)
}

/// One bundle or image: its own checks, then its signature, then (bundles) the rebuild.
fn check(path: &camino::Utf8Path, opts: &VerifyOpts, shell: &Output) -> Result<Report> {
    let image = path.as_str().ends_with(".oci.tar");
    let mut report = if image {
        crate::image::verify::verify_image(path)?
    } else {
        verify_file(
            path,
            opts.check.trust.sha256.as_deref(),
            opts.check.limits(),
            &opts.check.allow_paths,
            None,
        )?
    };
    opts.check.trust.trust().check_signatures(&mut report)?;
    if opts.rebuild && !image {
        match &report.manifest {
            Some(m) if report.passes(false) => {
                let repo = opts.repo.clone().unwrap_or_else(|| ".".into());
                let found = rebuild::rebuild(path, &report.sha256, m, &repo, shell)?;
                report.findings.extend(found);
            }
            _ => report.findings.push(Finding::error(
                "rebuild-refused",
                None,
                "the bundle does not verify, so it is not rebuilt",
            )),
        }
    }
    Ok(report)
}
