//! One thin function per subcommand, from parsed options to library calls, each returning
//! the exit code; [`run`] picks the one the command line names. What can go wrong is an
//! `Err`, which `main` prints once, the same way for every command.

mod bundle;
mod completions;
mod deploy;
mod exec;
mod init;
mod install;
mod logs;
mod merge;
mod plan;
mod releases;
mod rollback;
mod sign;
mod status;
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

/// Run the command the command line names, with the output its flags ask for.
pub fn run(cli: &ReleaseBundle) -> Outcome {
    match &cli.command {
        None => with(&cli.bundle.output, 1, |s| bundle::run(&cli.bundle, s)),
        Some(Commands::Plan(o)) => with(&o.output, 1, |s| plan::run(o, s)),
        Some(Commands::Merge(o)) => with(&o.output, 2, |s| merge::run(o, s)),
        Some(Commands::Init(o)) => with(&o.output, 1, |s| init::run(o, s)),
        Some(Commands::Deploy(o)) => with(&o.build.output, 1, |s| deploy::run(o, s)),
        Some(Commands::Install(o)) => with(&o.output, 1, |s| install::run(o, s)),
        Some(Commands::Rollback(o)) => with(&o.output, 1, |s| rollback::run(o, s)),
        Some(Commands::Releases(o)) => with(&o.output, 1, |s| releases::run(o, s)),
        Some(Commands::Exec(o)) => with(&o.output, 2, |s| exec::run(o, s)),
        Some(Commands::Status(o)) => with(&o.output, 2, |s| status::run(o, s)),
        Some(Commands::Logs(o)) => with(&o.output, 2, |s| logs::run(o, s)),
        Some(Commands::SystemdUnit(o)) => with(&o.output, 1, |s| systemd_unit::run(o, s)),
        Some(Commands::Sign(o)) => with(&o.output, 1, |s| sign::run(o, s)),
        Some(Commands::Completions { shell: which }) => Outcome {
            shell: Output::new(None, false, 0),
            result: completions::run(*which),
            error_code: 1,
        },
        Some(Commands::Verify(o)) => with(&o.check.output, 2, |s| verify::run(o, s)),
        Some(Commands::Unpack(o)) => with(&o.check.output, 2, |s| unpack::run(o, s)),
    }
}

/// One command with its output; `error_code` is what an error maps to.
fn with(
    output: &crate::cli::OutputOpts,
    error_code: u8,
    command: impl FnOnce(&Output) -> Result<u8>,
) -> Outcome {
    let shell = output.shell();
    let result = command(&shell);
    Outcome {
        shell,
        result,
        error_code,
    }
}
