//! `[package.metadata.release.processes.<name>]`: the release's other long-running processes
//! (Procfile-like: a worker, a scheduler), each a shipped binary with its arguments and
//! working directory. The main binary is the process `web`.

use serde_json::Value;

use super::ConfigWarning;
use super::keys::{BUILTIN_COMMANDS, Workdir};
use super::layer::{is_command_name, warn_literal_dollars};
use super::tables::parse_workdir;
use super::value::{self, Origin, Result, Spanned};

/// The main binary's process name.
pub const WEB: &str = "web";

/// One process besides `web`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub bin: Spanned<String>,
    /// Given before the caller's; `${RELEASE_*}` forms are substituted.
    pub args: Vec<String>,
    /// Default: the release's `workdir`.
    pub workdir: Option<Workdir>,
}

/// One `processes.<name>` entry.
pub(super) fn parse_process(
    name: &str,
    v: &Value,
    o: &Origin,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Spanned<Process>> {
    if !is_command_name(name) {
        return Err(o.error(format!(
            "{name:?} is not a valid process name (lowercase letters, digits, `-` and `_`)"
        )));
    }
    if name == WEB {
        return Err(o
            .error("`web` is the main binary's process")
            .with_help("set `main`, `args` and `workdir` in the release table for it"));
    }
    if BUILTIN_COMMANDS.contains(&name) {
        return Err(o.error(format!(
            "`{name}` is a launcher command; name the process otherwise"
        )));
    }
    let map = value::table(v, o)?;
    for key in map.keys() {
        match key.as_str() {
            "bin" | "args" | "workdir" => {}
            "listen" | "ready" => {
                return Err(o.child(key).error(
                    "a keeper holds the `web` process's sockets only: set `listen` in the release table",
                ));
            }
            _ => return Err(o.child(key).error("unknown key (bin, args, workdir)")),
        }
    }
    let bin = map.get("bin").ok_or_else(|| o.error("missing `bin`"))?;
    let args = match map.get("args") {
        None => Vec::new(),
        Some(a) => value::string_list(a, &o.child("args"))?,
    };
    for (i, a) in args.iter().enumerate() {
        warn_literal_dollars(&a.value, &o.child("args").index(i), warnings);
    }
    let process = Process {
        bin: value::string(bin, &o.child("bin"))?,
        args: args.into_iter().map(|a| a.value).collect(),
        workdir: map
            .get("workdir")
            .map(|w| parse_workdir(w, &o.child("workdir")))
            .transpose()?,
    };
    Ok(Spanned {
        value: process,
        origin: o.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn processes_parse_and_errors_name_the_key() {
        let o = Origin::new("app/Cargo.toml", "package.metadata.release.processes");
        let mut w = Vec::new();
        let p = parse_process(
            "worker",
            &json!({"bin": "app-worker", "args": ["--queue", "mail"]}),
            &o.child("worker"),
            &mut w,
        )
        .unwrap();
        assert_eq!(p.value.bin.value, "app-worker");
        assert_eq!(p.value.args, ["--queue", "mail"]);
        for (name, v, e) in [
            (
                "web",
                json!({"bin": "x"}),
                "processes.web: `web` is the main binary's process",
            ),
            ("Worker", json!({"bin": "x"}), "not a valid process name"),
            ("stop", json!({"bin": "x"}), "`stop` is a launcher command"),
            ("worker", json!({}), "processes.worker: missing `bin`"),
            (
                "worker",
                json!({"bin": "x", "listen": {}}),
                "processes.worker.listen: a keeper holds",
            ),
            (
                "worker",
                json!({"bin": "x", "cmd": 1}),
                "processes.worker.cmd: unknown key",
            ),
        ] {
            let err = parse_process(name, &v, &o.child(name), &mut w)
                .unwrap_err()
                .to_string();
            assert!(err.contains(e), "{name}: {err}");
        }
    }
}
