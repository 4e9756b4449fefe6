//! What a deploy runs besides moving hosts, as configured in the deploy tables: the release
//! command (a launcher command run once, on the primary host, from the new release, before
//! any host switches), the hooks run on the deploying machine, and where each host's
//! `shared/env` comes from (`env-file`, `env-command`). Pure: values in, settings out.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::value::{self, ConfigError, Origin};

/// A hook on the deploying machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    PreDeploy,
    PostDeploy,
    PreRollback,
    PostRollback,
}

impl Hook {
    pub const ALL: [(&'static str, Hook); 4] = [
        ("pre-deploy", Hook::PreDeploy),
        ("post-deploy", Hook::PostDeploy),
        ("pre-rollback", Hook::PreRollback),
        ("post-rollback", Hook::PostRollback),
    ];

    pub fn name(self) -> &'static str {
        Hook::ALL
            .iter()
            .find(|(_, h)| *h == self)
            .map_or("hook", |(n, _)| n)
    }
}

/// The whole-release settings of one table (every one optional, so tables layer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Whole {
    /// A launcher command and its arguments: `"migrate"` or `["migrate", "--all"]`.
    pub release_command: Option<Vec<String>>,
    /// The host the release command runs on (default: the first host).
    pub primary: Option<String>,
    /// Hook → executable, relative to the manifest that names it (made absolute by
    /// `resolve`).
    pub hooks: BTreeMap<Hook, String>,
    /// A `KEY=VALUE` file installed as every host's `shared/env`.
    pub env_file: Option<String>,
    /// A command run here with `sh -c` whose stdout (`KEY=VALUE` lines) is installed as
    /// every host's `shared/env`.
    pub env_command: Option<String>,
    /// Directories under `shared/` every host gets (uploads, databases): data that outlives
    /// a release, found by the service through `RELEASE_SHARED`.
    pub shared_dirs: Option<Vec<String>>,
}

/// The primary host among `hosts` (web's first, see `roles::hosts_of`): `deploy.primary`,
/// else the first host. The one rule, for `--primary` and the release command.
pub fn primary<'a>(whole: &'a Whole, hosts: &'a [String]) -> Option<&'a String> {
    whole.primary.as_ref().or(hosts.first())
}

/// A launcher command's name: what `commands` allows.
fn is_command_name(s: &str) -> bool {
    crate::config::layer::is_command_name(s)
}

fn release_command(v: &Value, o: &Origin) -> Result<Vec<String>, ConfigError> {
    let words: Vec<String> = match v {
        Value::String(s) => s.split_whitespace().map(String::from).collect(),
        _ => value::string_list(v, o)?
            .into_iter()
            .map(|w| w.value)
            .collect(),
    };
    match words.first() {
        Some(first) if is_command_name(first) => Ok(words),
        Some(first) => Err(o.error(format!(
            "{first:?} is not a launcher command name (one of the release's `commands`)"
        ))),
        None => Err(o.error("names no command")),
    }
}

fn path(v: &Value, o: &Origin) -> Result<String, ConfigError> {
    let s = value::string(v, o)?.value;
    if s.is_empty() || s.contains('\0') {
        return Err(o.error("expected a path"));
    }
    Ok(s)
}

/// A path under `shared/`: relative components of `[A-Za-z0-9._-]`, none `.` or `..`, not
/// the layout's own `tmp` and `env`.
fn is_shared_dir(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    !s.is_empty()
        && !matches!(parts[0], "tmp" | "env")
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

/// Read `key` of a deploy table into `w`; whether it is one of these keys.
pub fn parse_key(key: &str, v: &Value, o: &Origin, w: &mut Whole) -> Result<bool, ConfigError> {
    match key {
        "release-command" => w.release_command = Some(release_command(v, o)?),
        "primary" => w.primary = Some(value::string(v, o)?.value),
        "env-file" => w.env_file = Some(path(v, o)?),
        "env-command" => w.env_command = Some(value::string(v, o)?.value),
        "shared-dirs" => {
            let dirs = value::string_list(v, o)?;
            for (i, d) in dirs.iter().enumerate() {
                if !is_shared_dir(&d.value) {
                    return Err(o.index(i).error(format!(
                        "{:?} is not a directory inside shared/ (relative, no `..`, not `tmp` or `env`)",
                        d.value
                    )));
                }
            }
            w.shared_dirs = Some(dirs.into_iter().map(|d| d.value).collect());
        }
        "hooks" => {
            for (name, item) in value::table(v, o)? {
                let ho = o.child(name);
                let Some((_, hook)) = Hook::ALL.iter().find(|(n, _)| n == name) else {
                    return Err(ho.error(
                        "unknown hook (pre-deploy, post-deploy, pre-rollback, post-rollback)",
                    ));
                };
                w.hooks.insert(*hook, path(item, &ho)?);
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

impl Whole {
    /// `other` over `self`: what `other` gives wins; hooks merge by name.
    pub fn over(mut self, other: Whole) -> Whole {
        self.hooks.extend(other.hooks);
        Whole {
            release_command: other.release_command.or(self.release_command),
            primary: other.primary.or(self.primary),
            hooks: self.hooks,
            env_file: other.env_file.or(self.env_file),
            env_command: other.env_command.or(self.env_command),
            shared_dirs: other.shared_dirs.or(self.shared_dirs),
        }
    }

    /// Relative paths (hooks, the env file) made relative to `dir`, the directory of the
    /// manifest that names them.
    pub fn relative_to(mut self, dir: &camino::Utf8Path) -> Whole {
        let under = |p: String| match camino::Utf8Path::new(&p).is_relative() {
            true => dir.join(&p).to_string(),
            false => p,
        };
        self.hooks = self.hooks.into_iter().map(|(h, p)| (h, under(p))).collect();
        self.env_file = self.env_file.map(under);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Whole, String> {
        let o = Origin::new("app/Cargo.toml", "package.metadata.release.deploy");
        let mut w = Whole::default();
        for (k, item) in v.as_object().unwrap() {
            assert!(parse_key(k, item, &o.child(k), &mut w).map_err(|e| e.to_string())?);
        }
        Ok(w)
    }

    #[test]
    fn keys_parse_and_errors_name_the_key() {
        let w = parse(
            json!({"release-command": "migrate --all", "primary": "web-1",
            "hooks": {"pre-deploy": "bin/check"}, "env-command": "vault read x"}),
        )
        .unwrap();
        assert_eq!(w.release_command.unwrap(), ["migrate", "--all"]);
        assert_eq!(w.hooks[&Hook::PreDeploy], "bin/check");
        let w = parse(json!({"release-command": ["migrate", "up"]})).unwrap();
        assert_eq!(w.release_command.unwrap(), ["migrate", "up"]);
        for (v, e) in [
            (
                json!({"release-command": ""}),
                "release-command: names no command",
            ),
            (
                json!({"release-command": "Bad!"}),
                "is not a launcher command name",
            ),
            (
                json!({"hooks": {"pre-deplo": "x"}}),
                "hooks.pre-deplo: unknown hook",
            ),
            (json!({"env-file": ""}), "env-file: expected a path"),
            (
                json!({"shared-dirs": ["../x"]}),
                "shared-dirs[0]: \"../x\" is not a directory inside shared/",
            ),
            (
                json!({"shared-dirs": ["tmp"]}),
                "is not a directory inside shared/",
            ),
        ] {
            let err = parse(v.clone()).unwrap_err();
            assert!(err.contains(e), "{v}: {err}");
        }
    }

    #[test]
    fn layering_and_paths() {
        let base = parse(json!({"release-command": "a", "hooks": {"pre-deploy": "x"}})).unwrap();
        let over = parse(json!({"hooks": {"post-deploy": "/abs/y"}, "env-file": "env"})).unwrap();
        let w = base.over(over).relative_to(camino::Utf8Path::new("/p"));
        assert_eq!(w.release_command.unwrap(), ["a"]);
        assert_eq!(w.hooks[&Hook::PreDeploy], "/p/x");
        assert_eq!(w.hooks[&Hook::PostDeploy], "/abs/y");
        assert_eq!(w.env_file.as_deref(), Some("/p/env"));
    }
}
