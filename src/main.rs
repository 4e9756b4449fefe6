//! `cargo-release-bundle`: parse, dispatch, report. Exit codes: 0 success; 1 error (bundle) or
//! findings (verify, unpack); 2 usage or I/O error.

use std::process::ExitCode;

use clap::Parser;

use cargo_release_bundle::cli::{Cli, Command, normalize_args};
use cargo_release_bundle::shell::Shell;

fn error_text(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        text.push_str(&format!("\n\nCaused by:\n  {cause}"));
    }
    text
}

fn main() -> ExitCode {
    let Cli::ReleaseBundle(cli) = Cli::parse_from(normalize_args(std::env::args_os().collect()));
    let (shell, result, error_code) = match &cli.command {
        None => {
            let o = &cli.bundle;
            let shell = Shell::new(o.color, o.quiet, o.verbose);
            let result = cargo_release_bundle::bundle(o, &shell).map(|()| 0);
            (shell, result, 1)
        }
        Some(Command::Plan(o)) => {
            let shell = Shell::new(o.color, o.quiet, o.verbose);
            let result = cargo_release_bundle::plan_only(o, &shell).map(|()| 0);
            (shell, result, 1)
        }
        Some(Command::Merge(m)) => {
            let shell = Shell::new(m.color, m.quiet, 0);
            let result = cargo_release_bundle::merge::run(m, &shell);
            (shell, result, 2)
        }
        Some(Command::Init(i)) => {
            let shell = Shell::new(i.color, false, 0);
            let result = cargo_release_bundle::init::run(i, &shell).map(|_| 0);
            (shell, result, 1)
        }
        Some(Command::Completions { shell: which }) => {
            let shell = Shell::new(None, false, 0);
            let text = cargo_release_bundle::cli::completions(*which);
            // A closed pipe (`| head`) is not an error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &text);
            (shell, Ok(0), 1)
        }
        Some(Command::Verify(v)) => {
            let shell = Shell::new(v.check.color, v.check.quiet, 0);
            let result = cargo_release_bundle::verify::run(v, &shell);
            (shell, result, 2)
        }
        Some(Command::Unpack(u)) => {
            let shell = Shell::new(u.check.color, u.check.quiet, 0);
            let result = cargo_release_bundle::unpack::run(u, &shell);
            (shell, result, 2)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            shell.error(error_text(&err));
            ExitCode::from(error_code)
        }
    }
}
