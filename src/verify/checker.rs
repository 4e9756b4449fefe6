//! Checking one archive, entry by entry: each header checked before anything is derived
//! from it, the entry placed (top directory, canonical order, parents), its content streamed
//! through the limits, the hasher, the leak scan and the sink, and a [`Record`] spooled for
//! the cross-checks.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use aho_corasick::AhoCorasick;
use sha2::{Digest, Sha256};

use super::entry::{Placed, Taps, cancelled, limit_hit, refusal};
use super::leaks::LeakScanner;

/// A suspected build-machine path in a shipped file.
#[derive(Debug, Clone)]
pub(super) struct LeakHit {
    pub(super) path: String,
    pub(super) offset: u64,
    pub(super) what: String,
}
use super::record::{Link, Record, RecordKind, spool};
use super::{Finding, Limits, MAX_LEAK_FINDINGS, Severity, Sink, target};
use crate::archive::header::{TYPE_DIR, TYPE_REGULAR, TYPE_SYMLINK};
use crate::archive::read::{RawHeader, TarReader, Trailer};
use crate::archive::{self, MANIFEST, SHA256SUMS, Section};

/// Verification state for one archive.
pub(super) struct Checker<'a> {
    pub(super) limits: Limits,
    pub(super) findings: Vec<Finding>,
    pub(super) top: Option<String>,
    pub(super) mtime: Option<u64>,
    /// Full paths of the directory entries and symlinks so far, for the parent checks.
    pub(super) dirs: HashSet<String>,
    pub(super) symlinks: HashSet<String>,
    pub(super) links: Vec<Link>,
    pub(super) case_clashes: archive::CaseClashes,
    /// Whether every entry so far came in canonical order, without duplicates.
    pub(super) canonical: bool,
    /// The section of canonical order the checker has reached.
    pub(super) section: Section,
    pub(super) last_body: Option<String>,
    /// Entries inside the top directory, spooled as [`Record`] lines.
    pub(super) records: BufWriter<File>,
    /// Regular files inside the top directory.
    pub(super) files: usize,
    /// MANIFEST.json and SHA256SUMS, spooled to temporary files.
    pub(super) manifest: Option<File>,
    pub(super) sums: Option<File>,
    /// `SBOM.cdx.json`, spooled like the manifest.
    pub(super) sbom: Option<File>,
    pub(super) entries: u64,
    pub(super) compressed: Arc<AtomicU64>,
    pub(super) leaks: AhoCorasick,
    /// Path prefixes the leak scan does not report (`--allow-path`).
    pub(super) allow_paths: Vec<String>,
    /// Leaks found, at most [`MAX_LEAK_FINDINGS`], and further matches only counted (memory
    /// stays flat).
    pub(super) leak_hits: Vec<LeakHit>,
    pub(super) leaks_unlisted: u64,
    pub(super) leak_files_capped: u64,
    pub(super) extract: Option<&'a mut dyn Sink>,
}

impl Checker<'_> {
    pub(super) fn add(
        &mut self,
        severity: Severity,
        code: &'static str,
        path: Option<&str>,
        message: impl Into<String>,
    ) {
        self.findings
            .push(Finding::new(severity, code, path, message));
    }

    pub(super) fn error(&mut self, code: &'static str, path: &str, message: impl Into<String>) {
        self.add(Severity::Error, code, Some(path), message);
    }

    /// Checks on the decompressed size so far; false when the checker must stop.
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

    fn record(&mut self, record: &Record) -> io::Result<()> {
        serde_json::to_writer(&mut self.records, record)?;
        self.records.write_all(b"\n")
    }

    /// One entry: its header, its place in the bundle, its content; false when the checker
    /// must stop (a limit, a broken stream, a corrupt header).
    fn entry(&mut self, r: &mut TarReader<impl Read>, h: RawHeader) -> io::Result<bool> {
        let Some((kind, size)) = self.sizes(r, &h) else {
            return Ok(false);
        };
        let raw_path = h.path_bytes();
        let path = self.check_name(&raw_path);
        let shown = path
            .clone()
            .unwrap_or_else(|| String::from_utf8_lossy(&raw_path).into_owned());
        let refused = refusal(kind);
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
        let path = path.filter(|_| refused.is_none() && header_ok);
        let (writable, link_target) = match path.as_deref() {
            Some(p) => self.placement(p, kind, &h),
            None => (false, None),
        };
        let rel_path = path.as_deref().and_then(|p| self.relative(p));
        let placed = Placed {
            path,
            rel_path,
            writable,
            link_target,
        };
        let record = if kind == TYPE_REGULAR && placed.path.is_some() {
            match self.regular_file(r, &h, size, &placed)? {
                Some(record) => record,
                None => return Ok(false),
            }
        } else {
            if !self.content(r, size, |_| {})? {
                return Ok(false);
            }
            self.other_entry(kind, &placed)
        };
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

    /// The entry count, the header checksum and the size field, each against its limit: the
    /// typeflag and size, or `None` when nothing after this header can be trusted.
    fn sizes(&mut self, r: &TarReader<impl Read>, h: &RawHeader) -> Option<(u8, u64)> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            let max = self.limits.max_entries;
            self.add(
                Severity::Error,
                "limit-entries",
                None,
                format!("more than {max} entries; refusing to read further"),
            );
            return None;
        }
        let shown = || String::from_utf8_lossy(&h.path_bytes()).into_owned();
        if let Err(why) = h.checksum() {
            self.error(
                "bad-checksum",
                &shown(),
                format!("header checksum {why}; the archive is corrupt"),
            );
            return None;
        }
        let size = match h.size() {
            Ok(s) => s,
            Err(e) => {
                self.error(
                    "bad-header",
                    &shown(),
                    format!(
                        "size field {e}; tar implementations disagree on such a field, so nothing after it can be trusted"
                    ),
                );
                return None;
            }
        };
        if r.offset.saturating_add(size) > self.limits.max_size {
            let max = self.limits.max_size;
            self.error(
                "limit-size",
                &shown(),
                format!(
                    "declares {size} bytes, which would take the archive past {max} bytes decompressed; refusing to read it"
                ),
            );
            return None;
        }
        Some((h.typeflag(), size))
    }

    /// A regular file's content through every tap (hash, head, leak scan, metadata spool,
    /// extraction); its record, or `None` when a limit stopped the read.
    fn regular_file(
        &mut self,
        r: &mut TarReader<impl Read>,
        h: &RawHeader,
        size: u64,
        placed: &Placed,
    ) -> io::Result<Option<Option<Record>>> {
        let path = placed.path.clone().unwrap_or_default();
        let rel_path = &placed.rel_path;
        let metadata = rel_path
            .as_deref()
            .filter(|r| *r == MANIFEST || *r == SHA256SUMS || *r == crate::attest::sbom::SBOM)
            .map(String::from);
        let keep = self.metadata_spool(metadata.is_some(), size, &path)?;
        let mode = h.mode().unwrap_or(0);
        let mut taps = Taps {
            hasher: Sha256::new(),
            head: Vec::new(),
            // Our own metadata holds only relative paths; scanning it would only find those.
            scanner: metadata
                .is_none()
                .then(|| LeakScanner::new(self.leaks.clone(), &self.allow_paths)),
            keep,
            out: match (&mut self.extract, placed.writable, rel_path) {
                (Some(x), true, Some(rel)) => x.begin_file(rel),
                _ => None,
            },
            write_error: None,
            spool_error: None,
        };
        let complete = self.content(r, size, |data| taps.feed(data))?;
        if let Some(e) = taps.spool_error {
            return Err(e);
        }
        if !complete {
            return Ok(None);
        }
        if let (Some(x), Some(rel)) = (&mut self.extract, rel_path) {
            match (taps.write_error, taps.out) {
                (Some(e), _) => x.fail(rel, e),
                (None, Some(file)) => x.end_file(rel, file, mode as u32),
                _ => {}
            }
        }
        self.note_leaks(&path, taps.scanner);
        let spooled = taps
            .keep
            .map(|k| k.into_inner().map_err(io::IntoInnerError::into_error))
            .transpose()?;
        match metadata.as_deref() {
            Some(MANIFEST) => self.manifest = spooled,
            Some(SHA256SUMS) => self.sums = spooled,
            Some(_) => self.sbom = spooled,
            None => {}
        }
        let mut head = taps.head;
        if !target::executable_magic(&head) {
            head.clear();
        }
        let record = rel_path.as_ref().map(|rel| Record {
            path: rel.clone(),
            kind: RecordKind::File,
            size,
            mode,
            sha256: archive::hex(&taps.hasher.finalize()),
            target: String::new(),
            head,
        });
        if record.is_some() {
            self.files += 1;
        }
        Ok(Some(record))
    }

    /// Where bundle metadata (MANIFEST.json, SHA256SUMS, the SBOM) is spooled, unless it is
    /// larger than the metadata limit.
    fn metadata_spool(
        &mut self,
        metadata: bool,
        size: u64,
        path: &str,
    ) -> io::Result<Option<BufWriter<File>>> {
        if !metadata {
            return Ok(None);
        }
        if size > self.limits.max_metadata {
            self.error(
                "limit-metadata",
                path,
                format!("{size} bytes is too large for bundle metadata"),
            );
            return Ok(None);
        }
        Ok(Some(BufWriter::new(spool()?)))
    }

    /// The leak scan's hits, kept up to the cap (reported once the manifest's allow-list is
    /// known), the rest counted.
    fn note_leaks(&mut self, path: &str, scanner: Option<LeakScanner>) {
        let hits = scanner.map(LeakScanner::finish).unwrap_or_default();
        for (what, offset) in hits.first {
            if self.leak_hits.len() == MAX_LEAK_FINDINGS {
                self.leaks_unlisted += 1;
                continue;
            }
            self.leak_hits.push(LeakHit {
                path: path.to_string(),
                offset,
                what,
            });
        }
        if hits.more > 0 {
            self.leaks_unlisted += hits.more;
            self.leak_files_capped += 1;
        }
    }

    /// A directory or symlink (extracted when it may be, remembered for the parent checks);
    /// its record. Refused entries get none.
    fn other_entry(&mut self, kind: u8, placed: &Placed) -> Option<Record> {
        let record = |kind, target: &str| {
            placed.rel_path.as_ref().map(|rel| Record {
                path: rel.clone(),
                kind,
                size: 0,
                mode: 0,
                sha256: String::new(),
                target: target.to_string(),
                head: Vec::new(),
            })
        };
        let record = match (kind, &placed.link_target) {
            (TYPE_DIR, _) => record(RecordKind::Dir, ""),
            (TYPE_SYMLINK, Some(target)) => record(RecordKind::Symlink, target),
            _ => None,
        };
        let path = placed.path.clone()?;
        if kind != TYPE_DIR && placed.link_target.is_none() {
            return record;
        }
        if let (Some(x), true, Some(rel)) = (&mut self.extract, placed.writable, &placed.rel_path) {
            match &placed.link_target {
                None => x.dir(rel),
                Some(target) => x.symlink(rel, target),
            }
        }
        match &placed.link_target {
            None => self.dirs.insert(path),
            Some(_) => self.symlinks.insert(path),
        };
        record
    }

    /// Read every entry; false when the stream is broken or a limit stopped the checker.
    pub(super) fn read_all(&mut self, input: impl Read) -> bool {
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
