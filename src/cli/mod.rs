//! Command-line interface. Doc comments here are the `--help` text.
//!
//! Cargo runs `cargo-release-bundle release-bundle ARGS`; running the binary directly without
//! the `release-bundle` word works too (see [`normalize_args`]).

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo", disable_help_subcommand = true)]
pub enum Cli {
    /// Build a Rust service and write a reproducible, deployable release bundle.
    #[command(name = "release-bundle", version, author)]
    ReleaseBundle(ReleaseBundle),
}

#[derive(Debug, Clone, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    about = "Build a Rust service and write a reproducible, deployable release bundle",
    after_help = "Configuration lives in [package.metadata.release] (or [package.metadata.release-bundle]); every key: docs/configuration.md."
)]
pub struct ReleaseBundle {
    #[command(subcommand)]
    pub command: Option<Commands>,
    #[command(flatten)]
    pub bundle: BundleOpts,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Commands {
    /// Show what the bundles would contain and where they would go, without building
    Plan(BundleOpts),
    /// Check bundles before publishing or installing them (exit 0 clean, 1 findings, 2 I/O error)
    Verify(VerifyOpts),
    /// Verify a bundle and extract it into a new directory, atomically
    Unpack(UnpackOpts),
    /// Gather bundles from CI matrix jobs into one directory with SHA256SUMS and index.json
    Merge(MergeOpts),
    /// Add a commented [package.metadata.release] table to a package (and say how to add priv/)
    Init(InitOpts),
    /// Deploy a bundle to hosts over SSH: stage, then stop, switch, start and check health
    /// batch by batch, reverting a host whose new release does not come up
    Deploy(Box<DeployOpts>),
    /// Install a bundle under a deploy path on this machine (what deploy does on each host)
    Install(InstallOpts),
    /// Switch hosts (or a deploy path here) back to an earlier release (the newest not marked bad)
    Rollback(RollbackOpts),
    /// List the releases installed on hosts (or under a deploy path here)
    Releases(ReleasesOpts),
    /// Print a systemd unit for the deployed layout
    SystemdUnit(SystemdUnitOpts),
    /// Run a launcher command (`bin/<name> COMMAND ARGS...`) of the current release on each host,
    /// with the host's environment
    Exec(ExecOpts),
    /// Each host's state: reachable, current, the service's process, the lock, the last event
    Status(StatusOpts),
    /// Each host's service log, prefixed with the host: the last lines, or `-f` to follow
    Logs(LogsOpts),
    /// Sign bundles (an SSH signature over each bundle's .sha256 line, written to BUNDLE.sig)
    Sign(SignOpts),
    /// Print shell completions for cargo-release-bundle
    Completions {
        /// The shell to generate completions for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Args)]
pub struct SignOpts {
    /// Bundles to sign
    #[arg(required = true, value_name = "BUNDLE")]
    pub bundles: Vec<Utf8PathBuf>,

    /// An OpenSSH private key file, or a public key whose private half is in ssh-agent; with
    /// `--signer minisign`, a minisign secret key file
    #[arg(long, value_name = "KEY")]
    pub key: Utf8PathBuf,

    /// What makes the signature: an SSH signature (`BUNDLE.sig`, checked with
    /// --allowed-signers or `ssh-keygen -Y verify`), or minisign (`BUNDLE.minisig`, checked
    /// with --minisign-key or `minisign -V`)
    #[arg(long, value_name = "SIGNER", default_value = "ssh")]
    pub signer: Signer,

    #[command(flatten)]
    pub output: OutputOpts,
}

use crate::deploy::config::parse_duration;

use crate::attest::sign::Signer;

mod deploy;
pub use deploy::*;

#[derive(Debug, Clone, Args)]
pub struct MergeOpts {
    /// Directories holding bundles and their `.sha256` sidecars (one per matrix job)
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<Utf8PathBuf>,

    /// Directory to gather them in (created; existing identical files are kept)
    #[arg(long, value_name = "DIR")]
    pub out: Utf8PathBuf,

    /// Sign the merged SHA256SUMS with this key (SHA256SUMS.sig, or SHA256SUMS.minisig with
    /// `--signer minisign`): one signature covers every archive it lists
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<Utf8PathBuf>,

    /// What signs SHA256SUMS: an SSH signature or minisign
    #[arg(long, value_name = "SIGNER", default_value = "ssh")]
    pub signer: Signer,

    #[command(flatten)]
    pub output: OutputOpts,
}

#[derive(Debug, Clone, Args)]
pub struct InitOpts {
    /// Path to the package's Cargo.toml [default: ./Cargo.toml]
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<Utf8PathBuf>,

    /// Also add this cargo profile (`inherits = "release"`) and a profile override table
    #[arg(long, value_name = "PROFILE-NAME")]
    pub profile: Option<String>,

    #[command(flatten)]
    pub output: OutputOpts,
}

use crate::bundle::compile::Builder;

/// How every command reports: the same flags everywhere.
#[derive(Debug, Clone, Default, Args)]
pub struct OutputOpts {
    /// Output format: human status lines on stderr, or JSON objects (one per line) on stdout
    #[arg(long, value_name = "FMT", default_value = "human")]
    pub message_format: MessageFormat,

    /// Use verbose output (-vv very verbose)
    #[arg(short = 'v', long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Do not print status messages
    #[arg(short = 'q', long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Coloring
    #[arg(long, value_name = "WHEN")]
    pub color: Option<ColorChoice>,
}

impl OutputOpts {
    /// The output these flags ask for.
    pub fn shell(&self) -> crate::output::Output {
        crate::output::Output::new(self.color, self.quiet, self.verbose)
    }
}

/// Where a bundle must come from: its digest and signatures. Shared by `verify`, `unpack`,
/// `deploy` and `install`, with one meaning.
#[derive(Debug, Clone, Default, Args)]
pub struct TrustOpts {
    /// Expected SHA-256 of the archive (in addition to its `.sha256` sidecar)
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,

    /// OpenSSH allowed_signers file: BUNDLE.sig must be a valid signature by one of its keys
    /// (principals, namespaces=, valid-after=, valid-before= are honoured)
    #[arg(long, value_name = "FILE")]
    pub allowed_signers: Option<Utf8PathBuf>,

    /// A minisign public key: BUNDLE.minisig must be a valid signature by it (whose trusted
    /// comment, when it names a file, names the bundle)
    #[arg(long, value_name = "PUB")]
    pub minisign_key: Option<Utf8PathBuf>,

    /// The principal the signature must be from [default: whoever allowed_signers says holds the key]
    #[arg(long, value_name = "ID", requires = "allowed_signers")]
    pub identity: Option<String>,
}

/// Options shared by `verify` and `unpack`.
#[derive(Debug, Clone, Args)]
pub struct CheckOpts {
    #[command(flatten)]
    pub trust: TrustOpts,

    /// Fail on warnings too
    #[arg(long)]
    pub strict: bool,

    /// A path prefix the leak scan accepts, such as an example path in help text (repeatable;
    /// adds to the bundle's own `[verify] allow-paths`)
    #[arg(long = "allow-path", value_name = "PREFIX")]
    pub allow_paths: Vec<String>,

    /// Refuse archives with more entries than this
    #[arg(long, value_name = "N", default_value_t = crate::verify::Limits::default().max_entries)]
    pub max_entries: u64,

    /// Refuse archives that decompress to more bytes than this
    #[arg(long, value_name = "BYTES", default_value_t = crate::verify::Limits::default().max_size)]
    pub max_size: u64,

    /// Refuse archives that decompress to more than this many times their size (past 64 MiB)
    #[arg(long, value_name = "N", default_value_t = crate::verify::Limits::default().max_ratio)]
    pub max_ratio: u64,

    #[command(flatten)]
    pub output: OutputOpts,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyOpts {
    /// Bundles to verify (`.tar.zst` or `.tar.gz`); their `.sha256` sidecars are checked when present
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<Utf8PathBuf>,

    /// Also rebuild each bundle from the git commit its manifest records, in a fresh checkout,
    /// and compare the bytes (needs the same rustc and the commit in the repository)
    #[arg(long)]
    pub rebuild: bool,

    /// The git repository to rebuild from [default: the one around the current directory]
    #[arg(long, value_name = "DIR", requires = "rebuild")]
    pub repo: Option<Utf8PathBuf>,

    #[command(flatten)]
    pub check: CheckOpts,
}

#[derive(Debug, Clone, Args)]
pub struct UnpackOpts {
    /// The bundle to install
    #[arg(value_name = "PATH")]
    pub path: Utf8PathBuf,

    /// Directory to create with the bundle's contents; must not exist
    #[arg(long, value_name = "DIR")]
    pub to: Utf8PathBuf,

    #[command(flatten)]
    pub check: CheckOpts,
}

use crate::output::{ColorChoice, MessageFormat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    #[value(name = "tar.zst")]
    TarZst,
    #[value(name = "tar.gz")]
    TarGz,
}

#[derive(Debug, Clone, Args)]
pub struct BundleOpts {
    /// Path to Cargo.toml
    #[arg(long, value_name = "PATH", help_heading = "Manifest Options")]
    pub manifest_path: Option<Utf8PathBuf>,

    /// Package(s) to bundle
    #[arg(
        short = 'p',
        long = "package",
        value_name = "SPEC",
        help_heading = "Package Selection"
    )]
    pub package: Vec<String>,

    /// Bundle every workspace member that has a release table
    #[arg(long, help_heading = "Package Selection")]
    pub workspace: bool,

    /// Build with the given profile
    #[arg(
        long,
        value_name = "PROFILE-NAME",
        default_value = "release",
        help_heading = "Compilation Options"
    )]
    pub profile: String,

    /// Accepted for symmetry with cargo; bundles are built with `--profile` (default `release`)
    #[arg(long, hide_short_help = true, help_heading = "Compilation Options")]
    pub release: bool,

    /// Build for the target triple (default: the host)
    #[arg(long, value_name = "TRIPLE", help_heading = "Compilation Options")]
    pub target: Option<String>,

    /// Directory for all generated artifacts
    #[arg(long, value_name = "DIRECTORY", help_heading = "Compilation Options")]
    pub target_dir: Option<Utf8PathBuf>,

    /// Build with cargo, cross or cargo-zigbuild (for cross compilation)
    #[arg(
        long,
        value_name = "BUILDER",
        default_value = "cargo",
        help_heading = "Compilation Options"
    )]
    pub builder: Builder,

    /// Space or comma separated list of features to activate
    #[arg(
        short = 'F',
        long,
        value_name = "FEATURES",
        help_heading = "Feature Selection"
    )]
    pub features: Vec<String>,

    /// Activate all available features
    #[arg(long, help_heading = "Feature Selection")]
    pub all_features: bool,

    /// Do not activate the `default` feature
    #[arg(long, help_heading = "Feature Selection")]
    pub no_default_features: bool,

    /// Assert that `Cargo.lock` will remain unchanged
    #[arg(long, help_heading = "Manifest Options")]
    pub locked: bool,

    /// Equivalent to specifying both --locked and --offline
    #[arg(long, help_heading = "Manifest Options")]
    pub frozen: bool,

    /// Run without accessing the network
    #[arg(long, help_heading = "Manifest Options")]
    pub offline: bool,

    /// Number of parallel jobs: passed to `cargo build`, and the number of compression
    /// workers (at most 8) [default: the number of CPUs]. The bundle's bytes do not depend on it
    #[arg(
        short = 'j',
        long,
        value_name = "N",
        help_heading = "Compilation Options"
    )]
    pub jobs: Option<std::num::NonZeroU32>,

    /// Directory for the bundles [default: <target-dir>/release-bundle/<profile>/]
    #[arg(long, value_name = "DIR", help_heading = "Bundle Options")]
    pub out_dir: Option<Utf8PathBuf>,

    /// Sign each bundle (and its provenance, and its image) with this key as it is written:
    /// an OpenSSH private key file, or a public key whose private half is in ssh-agent [default:
    /// the `sign.key` setting]
    #[arg(long, value_name = "KEY", help_heading = "Bundle Options")]
    pub sign_key: Option<Utf8PathBuf>,

    /// What signs with --sign-key: ssh (BUNDLE.sig) or minisign (BUNDLE.minisig)
    #[arg(
        long,
        value_name = "SIGNER",
        default_value = "ssh",
        help_heading = "Bundle Options"
    )]
    pub signer: Signer,

    /// Also write the release as an OCI image, `<name>-<version>-<triple>.oci.tar`, beside the
    /// bundle (as the `image` key does)
    #[arg(long, help_heading = "Bundle Options")]
    pub image: bool,

    /// Archive format (overrides the `format` key)
    #[arg(long, value_name = "FORMAT", help_heading = "Bundle Options")]
    pub format: Option<FormatArg>,

    /// Treat configuration warnings (such as unknown keys) as errors
    #[arg(long, help_heading = "Bundle Options")]
    pub strict: bool,

    #[command(flatten)]
    pub output: OutputOpts,
}

impl BundleOpts {
    /// What `build` forwards to cargo.
    /// The library's request for these flags.
    pub fn request(&self) -> crate::bundle::Request {
        crate::bundle::Request {
            selection: self.selection(),
            locate: self.locate(),
            build: self.build_opts(),
            profile: self.profile.clone(),
            target: self.target.clone(),
            features: self.features.clone(),
            all_features: self.all_features,
            no_default_features: self.no_default_features,
            jobs: self.jobs,
            out_dir: self.out_dir.clone(),
            sign_key: self.sign_key.clone(),
            signer: self.signer,
            image: self.image,
            format: self.format.map(|f| match f {
                FormatArg::TarZst => crate::archive::Format::TarZst,
                FormatArg::TarGz => crate::archive::Format::TarGz,
            }),
            strict: self.strict,
        }
    }

    pub fn build_opts(&self) -> crate::bundle::compile::BuildOpts {
        crate::bundle::compile::BuildOpts {
            builder: self.builder,
            profile: self.profile.clone(),
            target: self.target.clone(),
            target_dir: self.target_dir.clone(),
            jobs: self.jobs,
            features: self.features.clone(),
            all_features: self.all_features,
            no_default_features: self.no_default_features,
            locked: self.locked,
            frozen: self.frozen,
            offline: self.offline,
            quiet: self.output.quiet,
            verbose: self.output.verbose,
            color: self.output.color.map(|c| match c {
                ColorChoice::Auto => "auto",
                ColorChoice::Always => "always",
                ColorChoice::Never => "never",
            }),
            auditable: false,
        }
    }

    /// What `project::load` needs to find the workspace.
    pub fn locate(&self) -> crate::config::project::Locate {
        crate::config::project::Locate {
            manifest_path: self.manifest_path.clone(),
            target_dir: self.target_dir.clone(),
            locked: self.locked,
            frozen: self.frozen,
            offline: self.offline,
        }
    }

    /// The packages asked for.
    pub fn selection(&self) -> crate::config::project::Selection {
        crate::config::project::Selection {
            packages: self.package.clone(),
            workspace: self.workspace,
        }
    }
}

/// Shell completions for `cargo-release-bundle` (which also accepts the bare form).
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = ReleaseBundle::augment_args(clap::Command::new("cargo-release-bundle"));
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "cargo-release-bundle", &mut out);
    out
}

/// Accept both `cargo-release-bundle release-bundle ARGS` (how cargo runs us) and
/// `cargo-release-bundle ARGS`.
pub fn normalize_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.get(1).is_none_or(|a| a != "release-bundle") {
        args.insert(1.min(args.len()), "release-bundle".into());
    }
    args
}

impl TrustOpts {
    /// The trust policy these flags state.
    pub fn trust(&self) -> crate::verify::Trust {
        crate::verify::Trust {
            sha256: self.sha256.clone(),
            allowed_signers: self.allowed_signers.clone(),
            identity: self.identity.clone(),
            minisign_key: self.minisign_key.clone(),
        }
    }
}

impl CheckOpts {
    /// The verify limits these flags set (their defaults are the library's).
    pub fn limits(&self) -> crate::verify::Limits {
        crate::verify::Limits {
            max_entries: self.max_entries,
            max_size: self.max_size,
            max_ratio: self.max_ratio,
            ..crate::verify::Limits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommands_parse() {
        let args = normalize_args(
            [
                "cargo-release-bundle",
                "verify",
                "a.tar.zst",
                "b.tar.gz",
                "--strict",
            ]
            .map(Into::into)
            .to_vec(),
        );
        let Cli::ReleaseBundle(rb) = Cli::try_parse_from(args).unwrap();
        let Some(Commands::Verify(v)) = rb.command else {
            panic!("verify")
        };
        assert_eq!(v.paths.len(), 2);
        assert!(v.check.strict);
        let args = normalize_args(
            [
                "x",
                "release-bundle",
                "unpack",
                "a.tar.zst",
                "--to",
                "/opt/a",
            ]
            .map(Into::into)
            .to_vec(),
        );
        let Cli::ReleaseBundle(rb) = Cli::try_parse_from(args).unwrap();
        assert!(matches!(rb.command, Some(Commands::Unpack(u)) if u.to == "/opt/a"));
        // Bundle options do not mix with subcommands.
        let args = normalize_args(
            ["x", "--profile", "prod", "verify", "a"]
                .map(Into::into)
                .to_vec(),
        );
        assert!(Cli::try_parse_from(args).is_err());
    }

    #[test]
    fn both_invocations_parse() {
        for argv in [
            vec![
                "cargo-release-bundle",
                "release-bundle",
                "--profile",
                "prod",
                "-p",
                "a",
                "-p",
                "b",
            ],
            vec![
                "cargo-release-bundle",
                "--profile",
                "prod",
                "-p",
                "a",
                "-p",
                "b",
            ],
        ] {
            let args = normalize_args(argv.into_iter().map(Into::into).collect());
            let Cli::ReleaseBundle(rb) = Cli::try_parse_from(args).unwrap();
            assert!(rb.command.is_none());
            assert_eq!(rb.bundle.profile, "prod");
            assert_eq!(rb.bundle.package, ["a", "b"]);
        }
    }
}
