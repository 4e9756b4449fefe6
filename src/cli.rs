//! Command-line interface. Doc comments here are the `--help` text.
//!
//! Cargo runs `cargo-release-bundle release-bundle ARGS`; running the binary directly without
//! the `release-bundle` word works too (see [`normalize_args`]).

use camino::Utf8PathBuf;
use clap::{Args, Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo", disable_help_subcommand = true)]
pub enum Cli {
    /// Build a Rust service and write a reproducible, deployable release bundle.
    #[command(name = "release-bundle", version, author)]
    ReleaseBundle(BundleOpts),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MessageFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    #[value(name = "tar.zst")]
    TarZst,
    #[value(name = "tar.gz")]
    TarGz,
}

#[derive(Debug, Clone, Args)]
#[command(
    about = "Build a Rust service and write a reproducible, deployable release bundle",
    after_help = "Configuration lives in [package.metadata.release] (or [package.metadata.release-bundle]); see the README."
)]
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

    /// Directory for the bundles [default: <target-dir>/release-bundle/<profile>/]
    #[arg(long, value_name = "DIR", help_heading = "Bundle Options")]
    pub out_dir: Option<Utf8PathBuf>,

    /// Archive format (overrides the `format` key)
    #[arg(long, value_name = "FORMAT", help_heading = "Bundle Options")]
    pub format: Option<FormatArg>,

    /// Treat configuration warnings (such as unknown keys) as errors
    #[arg(long, help_heading = "Bundle Options")]
    pub strict: bool,

    /// Output format: human status lines on stderr, or JSON lines on stdout
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

/// Accept both `cargo-release-bundle release-bundle ARGS` (how cargo runs us) and
/// `cargo-release-bundle ARGS`.
pub fn normalize_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.get(1).is_none_or(|a| a != "release-bundle") {
        args.insert(1.min(args.len()), "release-bundle".into());
    }
    args
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
            let Cli::ReleaseBundle(opts) = Cli::try_parse_from(args).unwrap();
            assert_eq!(opts.profile, "prod");
            assert_eq!(opts.package, ["a", "b"]);
        }
    }
}
