//! `cargo release-bundle install BUNDLE --path DIR [--restart]`: the deploy sequence on this
//! machine, no SSH.

use anyhow::Result;

use crate::cli::{HostOpts, InstallOpts};
use crate::deploy::fleet;
use crate::deploy::resolve;
use crate::deploy::transport::Transport;
use crate::deploy::{Release, Target};
use crate::output::Output;

/// 0 installed (and healthy when restarted); errors (exit 1) otherwise.
pub fn run(opts: &InstallOpts, shell: &Output) -> Result<u8> {
    let release = Release::verified(&opts.bundle, &opts.trust.trust())?;
    let hosts = HostOpts {
        hosts: Vec::new(),
        dest: None,
        path: Some(opts.path.to_string()),
        ssh_config: None,
        roles: Vec::new(),
        primary: false,
    };
    let settings = super::deploy::flags(&hosts, &opts.health, None, Some(opts.keep))
        .resolve(&release.manifest.name);
    let target = Target {
        label: "local".into(),
        transport: Transport::Local,
        path: opts.path.to_string(),
    };
    let env = match &opts.env_file {
        Some(file) => resolve::env_files(&[file.to_string()], std::slice::from_ref(&target))?,
        None => Default::default(),
    };
    let options = super::deploy::options(settings, &opts.health, opts.restart, env);
    super::deploy::reporting(opts.output.message_format, shell, "Installed", |tx| {
        fleet::deploy(&release, std::slice::from_ref(&target), &options, tx)
    })
}
