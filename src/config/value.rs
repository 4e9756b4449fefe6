//! Typed reads from the JSON tree `cargo metadata` gives for a metadata table.
//!
//! Every read knows where it is (`Cargo.toml: package.metadata.release.include[1].dest`)
//! so that each error names the file and the key, the way the user wrote it.

use std::fmt;
use std::time::Duration;

use camino::Utf8PathBuf;
use serde_json::Value;

/// Where a setting came from: the manifest file and the dotted key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The manifest as shown to the user (relative to the working directory when possible).
    pub file: Utf8PathBuf,
    /// Dotted key, e.g. `package.metadata.release.include[1].dest`.
    pub key: String,
}

impl Origin {
    pub fn new(file: impl Into<Utf8PathBuf>, key: impl Into<String>) -> Self {
        Origin {
            file: file.into(),
            key: key.into(),
        }
    }

    pub fn child(&self, key: &str) -> Origin {
        // Keys that are not bare TOML keys are quoted, as TOML would.
        let bare = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let key = if bare {
            key.to_string()
        } else {
            format!("{key:?}")
        };
        Origin::new(self.file.clone(), format!("{}.{key}", self.key))
    }

    pub fn index(&self, i: usize) -> Origin {
        Origin::new(self.file.clone(), format!("{}[{i}]", self.key))
    }

    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: self.clone(),
            message: message.into(),
            help: None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.key)
    }
}

/// A value together with the place it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub origin: Origin,
}

/// A configuration problem: `<file>: <key>: <message>`, optionally with a `help:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: Origin,
    pub message: String,
    pub help: Option<String>,
}

impl ConfigError {
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\nhelp: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

pub type Result<T> = std::result::Result<T, ConfigError>;

/// Short description of a JSON value's type in TOML terms, for error messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "a table".into(),
    }
}

fn expected(origin: &Origin, what: &str, found: &Value) -> ConfigError {
    origin.error(format!("expected {what}, found {}", describe(found)))
}

pub fn string(value: &Value, origin: &Origin) -> Result<Spanned<String>> {
    match value {
        Value::String(s) => Ok(Spanned {
            value: s.clone(),
            origin: origin.clone(),
        }),
        other => Err(expected(origin, "a string", other)),
    }
}

pub fn boolean(value: &Value, origin: &Origin) -> Result<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        other => Err(expected(origin, "`true` or `false`", other)),
    }
}

pub fn integer(value: &Value, origin: &Origin, min: i64, max: i64) -> Result<Spanned<i64>> {
    let what = format!("an integer from {min} to {max}");
    match value.as_i64() {
        Some(n) if (min..=max).contains(&n) => Ok(Spanned {
            value: n,
            origin: origin.clone(),
        }),
        Some(n) => Err(origin.error(format!("{n} is out of range: expected {what}"))),
        None => Err(expected(origin, &what, value)),
    }
}

pub fn string_list(value: &Value, origin: &Origin) -> Result<Vec<Spanned<String>>> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| string(item, &origin.index(i)))
            .collect(),
        other => Err(expected(origin, "an array of strings", other)),
    }
}

pub fn table<'v>(value: &'v Value, origin: &Origin) -> Result<&'v serde_json::Map<String, Value>> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(expected(origin, "a table", other)),
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The closest candidate, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let normalized = word.replace('_', "-").to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&normalized, c), *c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A duration: plain seconds (`30`), or a number with `ms`, `s`, `m` or `h` (`500ms`, `2m`).
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30, 500ms, 30s, 2m)"))?;
    let millis = match unit {
        "" | "s" => n.checked_mul(1000),
        "ms" => Some(n),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m or h)")),
    };
    millis
        .filter(|&m| m <= 86_400_000)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is longer than a day"))
}

/// A duration value: seconds as a number, or a string [`parse_duration`] reads.
pub fn duration(v: &Value, o: &Origin) -> Result<Duration> {
    match v {
        Value::Number(_) => {
            let n = integer(v, o, 0, 86_400)?;
            Ok(Duration::from_secs(n.value as u64))
        }
        Value::String(s) => parse_duration(s).map_err(|e| o.error(e)),
        other => Err(o.error(format!(
            "expected seconds or a duration such as \"500ms\", \"30s\", \"2m\", found {}",
            describe(other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_paths_read_like_toml() {
        let o = Origin::new("Cargo.toml", "package.metadata.release");
        assert_eq!(
            o.child("include").index(1).child("dest").to_string(),
            "Cargo.toml: package.metadata.release.include[1].dest"
        );
        assert_eq!(
            o.child("env").child("a b").key,
            "package.metadata.release.env.\"a b\""
        );
    }

    #[test]
    fn suggestions() {
        let keys = ["compression-level", "bins", "exclude", "include", "priv"];
        assert_eq!(
            closest("compresion-level", &keys),
            Some("compression-level")
        );
        assert_eq!(
            closest("compression_level", &keys),
            Some("compression-level")
        );
        assert_eq!(closest("bin", &keys), Some("bins"));
        assert_eq!(closest("zzzzzzzz", &keys), None);
    }

    #[test]
    fn typed_reads_name_the_type() {
        let o = Origin::new("Cargo.toml", "k");
        let e = integer(&serde_json::json!("high"), &o, 1, 22).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Cargo.toml: k: expected an integer from 1 to 22, found string \"high\""
        );
        let e = integer(&serde_json::json!(23), &o, 1, 22).unwrap_err();
        assert!(e.to_string().contains("23 is out of range"));
    }
}
