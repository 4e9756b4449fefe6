//! One thin function per subcommand, from parsed options to library calls, each returning
//! the exit code; [`run`] picks the one the command line names. What can go wrong is an
//! `Err`, which `main` prints once, the same way for every command.

mod bundle;
mod completions;
mod deploy;
mod exec;
mod init;
mod install;
mod merge;
mod plan;
mod releases;
mod rollback;
mod sign;
mod systemd_unit;
mod unpack;
mod verify;

use anyhow::Result;

use crate::cli::{Commands, ReleaseBundle};
use crate::output::Output;

/// What running a command gave: its shell (for printing an error), its result, and the exit
/// code an error maps to (1 for bundling commands, 2 where 1 means "findings").
pub struct Outcome {
    pub shell: Output,
    pub result: Result<u8>,
    pub error_code: u8,
}

pub fn run(cli: &ReleaseBundle) -> Outcome {
    let (shell, result, error_code) = match &cli.command {
        None => {
            let o = &cli.bundle;
            let shell = o.output.shell();
            let result = bundle::run(o, &shell);
            (shell, result, 1)
        }
        Some(Commands::Plan(o)) => {
            let shell = o.output.shell();
            let result = plan::run(o, &shell);
            (shell, result, 1)
        }
        Some(Commands::Merge(m)) => {
            let shell = m.output.shell();
            let result = merge::run(m, &shell);
            (shell, result, 2)
        }
        Some(Commands::Init(i)) => {
            let shell = i.output.shell();
            let result = init::run(i, &shell);
            (shell, result, 1)
        }
        Some(Commands::Deploy(o)) => {
            let shell = o.build.output.shell();
            let result = deploy::run(o, &shell);
            (shell, result, 1)
        }
        Some(Commands::Install(o)) => {
            let shell = o.output.shell();
            let result = install::run(o, &shell);
            (shell, result, 1)
        }
        Some(Commands::Rollback(o)) => {
            let shell = o.output.shell();
            let result = rollback::run(o, &shell);
            (shell, result, 1)
        }
        Some(Commands::Releases(o)) => {
            let shell = o.output.shell();
            let result = releases::run(o, &shell);
            (shell, result, 1)
        }
        Some(Commands::Exec(o)) => {
            let shell = o.output.shell();
            let result = exec::run(o, &shell);
            (shell, result, 2)
        }
        Some(Commands::SystemdUnit(o)) => {
            let shell = o.output.shell();
            let result = systemd_unit::run(o, &shell);
            (shell, result, 1)
        }
        Some(Commands::Sign(o)) => {
            let shell = o.output.shell();
            let result = sign::run(o, &shell);
            (shell, result, 1)
        }
        Some(Commands::Completions { shell: which }) => {
            (Output::new(None, false, 0), completions::run(*which), 1)
        }
        Some(Commands::Verify(v)) => {
            let shell = v.check.output.shell();
            let result = verify::run(v, &shell);
            (shell, result, 2)
        }
        Some(Commands::Unpack(u)) => {
            let shell = u.check.output.shell();
            let result = unpack::run(u, &shell);
            (shell, result, 2)
        }
    };
    Outcome {
        shell,
        result,
        error_code,
    }
}
