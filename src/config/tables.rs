//! Parsers for the nested values of a release table: include rules, custom commands, the
//! `env` and `hooks` tables, the working directory. Each checks its value and says which key
//! is wrong.

use std::collections::BTreeMap;

use serde_json::Value;

use super::keys::{BUILTIN_COMMANDS, CommandEntry, HookName, IncludeRule, Workdir};
use super::layer::{is_command_name, is_env_name, relative_path, warn_literal_dollars};
use super::value::{self, Origin, Result, Spanned};
use super::{ConfigWarning, PrivDir};

pub(super) fn parse_workdir(v: &Value, o: &Origin) -> Result<Workdir> {
    if let Value::Bool(b) = v {
        return Ok(match b {
            false => Workdir::Caller,
            true => Workdir::Release(String::new()),
        });
    }
    let full = value::string(v, o)?.value;
    // `${RELEASE_SHARED}/sub`: a directory under shared/ (data that outlives a release).
    let (shared, dir) = match full.strip_prefix("${RELEASE_SHARED}") {
        Some(rest) => (true, rest.trim_start_matches('/').to_string()),
        None => (false, full.clone()),
    };
    let parts: Vec<&str> = dir
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let bad = dir.starts_with('/')
        || parts.contains(&"..")
        || dir
            .bytes()
            .any(|b| b.is_ascii_control() || b == b'\\' || b == b'$');
    if bad {
        return Err(o
            .error(format!("{full:?} is not a directory inside the release"))
            .with_help(
                "a path relative to the release root (\"\" or \".\" for the root, \"priv/www\"), \"${RELEASE_SHARED}/data\", or false to keep the caller's directory",
            ));
    }
    match shared {
        true => Ok(Workdir::Release(
            format!("${{RELEASE_SHARED}}/{}", parts.join("/"))
                .trim_end_matches('/')
                .to_string(),
        )),
        false => Ok(Workdir::Release(parts.join("/"))),
    }
}

fn parse_mode(value: &Value, origin: &Origin) -> Result<u32> {
    let s = value::string(value, origin)?;
    match s.value.trim_start_matches('0') {
        "644" => Ok(0o644),
        "755" => Ok(0o755),
        _ => Err(origin
            .error(format!("{:?} is not an allowed mode", s.value))
            .with_help(
                "bundle files are \"0644\" or \"0755\" (modes are normalised for reproducibility)",
            )),
    }
}

pub(super) fn parse_include(value: &Value, origin: &Origin) -> Result<Spanned<IncludeRule>> {
    let rule = match value {
        Value::Object(map) => {
            let known = ["source", "dest", "mode"];
            for key in map.keys() {
                if !known.contains(&key.as_str()) {
                    let mut err = origin.child(key).error("unknown key in include rule");
                    if let Some(k) = value::closest(key, &known) {
                        err = err.with_help(format!("did you mean `{k}`?"));
                    }
                    return Err(err);
                }
            }
            let get = |key: &str| {
                map.get(key)
                    .ok_or_else(|| origin.error(format!("missing `{key}`")))
            };
            IncludeRule {
                source: relative_path(get("source")?, &origin.child("source"))?.value,
                dest: value::string(get("dest")?, &origin.child("dest"))?.value,
                mode: map
                    .get("mode")
                    .map(|m| parse_mode(m, &origin.child("mode")))
                    .transpose()?,
            }
        }
        Value::Array(items) if (2..=3).contains(&items.len()) => IncludeRule {
            source: relative_path(&items[0], &origin.index(0))?.value,
            dest: value::string(&items[1], &origin.index(1))?.value,
            mode: items
                .get(2)
                .map(|m| parse_mode(m, &origin.index(2)))
                .transpose()?,
        },
        other => {
            return Err(origin.error(format!(
                "expected a table `{{ source = \"...\", dest = \"...\" }}`, found {}",
                value::describe(other)
            )));
        }
    };
    if let Err(e) = globset::Glob::new(&rule.source) {
        return Err(origin.child("source").error(format!(
            "{:?} is not a valid glob: {}",
            rule.source,
            e.kind()
        )));
    }
    Ok(Spanned {
        value: rule,
        origin: origin.clone(),
    })
}

pub(super) fn parse_command(
    name: &str,
    value: &Value,
    origin: &Origin,
) -> Result<Spanned<CommandEntry>> {
    if !is_command_name(name) {
        return Err(origin.error(format!(
            "{name:?} is not a valid command name (lowercase letters, digits, `-` and `_`)"
        )));
    }
    if BUILTIN_COMMANDS.contains(&name) {
        return Err(origin.error(format!(
            "`{name}` is a built-in launcher command and cannot be redefined"
        )));
    }
    let map = value::table(value, origin)?;
    for key in map.keys() {
        if !["bin", "args", "description"].contains(&key.as_str()) {
            return Err(origin.child(key).error("unknown key in command"));
        }
    }
    let bin = map
        .get("bin")
        .ok_or_else(|| origin.error("missing `bin`"))?;
    let command = CommandEntry {
        bin: value::string(bin, &origin.child("bin"))?,
        args: match map.get("args") {
            None => Vec::new(),
            Some(a) => value::string_list(a, &origin.child("args"))?
                .into_iter()
                .map(|s| s.value)
                .collect(),
        },
        description: map
            .get("description")
            .map(|d| value::string(d, &origin.child("description")))
            .transpose()?
            .map(|d| d.value),
    };
    if command
        .args
        .iter()
        .chain(&command.description)
        .any(|s| s.contains('\0'))
    {
        return Err(origin.error("contains a NUL byte"));
    }
    Ok(Spanned {
        value: command,
        origin: origin.clone(),
    })
}

/// The `env` table: variable names checked, values as strings (numbers and booleans
/// written out), no NUL, a warning for a `$` that stays literal.
pub(super) fn parse_env(
    v: &Value,
    o: &Origin,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<BTreeMap<String, Spanned<String>>> {
    let mut env = BTreeMap::new();
    for (name, val) in value::table(v, o)? {
        let vo = o.child(name);
        if !is_env_name(name) {
            return Err(vo.error(format!(
                "{name:?} is not a valid environment variable name (letters, digits and `_`, not starting with a digit)"
            )));
        }
        let text = match val {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(vo.error(format!(
                    "expected a string, found {}",
                    value::describe(other)
                )));
            }
        };
        if text.contains('\0') {
            return Err(vo.error("contains a NUL byte"));
        }
        warn_literal_dollars(&text, &vo, warnings);
        env.insert(
            name.clone(),
            Spanned {
                value: text,
                origin: vo,
            },
        );
    }
    Ok(env)
}

/// The `hooks` table: known hook names (with a suggestion for a typo), relative paths.
pub(super) fn parse_hooks(v: &Value, o: &Origin) -> Result<BTreeMap<HookName, Spanned<String>>> {
    let names: Vec<&str> = HookName::ALL.iter().map(|(n, _)| *n).collect();
    let mut hooks = BTreeMap::new();
    for (name, path) in value::table(v, o)? {
        let ho = o.child(name);
        let Some((_, hook)) = HookName::ALL.iter().find(|(n, _)| n == name) else {
            let mut err = ho.error(format!(
                "unknown hook (expected one of {})",
                names.join(", ")
            ));
            if let Some(k) = value::closest(name, &names) {
                err = err.with_help(format!("did you mean `{k}`?"));
            }
            return Err(err);
        };
        hooks.insert(*hook, relative_path(path, &ho)?);
    }
    Ok(hooks)
}

/// `priv`: `false` (none), `true` (`priv`), or a directory inside the package.
pub(super) fn parse_priv(v: &Value, o: &Origin) -> Result<PrivDir> {
    Ok(match v {
        Value::Bool(false) => PrivDir::Disabled,
        Value::Bool(true) => PrivDir::Dir(Spanned {
            value: "priv".into(),
            origin: o.clone(),
        }),
        _ => PrivDir::Dir(relative_path(v, o).map_err(|e| {
            if v.is_string() {
                e
            } else {
                o.error(format!(
                    "expected a directory path or `false`, found {}",
                    value::describe(v)
                ))
            }
        })?),
    })
}

/// `include`: an array of `{ source, dest, mode }` tables (or `[source, dest, mode]` arrays).
pub(super) fn parse_includes(v: &Value, o: &Origin) -> Result<Vec<Spanned<IncludeRule>>> {
    let Value::Array(items) = v else {
        return Err(o.error(format!(
            "expected an array of `{{ source, dest }}` tables, found {}",
            value::describe(v)
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_include(item, &o.index(i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn workdirs() {
        let o = Origin::new("app/Cargo.toml", "package.metadata.release.workdir");
        let ok = |v: Value| parse_workdir(&v, &o).unwrap();
        assert_eq!(ok(json!("priv/www/")), Workdir::Release("priv/www".into()));
        assert_eq!(
            ok(json!("${RELEASE_SHARED}/data")),
            Workdir::Release("${RELEASE_SHARED}/data".into())
        );
        assert_eq!(
            ok(json!("${RELEASE_SHARED}")),
            Workdir::Release("${RELEASE_SHARED}".into())
        );
        assert_eq!(ok(json!(false)), Workdir::Caller);
        for bad in ["${RELEASE_SHARED}/../x", "$HOME", "/srv", "a/../../b"] {
            assert!(parse_workdir(&json!(bad), &o).is_err(), "{bad}");
        }
    }
}
