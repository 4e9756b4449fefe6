//! `cargo release-bundle verify`: stream a bundle once, without extracting it, and collect
//! typed findings about integrity, safety, canonical form, consistency, target and leaks.
//!
//! The archive is never trusted: every header field is checked before anything is derived
//! from it, sizes and ratios are bounded, and `unpack` writes only entries that passed.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use aho_corasick::AhoCorasick;
use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::archive::Format;
use crate::archive::header::{
    TYPE_BLOCK_DEVICE, TYPE_CHAR_DEVICE, TYPE_DIR, TYPE_FIFO, TYPE_GNU_LONGLINK, TYPE_GNU_LONGNAME,
    TYPE_GNU_SPARSE, TYPE_HARDLINK, TYPE_OLD_REGULAR, TYPE_PAX, TYPE_PAX_GLOBAL, TYPE_REGULAR,
    TYPE_SYMLINK,
};
use crate::archive::manifest::Manifest;
use crate::archive::read::{CountingReader, RawHeader, TarReader, Trailer};
use crate::archive::{self, MANIFEST, SHA256SUMS};
use leaks::{LEAK_PATTERNS, LeakScanner};

/// Leak findings listed per bundle; further ones are counted in one summary finding.
const MAX_LEAK_FINDINGS: usize = 256;

/// Where the entries that pass go, as they pass (the unpacker implements it); verify knows
/// nothing more of it. Failures are the sink's to keep: the walk goes on, so every finding
/// is still reported.
pub trait Sink {
    fn dir(&mut self, rel: &str);
    fn symlink(&mut self, rel: &str, target: &str);
    /// Start a regular file; `None` when it cannot be written.
    fn begin_file(&mut self, rel: &str) -> Option<File>;
    fn end_file(&mut self, rel: &str, file: File, mode: u32);
    fn fail(&mut self, rel: &str, e: io::Error);
    /// Whether the walk must stop now (the user interrupted the sink's command).
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

/// Bounds that keep a hostile archive from exhausting memory or disk.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: u64,
    /// Total decompressed bytes.
    pub max_size: u64,
    /// Decompressed / compressed, enforced once more than `ratio_floor` bytes came out.
    pub max_ratio: u64,
    pub ratio_floor: u64,
    /// Largest MANIFEST.json / SHA256SUMS accepted (they are spooled to disk, then streamed).
    pub max_metadata: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 1_000_000,
            max_size: 64 << 30,
            max_ratio: 1_000,
            ratio_floor: 64 << 20,
            max_metadata: 64 << 20,
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
    pub reference: consistency::Reference,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RecordKind {
    Dir,
    File,
    Symlink,
}

/// What the cross-checks need of one entry inside the top directory. Spooled to a temporary
/// file, one JSON line each, in archive order: memory does not grow with the entry count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// Relative to the top directory.
    path: String,
    kind: RecordKind,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    mode: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sha256: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    target: String,
    /// The first bytes of a file that starts like an executable (ELF, PE, Mach-O), for the
    /// target check; empty for other files, which fail that check the same way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    head: Vec<u8>,
}

/// A symlink, kept until the end to resolve it through the others and check that its target
/// is in the bundle.
#[derive(Debug, Clone)]
struct Link {
    /// Relative to the top directory.
    path: String,
    target: String,
}

/// An anonymous temporary file for what verification spools; errors name the directory.
fn spool() -> io::Result<File> {
    tempfile::tempfile().map_err(|e| {
        let dir = std::env::temp_dir();
        io::Error::new(
            e.kind(),
            format!(
                "cannot create a temporary file in `{}` (set TMPDIR): {e}",
                dir.display()
            ),
        )
    })
}

/// Hashes and counts the raw (compressed) bytes as they are read.
struct RawReader<R> {
    input: R,
    hasher: Sha256,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for RawReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// When the sink asks the walk to stop, the finding that says so.
fn cancelled(sink: Option<&dyn Sink>) -> Option<(&'static str, String)> {
    sink.filter(|s| s.cancelled())
        .map(|_| ("interrupted", "interrupted; stopped reading".to_string()))
}

/// The limit `decompressed` bytes (read so far) break, with a message, if any.
fn limit_hit(
    limits: &Limits,
    compressed: &AtomicU64,
    decompressed: u64,
) -> Option<(&'static str, String)> {
    let compressed = compressed.load(Ordering::Relaxed).max(1);
    if decompressed > limits.max_size {
        let max = limits.max_size;
        return Some((
            "limit-size",
            format!("decompresses to more than {max} bytes; refusing to read further"),
        ));
    }
    if decompressed > limits.ratio_floor && decompressed / compressed > limits.max_ratio {
        return Some((
            "limit-ratio",
            format!(
                "{compressed} compressed bytes expand to {decompressed} (more than {}x): refusing to read further (compression bomb?)",
                limits.max_ratio
            ),
        ));
    }
    None
}

/// Verification state for one archive.
struct Walk<'a> {
    limits: Limits,
    findings: Vec<Finding>,
    top: Option<String>,
    mtime: Option<u64>,
    /// Full paths of the directory entries and symlinks so far, for the parent checks.
    dirs: HashSet<String>,
    symlinks: HashSet<String>,
    links: Vec<Link>,
    siblings: archive::Siblings,
    /// Whether every entry so far came in canonical order, without duplicates.
    canonical: bool,
    /// 0: expecting top, 1: body, 2: after MANIFEST.json, 3: after SHA256SUMS.
    phase: u8,
    last_body: Option<String>,
    /// Entries inside the top directory, spooled as [`Record`] lines.
    records: BufWriter<File>,
    /// Regular files inside the top directory.
    files: usize,
    /// MANIFEST.json and SHA256SUMS, spooled to temporary files.
    manifest: Option<File>,
    sums: Option<File>,
    entries: u64,
    compressed: Arc<AtomicU64>,
    leaks: AhoCorasick,
    /// Leak findings reported, and further matches only counted (memory stays flat).
    leaks_listed: usize,
    leaks_unlisted: u64,
    leak_files_capped: u64,
    extract: Option<&'a mut dyn Sink>,
}

impl Walk<'_> {
    fn add(
        &mut self,
        severity: Severity,
        code: &'static str,
        path: Option<&str>,
        message: impl Into<String>,
    ) {
        self.findings
            .push(Finding::new(severity, code, path, message));
    }

    fn error(&mut self, code: &'static str, path: &str, message: impl Into<String>) {
        self.add(Severity::Error, code, Some(path), message);
    }

    /// Checks on the decompressed size so far; false when the walk must stop.
    fn within_limits(&mut self, decompressed: u64) -> bool {
        let hit = limit_hit(&self.limits, &self.compressed, decompressed)
            .or_else(|| cancelled(self.extract.as_deref()));
        match hit {
            Some((code, message)) => {
                self.add(Severity::Error, code, None, message);
                false
            }
            None => true,
        }
    }

    /// Stream an entry's content to `sink`, checking the size and ratio limits on every
    /// chunk, so a bomb is stopped where it crosses them rather than after the entry (and
    /// `unpack` never writes past them); false when a limit stopped it.
    fn content(
        &mut self,
        r: &mut TarReader<impl Read>,
        size: u64,
        mut sink: impl FnMut(&[u8]),
    ) -> io::Result<bool> {
        let (limits, compressed) = (self.limits, self.compressed.clone());
        let extract = self.extract.as_deref();
        let mut at = r.offset;
        let mut hit = None;
        let result = r.content(size, |data| {
            at += data.len() as u64;
            hit = limit_hit(&limits, &compressed, at).or_else(|| cancelled(extract));
            if hit.is_some() {
                return Err(io::Error::other("over a limit"));
            }
            sink(data);
            Ok(())
        });
        if let Some((code, message)) = hit {
            self.add(Severity::Error, code, None, message);
            return Ok(false);
        }
        result.map(|()| true)
    }

    /// Top directory, containment and canonical order; whether the entry may be extracted
    /// (in order and not a duplicate).
    fn check_place(&mut self, path: &str, kind: u8) -> bool {
        let Some(top) = self.top.clone() else {
            self.phase = 1;
            if kind == TYPE_DIR && !path.contains('/') {
                self.top = Some(path.to_string());
                return true;
            }
            self.top = Some(path.split('/').next().unwrap_or(path).to_string());
            self.canonical = false;
            self.error(
                "order",
                path,
                "the first entry must be the bundle's top directory",
            );
            return false;
        };
        let Some(rel) = path.strip_prefix(&top).and_then(|r| r.strip_prefix('/')) else {
            let message = if path == top {
                "the top directory appears twice".to_string()
            } else {
                format!("entry is outside the top directory `{top}/`")
            };
            self.error(
                if path == top {
                    "duplicate"
                } else {
                    "outside-top"
                },
                path,
                message,
            );
            self.canonical = false;
            return false;
        };
        if self.phase == 1 && self.last_body.as_deref() == Some(rel) {
            self.error("duplicate", path, "duplicate entry");
            self.canonical = false;
            return false;
        }
        let (next, metadata) = match rel {
            MANIFEST => (2, true),
            SHA256SUMS => (3, true),
            _ => (1, false),
        };
        let in_order = match (self.phase, next) {
            (1, 1) => self.last_body.as_deref().is_none_or(|last| last < rel),
            (1, 2) | (2, 3) => true,
            _ => false,
        };
        if !in_order {
            let why = if metadata {
                format!(
                    "`{MANIFEST}` and `{SHA256SUMS}` must be the last two entries, in that order"
                )
            } else {
                "entries must be sorted bytewise by path, before MANIFEST.json and SHA256SUMS"
                    .to_string()
            };
            self.error("order", path, format!("out of canonical order: {why}"));
            self.canonical = false;
        }
        if next == 1 {
            self.last_body = Some(rel.to_string());
        }
        self.phase = self.phase.max(next);
        in_order
    }

    /// Parents must be directories seen earlier; never a symlink (write-through).
    fn check_parents(&mut self, path: &str) -> bool {
        let mut parents: Vec<&str> =
            std::iter::successors(path.rsplit_once('/').map(|(p, _)| p), |p| {
                p.rsplit_once('/').map(|(p, _)| p)
            })
            .collect();
        parents.reverse();
        for p in parents {
            if self.dirs.contains(p) {
                continue;
            }
            if self.symlinks.contains(p) {
                self.error(
                    "through-symlink",
                    path,
                    format!("is written through the symlink `{p}`"),
                );
            } else {
                self.error(
                    "missing-parent",
                    path,
                    format!("its parent `{p}` has no directory entry before it"),
                );
            }
            return false;
        }
        true
    }

    fn record(&mut self, record: &Record) -> io::Result<()> {
        serde_json::to_writer(&mut self.records, record)?;
        self.records.write_all(b"\n")
    }

    fn entry(&mut self, r: &mut TarReader<impl Read>, h: RawHeader) -> io::Result<bool> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            let max = self.limits.max_entries;
            self.add(
                Severity::Error,
                "limit-entries",
                None,
                format!("more than {max} entries; refusing to read further"),
            );
            return Ok(false);
        }
        let raw_path = h.path_bytes();
        if let Err(why) = h.checksum() {
            let shown = String::from_utf8_lossy(&raw_path).into_owned();
            self.error(
                "bad-checksum",
                &shown,
                format!("header checksum {why}; the archive is corrupt"),
            );
            return Ok(false);
        }
        let kind = h.typeflag();
        let size = match h.size() {
            Ok(s) => s,
            Err(e) => {
                let shown = String::from_utf8_lossy(&raw_path).into_owned();
                self.error(
                    "bad-header",
                    &shown,
                    format!(
                        "size field {e}; tar implementations disagree on such a field, so nothing after it can be trusted"
                    ),
                );
                return Ok(false);
            }
        };
        if r.offset.saturating_add(size) > self.limits.max_size {
            let shown = String::from_utf8_lossy(&raw_path).into_owned();
            let max = self.limits.max_size;
            self.error(
                "limit-size",
                &shown,
                format!(
                    "declares {size} bytes, which would take the archive past {max} bytes decompressed; refusing to read it"
                ),
            );
            return Ok(false);
        }
        let path = self.check_name(&raw_path);
        let shown = path
            .clone()
            .unwrap_or_else(|| String::from_utf8_lossy(&raw_path).into_owned());
        let refused = match kind {
            TYPE_REGULAR | TYPE_DIR | TYPE_SYMLINK => None,
            TYPE_OLD_REGULAR => Some((
                "old-type",
                "old-style regular file (typeflag NUL); the writer uses `0`",
            )),
            TYPE_HARDLINK => Some(("hard-link", "hard link entries are not allowed")),
            TYPE_CHAR_DEVICE | TYPE_BLOCK_DEVICE => {
                Some(("device", "device entries are not allowed"))
            }
            TYPE_FIFO => Some(("fifo", "FIFO entries are not allowed")),
            TYPE_PAX | TYPE_PAX_GLOBAL => Some((
                "pax-extension",
                "PAX extended headers are never written by the bundler",
            )),
            TYPE_GNU_LONGNAME | TYPE_GNU_LONGLINK => Some((
                "gnu-extension",
                "GNU long-name entries are never written by the bundler",
            )),
            TYPE_GNU_SPARSE => Some(("sparse", "sparse entries are not allowed")),
            _ => Some(("entry-type", "unknown entry type")),
        };
        if let Some((code, message)) = refused {
            self.error(
                code,
                &shown,
                format!("{message} (typeflag {:?})", kind as char),
            );
        }
        if matches!(kind, TYPE_DIR | TYPE_SYMLINK) && size != 0 {
            self.error(
                "bad-header",
                &shown,
                format!("a directory or symlink with size {size}"),
            );
        }
        let header_ok = self.check_header(&h, &shown, kind);
        let usable = refused.is_none() && header_ok && path.is_some();
        let mut link_target: Option<String> = None;
        let mut writable = false;
        if let Some(path) = path.as_deref().filter(|_| usable) {
            let placed = self.check_place(path, kind);
            let parents = self.check_parents(path);
            if let Some(other) = self.siblings.clash(path) {
                self.error(
                    "case-duplicate",
                    path,
                    format!("`{other}` has the same name but for case (breaks extraction on macOS and Windows)"),
                );
            }
            writable = parents && placed;
            if kind == TYPE_SYMLINK {
                link_target = self.check_link(path, h.link_bytes());
                writable &= link_target.is_some();
            }
        }
        let path = path.filter(|_| usable);
        let rel_path = path.as_deref().and_then(|p| {
            let top = self.top.as_deref()?;
            if p == top {
                Some(String::new())
            } else {
                p.strip_prefix(top)?.strip_prefix('/').map(String::from)
            }
        });
        let mut record = rel_path.as_ref().map(|rel| Record {
            path: rel.clone(),
            kind: RecordKind::Dir,
            size: 0,
            mode: 0,
            sha256: String::new(),
            target: String::new(),
            head: Vec::new(),
        });

        if kind == TYPE_REGULAR && usable {
            let path = path.clone().unwrap_or_default();
            let metadata = rel_path
                .as_deref()
                .filter(|r| *r == MANIFEST || *r == SHA256SUMS)
                .map(String::from);
            let mut keep = match &metadata {
                Some(_) if size > self.limits.max_metadata => {
                    self.error(
                        "limit-metadata",
                        &path,
                        format!("{size} bytes is too large for bundle metadata"),
                    );
                    None
                }
                Some(_) => Some(BufWriter::new(spool()?)),
                None => None,
            };
            let mut hasher = Sha256::new();
            let mut head = Vec::new();
            // Our own metadata holds only relative paths; scanning it would only find those.
            let mut scanner = metadata
                .is_none()
                .then(|| LeakScanner::new(self.leaks.clone()));
            let mode = h.mode().unwrap_or(0);
            let mut out = match (&mut self.extract, writable, &rel_path) {
                (Some(x), true, Some(rel)) => x.begin_file(rel),
                _ => None,
            };
            let mut write_error = None;
            let mut spool_error = None;
            let complete = self.content(r, size, |data| {
                hasher.update(data);
                if head.len() < 64 {
                    head.extend_from_slice(&data[..data.len().min(64 - head.len())]);
                }
                if let Some(s) = scanner.as_mut() {
                    s.feed(data);
                }
                if let Some(k) = keep.as_mut()
                    && let Err(e) = k.write_all(data)
                {
                    spool_error = Some(e);
                    keep = None;
                }
                if let Some(f) = out.as_mut()
                    && let Err(e) = io::Write::write_all(f, data)
                {
                    write_error = Some(e);
                    out = None;
                }
            })?;
            if let Some(e) = spool_error {
                return Err(e);
            }
            if !complete {
                return Ok(false);
            }
            if let Some(x) = &mut self.extract {
                match (write_error, out, &rel_path) {
                    (Some(e), _, Some(rel)) => x.fail(rel, e),
                    (None, Some(file), Some(rel)) => x.end_file(rel, file, mode as u32),
                    _ => {}
                }
            }
            let hits = scanner.map(LeakScanner::finish).unwrap_or_default();
            for (what, offset) in hits.first {
                if self.leaks_listed == MAX_LEAK_FINDINGS {
                    self.leaks_unlisted += 1;
                    continue;
                }
                self.leaks_listed += 1;
                self.add(
                    Severity::Warning,
                    "leak",
                    Some(&path),
                    format!("offset {offset}: `{what}` looks like a path on the build machine"),
                );
            }
            if hits.more > 0 {
                self.leaks_unlisted += hits.more;
                self.leak_files_capped += 1;
            }
            let spooled = keep
                .map(|k| k.into_inner().map_err(io::IntoInnerError::into_error))
                .transpose()?;
            match metadata.as_deref() {
                Some(MANIFEST) => self.manifest = spooled,
                Some(_) => self.sums = spooled,
                None => {}
            }
            if let Some(record) = record.as_mut() {
                if !consistency::executable_magic(&head) {
                    head.clear();
                }
                record.kind = RecordKind::File;
                record.size = size;
                record.mode = mode;
                record.sha256 = archive::hex(&hasher.finalize());
                record.head = head;
                self.files += 1;
            }
        } else {
            if !self.content(r, size, |_| {})? {
                return Ok(false);
            }
            match (kind, &link_target) {
                (TYPE_DIR, _) => {}
                (TYPE_SYMLINK, Some(target)) => {
                    if let Some(record) = record.as_mut() {
                        record.kind = RecordKind::Symlink;
                        record.target = target.clone();
                    }
                }
                _ => record = None,
            }
        }
        if let Some(path) = path.filter(|_| kind == TYPE_DIR || link_target.is_some()) {
            if let (Some(x), true, Some(rel)) = (&mut self.extract, writable, &rel_path) {
                match &link_target {
                    None => x.dir(rel),
                    Some(target) => x.symlink(rel, target),
                }
            }
            match &link_target {
                None => self.dirs.insert(path),
                Some(_) => self.symlinks.insert(path),
            };
        }
        if let Some(record) = record.filter(|r| !r.path.is_empty()) {
            if record.kind == RecordKind::Symlink {
                self.links.push(Link {
                    path: record.path.clone(),
                    target: record.target.clone(),
                });
            }
            self.record(&record)?;
        }
        Ok(self.within_limits(r.offset))
    }

    /// Read every entry; false when the stream is broken or a limit stopped the walk.
    fn walk(&mut self, input: impl Read) -> bool {
        let mut r = TarReader::new(input);
        let result: io::Result<Option<Trailer>> = (|| {
            while let Some(h) = r.next_header()? {
                if !self.entry(&mut r, h)? {
                    return Ok(None);
                }
            }
            r.trailer().map(Some)
        })();
        match result {
            Ok(None) => false,
            Ok(Some(Trailer::Canonical)) => true,
            Ok(Some(Trailer::ExtraZeros(n))) => {
                self.add(
                    Severity::Warning,
                    "trailer",
                    None,
                    format!("{n} extra zero bytes after the end-of-archive marker"),
                );
                true
            }
            Ok(Some(Trailer::Data)) => {
                self.add(
                    Severity::Error,
                    "trailing-data",
                    None,
                    "data after the end-of-archive marker",
                );
                false
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let at = r.offset;
                self.add(
                    Severity::Error,
                    "truncated",
                    None,
                    format!("the archive is truncated (ends at decompressed offset {at})"),
                );
                false
            }
            Err(e) => {
                self.add(
                    Severity::Error,
                    "corrupt",
                    None,
                    format!("the compressed stream is corrupt: {e}"),
                );
                false
            }
        }
    }
}

pub mod consistency;
mod header;
mod leaks;
mod report;

pub use report::{limits, print};

/// Verify one bundle file. `Err` only for I/O problems with the file itself (exit code 2).
pub fn verify_file(
    path: &Utf8Path,
    expected_sha256: Option<&str>,
    limits: Limits,
    extract: Option<&mut dyn Sink>,
) -> Result<Report> {
    let file = crate::fsutil::open_regular(path)
        .with_context(|| format!("`{path}`: cannot open the bundle"))?;
    let file_name = path.file_name().unwrap_or_default();
    let streamed = verify_stream(file, file_name, limits, extract)
        .with_context(|| format!("`{path}`: cannot verify"))?;
    let mut findings = streamed.findings;
    let reference =
        consistency::check_sidecar(path, &streamed.sha256, expected_sha256, &mut findings)?;
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

/// Decompressed data handed from the decompressing thread to the checking thread.
type Chunk = io::Result<Vec<u8>>;

/// Reads the chunks the decompressing thread sends.
struct ChannelReader {
    rx: Receiver<Chunk>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk?;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// What the decompressing thread saw of the raw stream.
struct Raw {
    sha256: String,
    /// Bytes after the end of the compressed stream (when it ended cleanly).
    trailing: Option<u64>,
}

const CHUNK: usize = 1 << 20;

/// Decompress `raw` and send it on in chunks; then hash whatever is left of the input.
/// Runs on its own thread, so decompression overlaps hashing and checking.
fn decompress<R: Read>(
    mut raw: BufReader<RawReader<R>>,
    format: Format,
    tx: SyncSender<Chunk>,
) -> io::Result<Raw> {
    fn pump(mut d: impl Read, tx: &SyncSender<Chunk>) -> bool {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            let result = loop {
                match d.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(true),
                    Ok(n) => {
                        filled += n;
                        if filled == buf.len() {
                            break Ok(false);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(filled);
            if !buf.is_empty() && tx.send(Ok(buf)).is_err() {
                return false;
            }
            match result {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return false;
                }
            }
        }
    }
    let clean = match format {
        Format::TarZst => match zstd::stream::read::Decoder::with_buffer(&mut raw) {
            Ok(d) => pump(d.single_frame(), &tx),
            Err(e) => {
                let _ = tx.send(Err(e));
                false
            }
        },
        Format::TarGz => pump(flate2::bufread::GzDecoder::new(&mut raw), &tx),
    };
    drop(tx);
    let mut rest = CountingReader {
        inner: &mut raw,
        count: 0,
    };
    io::copy(&mut rest, &mut io::sink())?;
    let trailing = clean.then_some(rest.count);
    Ok(Raw {
        sha256: archive::hex(&raw.into_inner().hasher.finalize()),
        trailing,
    })
}

/// Verify an archive read from `input` (named `file_name`) in one pass. `Err` only when
/// `input` itself cannot be read; everything wrong with its content is a finding.
pub fn verify_stream(
    input: impl Read + Send,
    file_name: &str,
    limits: Limits,
    extract: Option<&mut dyn Sink>,
) -> io::Result<Streamed> {
    let count = Arc::new(AtomicU64::new(0));
    let mut raw = BufReader::with_capacity(
        256 * 1024,
        RawReader {
            input,
            hasher: Sha256::new(),
            count: count.clone(),
        },
    );
    let head = io::BufRead::fill_buf(&mut raw)?;
    let format = archive::sniff(head);
    let frame_checksum = archive::zstd_frame_checksum(head);
    let leaks = AhoCorasick::new(LEAK_PATTERNS).map_err(io::Error::other)?;
    let mut walk = Walk {
        limits,
        findings: Vec::new(),
        top: None,
        mtime: None,
        dirs: HashSet::new(),
        symlinks: HashSet::new(),
        links: Vec::new(),
        siblings: archive::Siblings::default(),
        canonical: true,
        phase: 0,
        last_body: None,
        records: BufWriter::new(spool()?),
        files: 0,
        manifest: None,
        sums: None,
        entries: 0,
        compressed: count,
        leaks,
        leaks_listed: 0,
        leaks_unlisted: 0,
        leak_files_capped: 0,
        extract,
    };
    let named = archive::format_of(file_name);
    let (complete, raw) = match format {
        None => {
            walk.add(Severity::Error, "format", None, "not a zstd or gzip stream");
            let mut rest = CountingReader {
                inner: &mut raw,
                count: 0,
            };
            io::copy(&mut rest, &mut io::sink())?;
            let sha256 = archive::hex(&raw.into_inner().hasher.finalize());
            (
                false,
                Raw {
                    sha256,
                    trailing: None,
                },
            )
        }
        Some(f) => {
            if named != Some(f) {
                let why = format!("the file name does not end in `.{}`", f.extension());
                walk.add(Severity::Warning, "file-name", None, why);
            }
            if f == Format::TarZst && frame_checksum != Some(true) {
                let why = "the zstd frame has no content checksum (the bundler always writes one): corruption inside the compressed data may go unnoticed";
                walk.add(Severity::Warning, "zstd-checksum", None, why);
            }
            let (tx, rx) = sync_channel(4);
            std::thread::scope(|scope| {
                let producer = scope.spawn(move || decompress(raw, f, tx));
                let reader = ChannelReader {
                    rx,
                    chunk: Vec::new(),
                    at: 0,
                };
                let complete = walk.walk(reader);
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
        walk.add(Severity::Error, "trailing-garbage", None, why);
    }
    if walk.leaks_unlisted > 0 {
        let (n, files) = (walk.leaks_unlisted, walk.leak_files_capped);
        let why = format!(
            "{n} more matches of build-machine paths not listed (at most {MAX_LEAK_FINDINGS} in all and {} per file are; {files} file(s) had more)",
            leaks::MAX_HITS_PER_FILE
        );
        walk.add(Severity::Warning, "leak", None, why);
    }
    let mut findings = std::mem::take(&mut walk.findings);
    let summary = if complete {
        walk.records.flush()?;
        let records = walk.records.get_ref();
        consistency::check(&walk, records, file_name, &mut findings)?
    } else {
        consistency::Summary::default()
    };
    Ok(Streamed {
        findings,
        summary,
        sha256: raw.sha256,
    })
}
