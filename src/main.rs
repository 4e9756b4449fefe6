//! `cargo-release-bundle`: parse, run, report. Exit codes: 0 success, 1 error, 2 usage.

use std::process::ExitCode;

use clap::Parser;

use cargo_release_bundle::cli::{Cli, normalize_args};
use cargo_release_bundle::shell::Shell;

fn main() -> ExitCode {
    let Cli::ReleaseBundle(opts) = Cli::parse_from(normalize_args(std::env::args_os().collect()));
    let shell = Shell::new(opts.color, opts.quiet, opts.verbose);
    match cargo_release_bundle::bundle(&opts, &shell) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut text = err.to_string();
            for cause in err.chain().skip(1) {
                text.push_str(&format!("\n\nCaused by:\n  {cause}"));
            }
            shell.error(text);
            ExitCode::FAILURE
        }
    }
}
