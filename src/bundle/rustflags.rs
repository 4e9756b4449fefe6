//! Path-independent builds: where to add `--remap-path-prefix` so that a user's own rustflags
//! keep working.
//!
//! Cargo takes rustflags from exactly one source: `CARGO_ENCODED_RUSTFLAGS`, else `RUSTFLAGS`,
//! else `target.<triple>.rustflags` joined with every matching `target.'cfg(..)'.rustflags`,
//! else `build.rustflags`. Setting `RUSTFLAGS` would silently discard the config, so the flags
//! go into whichever source is in force: the environment variable, or a `--config` array that
//! cargo appends to the same config key. [`decide`] is pure; [`discover`] reads the config files.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use cargo_metadata::cargo_platform::{Cfg, CfgExpr};

/// Fixed names the build machine's paths are remapped to.
pub const REMAP_WORKSPACE: &str = "/build/workspace";
pub const REMAP_CARGO_HOME: &str = "/build/cargo-home";

/// The rustflags sources that exist for one build.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlagSources {
    pub encoded_env: Option<String>,
    pub rustflags_env: Option<String>,
    /// Some `target.<triple>` or matching `target.'cfg(..)'` table sets rustflags (in a config
    /// file or `CARGO_TARGET_<TRIPLE>_RUSTFLAGS`).
    pub target_config: bool,
}

/// How to add flags to the source in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injection {
    /// Set `CARGO_ENCODED_RUSTFLAGS` to this (the user's flags, then ours).
    EncodedEnv(String),
    /// Pass `--config <this>` to cargo build.
    Config(String),
}

fn toml_array(flags: &[String]) -> String {
    let items: Vec<String> = flags
        .iter()
        .map(|f| toml::Value::String(f.clone()).to_string())
        .collect();
    format!("[{}]", items.join(", "))
}

/// Where `flags` go, given the sources in force.
pub fn decide(sources: &FlagSources, target: &str, flags: &[String]) -> Injection {
    let ours = flags.join("\x1f");
    if let Some(encoded) = &sources.encoded_env {
        return Injection::EncodedEnv(if encoded.is_empty() {
            ours
        } else {
            format!("{encoded}\x1f{ours}")
        });
    }
    if let Some(plain) = &sources.rustflags_env {
        // Same flags, encoded, so paths with spaces survive; CARGO_ENCODED_RUSTFLAGS wins.
        let mut all: Vec<&str> = plain.split_whitespace().collect();
        all.extend(flags.iter().map(String::as_str));
        return Injection::EncodedEnv(all.join("\x1f"));
    }
    let key = if sources.target_config {
        format!(
            "target.{}.rustflags",
            toml::Value::String(target.to_string())
        )
    } else {
        "build.rustflags".to_string()
    };
    Injection::Config(format!("{key}={}", toml_array(flags)))
}

/// Where a workspace that sits inside a larger repository is built from, so that path
/// dependencies elsewhere in the repository have the same absolute path in every checkout.
pub const REMAP_REPO: &str = "/build/repo";

/// Build-machine paths and the fixed names they become.
pub type Remaps<'a> = Vec<(&'a Utf8Path, &'static str)>;

/// The usual remaps: the workspace root and `CARGO_HOME`.
pub fn remaps<'a>(workspace: &'a Utf8Path, cargo_home: &'a Utf8Path) -> Remaps<'a> {
    vec![(cargo_home, REMAP_CARGO_HOME), (workspace, REMAP_WORKSPACE)]
}

/// Most specific (longest) last: rustc and C compilers apply the last matching prefix.
fn ordered<'a>(pairs: &Remaps<'a>) -> Remaps<'a> {
    let mut pairs = pairs.clone();
    pairs.sort_by_key(|(from, _)| from.as_str().len());
    pairs
}

/// The remap flags for rustc.
pub fn remap_flags(pairs: &Remaps) -> Vec<String> {
    ordered(pairs)
        .iter()
        .map(|(from, to)| format!("--remap-path-prefix={from}={to}"))
        .collect()
}

/// The same mapping for C/C++ compilers run by build scripts (`cc` reads `CFLAGS`/`CXXFLAGS`).
/// Returns the flags and whether they are shell-quoted: `cc` splits these variables on
/// whitespace unless `CC_SHELL_ESCAPED_FLAGS` is set, so paths with spaces are quoted.
pub fn prefix_map_flags(pairs: &Remaps) -> (String, bool) {
    let pairs = ordered(pairs);
    let quoted = pairs
        .iter()
        .any(|(from, _)| from.as_str().contains(char::is_whitespace));
    let flags = pairs
        .iter()
        .map(|(from, to)| {
            let flag = format!("-ffile-prefix-map={from}={to}");
            if quoted {
                format!("'{}'", flag.replace('\'', r"'\''"))
            } else {
                flag
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    (flags, quoted)
}

/// Whether any `target.*` table of a parsed config sets rustflags for `target`.
fn target_table_sets_rustflags(config: &toml::Table, target: &str, cfgs: &[Cfg]) -> bool {
    let Some(targets) = config.get("target").and_then(|t| t.as_table()) else {
        return false;
    };
    targets.iter().any(|(key, table)| {
        let applies = key == target || CfgExpr::matches_key(key, cfgs);
        applies && table.get("rustflags").is_some()
    })
}

/// Read the rustflags sources cargo will see when run from `cwd`.
pub fn discover(
    cwd: &Utf8Path,
    cargo_home: Option<&Utf8Path>,
    target: &str,
    cfgs: &[Cfg],
    env: &BTreeMap<String, String>,
) -> Result<FlagSources> {
    let mut files: Vec<Utf8PathBuf> = Vec::new();
    for dir in cwd.ancestors() {
        for name in ["config.toml", "config"] {
            files.push(dir.join(".cargo").join(name));
        }
    }
    if let Some(home) = cargo_home {
        files.push(home.join("config.toml"));
        files.push(home.join("config"));
    }
    let mut target_config = false;
    for file in files.iter().filter(|f| f.is_file()) {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("`{file}`: cannot read cargo config"))?;
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("`{file}`: cannot parse cargo config"))?;
        target_config |= target_table_sets_rustflags(&table, target, cfgs);
    }
    let triple_env = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    target_config |= env.contains_key(&triple_env);
    Ok(FlagSources {
        encoded_env: env.get("CARGO_ENCODED_RUSTFLAGS").cloned(),
        rustflags_env: env.get("RUSTFLAGS").cloned(),
        target_config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Vec<String> {
        remap_flags(&remaps("/home/u/my proj".into(), "/home/u/.cargo".into()))
    }

    #[test]
    fn remap_most_specific_last() {
        assert_eq!(
            remap_flags(&remaps("/w".into(), "/w/vendor/home".into())),
            [
                "--remap-path-prefix=/w=/build/workspace",
                "--remap-path-prefix=/w/vendor/home=/build/cargo-home"
            ]
        );
        assert_eq!(
            prefix_map_flags(&remaps("/a/b".into(), "/c".into())),
            (
                "-ffile-prefix-map=/c=/build/cargo-home -ffile-prefix-map=/a/b=/build/workspace"
                    .into(),
                false
            )
        );
        assert_eq!(
            prefix_map_flags(&remaps("/a b".into(), "/c".into())),
            (
                "'-ffile-prefix-map=/c=/build/cargo-home' '-ffile-prefix-map=/a b=/build/workspace'".into(),
                true
            )
        );
    }

    #[test]
    fn flags_go_where_cargo_looks() {
        let t = "x86_64-unknown-linux-gnu";
        let f = flags();
        let ours = f.join("\x1f");
        let encoded = FlagSources {
            encoded_env: Some("-Cfoo".into()),
            rustflags_env: Some("-Cignored".into()),
            ..Default::default()
        };
        assert_eq!(
            decide(&encoded, t, &f),
            Injection::EncodedEnv(format!("-Cfoo\x1f{ours}"))
        );
        let plain = FlagSources {
            rustflags_env: Some(" -C  opt-level=2 --cfg x ".into()),
            ..Default::default()
        };
        assert_eq!(
            decide(&plain, t, &f),
            Injection::EncodedEnv(format!("-C\x1fopt-level=2\x1f--cfg\x1fx\x1f{ours}"))
        );
        let target = FlagSources {
            target_config: true,
            ..Default::default()
        };
        assert_eq!(
            decide(&target, t, &f),
            Injection::Config(format!(
                "target.\"{t}\".rustflags=[\"{}\", \"{}\"]",
                f[0], f[1]
            ))
        );
        assert_eq!(
            decide(&FlagSources::default(), t, &f),
            Injection::Config(format!("build.rustflags=[\"{}\", \"{}\"]", f[0], f[1]))
        );
    }

    #[test]
    fn target_tables_by_triple_or_cfg() {
        let cfgs = crate::config::project::parse_cfgs(
            "target_os=\"linux\"\nunix\ntarget_arch=\"x86_64\"\n",
        );
        let t = "x86_64-unknown-linux-gnu";
        let parse = |s: &str| s.parse::<toml::Table>().unwrap();
        assert!(target_table_sets_rustflags(
            &parse("[target.x86_64-unknown-linux-gnu]\nrustflags = [\"-Cx\"]"),
            t,
            &cfgs
        ));
        assert!(target_table_sets_rustflags(
            &parse("[target.'cfg(unix)']\nrustflags = [\"-Cx\"]"),
            t,
            &cfgs
        ));
        assert!(!target_table_sets_rustflags(
            &parse("[target.'cfg(windows)']\nrustflags = [\"-Cx\"]"),
            t,
            &cfgs
        ));
        assert!(!target_table_sets_rustflags(
            &parse("[target.x86_64-unknown-linux-gnu]\nlinker = \"cc\""),
            t,
            &cfgs
        ));
        assert!(!target_table_sets_rustflags(
            &parse("[build]\nrustflags = [\"-Cx\"]"),
            t,
            &cfgs
        ));
    }
}
