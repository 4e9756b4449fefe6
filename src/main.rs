//! `cargo-release-bundle`: parse, dispatch, report. Exit codes: 0 success; 1 error (bundle) or
//! findings (verify, unpack); 2 usage or I/O error.

use std::process::ExitCode;

use clap::Parser;

use cargo_release_bundle::cli::{Cli, normalize_args};
use cargo_release_bundle::cmd;

fn main() -> ExitCode {
    let Cli::ReleaseBundle(cli) = Cli::parse_from(normalize_args(std::env::args_os().collect()));
    let outcome = cmd::run(&cli);
    // Output that could not be written fails the command, whatever it found.
    let result = outcome
        .result
        .and_then(|code| outcome.shell.finish().map(|()| code));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            outcome.shell.error_chain(&err);
            ExitCode::from(outcome.error_code)
        }
    }
}
