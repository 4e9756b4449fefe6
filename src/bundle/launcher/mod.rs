//! The runtime launcher: `bin/<name>`, a POSIX `sh` script rendered from `launcher.sh`.
//!
//! Pure: [`render`] turns a [`LauncherSpec`] into the script text. Every value from the
//! configuration is either validated to a safe alphabet at config time (variable, command and
//! binary names) or single-quoted here, so no value can inject shell code.

use std::collections::BTreeMap;

const TEMPLATE: &str = include_str!("launcher.sh");
/// The env-file grammar, shared with the deploy host script.
const ENV_FILE_GRAMMAR: &str = include_str!("env_file.sh");
/// The keeper's side of the launcher (`reload`, the state file, orphans).
const KEEPER_FUNCTIONS: &str = include_str!("keeper.sh");

/// Everything the launcher needs to know, resolved from config and plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LauncherSpec {
    pub name: String,
    pub version: String,
    /// The binary `start`/`daemon` run.
    pub main: String,
    /// Every shipped binary (for `run`).
    pub bins: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub required_env: Vec<String>,
    pub env_file: Option<String>,
    pub stop_timeout: u32,
    /// The daemon's log: rotated at this size (0: never), keeping this many old files.
    pub log_max_size: u64,
    pub log_keep: u32,
    /// Arguments `start`/`daemon` give the main binary, before the caller's own; `${RELEASE_*}`
    /// forms are substituted.
    pub args: Vec<String>,
    /// Where `start`/`daemon` run the service, relative to the release root (`""`: the root);
    /// `None` keeps the caller's directory.
    pub workdir: Option<String>,
    /// Custom commands: name → (binary, args, description).
    pub commands: BTreeMap<String, CustomCommand>,
    /// With `listen`: the keeper holds these sockets.
    pub keeper: Option<KeeperSpec>,
    /// Processes besides web (the main binary), by name.
    pub processes: Vec<ProcessSpec>,
}

/// A process besides web: its binary, arguments and working directory (as `workdir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    pub name: String,
    pub bin: String,
    pub args: Vec<String>,
    pub workdir: Option<String>,
}

/// What the keeper is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeeperSpec {
    /// name, address (`${VAR}` kept for the keeper to expand), Unix socket mode.
    pub listen: Vec<(String, String, Option<u32>)>,
    pub ready: crate::config::Ready,
    pub ready_timeout: u32,
}

/// The keeper's arguments after the ones every call shares, as shell words.
fn keeper_args(keeper: &KeeperSpec) -> String {
    let ready = match keeper.ready {
        crate::config::Ready::Notify => "notify".to_string(),
        crate::config::Ready::AfterMillis(ms) => ms.to_string(),
    };
    let mut args = format!("--ready {ready}");
    for (name, address, mode) in &keeper.listen {
        let mode = mode.map_or("-".to_string(), |m| format!("{m:o}"));
        args.push_str(&format!(
            " --listen {} {} {mode}",
            quote(name),
            quote(address)
        ));
    }
    args
}

/// A custom command as the launcher runs it: the executable under `libexec/`, its fixed
/// arguments, and its line in the launcher's help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomCommand {
    pub bin: String,
    pub args: Vec<String>,
    pub description: Option<String>,
}

/// Single-quote a string for POSIX sh: `it's` → `'it'\''s'`.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A configuration value as one shell word in which exactly the `${RELEASE_ROOT}`,
/// `${RELEASE_PRIV}`, `${RELEASE_TMP}`, `${RELEASE_NAME}` and `${RELEASE_VSN}` forms become
/// the variables' values: literal text is single-quoted, each form becomes a double-quoted
/// `"$RELEASE_X"`, so nothing is ever evaluated. `"${RELEASE_PRIV}/www"` renders as
/// `"$RELEASE_PRIV"'/www'`.
pub fn word(value: &str) -> String {
    let mut out = String::new();
    let mut literal = String::new();
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let name = after
            .split_once('}')
            .map(|(name, _)| name)
            .filter(|name| crate::config::keys::RELEASE_VARIABLES.contains(name));
        match name {
            Some(name) => {
                literal.push_str(&rest[..at]);
                if !literal.is_empty() {
                    out.push_str(&quote(&literal));
                    literal.clear();
                }
                out.push_str(&format!("\"${name}\""));
                rest = &after[name.len() + 1..];
            }
            None => {
                literal.push_str(&rest[..at + 2]);
                rest = after;
            }
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() || out.is_empty() {
        out.push_str(&quote(&literal));
    }
    out
}

/// The custom commands' lines of the usage text.
fn usage_lines(spec: &LauncherSpec) -> String {
    let mut usage = String::new();
    for (name, c) in &spec.commands {
        let description = c.description.clone().unwrap_or_else(|| {
            format!("Run {} {}", c.bin, c.args.join(" "))
                .trim_end()
                .to_string()
        });
        usage.push_str(&format!("  {name:<11} {}\n", heredoc_text(&description)));
    }
    usage
}

/// One `rb_select` arm: the process's binary, its arguments as one quoted string of shell
/// words (`word` for each), and its working directory (`-`: the caller's).
fn select_case(name: &str, bin: &str, args: &[String], workdir: Option<&str>) -> String {
    let words: Vec<String> = args.iter().map(|a| word(a)).collect();
    let wd = workdir.map_or("-".to_string(), String::from);
    format!(
        "    {name}) rb_main={} rb_args={} rb_wd={} ;;\n",
        quote(bin),
        quote(&words.join(" ")),
        quote(&wd)
    )
}

/// Every process's `rb_select` arm, web first, and their names.
fn process_cases(spec: &LauncherSpec) -> (String, String) {
    let mut cases = select_case("web", &spec.main, &spec.args, spec.workdir.as_deref());
    let mut names = vec!["web"];
    for p in &spec.processes {
        cases.push_str(&select_case(&p.name, &p.bin, &p.args, p.workdir.as_deref()));
        names.push(&p.name);
    }
    (cases, names.join(" "))
}

/// Text safe inside an unquoted here-document and on one line.
fn heredoc_text(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
        .replace('\\', r"\\")
        .replace('$', r"\$")
        .replace('`', r"\`")
}

pub fn render(spec: &LauncherSpec) -> String {
    let bins_text = spec.bins.join(", ");
    let usage = usage_lines(spec);
    let mut defaults = String::new();
    for (k, v) in &spec.env {
        defaults.push_str(&format!("  rb_default {k} {}\n", word(v)));
    }
    let (select_cases, processes) = process_cases(spec);
    let mut bin_cases = String::new();
    for bin in &spec.bins {
        bin_cases.push_str(&format!("    {}) ;;\n", quote(bin)));
    }
    let mut command_cases = String::new();
    for (name, c) in &spec.commands {
        let args: String = c.args.iter().map(|a| format!(" {}", quote(a))).collect();
        command_cases.push_str(&format!(
            "  {name})\n    rb_prepare {name} norequire\n    exec \"$RELEASE_ROOT/libexec/\"{}{args} \"$@\" ;;\n",
            quote(&c.bin)
        ));
    }
    let env_names: Vec<&str> = spec.env.keys().map(String::as_str).collect();
    let file_name = if spec.name.is_empty() {
        "app"
    } else {
        &spec.name
    };
    let title = format!(
        "{} {}",
        heredoc_text(&spec.name),
        heredoc_text(&spec.version)
    );
    let (keeper_on, ready_timeout) = match &spec.keeper {
        Some(k) => ("1", k.ready_timeout),
        None => ("''", 60),
    };
    let keeper_args = spec.keeper.as_ref().map(keeper_args).unwrap_or_default();
    let keeper_functions = fill(KEEPER_FUNCTIONS, &[("KEEPER_ARGS", keeper_args)]);
    let values: [(&str, String); 23] = [
        ("TITLE", title),
        ("FILE", file_name.to_string()),
        ("NAME", quote(&spec.name)),
        ("VSN", quote(&spec.version)),
        ("MAIN", quote(&spec.main)),
        ("ENV_FILE", quote(spec.env_file.as_deref().unwrap_or(""))),
        ("STOP_TIMEOUT", spec.stop_timeout.to_string()),
        ("BINS_TEXT", heredoc_text(&bins_text)),
        ("USAGE_COMMANDS", usage),
        ("ENV_DEFAULTS", defaults),
        ("REQUIRED_ENV", quote(&spec.required_env.join(" "))),
        ("ENV_NAMES", quote(&env_names.join(" "))),
        ("BIN_CASES", bin_cases),
        ("COMMAND_CASES", command_cases),
        (
            "LOCK_WAIT",
            (spec.stop_timeout.max(ready_timeout) + 30).to_string(),
        ),
        ("KEEPER", keeper_on.to_string()),
        ("LOG_MAX", spec.log_max_size.to_string()),
        ("LOG_KEEP", spec.log_keep.to_string()),
        ("READY_TIMEOUT", ready_timeout.to_string()),
        ("KEEPER_FUNCTIONS", keeper_functions),
        ("SELECT_CASES", select_cases),
        ("PROCESSES", quote(&processes)),
        ("ENV_FILE_GRAMMAR", ENV_FILE_GRAMMAR.to_string()),
    ];
    fill(TEMPLATE, &values)
}

/// Replace each `{{KEY}}` of `template` with its value in one pass: a value is never scanned
/// again, so configuration text that looks like a placeholder stays text.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 4096);
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let value = after.find("}}").and_then(|end| {
            let key = &after[..end];
            values
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (v, end + 2))
        });
        match value {
            Some((v, used)) => {
                out.push_str(v);
                rest = &after[used..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
