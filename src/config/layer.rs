//! One layer of configuration (workspace, package, or a profile override of either),
//! parsed from a metadata table with every field optional so layers can be merged.

use std::collections::BTreeMap;

use serde_json::Value;

use super::keys::{
    CARGO_RELEASE_KEYS, CommandEntry, HookName, IncludeRule, KNOWN_KEYS, Listen, RELEASE_VARIABLES,
    Ready, Workdir,
};
use super::listen::{parse_listen, parse_ready, parse_ready_timeout, parse_size};
use super::tables::{
    parse_command, parse_env, parse_hooks, parse_includes, parse_priv, parse_workdir,
};
use super::value::{self, ConfigError, Origin, Result, Spanned};
use super::{ConfigWarning, Format, PrivDir};

#[derive(Debug, Clone, Default)]
pub struct Layer {
    pub name: Option<Spanned<String>>,
    pub bins: Option<Vec<Spanned<String>>>,
    pub priv_dir: Option<PrivDir>,
    pub exclude: Option<Vec<Spanned<String>>>,
    pub include: Option<Vec<Spanned<IncludeRule>>>,
    pub format: Option<Spanned<Format>>,
    pub compression_level: Option<Spanned<i64>>,
    pub main: Option<Spanned<String>>,
    pub env: BTreeMap<String, Spanned<String>>,
    pub required_env: Option<Vec<Spanned<String>>>,
    pub env_file: Option<Spanned<String>>,
    pub stop_timeout: Option<u32>,
    pub listen: BTreeMap<String, Spanned<Listen>>,
    pub ready: Option<Ready>,
    pub ready_timeout: Option<u32>,
    pub log_max_size: Option<u64>,
    pub log_keep: Option<u32>,
    pub args: Option<Vec<Spanned<String>>>,
    pub workdir: Option<Workdir>,
    pub allow_paths: Option<Vec<Spanned<String>>>,
    pub launcher: Option<bool>,
    pub reproducible: Option<bool>,
    pub auditable: Option<bool>,
    pub commands: BTreeMap<String, Spanned<CommandEntry>>,
    pub hooks: BTreeMap<HookName, Spanned<String>>,
    pub processes: BTreeMap<String, Spanned<super::processes::Process>>,
    pub profiles: BTreeMap<String, Layer>,
}

/// Warn about a `$` that is not one of the substituted `${RELEASE_*}` forms: it stays literal.
pub(super) fn warn_literal_dollars(text: &str, origin: &Origin, warnings: &mut Vec<ConfigWarning>) {
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        let substituted = after.strip_prefix('{').and_then(|a| {
            let (name, _) = a.split_once('}')?;
            RELEASE_VARIABLES.contains(&name).then_some(name.len() + 2)
        });
        match substituted {
            Some(len) => rest = &after[len..],
            None => {
                warnings.push(ConfigWarning {
                    origin: origin.clone(),
                    message: format!(
                        "`$` in {text:?} stays literal: only ${{RELEASE_ROOT}}, ${{RELEASE_PRIV}}, ${{RELEASE_TMP}}, ${{RELEASE_SHARED}}, ${{RELEASE_NAME}} and ${{RELEASE_VSN}} are substituted (never by a shell)"
                    ),
                    help: None,
                });
                return;
            }
        }
    }
}

fn unknown_key(key: &str, origin: &Origin, known: &[&str], warnings: &mut Vec<ConfigWarning>) {
    let help = value::closest(key, known).map(|k| format!("did you mean `{k}`?"));
    warnings.push(ConfigWarning {
        origin: origin.child(key),
        message: "unknown key, ignored".into(),
        help,
    });
}

pub fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub fn is_release_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= 64
        && matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

pub fn is_command_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn env_name(value: &Value, origin: &Origin) -> Result<Spanned<String>> {
    let name = value::string(value, origin)?;
    if !is_env_name(&name.value) {
        return Err(origin.error(format!(
            "{:?} is not a valid environment variable name (letters, digits and `_`, not starting with a digit)",
            name.value
        )));
    }
    Ok(name)
}

/// A relative path inside the package (no absolute paths, no NUL).
pub(super) fn relative_path(value: &Value, origin: &Origin) -> Result<Spanned<String>> {
    let path = value::string(value, origin)?;
    if path.value.is_empty() {
        return Err(origin.error("must not be empty"));
    }
    if path.value.starts_with('/') {
        return Err(origin.error(format!(
            "{:?} is absolute: paths are relative to the package directory",
            path.value
        )));
    }
    Ok(path)
}

/// Which table a layer is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// `[*.metadata.release]`, shared with cargo-release: its keys are ignored silently.
    Shared,
    /// `[*.metadata.release-bundle]`, ours alone.
    Own,
    /// `profile.<name>` inside either: no cargo-release keys, no nested profiles.
    Profile,
}

impl Layer {
    /// Parse a release table of the given kind.
    pub fn parse(
        value: &Value,
        origin: &Origin,
        kind: TableKind,
        warnings: &mut Vec<ConfigWarning>,
    ) -> std::result::Result<Layer, ConfigError> {
        let top = kind != TableKind::Profile;
        let map = value::table(value, origin)?;
        let mut layer = Layer::default();
        for (key, v) in map {
            let o = origin.child(key);
            if layer.packaging_key(key, v, &o)? || layer.launcher_key(key, v, &o, warnings)? {
                continue;
            }
            match key.as_str() {
                "profile" if top => {
                    for (name, p) in value::table(v, &o)? {
                        let profile =
                            Layer::parse(p, &o.child(name), TableKind::Profile, warnings)?;
                        layer.profiles.insert(name.clone(), profile);
                    }
                }
                // Read on their own (`ProjectSections::sections`), a profile's first.
                "image" | "sign" => {}
                // Read by `deploy` (see `deploy::config`) from the release table itself: a
                // deploy varies by destination, not by build profile.
                "deploy" if top => {}
                "deploy" => warnings.push(ConfigWarning {
                    origin: o.clone(),
                    message: "not read inside a profile, ignored".into(),
                    help: Some(
                        "a deploy varies by destination: use `deploy.destinations.<name>` in the release table itself".into(),
                    ),
                }),
                // Ours when it is a table; cargo-release's `verify = bool` in a shared table.
                "verify" if v.is_object() => {
                    let table = value::table(v, &o)?;
                    for (k, item) in table {
                        match k.as_str() {
                            "allow-paths" => {
                                let paths = value::string_list(item, &o.child(k))?;
                                for (i, p) in paths.iter().enumerate() {
                                    if p.value.is_empty() || p.value.contains('\0') {
                                        return Err(o.child(k).index(i).error(
                                            "is empty or holds a NUL byte; give a path prefix such as \"/home/hello/\"",
                                        ));
                                    }
                                }
                                layer.allow_paths = Some(paths);
                            }
                            _ => {
                                return Err(o
                                    .child(k)
                                    .error("unknown key in verify (known: allow-paths)"));
                            }
                        }
                    }
                }
                "verify" if kind != TableKind::Shared => {
                    return Err(o.error(format!(
                        "expected a table (`[...verify] allow-paths = [...]`), found {}",
                        value::describe(v)
                    )));
                }
                _ if kind == TableKind::Shared && CARGO_RELEASE_KEYS.contains(&key.as_str()) => {}
                _ => {
                    let known: Vec<&str> = KNOWN_KEYS
                        .iter()
                        .copied()
                        .filter(|k| top || *k != "profile")
                        .collect();
                    unknown_key(key, origin, &known, warnings);
                }
            }
        }
        Ok(layer)
    }

    /// A key about what the bundle holds; whether `key` is one.
    fn packaging_key(
        &mut self,
        key: &str,
        v: &Value,
        o: &Origin,
    ) -> std::result::Result<bool, ConfigError> {
        let o = o.clone();
        match key {
            "name" => {
                let name = value::string(v, &o)?;
                if !is_release_name(&name.value) {
                    return Err(o.error(format!(
                        "{:?} is not a valid release name (ASCII letters, digits, `.`, `_`, `+`, `-`; at most 64)",
                        name.value
                    )));
                }
                self.name = Some(name);
            }
            "bins" => {
                let bins = value::string_list(v, &o)?;
                if bins.is_empty() {
                    return Err(o
                        .error("lists no binaries")
                        .with_help("leave `bins` out to ship every bin target of the package"));
                }
                self.bins = Some(bins);
            }
            "priv" => self.priv_dir = Some(parse_priv(v, &o)?),
            "exclude" => {
                let globs = value::string_list(v, &o)?;
                for (i, g) in globs.iter().enumerate() {
                    if let Err(e) = globset::Glob::new(&g.value) {
                        return Err(o.index(i).error(format!(
                            "{:?} is not a valid glob: {}",
                            g.value,
                            e.kind()
                        )));
                    }
                }
                self.exclude = Some(globs);
            }
            "include" => self.include = Some(parse_includes(v, &o)?),
            "format" => {
                let s = value::string(v, &o)?;
                let format = Format::parse(&s.value).ok_or_else(|| {
                    o.error(format!("unknown format {:?}", s.value))
                        .with_help("expected \"tar.zst\" or \"tar.gz\"")
                })?;
                self.format = Some(Spanned {
                    value: format,
                    origin: o,
                });
            }
            // The range depends on the format, which may be set in another layer:
            // checked once the layers are merged.
            "compression-level" => self.compression_level = Some(value::integer(v, &o, 1, 22)?),
            "reproducible" => self.reproducible = Some(value::boolean(v, &o)?),
            "auditable" => self.auditable = Some(value::boolean(v, &o)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A key about the launcher and the service it runs; whether `key` is one.
    fn launcher_key(
        &mut self,
        key: &str,
        v: &Value,
        o: &Origin,
        warnings: &mut Vec<ConfigWarning>,
    ) -> std::result::Result<bool, ConfigError> {
        let o = o.clone();
        match key {
            "main" => self.main = Some(value::string(v, &o)?),
            "env" => self.env.extend(parse_env(v, &o, warnings)?),
            "required-env" => {
                let Value::Array(items) = v else {
                    return Err(o.error(format!(
                        "expected an array of variable names, found {}",
                        value::describe(v)
                    )));
                };
                self.required_env = Some(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| env_name(item, &o.index(i)))
                        .collect::<Result<_>>()?,
                );
            }
            "env-file" => {
                let path = value::string(v, &o)?;
                if !path.value.starts_with('/') || path.value.contains('\0') {
                    return Err(o
                        .error(format!("{:?} is not an absolute path", path.value))
                        .with_help("the env file holds secrets and lives outside the bundle, e.g. \"/etc/billing/env\""));
                }
                self.env_file = Some(path);
            }
            "stop-timeout" => {
                // Invariant: the range fits in u32.
                self.stop_timeout = Some(value::integer(v, &o, 1, 86_400)?.value as u32);
            }
            "listen" => self.listen.extend(parse_listen(v, &o)?),
            "ready" => self.ready = Some(parse_ready(v, &o)?),
            "ready-timeout" => self.ready_timeout = Some(parse_ready_timeout(v, &o)?),
            "log-max-size" => self.log_max_size = Some(parse_size(v, &o)?),
            // Invariant: the range fits in u32.
            "log-keep" => self.log_keep = Some(value::integer(v, &o, 1, 1000)?.value as u32),
            "launcher" => self.launcher = Some(value::boolean(v, &o)?),
            "args" => {
                let args = value::string_list(v, &o)?;
                for (i, a) in args.iter().enumerate() {
                    if a.value.contains('\0') {
                        return Err(o.index(i).error("contains a NUL byte"));
                    }
                    warn_literal_dollars(&a.value, &o.index(i), warnings);
                }
                self.args = Some(args);
            }
            "workdir" => self.workdir = Some(parse_workdir(v, &o)?),
            "commands" => {
                for (name, c) in value::table(v, &o)? {
                    self.commands
                        .insert(name.clone(), parse_command(name, c, &o.child(name))?);
                }
            }
            "hooks" => self.hooks.extend(parse_hooks(v, &o)?),
            "processes" => {
                for (name, p) in value::table(v, &o)? {
                    let process =
                        super::processes::parse_process(name, p, &o.child(name), warnings)?;
                    self.processes.insert(name.clone(), process);
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `other` over `self`: scalars and lists replace, tables merge key by key.
    pub fn over(mut self, other: Layer) -> Layer {
        fn pick<T>(base: Option<T>, over: Option<T>) -> Option<T> {
            over.or(base)
        }
        self.env.extend(other.env);
        self.commands.extend(other.commands);
        self.hooks.extend(other.hooks);
        self.listen.extend(other.listen);
        self.processes.extend(other.processes);
        Layer {
            name: pick(self.name, other.name),
            bins: pick(self.bins, other.bins),
            priv_dir: pick(self.priv_dir, other.priv_dir),
            exclude: pick(self.exclude, other.exclude),
            include: pick(self.include, other.include),
            format: pick(self.format, other.format),
            compression_level: pick(self.compression_level, other.compression_level),
            main: pick(self.main, other.main),
            env: self.env,
            required_env: pick(self.required_env, other.required_env),
            env_file: pick(self.env_file, other.env_file),
            stop_timeout: pick(self.stop_timeout, other.stop_timeout),
            listen: self.listen,
            ready: pick(self.ready, other.ready),
            ready_timeout: pick(self.ready_timeout, other.ready_timeout),
            log_max_size: pick(self.log_max_size, other.log_max_size),
            log_keep: pick(self.log_keep, other.log_keep),
            args: pick(self.args, other.args),
            workdir: pick(self.workdir, other.workdir),
            allow_paths: pick(self.allow_paths, other.allow_paths),
            launcher: pick(self.launcher, other.launcher),
            reproducible: pick(self.reproducible, other.reproducible),
            auditable: pick(self.auditable, other.auditable),
            commands: self.commands,
            hooks: self.hooks,
            processes: self.processes,
            profiles: BTreeMap::new(),
        }
    }
}
