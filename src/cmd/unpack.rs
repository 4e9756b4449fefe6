//! `cargo release-bundle unpack PATH --to DIR`: verify and install in one pass.

use std::fs;

use anyhow::Result;

use crate::cli::UnpackOpts;
use crate::output::Output;
use crate::verify;
use crate::verify::unpack::{self, Extractor};

/// `unpack PATH --to DIR`: 0 installed, 1 refused (findings, or DIR exists), 2 I/O error.
pub fn run(opts: &UnpackOpts, shell: &Output) -> Result<u8> {
    let dest = &opts.to;
    if fs::symlink_metadata(dest).is_ok() {
        shell.error(format!(
            "`{dest}` already exists; unpack creates a new directory"
        ));
        return Ok(1);
    }
    unpack::catch_signals();
    let mut extractor = Extractor::new(dest)?;
    for stale in &extractor.removed {
        shell.status(
            "Removed",
            format!("{stale} (left by an interrupted unpack)"),
        );
    }
    let mut report = verify::verify_file(
        &opts.path,
        opts.check.trust.sha256.as_deref(),
        opts.check.limits(),
        &opts.check.allow_paths,
        Some(&mut extractor),
    )?;
    // Before anything is moved into place: a signature, when signers are given.
    opts.check.trust.trust().check_signatures(&mut report)?;
    if unpack::interrupted() {
        drop(extractor);
        shell.error(format!("interrupted; nothing was installed at `{dest}`"));
        return Ok(130);
    }
    verify::print(
        &report,
        opts.check.strict,
        opts.check.output.message_format,
        shell,
    );
    if !report.passes(opts.check.strict) {
        shell.error(format!(
            "`{}` did not verify; nothing was installed",
            opts.path
        ));
        return Ok(1);
    }
    extractor.finish(dest)?;
    shell.status(
        "Unpacked",
        format!("{} into {dest}", opts.path.file_name().unwrap_or_default()),
    );
    Ok(0)
}
