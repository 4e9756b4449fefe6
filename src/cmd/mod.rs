//! One thin function per subcommand, from parsed options to library calls, each returning
//! the exit code; [`run`] picks the one the command line names. What can go wrong is an
//! `Err`, which `main` prints once, the same way for every command.

mod bundle;
mod completions;
mod deploy;
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

use crate::cli::{Command, ReleaseBundle};
use crate::output::Shell;

/// What running a command gave: its shell (for printing an error), its result, and the exit
/// code an error maps to (1 for bundling commands, 2 where 1 means "findings").
pub struct Outcome {
    pub shell: Shell,
    pub result: Result<u8>,
    pub error_code: u8,
}

pub fn run(cli: &ReleaseBundle) -> Outcome {
    let (shell, result, error_code) = match &cli.command {
        None => {
            let o = &cli.bundle;
            let shell = Shell::new(o.color, o.quiet, o.verbose);
            let result = bundle::run(o, &shell);
            (shell, result, 1)
        }
        Some(Command::Plan(o)) => {
            let shell = Shell::new(o.color, o.quiet, o.verbose);
            let result = plan::run(o, &shell);
            (shell, result, 1)
        }
        Some(Command::Merge(m)) => {
            let shell = Shell::new(m.color, m.quiet, 0);
            let result = merge::run(m, &shell);
            (shell, result, 2)
        }
        Some(Command::Init(i)) => {
            let shell = Shell::new(i.color, false, 0);
            let result = init::run(i, &shell);
            (shell, result, 1)
        }
        Some(Command::Deploy(o)) => {
            let shell = Shell::new(o.build.color, o.build.quiet, o.build.verbose);
            let result = deploy::run(o, &shell);
            (shell, result, 1)
        }
        Some(Command::Install(o)) => {
            let shell = Shell::new(o.out.color, o.out.quiet, 0);
            let result = install::run(o, &shell);
            (shell, result, 1)
        }
        Some(Command::Rollback(o)) => {
            let shell = Shell::new(o.out.color, o.out.quiet, 0);
            let result = rollback::run(o, &shell);
            (shell, result, 1)
        }
        Some(Command::Releases(o)) => {
            let shell = Shell::new(None, false, 0);
            let result = releases::run(o, &shell);
            (shell, result, 1)
        }
        Some(Command::SystemdUnit(o)) => {
            let shell = Shell::new(None, false, 0);
            let result = systemd_unit::run(o, &shell);
            (shell, result, 1)
        }
        Some(Command::Sign(o)) => {
            let shell = Shell::new(o.color, o.quiet, 0);
            let result = sign::run(o, &shell);
            (shell, result, 1)
        }
        Some(Command::Completions { shell: which }) => {
            (Shell::new(None, false, 0), completions::run(*which), 1)
        }
        Some(Command::Verify(v)) => {
            let shell = Shell::new(v.check.color, v.check.quiet, 0);
            let result = verify::run(v, &shell);
            (shell, result, 2)
        }
        Some(Command::Unpack(u)) => {
            let shell = Shell::new(u.check.color, u.check.quiet, 0);
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
