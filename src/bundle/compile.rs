//! The only module that runs `cargo build`. Executables are located from cargo's JSON
//! artifact messages, never guessed from `target/<profile>/`.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use cargo_metadata::{Message, Package, TargetKind};

use crate::bundle::rustflags::{self, Injection};
use crate::config::project;
use crate::output::Output;

/// What the build produced for one package.
#[derive(Debug, Clone, Default)]
pub struct Artifacts {
    /// bin target name → executable path.
    pub executables: BTreeMap<String, Utf8PathBuf>,
    /// Features cargo activated for the package.
    pub features: Vec<String>,
}

/// What builds the executables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Builder {
    /// `$CARGO build`
    Cargo,
    /// `cross build` (https://github.com/cross-rs/cross)
    Cross,
    /// `cargo zigbuild` (https://github.com/rust-cross/cargo-zigbuild)
    Zigbuild,
}

impl Builder {
    pub fn name(self) -> &'static str {
        match self {
            Builder::Cargo => "cargo",
            Builder::Cross => "cross",
            Builder::Zigbuild => "zigbuild",
        }
    }
}

/// Everything the build takes from the command line, forwarded to cargo as it is.
#[derive(Debug, Clone)]
pub struct BuildOpts {
    pub builder: Builder,
    pub profile: String,
    pub target: Option<String>,
    pub target_dir: Option<Utf8PathBuf>,
    pub jobs: Option<std::num::NonZeroU32>,
    pub features: Vec<String>,
    pub all_features: bool,
    pub no_default_features: bool,
    pub locked: bool,
    pub frozen: bool,
    pub offline: bool,
    pub quiet: bool,
    /// `-v` count: cargo gets one `--verbose` less (our `-v` is for us).
    pub verbose: u8,
    /// `--color` as cargo spells it.
    pub color: Option<&'static str>,
    /// Build through `cargo auditable` (the dependency list embedded in the executables).
    pub auditable: bool,
}

/// The cargo command line for one package (pure; exposed for `-v` and tests).
pub fn command_args(
    opts: &BuildOpts,
    manifest: &Utf8Path,
    package: &Package,
    bins: &[String],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "build".into(),
        "--message-format=json-render-diagnostics".into(),
        "--manifest-path".into(),
        manifest.to_string(),
        "--package".into(),
        format!("{}@{}", package.name, package.version),
        "--profile".into(),
        opts.profile.clone(),
    ];
    for bin in bins {
        args.extend(["--bin".into(), bin.clone()]);
    }
    if let Some(target) = &opts.target {
        args.extend(["--target".into(), target.clone()]);
    }
    if let Some(dir) = &opts.target_dir {
        args.extend(["--target-dir".into(), dir.to_string()]);
    }
    if let Some(jobs) = opts.jobs {
        args.extend(["--jobs".into(), jobs.to_string()]);
    }
    for f in &opts.features {
        args.extend(["--features".into(), f.clone()]);
    }
    for (flag, on) in [
        ("--all-features", opts.all_features),
        ("--no-default-features", opts.no_default_features),
        ("--locked", opts.locked),
        ("--frozen", opts.frozen),
        ("--offline", opts.offline),
        ("--quiet", opts.quiet),
    ] {
        if on {
            args.push(flag.into());
        }
    }
    for _ in 0..opts.verbose.saturating_sub(1) {
        args.push("--verbose".into());
    }
    if let Some(color) = opts.color {
        args.push(format!("--color={color}"));
    }
    args
}

/// What makes the build path-independent: a rustflags injection and C flags for build scripts.
#[derive(Debug, Clone, Default)]
pub struct PathRemap {
    pub injection: Option<Injection>,
    /// Environment variables to set (`CFLAGS`, `CXXFLAGS`, ...), already including the user's.
    pub env: Vec<(String, String)>,
}

impl PathRemap {
    /// Remap `pairs` (the workspace root and `CARGO_HOME`, and the fixed repository root when
    /// one is used) through whichever rustflags sources are in force.
    pub fn new(
        sources: &rustflags::FlagSources,
        target: &str,
        pairs: &rustflags::Remaps,
    ) -> PathRemap {
        let flags = rustflags::remap_flags(pairs);
        let (prefix_map, quoted) = rustflags::prefix_map_flags(pairs);
        let underscored = target.replace('-', "_");
        let mut env = Vec::new();
        for base in ["CFLAGS", "CXXFLAGS"] {
            // cc reads the most specific of these that is set; extend each one that is.
            let variants = [
                format!("{base}_{target}"),
                format!("{base}_{underscored}"),
                format!("TARGET_{base}"),
                format!("HOST_{base}"),
            ];
            for var in variants {
                if let Ok(existing) = std::env::var(&var) {
                    env.push((var, format!("{existing} {prefix_map}")));
                }
            }
            let existing = std::env::var(base).unwrap_or_default();
            env.push((
                base.to_string(),
                format!("{existing} {prefix_map}").trim_start().to_string(),
            ));
        }
        if quoted {
            env.push(("CC_SHELL_ESCAPED_FLAGS".to_string(), "1".to_string()));
        }
        PathRemap {
            injection: Some(rustflags::decide(sources, target, &flags)),
            env,
        }
    }
}

/// The program and first argument that build with `opts.builder`.
fn builder_command(opts: &BuildOpts) -> (String, Option<&'static str>) {
    match opts.builder {
        Builder::Cargo => (project::cargo().to_string(), None),
        Builder::Cross => ("cross".to_string(), None),
        Builder::Zigbuild => (project::cargo().to_string(), Some("zigbuild")),
    }
}

/// `auditable = true` needs `cargo auditable`, with cargo itself as the builder.
pub fn check_auditable(opts: &BuildOpts) -> Result<()> {
    if opts.builder != Builder::Cargo {
        bail!(
            "auditable = true builds through `cargo auditable`, which works with `--builder cargo`, not `--builder {}`",
            opts.builder.name()
        );
    }
    let ok = Command::new(project::cargo().as_str())
        .args(["auditable", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!(
            "auditable = true needs `cargo auditable`, which is not installed\nhelp: cargo install cargo-auditable --locked"
        );
    }
    Ok(())
}

/// Fail early, before anything is built, when the chosen builder is not installed.
pub fn check_builder(opts: &BuildOpts) -> Result<()> {
    let (program, first) = builder_command(opts);
    if opts.builder != Builder::Cargo {
        let mut probe = Command::new(&program);
        if let Some(sub) = first {
            probe.arg(sub);
        }
        let ok = probe
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let how = match opts.builder {
                Builder::Cross => {
                    "`cross` is not installed or not working\nhelp: cargo install cross --git https://github.com/cross-rs/cross (it needs docker or podman)"
                }
                _ => {
                    "`cargo zigbuild` is not installed or not working\nhelp: cargo install --locked cargo-zigbuild, and install zig"
                }
            };
            bail!("--builder {}: {how}", opts.builder.name());
        }
    }
    Ok(())
}

/// Cargo's JSON messages: the package's bin executables and their features; text lines are
/// passed on to stderr. The first unreadable message, if any.
fn read_messages(
    stdout: impl std::io::Read,
    package_manifest: &Utf8Path,
) -> (Artifacts, std::result::Result<(), std::io::Error>) {
    let mut artifacts = Artifacts::default();
    let mut reading = Ok(());
    for message in Message::parse_stream(BufReader::new(stdout)) {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                reading = Err(e);
                continue;
            }
        };
        match message {
            Message::CompilerArtifact(a)
                if a.manifest_path == package_manifest
                    && a.target.kind.contains(&TargetKind::Bin) =>
            {
                if let Some(exe) = a.executable {
                    artifacts.executables.insert(a.target.name.clone(), exe);
                    artifacts.features = a.features.clone();
                }
            }
            Message::TextLine(line) => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            _ => {}
        }
    }
    (artifacts, reading)
}

/// Build the package's bins; cargo's diagnostics go straight to the user's stderr.
/// `package_manifest` is the package's `Cargo.toml` as cargo will see it (through the fixed
/// root when one is used), which identifies its artifacts.
pub fn build(
    opts: &BuildOpts,
    manifest: &Utf8Path,
    package: &Package,
    package_manifest: &Utf8Path,
    bins: &[String],
    remap: &PathRemap,
    shell: &Output,
) -> Result<Artifacts> {
    let mut args = command_args(opts, manifest, package, bins);
    let (program, first) = builder_command(opts);
    if let Some(sub) = first {
        args[0] = sub.to_string();
    }
    if opts.auditable {
        args.insert(0, "auditable".to_string());
    }
    let cargo = Utf8PathBuf::from(program);
    let mut command = Command::new(&cargo);
    match &remap.injection {
        Some(Injection::Config(value)) => args.extend(["--config".to_string(), value.clone()]),
        Some(Injection::EncodedEnv(flags)) => {
            command
                .env("CARGO_ENCODED_RUSTFLAGS", flags)
                .env_remove("RUSTFLAGS");
            shell.verbose_status(
                "Running",
                format!(
                    "with CARGO_ENCODED_RUSTFLAGS={:?}",
                    flags.replace('\x1f', " ")
                ),
            );
        }
        None => {}
    }
    for (k, v) in &remap.env {
        command.env(k, v);
    }
    shell.verbose_status("Running", format!("`{cargo} {}`", args.join(" ")));
    if remap.injection.is_some() {
        shell.verbose_status(
            "Note",
            "built with path-remapping flags, in a target directory of its own unless --target-dir is given (sharing one with plain `cargo build` makes each rebuild what the other built); the executables that ship are the bundle's",
        );
    }
    let mut child = command
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run `{cargo}`"))?;
    let stdout = child
        .stdout
        .take()
        .context("cargo's stdout was not captured")?;
    let (mut artifacts, reading) = read_messages(stdout, package_manifest);
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for `{cargo}`"))?;
    if !status.success() {
        bail!(
            "`cargo build` failed for package `{}` ({status}); no bundle was written",
            package.name
        );
    }
    reading.with_context(|| format!("cannot read `{cargo}`'s JSON messages"))?;
    for bin in bins {
        if !artifacts.executables.contains_key(bin) {
            bail!(
                "cargo did not report an executable for bin target `{bin}` of package `{}`",
                package.name
            );
        }
    }
    artifacts.features.sort();
    Ok(artifacts)
}

/// Build the keeper crate at `manifest` (see `bundle::keeper`) for the bundle's target with
/// the bundle's builder: offline and locked (it has no dependencies), its own target
/// directory, its paths remapped to `remapped`. Run from `cwd` (the workspace root) so the
/// project's `.cargo/config.toml` (linkers, for instance) applies. Its executable.
pub fn build_keeper(
    opts: &BuildOpts,
    manifest: &Utf8Path,
    cwd: &Utf8Path,
    remapped: &str,
    shell: &Output,
) -> Result<Utf8PathBuf> {
    let dir = manifest.parent().unwrap_or(manifest);
    let (program, first) = builder_command(opts);
    let mut args: Vec<String> = first.map(String::from).into_iter().collect();
    args.extend(
        [
            "build",
            "--release",
            "--offline",
            "--locked",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
            manifest.as_str(),
            "--target-dir",
            dir.join("target").as_str(),
        ]
        .map(String::from),
    );
    if let Some(target) = &opts.target {
        args.extend(["--target".into(), target.clone()]);
    }
    if let Some(jobs) = opts.jobs {
        args.extend(["--jobs".into(), jobs.to_string()]);
    }
    if opts.quiet {
        args.push("--quiet".into());
    }
    if let Some(color) = opts.color {
        args.push(format!("--color={color}"));
    }
    shell.verbose_status(
        "Running",
        format!("`{program} {}` (the keeper)", args.join(" ")),
    );
    let mut child = Command::new(&program)
        .args(&args)
        .current_dir(cwd)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("--remap-path-prefix={dir}={remapped}"),
        )
        .env_remove("RUSTFLAGS")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run `{program}`"))?;
    let stdout = child
        .stdout
        .take()
        .context("cargo's stdout was not captured")?;
    let (artifacts, reading) = read_messages(stdout, manifest);
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for `{program}`"))?;
    if !status.success() {
        bail!("building the keeper (for `listen`) failed ({status}); no bundle was written");
    }
    reading.with_context(|| format!("cannot read `{program}`'s JSON messages"))?;
    artifacts
        .executables
        .into_values()
        .next()
        .context("cargo did not report the keeper's executable")
}
