//! `MANIFEST.json` and `SHA256SUMS`: what the bundle holds and how it was made.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Seek, Write};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
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
    /// The fixed names build-machine paths were remapped to (empty with `reproducible = false`).
    #[serde(default)]
    pub path_remap: Vec<String>,
    /// Path prefixes the leak scan accepts in this bundle (`[verify] allow-paths`), so that
    /// `verify` of the published bundle honours them. Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_paths: Vec<String>,
    /// Path dependencies outside the workspace (warned about when bundling): their absolute
    /// paths enter symbol names, the likely cause if a rebuild differs. Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outside_path_dependencies: Vec<String>,
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
    pub source: TimestampSource,
}

/// Where the bundle's single mtime came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimestampSource {
    /// The `SOURCE_DATE_EPOCH` environment variable.
    #[serde(rename = "SOURCE_DATE_EPOCH")]
    SourceDateEpoch,
    /// The commit time of `HEAD`.
    #[serde(rename = "git-commit")]
    GitCommit,
    /// Neither was available: a fixed constant.
    #[serde(rename = "constant")]
    Constant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Git {
    pub commit: String,
    pub dirty: bool,
    /// The workspace root relative to the repository's top level (`""` at the top).
    #[serde(default)]
    pub workspace: String,
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
    /// `SBOM.cdx.json`, generated.
    Sbom,
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

/// Writes `MANIFEST.json` and `SHA256SUMS` to temporary files record by record, so memory does
/// not grow with the number of files. The bytes equal [`Manifest::to_json`] and
/// [`Manifest::sha256sums`] for the same records.
pub struct Spool {
    manifest: BufWriter<File>,
    sums: BufWriter<File>,
    tail: Vec<u8>,
    records: u64,
}

/// A finished spool file: rewound, with its length.
pub struct Spooled {
    pub file: File,
    pub len: u64,
}

fn rewind(w: BufWriter<File>) -> io::Result<Spooled> {
    let mut file = w.into_inner().map_err(|e| e.into_error())?;
    let len = file.stream_position()?;
    file.rewind()?;
    Ok(Spooled { file, len })
}

impl Spool {
    /// `head` is the manifest without files; its `files` array is streamed in.
    pub fn new(head: &Manifest, manifest: File, sums: File) -> io::Result<Spool> {
        let empty = Manifest {
            files: Vec::new(),
            ..head.clone()
        };
        let text = serde_json::to_vec_pretty(&empty).map_err(io::Error::other)?;
        let marker = b"\"files\": []";
        let at = text
            .windows(marker.len())
            .rposition(|w| w == marker)
            .ok_or_else(|| io::Error::other("manifest has no files array"))?;
        let split = at + marker.len() - 1;
        let mut manifest = BufWriter::with_capacity(64 * 1024, manifest);
        manifest.write_all(&text[..split])?;
        let mut tail = text[split..].to_vec();
        tail.push(b'\n');
        Ok(Spool {
            manifest,
            sums: BufWriter::with_capacity(64 * 1024, sums),
            tail,
            records: 0,
        })
    }

    pub fn record(&mut self, record: &FileRecord) -> io::Result<()> {
        self.manifest
            .write_all(if self.records == 0 { b"\n" } else { b",\n" })?;
        let pretty = serde_json::to_string_pretty(record).map_err(io::Error::other)?;
        for (i, line) in pretty.lines().enumerate() {
            if i > 0 {
                self.manifest.write_all(b"\n")?;
            }
            self.manifest.write_all(b"    ")?;
            self.manifest.write_all(line.as_bytes())?;
        }
        if let Some(sum) = &record.sha256 {
            writeln!(self.sums, "{sum}  {}", record.path)?;
        }
        self.records += 1;
        Ok(())
    }

    /// The finished `MANIFEST.json`, and the spool for `SHA256SUMS` (whose last line, the
    /// manifest's own digest, is added by [`Spool::finish_sums`]).
    pub fn finish_manifest(mut self) -> io::Result<(Spooled, BufWriter<File>)> {
        if self.records > 0 {
            self.manifest.write_all(b"\n  ")?;
        }
        self.manifest.write_all(&self.tail)?;
        Ok((rewind(self.manifest)?, self.sums))
    }

    pub fn finish_sums(mut sums: BufWriter<File>, manifest_sha256: &str) -> io::Result<Spooled> {
        writeln!(sums, "{manifest_sha256}  {}", super::MANIFEST)?;
        rewind(sums)
    }
}

/// Parses MANIFEST.json handing each `files` element to `on_file` as it is read, so the
/// list is never held; returns the manifest with an empty `files`.
struct ManifestSeed<'f> {
    on_file: &'f mut dyn FnMut(FileRecord),
}

impl<'de> DeserializeSeed<'de> for ManifestSeed<'_> {
    type Value = Manifest;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Manifest, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ManifestSeed<'_> {
    type Value = Manifest;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a bundle manifest")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Manifest, A::Error> {
        let mut head = serde_json::Map::new();
        let mut files = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "files" {
                if files {
                    return Err(de::Error::duplicate_field("files"));
                }
                files = true;
                map.next_value_seed(FilesSeed {
                    on_file: &mut *self.on_file,
                })?;
            } else {
                head.insert(key, map.next_value()?);
            }
        }
        if !files {
            return Err(de::Error::missing_field("files"));
        }
        head.insert("files".into(), serde_json::Value::Array(Vec::new()));
        serde_json::from_value(serde_json::Value::Object(head)).map_err(de::Error::custom)
    }
}

struct FilesSeed<'f> {
    on_file: &'f mut dyn FnMut(FileRecord),
}

impl<'de> DeserializeSeed<'de> for FilesSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FilesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of files")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(file) = seq.next_element::<FileRecord>()? {
            (self.on_file)(file);
        }
        Ok(())
    }
}

/// Parse a spooled MANIFEST.json, streaming its `files` to `on_file`.
pub fn parse_streaming(
    file: &File,
    on_file: &mut dyn FnMut(FileRecord),
) -> io::Result<Result<Manifest, serde_json::Error>> {
    let mut reader = BufReader::new(file);
    reader.rewind()?;
    let mut de = serde_json::Deserializer::from_reader(reader);
    Ok(ManifestSeed { on_file }
        .deserialize(&mut de)
        .and_then(|m| de.end().map(|()| m)))
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
                source: TimestampSource::Constant,
            },
            git: None,
            cargo_lock_sha256: None,
            compression: CompressionInfo {
                format: "tar.zst".into(),
                level: 3,
                encoder: "x".into(),
            },
            path_remap: vec!["/build/workspace".into(), "/build/cargo-home".into()],
            allow_paths: Vec::new(),
            outside_path_dependencies: Vec::new(),
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
    fn spool_writes_the_same_bytes() {
        use std::io::Read;
        for files in [sample().files, Vec::new()] {
            let m = Manifest { files, ..sample() };
            let mut spool = Spool::new(
                &m,
                tempfile::tempfile().unwrap(),
                tempfile::tempfile().unwrap(),
            )
            .unwrap();
            for f in &m.files {
                spool.record(f).unwrap();
            }
            let (mut manifest, sums) = spool.finish_manifest().unwrap();
            let mut text = Vec::new();
            manifest.file.read_to_end(&mut text).unwrap();
            assert_eq!(manifest.len, text.len() as u64);
            assert_eq!(
                String::from_utf8(text).unwrap(),
                String::from_utf8(m.to_json()).unwrap()
            );
            let mut sums = Spool::finish_sums(sums, &"c".repeat(64)).unwrap();
            let mut text = Vec::new();
            sums.file.read_to_end(&mut text).unwrap();
            assert_eq!(text, m.sha256sums(&"c".repeat(64)));
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

    #[test]
    fn streams_the_manifest_files() {
        let mut manifest = serde_json::to_value(sample()).unwrap();
        let files = manifest["files"].clone();
        let text = manifest.to_string();
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        let mut seen = Vec::new();
        let m = parse_streaming(&file, &mut |f| seen.push(f))
            .unwrap()
            .unwrap();
        assert!(m.files.is_empty(), "files are streamed, not kept");
        assert_eq!(serde_json::to_value(&seen).unwrap(), files);

        manifest.as_object_mut().unwrap().remove("files");
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, manifest.to_string().as_bytes()).unwrap();
        let e = parse_streaming(&file, &mut |_| {}).unwrap().unwrap_err();
        assert!(e.to_string().contains("missing field `files`"), "{e}");

        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, format!("{text} trailing").as_bytes()).unwrap();
        assert!(parse_streaming(&file, &mut |_| {}).unwrap().is_err());
    }
}
