//! `cargo release-bundle init`: add a release table to a package's `Cargo.toml`.

use anyhow::Result;

use crate::cli::InitOpts;
use crate::config::init;
use crate::output::Output;

/// 0 written; an existing table is an error (exit 1).
pub fn run(opts: &InitOpts, shell: &Output) -> Result<u8> {
    let request = init::Request {
        manifest_path: opts.manifest_path.clone(),
        profile: opts.profile.clone(),
    };
    init::init(&request, shell)?;
    Ok(0)
}
