//! `MANIFEST.json` and `SHA256SUMS`: what the bundle holds and how it was made.

use serde::{Deserialize, Serialize};

/// Bumped whenever the layout, the manifest or the archive bytes change meaning.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// `cargo-release-bundle <version>`.
    pub generator: String,
    pub name: String,
    pub package: String,
    pub version: String,
    pub profile: String,
    pub target: String,
    /// The single top directory, `<name>-<version>`.
    pub top_dir: String,
    pub rustc: Rustc,
    pub features: Vec<String>,
    pub timestamp: Timestamp,
    pub git: Option<Git>,
    pub cargo_lock_sha256: Option<String>,
    pub compression: CompressionInfo,
    pub files: Vec<FileRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rustc {
    pub release: String,
    pub commit_hash: String,
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    /// Unix time used as every entry's mtime.
    pub epoch: u64,
    /// `SOURCE_DATE_EPOCH`, `git-commit` or `constant`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Git {
    pub commit: String,
    pub dirty: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionInfo {
    /// `tar.zst` or `tar.gz`.
    pub format: String,
    pub level: i32,
    /// e.g. `libzstd 1.5.7, multithreaded` or `miniz_oxide, mtime 0, OS 255`.
    pub encoder: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    Executable,
    Launcher,
    Hook,
    Priv,
    Include,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Relative to the top directory.
    pub path: String,
    pub kind: FileKind,
    /// Octal, `"0644"` or `"0755"`; `"0777"` for symlinks.
    pub mode: String,
    pub size: u64,
    /// Hex SHA-256 of the content; absent for symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlink target, relative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        // Invariant: the manifest has only strings, numbers, bools and sequences; it always serializes.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// `SHA256SUMS`: every regular file of the manifest, then the manifest itself, in
    /// `sha256sum -c` format (64 hex, two spaces, relative path, LF).
    pub fn sha256sums(&self, manifest_sha256: &str) -> Vec<u8> {
        let mut out = String::new();
        for f in &self.files {
            if let Some(sum) = &f.sha256 {
                out.push_str(&format!("{sum}  {}\n", f.path));
            }
        }
        out.push_str(&format!("{manifest_sha256}  {}\n", super::MANIFEST));
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            generator: "cargo-release-bundle 0.0.0".into(),
            name: "billing".into(),
            package: "billing".into(),
            version: "1.2.0".into(),
            profile: "prod".into(),
            target: "x86_64-unknown-linux-gnu".into(),
            top_dir: "billing-1.2.0".into(),
            rustc: Rustc {
                release: "1.95.0".into(),
                commit_hash: "abc".into(),
                host: "x86_64-unknown-linux-gnu".into(),
            },
            features: vec!["default".into()],
            timestamp: Timestamp {
                epoch: 1,
                source: "constant".into(),
            },
            git: None,
            cargo_lock_sha256: None,
            compression: CompressionInfo {
                format: "tar.zst".into(),
                level: 3,
                encoder: "x".into(),
            },
            files: vec![
                FileRecord {
                    path: "bin/billing".into(),
                    kind: FileKind::Executable,
                    mode: "0755".into(),
                    size: 3,
                    sha256: Some("a".repeat(64)),
                    target: None,
                },
                FileRecord {
                    path: "priv/l".into(),
                    kind: FileKind::Symlink,
                    mode: "0777".into(),
                    size: 0,
                    sha256: None,
                    target: Some("x".into()),
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let back: Manifest = serde_json::from_slice(&m.to_json()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn sums_skip_symlinks_and_end_with_manifest() {
        let sums = String::from_utf8(sample().sha256sums(&"b".repeat(64))).unwrap();
        assert_eq!(
            sums,
            format!(
                "{}  bin/billing\n{}  MANIFEST.json\n",
                "a".repeat(64),
                "b".repeat(64)
            )
        );
    }
}
