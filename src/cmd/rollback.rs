//! `cargo release-bundle rollback --host/--dest | --path [--version V]`.

use anyhow::Result;

use crate::cli::RollbackOpts;
use crate::deploy::Options;
use crate::deploy::fleet;
use crate::deploy::resolve::{self, Lookup};
use crate::deploy::transport::ControlDir;
use crate::shell::Shell;

pub fn run(opts: &RollbackOpts, shell: &Shell) -> Result<u8> {
    let lookup = Lookup {
        manifest_path: opts.manifest.manifest_path.clone(),
        package: opts.manifest.package.clone(),
        release: None,
        dest: opts.hosts.dest.clone(),
    };
    let resolved = resolve::settings(
        &lookup,
        super::deploy::flags(&opts.hosts, &opts.restart, None),
    )?;
    let control = ControlDir::new()?;
    let targets = resolve::targets(&resolved.settings, &control)?;
    let options = Options {
        settings: resolved.settings,
        restart: true,
        break_lock: opts.restart.break_lock,
        lock_wait: opts.restart.lock_wait,
        who: resolve::who(),
        env: Default::default(),
    };
    super::deploy::reporting(opts.out.message_format, shell, "Rolled back", |tx| {
        fleet::rollback(&targets, opts.version.as_deref(), &options, tx)
    })
}
