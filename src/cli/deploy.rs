//! The options of `deploy`, `install`, `rollback`, `releases` and `systemd-unit`.

use camino::Utf8PathBuf;
use clap::Args;

use super::{BundleOpts, OutputOpts, parse_duration};

fn parse_batch(text: &str) -> Result<crate::deploy::config::Batch, String> {
    crate::deploy::config::Batch::parse(text)
}

/// Which hosts, and where on them: shared by `deploy`, `rollback`, `releases` and
/// `systemd-unit`. Without `--host` or `--dest` (and no `deploy.hosts`), this machine.
#[derive(Debug, Clone, Default, Args)]
pub struct HostOpts {
    /// A host: anything `ssh` accepts (user@host, an alias from the SSH config); repeatable
    #[arg(long = "host", value_name = "HOST", help_heading = "Hosts")]
    pub hosts: Vec<String>,

    /// Hosts and settings from [package.metadata.release.deploy.destinations.NAME]
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "hosts",
        help_heading = "Hosts"
    )]
    pub dest: Option<String>,

    /// The deploy path on each host (relative: to the remote user's home) [default:
    /// deploy.path, else /srv/<name>]
    #[arg(long, value_name = "DIR", help_heading = "Hosts")]
    pub path: Option<String>,

    /// SSH configuration file, passed to ssh as -F
    #[arg(long, value_name = "FILE", help_heading = "Hosts")]
    pub ssh_config: Option<Utf8PathBuf>,

    /// Only the hosts of this role (deploy.roles), and on them only its processes; repeatable
    #[arg(long = "role", value_name = "ROLE", help_heading = "Hosts")]
    pub roles: Vec<String>,

    /// Only the primary host (deploy.primary, else the first host of the first role)
    #[arg(long, help_heading = "Hosts")]
    pub primary: bool,
}

/// How a restart is judged, and how the deploy lock is taken.
#[derive(Debug, Clone, Default, Args)]
pub struct RestartOpts {
    /// Health URL probed from the host (http://127.0.0.1:${PORT}/health; ${VAR} from the
    /// service's environment there); 2xx or 3xx is healthy
    #[arg(long, value_name = "URL", help_heading = "Health")]
    pub health_url: Option<String>,

    /// Health command run on the host in the release directory with shared/env; exit 0 is healthy
    #[arg(long, value_name = "CMD", help_heading = "Health")]
    pub health_command: Option<String>,

    /// Time between health probes [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Health")]
    pub health_interval: Option<std::time::Duration>,

    /// Time one probe may take [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Health")]
    pub health_timeout: Option<std::time::Duration>,

    /// Time the new release has to become healthy [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Health")]
    pub health_deadline: Option<std::time::Duration>,

    /// How long it must stay healthy: seconds, or a duration such as `500ms`, `30s`, `2m`
    /// [default: 2s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Health")]
    pub healthy_for: Option<std::time::Duration>,

    /// Bad answers in a row (HTTP status outside 200-399) that fail the release at once
    /// [default: 3]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000), help_heading = "Health")]
    pub unhealthy_after: Option<u32>,

    /// Remove a deploy lock whose holder is gone
    #[arg(long)]
    pub break_lock: bool,

    /// Wait this long for a deploy lock another deploy holds (default: fail at once)
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub lock_wait: std::time::Duration,

    /// Stop, then start, even when the release has `listen` (whose restarts are otherwise
    /// handovers that refuse no connection)
    #[arg(long)]
    pub cold: bool,

    /// Switch without running `deploy.release-command` (said in the events)
    #[arg(long)]
    pub skip_release_command: bool,

    /// Do not run the `deploy.hooks` on this machine
    #[arg(long)]
    pub skip_hooks: bool,
}

/// How a fleet is restarted: batches and what a failure reverts (not for `install`).
#[derive(Debug, Clone, Default, Args)]
pub struct BatchOpts {
    /// Hosts restarted at once: a count or a share (`25%`) [default: deploy.batch, else 1]
    #[arg(long, value_name = "N|N%", value_parser = parse_batch)]
    pub batch: Option<crate::deploy::config::Batch>,

    /// Also revert the batches already switched when one fails [default: deploy.on-failure]
    #[arg(long)]
    pub revert_all: bool,
}

/// Where the deploy settings are read from when no bundle is built.
#[derive(Debug, Clone, Args)]
pub struct ManifestOpts {
    /// Path to Cargo.toml (for [package.metadata.release.deploy])
    #[arg(long, value_name = "PATH", help_heading = "Manifest Options")]
    pub manifest_path: Option<Utf8PathBuf>,

    /// The package whose deploy settings apply
    #[arg(
        short = 'p',
        long = "package",
        value_name = "SPEC",
        help_heading = "Manifest Options"
    )]
    pub package: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct DeployOpts {
    /// The bundle to deploy [default: bundle first, with the bundling flags below]
    #[arg(value_name = "BUNDLE")]
    pub bundle: Option<Utf8PathBuf>,

    #[command(flatten)]
    pub hosts: HostOpts,

    #[command(flatten)]
    pub restart: RestartOpts,

    #[command(flatten)]
    pub batch: BatchOpts,

    /// Releases to keep on each host [default: deploy.keep, else 5]
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,

    /// Print the plan (hosts, batches, what would be sent, stopped and started); change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Verify the bundle and send it to every host, and switch nothing: a later deploy of the
    /// same bundle switches without sending
    #[arg(long, conflicts_with = "dry_run")]
    pub stage_only: bool,

    /// Install FILE as each host's shared/env (0600, sent through stdin, never echoed); with
    /// HOST=FILE for one host only; repeatable
    #[arg(long, value_name = "[HOST=]FILE")]
    pub env_file: Vec<String>,

    #[command(flatten)]
    pub trust: crate::cli::TrustOpts,

    #[command(flatten)]
    pub build: BundleOpts,
}

#[derive(Debug, Clone, Args)]
pub struct InstallOpts {
    /// The bundle to install
    #[arg(value_name = "BUNDLE")]
    pub bundle: Utf8PathBuf,

    /// The deploy path (releases/, current, shared/ live under it)
    #[arg(long, value_name = "DIR")]
    pub path: Utf8PathBuf,

    /// Stop the running release and start the new one, reverting if it does not stay up
    #[arg(long)]
    pub restart: bool,

    #[command(flatten)]
    pub trust: crate::cli::TrustOpts,

    /// Releases to keep (bad ones are pruned first; never current or the one before it)
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub keep: usize,

    /// Install FILE as the host's environment, <path>/shared/env (mode 0600; never echoed)
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<Utf8PathBuf>,

    #[command(flatten)]
    pub health: RestartOpts,

    #[command(flatten)]
    pub output: OutputOpts,
}

#[derive(Debug, Clone, Args)]
pub struct SystemdUnitOpts {
    #[command(flatten)]
    pub hosts: HostOpts,

    #[command(flatten)]
    pub manifest: ManifestOpts,

    #[command(flatten)]
    pub output: OutputOpts,

    /// The user the service runs as [default: the deploy user; `root` only when named]
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Print the `.socket` unit instead (a release with `listen`): systemd then holds the
    /// sockets across restarts of the keeper and reboots; addresses take the host's values
    #[arg(long)]
    pub socket: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RollbackOpts {
    #[command(flatten)]
    pub hosts: HostOpts,

    /// The release to switch to [default: the one that was current before, still installed
    /// on every host, not marked bad and with its files intact]
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,

    /// Say where the rollback would go on each host, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub restart: RestartOpts,

    #[command(flatten)]
    pub batch: BatchOpts,

    #[command(flatten)]
    pub manifest: ManifestOpts,

    #[command(flatten)]
    pub output: OutputOpts,
}

#[derive(Debug, Clone, Args)]
pub struct ReleasesOpts {
    #[command(flatten)]
    pub hosts: HostOpts,

    #[command(flatten)]
    pub manifest: ManifestOpts,

    #[command(flatten)]
    pub output: OutputOpts,
}

#[derive(Debug, Clone, Args)]
pub struct ExecOpts {
    #[command(flatten)]
    pub hosts: HostOpts,

    #[command(flatten)]
    pub manifest: ManifestOpts,

    /// Hosts running the command at once: a count or a share (`25%`) [default: all]
    #[arg(long, value_name = "N|N%", value_parser = parse_batch)]
    pub batch: Option<crate::deploy::config::Batch>,

    /// The command's output as it is, bytes unprefixed and unescaped (one host only)
    #[arg(long)]
    pub raw: bool,

    /// A terminal for a console (`exec -i --primary -- remote`); one host only
    #[arg(short = 'i', long)]
    pub interactive: bool,

    #[command(flatten)]
    pub output: OutputOpts,

    /// The launcher command and its arguments, after `--` (`exec -- migrate --dry-run`)
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct StatusOpts {
    #[command(flatten)]
    pub hosts: HostOpts,

    #[command(flatten)]
    pub manifest: ManifestOpts,

    /// How long a host has to answer before it is reported unreachable
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,

    #[command(flatten)]
    pub output: OutputOpts,
}

#[derive(Debug, Clone, Args)]
pub struct LogsOpts {
    #[command(flatten)]
    pub hosts: HostOpts,

    #[command(flatten)]
    pub manifest: ManifestOpts,

    /// Lines from the end of each host's log
    #[arg(short = 'n', long, value_name = "N", default_value = "100")]
    pub lines: u32,

    /// Keep printing new lines from every host until interrupted
    #[arg(short = 'f', long)]
    pub follow: bool,

    /// The log of this process (see [processes]) [default: web]
    #[arg(long, value_name = "PROCESS")]
    pub process: Option<String>,

    /// Only lines holding this fixed string (matched on the host)
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,

    /// Only lines since then: a duration back (`10m`) or a time (`2026-12-07 09:00`); the
    /// journal's lines only (`deploy.service = "systemd"`): the launcher's carry no time
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,

    #[command(flatten)]
    pub output: OutputOpts,
}
