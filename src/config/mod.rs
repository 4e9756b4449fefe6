//! Configuration: the `[package.metadata.release]` table (or `release-bundle`), layered over
//! `[workspace.metadata.release]` and built-in defaults, with per-profile overrides.
//!
//! This module does no I/O. It takes the JSON tables `cargo metadata` produced and returns a
//! validated [`ReleaseConfig`] or a [`ConfigError`] naming the manifest file and the key.
//! Unknown keys become [`ConfigWarning`]s with a suggestion; cargo-release's own keys are
//! ignored silently in the shared `release` table.

pub mod init;
pub mod keys;
pub mod layer;
mod listen;
pub mod processes;
pub mod project;
mod tables;
pub mod value;

use std::collections::BTreeMap;
use std::fmt;

use camino::Utf8PathBuf;
use serde_json::Value;

pub use keys::{CommandEntry, HookName, IncludeRule, Listen, Ready, Workdir};
pub use layer::{Layer, TableKind};
pub use value::{ConfigError, Origin, Spanned};

use crate::archive::Format;

/// Where the priv directory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivDir {
    /// Not configured: ship `priv/` when the package has one.
    Default,
    /// `priv = false`.
    Disabled,
    /// `priv = "dir"` (or `true`, meaning `"priv"`): must exist.
    Dir(Spanned<String>),
}

/// A non-fatal configuration problem (an error under `--strict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub origin: Origin,
    pub message: String,
    pub help: Option<String>,
}

impl ConfigWarning {
    /// The warning as an error (under `--strict`): what is wrong, without the warning's
    /// "ignored", since nothing goes on.
    pub fn as_error(&self) -> String {
        let mut text = format!(
            "{}: {}",
            self.origin,
            self.message.trim_end_matches(", ignored")
        );
        if let Some(help) = &self.help {
            text.push_str(&format!("\nhelp: {help}"));
        }
        text
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\nhelp: {help}")?;
        }
        Ok(())
    }
}

/// Launcher settings. Parsed and validated here; rendered by the launcher stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LauncherConfig {
    pub enabled: bool,
    pub main: Option<Spanned<String>>,
    pub env: BTreeMap<String, Spanned<String>>,
    pub required_env: Vec<Spanned<String>>,
    pub env_file: Option<Spanned<String>>,
    pub stop_timeout: u32,
    /// Sockets the keeper holds across restarts (empty: no keeper, stop then start).
    pub listen: BTreeMap<String, Spanned<Listen>>,
    pub ready: Ready,
    /// Seconds a new generation has to become ready.
    pub ready_timeout: u32,
    /// The daemon's log is rotated at this size (bytes; 0: never), keeping `log_keep` files.
    pub log_max_size: u64,
    pub log_keep: u32,
    /// Arguments `start`/`daemon` give the main binary before the caller's own.
    pub args: Vec<String>,
    /// Where `start`/`daemon` run the service (default: the release root).
    pub workdir: Workdir,
    pub commands: BTreeMap<String, Spanned<CommandEntry>>,
    pub hooks: BTreeMap<HookName, Spanned<String>>,
    /// Processes besides `web` (the main binary).
    pub processes: BTreeMap<String, Spanned<processes::Process>>,
}

/// The validated, merged configuration of one package for one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseConfig {
    /// Release name (launcher and archive prefix).
    pub name: String,
    /// Bin targets to ship; `None` means all of the package's bin targets.
    pub bins: Option<Vec<Spanned<String>>>,
    pub priv_dir: PrivDir,
    pub exclude: Vec<Spanned<String>>,
    pub include: Vec<Spanned<IncludeRule>>,
    pub format: Format,
    pub compression_level: i32,
    /// Remap build-machine paths out of executables (default true).
    pub reproducible: bool,
    /// Build with the dependency list embedded (`cargo auditable`).
    pub auditable: bool,
    /// Path prefixes the leak scan accepts (`[verify] allow-paths`), recorded in the manifest.
    pub allow_paths: Vec<String>,
    pub launcher: LauncherConfig,
}

impl fmt::Display for ReleaseConfig {
    /// A one-line summary for `-v`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: &mut dyn Iterator<Item = &String>| {
            items.map(String::as_str).collect::<Vec<_>>().join(", ")
        };
        write!(f, "name = {:?}, bins = ", self.name)?;
        match &self.bins {
            Some(bins) => write!(f, "[{}]", list(&mut bins.iter().map(|b| &b.value)))?,
            None => write!(f, "(all)")?,
        }
        let priv_dir = match &self.priv_dir {
            PrivDir::Default => "(priv if present)".to_string(),
            PrivDir::Disabled => "false".to_string(),
            PrivDir::Dir(d) => format!("{:?}", d.value),
        };
        write!(
            f,
            ", priv = {priv_dir}, format = {}, compression-level = {}, exclude = [{}], include = {} rule(s), launcher = {}",
            self.format,
            self.compression_level,
            list(&mut self.exclude.iter().map(|e| &e.value)),
            self.include.len(),
            self.launcher.enabled,
        )
    }
}

/// One metadata table as found by `cargo metadata`.
pub struct TableSource<'a> {
    /// The manifest file, as shown to the user.
    pub file: Utf8PathBuf,
    /// `[package.metadata]` or `[workspace.metadata]`, or `None` when absent.
    pub metadata: Option<&'a Value>,
    /// `"package"` or `"workspace"`.
    pub scope: &'static str,
}

impl<'a> TableSource<'a> {
    /// The table that applies: `release-bundle` when present, else `release`.
    fn table(&self) -> Option<(&'a Value, Origin, TableKind)> {
        let metadata = self.metadata?.as_object()?;
        let (key, kind) = if metadata.contains_key("release-bundle") {
            ("release-bundle", TableKind::Own)
        } else if metadata.contains_key("release") {
            ("release", TableKind::Shared)
        } else {
            return None;
        };
        let origin = Origin::new(self.file.clone(), format!("{}.metadata.{key}", self.scope));
        Some((&metadata[key], origin, kind))
    }

    /// The `deploy` table inside the release table, with where it is.
    pub fn deploy_table(&self) -> Option<(&'a Value, Origin)> {
        self.sub_table("deploy")
    }

    /// A key of the release table read on its own (`deploy`, `image`), with where it is.
    pub fn sub_table(&self, key: &str) -> Option<(&'a Value, Origin)> {
        let (table, origin, _) = self.table()?;
        Some((table.get(key)?, origin.child(key)))
    }

    /// `profile.<profile>.<key>` of the release table, with where it is.
    pub fn profile_sub_table(&self, profile: &str, key: &str) -> Option<(&'a Value, Origin)> {
        let (table, origin, _) = self.table()?;
        let value = table.get("profile")?.get(profile)?.get(key)?;
        Some((value, origin.child("profile").child(profile).child(key)))
    }

    /// Whether the package or workspace has a release table at all.
    pub fn has_table(&self) -> bool {
        self.table().is_some()
    }
}

/// What the command line adds to the configuration.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub profile: String,
    pub format: Option<Format>,
}

/// The result of reading a package's configuration.
#[derive(Debug)]
pub struct Loaded {
    pub config: ReleaseConfig,
    pub warnings: Vec<ConfigWarning>,
}

/// Read, validate and merge: defaults < workspace < package, then the `profile.<name>`
/// overrides (workspace < package) on top.
pub fn load(
    package_name: &str,
    workspace: &TableSource<'_>,
    package: &TableSource<'_>,
    overrides: &Overrides,
) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let mut read = |source: &TableSource<'_>| -> Result<(Layer, Layer), ConfigError> {
        match source.table() {
            None => Ok((Layer::default(), Layer::default())),
            Some((value, origin, kind)) => {
                let mut base = Layer::parse(value, &origin, kind, &mut warnings)?;
                let profile = base.profiles.remove(&overrides.profile).unwrap_or_default();
                Ok((base, profile))
            }
        }
    };
    let (ws_base, ws_profile) = read(workspace)?;
    let (pkg_base, pkg_profile) = read(package)?;
    let merged = ws_base.over(pkg_base).over(ws_profile.over(pkg_profile));
    for (name, value) in &merged.env {
        if looks_secret(name) {
            warnings.push(ConfigWarning {
                origin: value.origin.clone(),
                message: "looks like a secret, and `env` values are baked into the launcher inside the bundle".into(),
                help: Some("set it in the environment or in the `env-file` on the server instead".into()),
            });
        }
    }
    let config = finish(package_name, merged, overrides)?;
    Ok(Loaded { config, warnings })
}

/// Variable names that usually hold secrets.
fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "PRIVATE_KEY",
        "API_KEY",
        "CREDENTIAL",
    ]
    .iter()
    .any(|s| upper.contains(s))
}

fn finish(
    package_name: &str,
    layer: Layer,
    overrides: &Overrides,
) -> Result<ReleaseConfig, ConfigError> {
    let format = overrides
        .format
        .or(layer.format.as_ref().map(|f| f.value))
        .unwrap_or(Format::TarZst);
    let (min, max, default) = format.levels();
    let compression_level = match &layer.compression_level {
        None => default,
        Some(level) if (min..=max).contains(&level.value) => level.value,
        Some(level) => {
            return Err(level.origin.error(format!(
                "{} is out of range for {format}: expected an integer from {min} to {max}",
                level.value
            )));
        }
    };
    let launcher = LauncherConfig {
        enabled: layer.launcher.unwrap_or(true),
        main: layer.main,
        env: layer.env,
        required_env: layer.required_env.unwrap_or_default(),
        env_file: layer.env_file,
        stop_timeout: layer.stop_timeout.unwrap_or(30),
        listen: layer.listen,
        ready: layer.ready.unwrap_or(Ready::AfterMillis(1000)),
        ready_timeout: layer.ready_timeout.unwrap_or(60),
        log_max_size: layer.log_max_size.unwrap_or(10 << 20),
        log_keep: layer.log_keep.unwrap_or(5),
        args: layer
            .args
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.value)
            .collect(),
        workdir: layer.workdir.unwrap_or(Workdir::Release(String::new())),
        commands: layer.commands,
        hooks: layer.hooks,
        processes: layer.processes,
    };
    Ok(ReleaseConfig {
        name: layer
            .name
            .map(|n| n.value)
            .unwrap_or_else(|| package_name.to_string()),
        bins: layer.bins,
        priv_dir: layer.priv_dir.unwrap_or(PrivDir::Default),
        exclude: layer.exclude.unwrap_or_default(),
        include: layer.include.unwrap_or_default(),
        format,
        // Invariant: levels() ranges fit in i32.
        compression_level: compression_level as i32,
        reproducible: layer.reproducible.unwrap_or(true),
        auditable: layer.auditable.unwrap_or(false),
        allow_paths: layer
            .allow_paths
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.value)
            .collect(),
        launcher,
    })
}

#[cfg(test)]
mod tests;
