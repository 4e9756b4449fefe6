//! Cross-checks once the whole archive has been read: sidecar, manifest ⇔ SHA256SUMS ⇔
//! archive, symlink targets, and executables against the target triple.
//!
//! Nothing here holds the archive's file list: the entries were spooled to a temporary file
//! in archive order, and MANIFEST.json and SHA256SUMS list them in the same canonical order,
//! so each check is a merge of two sorted streams.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek};

use super::compare::{check_sbom, compare};
use super::record::{Record, RecordKind};
use super::sidecar::is_hex64;
use super::{Checker, Finding, Severity};
use crate::archive::manifest::{self, FORMAT_VERSION, FileKind, Manifest};
use crate::archive::{self, MANIFEST, SHA256SUMS};

#[derive(Debug, Default)]
pub struct Summary {
    pub name: Option<String>,
    pub version: Option<String>,
    pub files: usize,
    /// The parsed manifest, when it parsed; its `files` were checked as they streamed and
    /// are not kept (empty).
    pub manifest: Option<Manifest>,
    /// `SBOM.cdx.json`, when the bundle has one (small: read back from its spool).
    pub sbom: Option<Vec<u8>>,
}

/// Add a finding to `findings` (the cross-checks collect into a list they are handed).
pub(super) fn finding(
    findings: &mut Vec<Finding>,
    severity: Severity,
    code: &'static str,
    path: Option<&str>,
    message: String,
) {
    findings.push(Finding::new(severity, code, path, message));
}

/// The spooled entries, read back in archive order.
fn records(file: &File) -> io::Result<impl Iterator<Item = io::Result<Record>> + '_> {
    let mut reader = BufReader::new(file);
    reader.rewind()?;
    Ok(reader.lines().map(|line| {
        let line = line?;
        serde_json::from_str(&line).map_err(io::Error::other)
    }))
}

/// Walks the archive's records alongside a list that should name them in canonical order,
/// reporting what the list skips and refusing lists that are not sorted.
struct Join<I: Iterator<Item = io::Result<Record>>> {
    archive: std::iter::Peekable<I>,
    /// Which records the list must name.
    wanted: fn(&Record) -> bool,
    last: Option<String>,
    /// Set once the list is out of order; nothing more is compared.
    broken: bool,
    error: Option<io::Error>,
}

enum JoinStep {
    /// The list names a record.
    Pair(Record),
    /// The list names something the archive does not have.
    Missing,
    /// Listed twice, or out of order (reported once; the join stops).
    Duplicate,
    Unordered,
    /// The join stopped earlier.
    Skip,
}

impl<I: Iterator<Item = io::Result<Record>>> Join<I> {
    fn new(archive: I, wanted: fn(&Record) -> bool) -> Self {
        Join {
            archive: archive.peekable(),
            wanted,
            last: None,
            broken: false,
            error: None,
        }
    }

    /// The next wanted record, unless reading failed.
    fn peek(&mut self) -> Option<&Record> {
        loop {
            match self.archive.peek() {
                Some(Ok(r)) if !(self.wanted)(r) => {
                    self.archive.next();
                }
                Some(Err(_)) => {
                    if let Some(Err(e)) = self.archive.next() {
                        self.error = Some(e);
                    }
                    return None;
                }
                _ => break,
            }
        }
        match self.archive.peek() {
            Some(Ok(r)) if self.error.is_none() => Some(r),
            _ => None,
        }
    }

    fn take(&mut self) -> Option<Record> {
        self.peek()?;
        self.archive.next()?.ok()
    }

    /// Records before `path` that the list skipped, then what `path` names.
    fn step(&mut self, path: &str, skipped: &mut dyn FnMut(Record)) -> JoinStep {
        if self.broken {
            return JoinStep::Skip;
        }
        if let Some(last) = &self.last {
            match archive::canonical_order(last, path) {
                Ordering::Equal => return JoinStep::Duplicate,
                Ordering::Greater => {
                    self.broken = true;
                    return JoinStep::Unordered;
                }
                Ordering::Less => {}
            }
        }
        self.last = Some(path.to_string());
        while let Some(r) = self.peek() {
            match archive::canonical_order(&r.path, path) {
                Ordering::Less => {
                    if let Some(r) = self.take() {
                        skipped(r);
                    }
                }
                Ordering::Equal => return self.take().map_or(JoinStep::Missing, JoinStep::Pair),
                Ordering::Greater => break,
            }
        }
        JoinStep::Missing
    }

    /// Records after the last listed one; none once the join broke.
    fn rest(mut self, skipped: &mut dyn FnMut(Record)) -> io::Result<()> {
        while !self.broken
            && let Some(r) = self.take()
        {
            skipped(r);
        }
        self.error.map_or(Ok(()), Err)
    }
}

/// Reports a record that `list` skipped (directories need no listing).
fn unlisted<'a>(top: &'a str, list: &'static str) -> impl Fn(Record, &mut Vec<Finding>) + 'a {
    move |r, out| {
        if r.kind != RecordKind::Dir {
            let why = format!("in the archive but not in {list}");
            let path = format!("{top}/{}", r.path);
            finding(out, Severity::Error, "unlisted", Some(&path), why);
        }
    }
}

fn is_metadata(r: &Record) -> bool {
    r.path == MANIFEST || r.path == SHA256SUMS
}

pub(super) fn check(
    checker: &Checker<'_>,
    records_file: &File,
    file_name: &str,
    findings: &mut Vec<Finding>,
) -> io::Result<Summary> {
    let mut out = Summary {
        files: checker.files,
        ..Summary::default()
    };
    let Some(top) = checker.top.clone() else {
        finding(
            findings,
            Severity::Error,
            "empty",
            None,
            "the archive has no entries".into(),
        );
        return Ok(out);
    };
    let full = |rel: &str| format!("{top}/{rel}");
    check_links(checker, records_file, &top, findings)?;
    if !checker.canonical {
        finding(
            findings,
            Severity::Error,
            "not-compared",
            None,
            format!(
                "the entries are not in canonical order, so they were not compared with {MANIFEST} and {SHA256SUMS}"
            ),
        );
    }
    check_sums(checker, records_file, &top, findings)?;
    // MANIFEST.json ⇔ archive: first the manifest alone (is it whole and valid?), then its
    // files against the archive.
    let Some((manifest, manifest_file)) = load_manifest(checker, &top, findings)? else {
        return Ok(out);
    };
    out.name = Some(manifest.name.clone());
    out.version = Some(manifest.version.clone());
    check_manifest_fields(&manifest, &top, file_name, findings);
    if checker.canonical {
        check_manifest_files(&manifest, manifest_file, records_file, &top, findings)?;
    }
    if manifest.git.as_ref().is_some_and(|g| g.dirty) {
        finding(
            findings,
            Severity::Warning,
            "dirty",
            Some(&full(crate::archive::MANIFEST)),
            "built from a working tree with uncommitted changes: its commit does not rebuild it"
                .into(),
        );
    }
    out.sbom = check_sbom(
        checker.sbom.as_ref(),
        &manifest,
        &full(crate::attest::sbom::SBOM),
        findings,
    )?;
    out.manifest = Some(manifest);
    Ok(out)
}

/// The spooled MANIFEST.json, parsed whole; a finding when it is missing or invalid.
fn load_manifest<'c>(
    checker: &'c Checker<'_>,
    top: &str,
    findings: &mut Vec<Finding>,
) -> io::Result<Option<(Manifest, &'c File)>> {
    let path = format!("{top}/{MANIFEST}");
    let Some(file) = &checker.manifest else {
        finding(
            findings,
            Severity::Error,
            "manifest-missing",
            Some(&path),
            "the archive has no MANIFEST.json".into(),
        );
        return Ok(None);
    };
    match manifest::parse_streaming(file, &mut |_| {})? {
        Ok(m) => Ok(Some((m, file))),
        Err(e) => {
            finding(
                findings,
                Severity::Error,
                "manifest-invalid",
                Some(&path),
                format!("MANIFEST.json does not parse: {e}"),
            );
            Ok(None)
        }
    }
}

/// Symlink targets, resolved through the bundle's other links as the kernel would; then one
/// pass over the records to see that they exist, only when there are symlinks.
fn check_links(
    checker: &Checker<'_>,
    records_file: &File,
    top: &str,
    findings: &mut Vec<Finding>,
) -> io::Result<()> {
    let full = |rel: &str| format!("{top}/{rel}");
    let link_targets: HashMap<&str, &str> = checker
        .links
        .iter()
        .map(|l| (l.path.as_str(), l.target.as_str()))
        .collect();
    let mut resolved: Vec<Option<String>> = Vec::with_capacity(checker.links.len());
    for link in &checker.links {
        match archive::resolve_link_through(&link.path, &link.target, |p| {
            link_targets.get(p).copied()
        }) {
            Ok(r) => resolved.push(Some(r)),
            Err(why) => {
                finding(
                    findings,
                    Severity::Error,
                    "symlink-escape",
                    Some(&full(&link.path)),
                    format!("symlink target {:?} {why}", link.target),
                );
                resolved.push(None);
            }
        }
    }
    let mut targets: HashMap<&str, bool> = resolved
        .iter()
        .flatten()
        .filter(|r| !r.is_empty())
        .map(|r| (r.as_str(), false))
        .collect();
    if !targets.is_empty() {
        for r in records(records_file)? {
            if let Some(found) = targets.get_mut(r?.path.as_str()) {
                *found = true;
            }
        }
    }
    for (link, resolved) in checker.links.iter().zip(&resolved) {
        let Some(r) = resolved else { continue };
        if !(r.is_empty() || targets.get(r.as_str()) == Some(&true)) {
            finding(
                findings,
                Severity::Error,
                "symlink-dangling",
                Some(&full(&link.path)),
                format!("symlink target {:?} is not in the bundle", link.target),
            );
        }
    }
    Ok(())
}

/// SHA256SUMS ⇔ archive: a merge-join of its lines with the file records.
fn check_sums(
    checker: &Checker<'_>,
    records_file: &File,
    top: &str,
    findings: &mut Vec<Finding>,
) -> io::Result<()> {
    let full = |rel: &str| format!("{top}/{rel}");
    let mut pending: Vec<Finding> = Vec::new();
    match &checker.sums {
        None => finding(
            findings,
            Severity::Error,
            "sums-missing",
            Some(&full(SHA256SUMS)),
            "the archive has no SHA256SUMS".into(),
        ),
        Some(sums) if checker.canonical => {
            let mut join = Join::new(records(records_file)?, |r| {
                r.kind == RecordKind::File && r.path != SHA256SUMS
            });
            let unlisted = unlisted(top, SHA256SUMS);
            let mut reader = BufReader::new(sums);
            reader.rewind()?;
            for (i, line) in reader.split(b'\n').enumerate() {
                let line = line?;
                let line = String::from_utf8_lossy(&line);
                let Some((hex, rel)) = line.split_once("  ").filter(|(h, _)| is_hex64(h)) else {
                    finding(
                        findings,
                        Severity::Error,
                        "sums-format",
                        Some(&full(SHA256SUMS)),
                        format!("line {} is not `<64 hex>  <path>`", i + 1),
                    );
                    continue;
                };
                let step = join.step(rel, &mut |r| unlisted(r, &mut pending));
                findings.append(&mut pending);
                if let Some((code, message)) = sums_line_finding(step, hex, i + 1) {
                    finding(findings, Severity::Error, code, Some(&full(rel)), message);
                }
            }
            join.rest(&mut |r| unlisted(r, &mut pending))?;
            findings.append(&mut pending);
        }
        Some(_) => {}
    }

    Ok(())
}

/// The finding for SHA256SUMS line `line`, from its place in the merge-join, if it has one.
fn sums_line_finding(step: JoinStep, hex: &str, line: usize) -> Option<(&'static str, String)> {
    match step {
        JoinStep::Pair(r) if r.sha256 != hex => Some((
            "checksum-mismatch",
            format!("SHA256SUMS says {hex}, the content hashes to {}", r.sha256),
        )),
        JoinStep::Pair(_) | JoinStep::Skip => None,
        JoinStep::Missing => Some((
            "missing",
            "listed in SHA256SUMS but not a file in the archive".into(),
        )),
        JoinStep::Duplicate => Some(("sums-duplicate", "listed twice in SHA256SUMS".into())),
        JoinStep::Unordered => Some((
            "sums-order",
            format!(
                "SHA256SUMS is out of canonical order at line {line}; the rest is not compared"
            ),
        )),
    }
}

/// The manifest's own fields against the archive: format version, top directory, file name.
fn check_manifest_fields(m: &Manifest, top: &str, file_name: &str, findings: &mut Vec<Finding>) {
    let mpath = format!("{top}/{MANIFEST}");
    if m.format_version != FORMAT_VERSION {
        finding(
            findings,
            Severity::Error,
            "manifest-version",
            Some(&mpath),
            format!(
                "format version {} is not {FORMAT_VERSION}",
                m.format_version
            ),
        );
    }
    if m.top_dir != top {
        finding(
            findings,
            Severity::Error,
            "manifest-top",
            Some(&mpath),
            format!(
                "manifest says top_dir {:?}, the archive's top directory is {top:?}",
                m.top_dir
            ),
        );
    }
    if format!("{}-{}", m.name, m.version) != m.top_dir {
        finding(
            findings,
            Severity::Error,
            "manifest-top",
            Some(&mpath),
            format!(
                "top_dir {:?} is not `<name>-<version>` ({}-{})",
                m.top_dir, m.name, m.version
            ),
        );
    }
    let expected_name = format!("{}-{}.{}", m.top_dir, m.target, m.compression.format);
    let actual_name = file_name;
    if actual_name != expected_name {
        finding(
            findings,
            Severity::Warning,
            "file-name",
            None,
            format!("the manifest implies the file name {expected_name:?}, not {actual_name:?}"),
        );
    }
}

/// MANIFEST.json's files ⇔ archive: a merge-join of its streamed list with the records; the
/// launcher must be `bin/<name>`.
fn check_manifest_files(
    m: &Manifest,
    manifest_file: &File,
    records_file: &File,
    top: &str,
    findings: &mut Vec<Finding>,
) -> io::Result<()> {
    let full = |rel: &str| format!("{top}/{rel}");
    let mut pending: Vec<Finding> = Vec::new();
    let mut join = Join::new(records(records_file)?, |r| !is_metadata(r));
    let mut launchers = Vec::new();
    let unlisted = unlisted(top, MANIFEST);
    manifest::parse_streaming(manifest_file, &mut |f| {
            if f.kind == FileKind::Launcher {
                launchers.push(f.path.clone());
            }
            let p = full(&f.path);
            match join.step(&f.path, &mut |r| unlisted(r, &mut pending)) {
                JoinStep::Pair(r) => compare(&r, &f, &m.target, &p, &mut pending),
                JoinStep::Skip => {}
                JoinStep::Missing => finding(
                    &mut pending,
                    Severity::Error,
                    "missing",
                    Some(&p),
                    "listed in MANIFEST.json but not in the archive".into(),
                ),
                JoinStep::Duplicate => finding(
                    &mut pending,
                    Severity::Error,
                    "manifest-duplicate",
                    Some(&p),
                    "listed twice in MANIFEST.json".into(),
                ),
                JoinStep::Unordered => finding(
                    &mut pending,
                    Severity::Error,
                    "manifest-order",
                    Some(&p),
                    "MANIFEST.json lists files out of canonical order from here; the rest is not compared".into(),
                ),
            }
        })?
        .map_err(io::Error::other)?;
    join.rest(&mut |r| unlisted(r, &mut pending))?;
    findings.append(&mut pending);
    if let Some(l) = launchers.iter().find(|l| **l != format!("bin/{}", m.name)) {
        finding(
            findings,
            Severity::Error,
            "launcher",
            Some(&full(l)),
            format!("the launcher must be `bin/{}`", m.name),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, kind: RecordKind) -> Record {
        Record {
            path: path.into(),
            kind,
            size: 0,
            mode: 0o644,
            sha256: String::new(),
            target: String::new(),
            head: Vec::new(),
        }
    }

    /// What a join of `listed` against `archive` reports, one line per step.
    fn join(archive: &[&str], listed: &[&str]) -> Vec<String> {
        let records = archive
            .iter()
            .map(|p| Ok(rec(p, RecordKind::File)))
            .collect::<Vec<_>>();
        let mut join = Join::new(records.into_iter(), |r| !is_metadata(r));
        let mut seen = Vec::new();
        for path in listed {
            let mut skipped = Vec::new();
            let step = join.step(path, &mut |r| skipped.push(format!("unlisted {}", r.path)));
            seen.extend(skipped);
            seen.push(match step {
                JoinStep::Pair(r) => format!("pair {}", r.path),
                JoinStep::Missing => format!("missing {path}"),
                JoinStep::Duplicate => format!("duplicate {path}"),
                JoinStep::Unordered => format!("unordered {path}"),
                JoinStep::Skip => format!("skip {path}"),
            });
        }
        join.rest(&mut |r| seen.push(format!("unlisted {}", r.path)))
            .unwrap();
        seen
    }

    #[test]
    fn joins_sorted_lists() {
        let archive = ["a", "a.txt", "a/b", "c", "MANIFEST.json", "SHA256SUMS"];
        assert_eq!(
            join(&archive, &["a", "a.txt", "a/b", "c"]),
            ["pair a", "pair a.txt", "pair a/b", "pair c"]
        );
        assert_eq!(
            join(&archive, &["a", "a/b", "b", "c", "c"]),
            [
                "pair a",
                "unlisted a.txt",
                "pair a/b",
                "missing b",
                "pair c",
                "duplicate c"
            ]
        );
        // Out of order: reported once, then nothing more is compared.
        assert_eq!(
            join(&archive, &["a/b", "a", "c"]),
            [
                "unlisted a",
                "unlisted a.txt",
                "pair a/b",
                "unordered a",
                "skip c"
            ]
        );
        assert_eq!(
            join(&archive, &[]),
            ["unlisted a", "unlisted a.txt", "unlisted a/b", "unlisted c"]
        );
    }
}
