//! `cargo release-bundle verify`: stream a bundle once, without extracting it, and collect
//! typed findings about integrity, safety, canonical form, consistency, target and leaks.
//!
//! The archive is never trusted: every header field is checked before anything is derived
//! from it, sizes and ratios are bounded, and `unpack` writes only entries that passed.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::sync_channel;

use aho_corasick::AhoCorasick;
use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive;
use crate::archive::Format;
use crate::archive::manifest::Manifest;
use crate::archive::read::{CountingReader, RawHeader};
use leaks::LEAK_PATTERNS;

/// Leak findings listed per bundle; further ones are counted in one summary finding.
const MAX_LEAK_FINDINGS: usize = 256;

/// Where the entries that pass go, as they pass (the unpacker implements it); verify knows
/// nothing more of it. Failures are the sink's to keep: the check goes on, so every finding
/// is still reported.
pub trait Sink {
    fn dir(&mut self, rel: &str);
    fn symlink(&mut self, rel: &str, target: &str);
    /// Start a regular file; `None` when it cannot be written.
    fn begin_file(&mut self, rel: &str) -> Option<File>;
    fn end_file(&mut self, rel: &str, file: File, mode: u32);
    fn fail(&mut self, rel: &str, e: io::Error);
    /// The bundle's single mtime, given once it is read (every entry carries the same one).
    fn mtime(&mut self, mtime: u64);
    /// Whether the check must stop now (the user interrupted the sink's command).
    fn cancelled(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    /// Informational; never fails verification.
    Note,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable identifier, e.g. `checksum-mismatch`.
    pub code: &'static str,
    /// Entry path inside the archive, when the finding is about one.
    pub path: Option<String>,
    pub message: String,
}

impl Finding {
    pub fn new(
        severity: Severity,
        code: &'static str,
        path: Option<&str>,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            code,
            path: path.map(String::from),
            message: message.into(),
        }
    }

    pub fn error(code: &'static str, path: Option<&str>, message: impl Into<String>) -> Finding {
        Finding::new(Severity::Error, code, path, message)
    }

    pub fn warning(code: &'static str, path: Option<&str>, message: impl Into<String>) -> Finding {
        Finding::new(Severity::Warning, code, path, message)
    }

    pub fn note(code: &'static str, path: Option<&str>, message: impl Into<String>) -> Finding {
        Finding::new(Severity::Note, code, path, message)
    }
}

pub use crate::archive::DEFAULT_MAX_ENTRIES;

/// A bundle of `entries` archive entries (the top directory, every planned entry, the
/// manifest and the sums) passes `verify`'s default entry limit; bundling refuses one that
/// would not, so that what this tool writes, this tool verifies.
pub fn within_entry_limit(entries: u64) -> Result<(), String> {
    if entries > DEFAULT_MAX_ENTRIES {
        return Err(format!(
            "the bundle would hold {entries} entries, and `verify` refuses more than {DEFAULT_MAX_ENTRIES} (its defence against archive bombs); ship fewer, larger files (for example an archive of the tree inside priv/)"
        ));
    }
    Ok(())
}

/// Bounds that keep a hostile archive from exhausting memory or disk.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: u64,
    /// Total decompressed bytes.
    pub max_size: u64,
    /// Decompressed / compressed, enforced once more than `ratio_floor` bytes came out.
    pub max_ratio: u64,
    pub ratio_floor: u64,
    /// Largest MANIFEST.json / SHA256SUMS / SBOM accepted (spooled to disk, then streamed,
    /// never held): room for the manifest of the most entries bundling writes.
    pub max_metadata: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_size: 64 << 30,
            max_ratio: 1_000,
            ratio_floor: 64 << 20,
            max_metadata: 1 << 30,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bundle: Utf8PathBuf,
    /// SHA-256 of the bundle file, computed while verifying it.
    pub sha256: String,
    #[serde(skip)]
    pub manifest: Option<Manifest>,
    pub name: Option<String>,
    pub version: Option<String>,
    pub files: usize,
    /// What the bundle's digest was checked against (origin, or only consistency).
    pub reference: sidecar::Reference,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Whether the bundle passes: no errors, and no warnings under `strict`.
    pub fn passes(&self, strict: bool) -> bool {
        self.count(Severity::Error) == 0 && (!strict || self.count(Severity::Warning) == 0)
    }
}

mod auditable;
mod checker;
mod compare;
pub mod consistency;
mod entry;
mod header;
mod leaks;
mod placement;
mod provenance;
pub mod rebuild;
mod record;
mod report;
mod sidecar;
mod signature;
mod stream;
mod target;
pub mod unpack;

use checker::Checker;
use record::spool;
use stream::{ChannelReader, HashingReader, InputEnd, decompress};

pub use report::print;
pub use sidecar::Reference;
pub use signature::{Trust, check_minisign, check_signature};

/// Verify one bundle file. `Err` only for I/O problems with the file itself (exit code 2).
pub fn verify_file(
    path: &Utf8Path,
    expected_sha256: Option<&str>,
    limits: Limits,
    allow_paths: &[String],
    extract: Option<&mut dyn Sink>,
) -> Result<Report> {
    let file = crate::util::open_regular(path)
        .with_context(|| format!("`{path}`: cannot open the bundle"))?;
    let file_name = path.file_name().unwrap_or_default();
    let streamed = verify_stream(file, file_name, limits, allow_paths, extract)
        .with_context(|| format!("`{path}`: cannot verify"))?;
    let mut findings = streamed.findings;
    // The executables' embedded dependency lists, when the SBOM says they have them.
    if let (Some(sbom), Some(m)) = (&streamed.summary.sbom, &streamed.summary.manifest) {
        auditable::check(path, &m.top_dir, sbom, &mut findings)
            .with_context(|| format!("`{path}`: cannot read the executables' dependency lists"))?;
    }
    let reference = sidecar::check_sidecar(path, &streamed.sha256, expected_sha256, &mut findings)?;
    provenance::check_provenance(path, &streamed.sha256, &mut findings);
    findings.sort_by(|a, b| (a.severity, &a.path).cmp(&(b.severity, &b.path)));
    let summary = streamed.summary;
    Ok(Report {
        bundle: path.to_owned(),
        sha256: streamed.sha256,
        manifest: summary.manifest.clone(),
        name: summary.name,
        version: summary.version,
        files: summary.files,
        reference,
        findings,
    })
}

/// What one pass over an archive found.
pub struct Streamed {
    pub findings: Vec<Finding>,
    pub summary: consistency::Summary,
    /// SHA-256 of the whole input (compressed) stream.
    pub sha256: String,
}

impl<'a> Checker<'a> {
    /// A checker with nothing seen yet, spooling its records to an anonymous file.
    fn new(
        limits: Limits,
        allow_paths: &[String],
        compressed: Arc<AtomicU64>,
        extract: Option<&'a mut dyn Sink>,
    ) -> io::Result<Checker<'a>> {
        Ok(Checker {
            limits,
            findings: Vec::new(),
            top: None,
            mtime: None,
            dirs: HashSet::new(),
            symlinks: HashSet::new(),
            links: Vec::new(),
            case_clashes: archive::CaseClashes::default(),
            canonical: true,
            section: archive::Section::Top,
            last_body: None,
            records: BufWriter::new(spool()?),
            files: 0,
            manifest: None,
            sums: None,
            sbom: None,
            entries: 0,
            compressed,
            leaks: AhoCorasick::new(LEAK_PATTERNS).map_err(io::Error::other)?,
            allow_paths: allow_paths.to_vec(),
            leak_hits: Vec::new(),
            leaks_unlisted: 0,
            leak_files_capped: 0,
            extract,
        })
    }
}

/// The leak scan's findings, now that the manifest's allow-list is known.
fn leak_findings(checker: &Checker, summary: &consistency::Summary, findings: &mut Vec<Finding>) {
    let recorded: &[String] = summary
        .manifest
        .as_ref()
        .map_or(&[], |m| m.allow_paths.as_slice());
    for hit in &checker.leak_hits {
        if !leaks::allowed(&hit.what, recorded) {
            findings.push(Finding::warning(
                "leak",
                Some(&hit.path),
                format!(
                    "offset {}: `{}` looks like a path on the build machine (if it is an example, list it in [package.metadata.release.verify] allow-paths, or pass --allow-path)",
                    hit.offset, hit.what
                ),
            ));
        }
    }
    if checker.leaks_unlisted > 0 {
        let (n, files) = (checker.leaks_unlisted, checker.leak_files_capped);
        let why = format!(
            "{n} more matches of build-machine paths not listed (at most {MAX_LEAK_FINDINGS} in all and {} per file are; {files} file(s) had more)",
            leaks::MAX_HITS_PER_FILE
        );
        findings.push(Finding::warning("leak", None, why));
    }
}

/// What is not an archive is still read to its end, for the file's digest.
fn hash_rest<R: Read>(mut raw: BufReader<HashingReader<R>>) -> io::Result<InputEnd> {
    let mut rest = CountingReader {
        inner: &mut raw,
        count: 0,
    };
    io::copy(&mut rest, &mut io::sink())?;
    let sha256 = archive::hex(&raw.into_inner().hasher.finalize());
    Ok(InputEnd {
        sha256,
        trailing: None,
    })
}

/// Verify an archive read from `input` (named `file_name`) in one pass. `Err` only when
/// `input` itself cannot be read; everything wrong with its content is a finding.
pub fn verify_stream(
    input: impl Read + Send,
    file_name: &str,
    limits: Limits,
    allow_paths: &[String],
    extract: Option<&mut dyn Sink>,
) -> io::Result<Streamed> {
    let count = Arc::new(AtomicU64::new(0));
    let mut raw = BufReader::with_capacity(
        256 * 1024,
        HashingReader {
            input,
            hasher: Sha256::new(),
            count: count.clone(),
        },
    );
    let head = io::BufRead::fill_buf(&mut raw)?;
    let format = archive::sniff(head);
    let frame_checksum = archive::zstd_frame_checksum(head);
    let mut checker = Checker::new(limits, allow_paths, count, extract)?;
    let named = archive::format_of(file_name);
    let (complete, raw) = match format {
        None => {
            checker.add(Severity::Error, "format", None, "not a zstd or gzip stream");
            (false, hash_rest(raw)?)
        }
        Some(f) => {
            if named != Some(f) {
                let why = format!("the file name does not end in `.{}`", f.extension());
                checker.add(Severity::Warning, "file-name", None, why);
            }
            if f == Format::TarZst && frame_checksum != Some(true) {
                let why = "the zstd frame has no content checksum (the bundler always writes one): corruption inside the compressed data may go unnoticed";
                checker.add(Severity::Warning, "zstd-checksum", None, why);
            }
            let (tx, rx) = sync_channel(4);
            std::thread::scope(|scope| {
                let producer = scope.spawn(move || decompress(raw, f, tx));
                let reader = ChannelReader {
                    rx,
                    chunk: Vec::new(),
                    at: 0,
                };
                let complete = checker.read_all(reader);
                let raw = producer.join().unwrap_or_else(|_| {
                    Err(io::Error::other("the decompressing thread panicked"))
                })?;
                Ok::<_, io::Error>((complete, raw))
            })?
        }
    };
    if let (true, Some(n)) = (complete, raw.trailing)
        && n > 0
    {
        let why = format!("{n} bytes after the end of the compressed stream");
        checker.add(Severity::Error, "trailing-garbage", None, why);
    }
    let mut findings = std::mem::take(&mut checker.findings);
    let summary = if complete {
        checker.records.flush()?;
        let records = checker.records.get_ref();
        consistency::check(&checker, records, file_name, &mut findings)?
    } else {
        consistency::Summary::default()
    };
    leak_findings(&checker, &summary, &mut findings);
    Ok(Streamed {
        findings,
        summary,
        sha256: raw.sha256,
    })
}

#[cfg(test)]
mod limit_tests {
    #[test]
    fn the_manifest_of_the_largest_bundle_fits_the_metadata_limit() {
        use crate::archive::manifest::{FileKind, FileRecord};
        // The longest record a bundle can have: a 255-byte path, the largest size.
        let record = FileRecord {
            path: "p".repeat(255),
            kind: FileKind::Executable,
            mode: "0755".into(),
            size: crate::archive::MAX_FILE_SIZE,
            sha256: Some("f".repeat(64)),
            target: None,
        };
        let one = serde_json::to_vec_pretty(&vec![record]).unwrap().len() as u64;
        let limits = super::Limits::default();
        assert!(
            one * super::DEFAULT_MAX_ENTRIES < limits.max_metadata,
            "{one} bytes a record"
        );
        // SHA256SUMS: 64 hex, two spaces, the path, a newline.
        assert!((64 + 2 + 255 + 1) * super::DEFAULT_MAX_ENTRIES < limits.max_metadata);
    }

    #[test]
    fn bundling_accepts_what_verify_accepts() {
        assert!(super::within_entry_limit(super::DEFAULT_MAX_ENTRIES).is_ok());
        let e = super::within_entry_limit(super::DEFAULT_MAX_ENTRIES + 1).unwrap_err();
        assert!(
            e.contains("1000001 entries") && e.contains("1000000"),
            "{e}"
        );
        assert_eq!(
            super::Limits::default().max_entries,
            super::DEFAULT_MAX_ENTRIES
        );
    }
}
