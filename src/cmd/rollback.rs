//! `cargo release-bundle rollback --host/--dest | --path [--version V]`.

use anyhow::Result;

use crate::cli::RollbackOpts;
use crate::deploy::fleet;
use crate::deploy::resolve;
use crate::shell::Shell;

pub fn run(opts: &RollbackOpts, shell: &Shell) -> Result<u8> {
    let lookup = super::deploy::lookup(&opts.hosts, &opts.manifest);
    let flags = super::deploy::flags(&opts.hosts, &opts.restart, None);
    let hosts = resolve::hosts(&lookup, flags)?;
    let options = super::deploy::options(
        hosts.settings.clone(),
        &opts.restart,
        true,
        Default::default(),
    );
    super::deploy::reporting(opts.out.message_format, shell, "Rolled back", |tx| {
        fleet::rollback(&hosts.targets, opts.version.as_deref(), &options, tx)
    })
}
