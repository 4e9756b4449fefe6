//! `cargo release-bundle completions SHELL`: print a completion script.

use anyhow::Result;

use crate::cli;

pub fn run(which: clap_complete::Shell) -> Result<u8> {
    let text = cli::completions(which);
    // A closed pipe (`| head`) is not an error.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), &text);
    Ok(0)
}
