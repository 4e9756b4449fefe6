//! The one definition of the bundle's archive format, used by both writing and checking.
//!
//! A bundle is a plain ustar stream, compressed with zstd (multithreaded mode, checksummed) or
//! gzip (header mtime 0, OS byte 255). Canonical form:
//! - every entry lives under one top directory `<name>-<version>/`, whose entry comes first;
//! - then directories, files and symlinks sorted bytewise by path;
//! - then `MANIFEST.json` and `SHA256SUMS`, always last, so every file is read exactly once:
//!   hashed while it streams into the archive;
//! - directory entries are explicit; modes are 0755 (directories, executables), 0644 (other
//!   files) or 0777 (symlinks); uid/gid 0; empty user and group names; one mtime for all.
//!
//! Names must fit plain ustar headers (no PAX or GNU extensions are ever written).

pub mod companions;
pub mod header;
pub mod manifest;
pub mod read;
mod writer;

pub use writer::TarWriter;

use std::io::{self, Read, Write};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use header::Kind;

/// Archive compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    TarZst,
    TarGz,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "tar.zst" => Some(Format::TarZst),
            "tar.gz" => Some(Format::TarGz),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::TarZst => "tar.zst",
            Format::TarGz => "tar.gz",
        }
    }

    /// Allowed compression levels and the default.
    pub fn levels(self) -> (i64, i64, i64) {
        match self {
            Format::TarZst => (1, 22, 3),
            Format::TarGz => (1, 9, 6),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.extension())
    }
}

/// File name of the manifest inside the top directory.
pub const MANIFEST: &str = "MANIFEST.json";
/// File name of the checksum list inside the top directory.
pub const SHA256SUMS: &str = "SHA256SUMS";

/// Where an entry sits in canonical order: the top directory, then the body (sorted
/// bytewise by path), then `MANIFEST.json`, then `SHA256SUMS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Top,
    Body,
    Manifest,
    Sums,
}

impl Section {
    /// The section of an entry inside the top directory (`rel` relative to it).
    pub fn of(rel: &str) -> Section {
        match rel {
            MANIFEST => Section::Manifest,
            SHA256SUMS => Section::Sums,
            _ => Section::Body,
        }
    }
}

/// Canonical order of two entries inside the top directory: by section, then bytewise.
pub fn canonical_order(a: &str, b: &str) -> std::cmp::Ordering {
    (Section::of(a), a).cmp(&(Section::of(b), b))
}

pub const MODE_DIR: u32 = 0o755;
pub const MODE_EXEC: u32 = 0o755;
pub const MODE_FILE: u32 = 0o644;
pub const MODE_SYMLINK: u32 = 0o777;

/// Largest file a ustar header can describe (11 octal digits).
pub const MAX_FILE_SIZE: u64 = header::max_octal(header::SIZE.len);
/// Largest mtime a ustar header can hold.
pub const MAX_MTIME: u64 = header::max_octal(header::MTIME.len);

/// The most entries `verify` reads by default (`--max-entries`); bundling refuses a tree
/// that would make more.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;

pub(crate) const BLOCK: usize = 512;
const BUFFER: usize = 256 * 1024;

pub use header::split_name as split_ustar_name;

/// Why a path inside the bundle cannot be stored, if it cannot: the one statement of the
/// entry-name rules, applied by the writer and by verify. A name is relative, its components
/// are neither empty, `.` nor `..`, it holds no backslash or control character, and it fits
/// a plain ustar header.
pub fn check_entry_name(full_path: &str) -> Result<(), String> {
    if full_path.is_empty() {
        return Err("is empty".into());
    }
    if full_path.starts_with('/') {
        return Err("is absolute".into());
    }
    if full_path.bytes().any(|b| b.is_ascii_control()) {
        return Err("contains a control character".into());
    }
    if full_path.contains('\\') {
        return Err("contains a backslash".into());
    }
    if full_path.split('/').any(|c| c == "..") {
        return Err("contains `..`".into());
    }
    if full_path.split('/').any(|c| c.is_empty() || c == ".") {
        return Err("has an empty or `.` component".into());
    }
    if split_ustar_name(full_path).is_none() {
        return Err(format!(
            "is too long for a plain ustar header ({} bytes; at most 100, or 255 split at a `/` into 155 + 100)",
            full_path.len()
        ));
    }
    Ok(())
}

/// Why a symlink target cannot be stored, if it cannot (whether it stays inside the bundle
/// is [`resolve_link`]'s and [`resolve_link_through`]'s to say): a non-empty relative path
/// without backslashes or control characters that fits the ustar link field.
pub fn check_link_target(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("target is empty".into());
    }
    if target.starts_with('/') {
        return Err(format!("target `{target}` is absolute"));
    }
    if target.len() > 100 {
        return Err(format!(
            "target is too long for a plain ustar header ({} bytes; at most 100)",
            target.len()
        ));
    }
    if target.bytes().any(|b| b.is_ascii_control() || b == b'\\') {
        return Err("target contains a control character or backslash".into());
    }
    Ok(())
}

/// Where a symlink at `link` (a path relative to the bundle's top directory) pointing to the
/// relative `target` leads, lexically; `None` when a `..` climbs above the top directory at
/// any point (which would leave the bundle on extraction, even if it came back in).
pub fn resolve_link(link: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Why a symlink cannot be shipped, found by [`resolve_link_through`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkProblem {
    /// A `..` climbs above the top directory.
    Leaves,
    /// A `..` follows a component that is itself a symlink in the bundle (given here): the
    /// kernel then climbs from the link's target, not from where the path says, so the
    /// written path no longer tells where the link leads.
    DotDotThroughLink(String),
    /// More than 40 links in a row, or a cycle.
    Loop,
}

impl std::fmt::Display for LinkProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkProblem::Leaves => f.write_str("leaves the bundle"),
            LinkProblem::Loop => f.write_str("passes through more than 40 symlinks (a cycle?)"),
            LinkProblem::DotDotThroughLink(via) => write!(
                f,
                "uses `..` after passing through the symlink `{via}`, so it resolves elsewhere than it reads (possibly outside the bundle)"
            ),
        }
    }
}

/// Where a symlink at `link` pointing to `target` leads, as the kernel follows it: each
/// directory component that is itself a symlink in the bundle (`target_of` gives its target)
/// is replaced by where that link leads. A final component that is a link is kept (a link to
/// a link is an entry). Refuses targets that leave the top directory at any step, that use
/// `..` after passing through a link (the path then reads differently from where it leads),
/// and chains of more than 40 links (the kernel's limit).
pub fn resolve_link_through<'t>(
    link: &str,
    target: &str,
    target_of: impl Fn(&str) -> Option<&'t str>,
) -> Result<String, LinkProblem> {
    let mut parts: Vec<String> = link.split('/').map(String::from).collect();
    parts.pop();
    // Components still to walk, last first; `true` for those of `target` itself.
    let mut pending: Vec<(String, bool)> = target
        .split('/')
        .rev()
        .map(|p| (p.to_string(), true))
        .collect();
    let mut through: Option<String> = None;
    let mut hops = 0;
    while let Some((part, own)) = pending.pop() {
        match part.as_str() {
            "" | "." => {}
            ".." => {
                if let (Some(via), true) = (&through, own) {
                    return Err(LinkProblem::DotDotThroughLink(via.clone()));
                }
                parts.pop().ok_or(LinkProblem::Leaves)?;
            }
            _ => {
                parts.push(part);
                let last = pending.iter().all(|(p, _)| p.is_empty() || p == ".");
                let here = parts.join("/");
                if let (false, Some(next)) = (last, target_of(&here)) {
                    hops += 1;
                    if hops > 40 {
                        return Err(LinkProblem::Loop);
                    }
                    if own {
                        through.get_or_insert(here);
                    }
                    parts.pop();
                    pending.extend(next.split('/').rev().map(|p| (p.to_string(), false)));
                }
            }
        }
    }
    Ok(parts.join("/"))
}

/// Case clashes among entries met in canonical order (names equal but for case break
/// extraction on macOS and Windows). Two such paths first differ in sibling names, so only
/// siblings are compared; canonical order keeps each directory's children in one run, so
/// only the directories on the current path are remembered.
#[derive(Debug, Default)]
pub struct CaseClashes {
    /// `(directory, its children's names case-folded -> as written)`, outermost first.
    frames: Vec<(String, std::collections::HashMap<String, String>)>,
}

impl CaseClashes {
    /// Note `path`; returns the earlier sibling path it clashes with, if any.
    pub fn clash(&mut self, path: &str) -> Option<String> {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        while let Some((dir, _)) = self.frames.last() {
            let inside = parent == dir
                || dir.is_empty()
                || parent
                    .strip_prefix(dir.as_str())
                    .is_some_and(|r| r.starts_with('/'));
            if inside {
                break;
            }
            self.frames.pop();
        }
        if self.frames.last().is_none_or(|(dir, _)| dir != parent) {
            self.frames.push((parent.to_string(), Default::default()));
        }
        let folded: String = name.chars().flat_map(char::to_lowercase).collect();
        let (_, siblings) = self.frames.last_mut()?;
        match siblings.get(&folded) {
            Some(other) if other != name => Some(match parent {
                "" => other.clone(),
                _ => format!("{parent}/{other}"),
            }),
            Some(_) => None,
            None => {
                siblings.insert(folded, name.to_string());
                None
            }
        }
    }
}

/// Compression settings; everything that changes the output bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    pub format: Format,
    pub level: i32,
}

/// The libzstd version compiled in (recorded in the manifest).
pub fn zstd_version() -> &'static str {
    zstd::zstd_safe::version_string()
}

/// Most zstd workers ever started: each holds its own buffers, so memory stays bounded on
/// large machines.
pub const MAX_WORKERS: u32 = 8;

/// zstd worker threads for `jobs` (cargo's `-j`: at most that many at once), by default one
/// per CPU; capped at [`MAX_WORKERS`]. Multithreaded mode gives the same bytes for any count
/// of one or more, so the count only changes speed; single-threaded mode (0) would change the
/// bytes and is never used.
pub fn zstd_workers(jobs: Option<std::num::NonZeroU32>) -> u32 {
    let n = match jobs {
        Some(n) => n.get(),
        None => std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
    };
    n.clamp(1, MAX_WORKERS)
}

/// zstd job size for a level: 2 MiB for the fast levels, where job buffers dominate memory
/// (zstd's default there is 8 MiB); zstd's own choice for the high levels, where the match
/// tables dominate and small jobs only add overlap buffers. Depends on the level alone, so the
/// bytes stay a function of the inputs and the level.
pub fn zstd_job_size(level: i32) -> u32 {
    if level <= 9 { 2 << 20 } else { 0 }
}

/// A writer that hashes and counts what passes through it.
struct Tee<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Compressor<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
}

impl<W: Write> Compressor<W> {
    fn new(out: W, c: Compression, workers: u32) -> io::Result<Self> {
        Ok(match c.format {
            Format::TarZst => {
                let mut enc = zstd::stream::write::Encoder::new(out, c.level)?;
                enc.include_checksum(true)?;
                enc.multithread(workers)?;
                enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(zstd_job_size(c.level)))?;
                Compressor::Zstd(enc)
            }
            Format::TarGz => Compressor::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    // Invariant: config restricts gzip levels to 1..=9.
                    .write(out, flate2::Compression::new(c.level.clamp(0, 9) as u32)),
            ),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Zstd(enc) => enc.finish(),
            Compressor::Gzip(enc) => enc.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Zstd(e) => e.write(buf),
            Compressor::Gzip(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Zstd(e) => e.flush(),
            Compressor::Gzip(e) => e.flush(),
        }
    }
}

/// What [`ArchiveWriter::finish`] reports about the compressed archive.
#[derive(Debug, Clone)]
pub struct Written {
    pub sha256: String,
    pub size: u64,
}

/// Writes canonical entries; the caller supplies them in canonical order.
pub struct ArchiveWriter<W: Write> {
    tar: TarWriter<Compressor<Tee<W>>>,
    top: String,
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl<W: Write> ArchiveWriter<W> {
    /// Start an archive whose entries live under `top/`, compressed by `workers` threads (see
    /// [`zstd_workers`]; the bytes do not depend on it). Writes the top directory entry.
    pub fn new(
        out: W,
        compression: Compression,
        workers: u32,
        top: &str,
        mtime: u64,
    ) -> Result<Self> {
        if mtime > MAX_MTIME {
            bail!("timestamp {mtime} does not fit a ustar header");
        }
        let tee = Tee {
            inner: out,
            hasher: Sha256::new(),
            len: 0,
        };
        let compressor = Compressor::new(tee, compression, workers.max(1))
            .context("cannot start the compressor")?;
        let mut w = ArchiveWriter {
            tar: TarWriter::new(compressor, mtime)?,
            top: top.to_string(),
        };
        w.header(Kind::Dir, "", MODE_DIR, 0, "")?;
        Ok(w)
    }

    fn header(&mut self, kind: Kind, path: &str, mode: u32, size: u64, link: &str) -> Result<()> {
        let full = if path.is_empty() {
            self.top.clone()
        } else {
            format!("{}/{path}", self.top)
        };
        self.tar.header(kind, &full, mode, size, link)
    }

    pub fn dir(&mut self, path: &str) -> Result<()> {
        self.header(Kind::Dir, path, MODE_DIR, 0, "")
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.header(Kind::Symlink, path, MODE_SYMLINK, 0, target)
    }

    /// Stream exactly `size` bytes from `data` into a file entry; returns the SHA-256 (hex).
    /// Fails if `data` is shorter or longer than `size` (a file that changed while bundling).
    pub fn file(&mut self, path: &str, mode: u32, size: u64, data: impl Read) -> Result<String> {
        self.header(Kind::File, path, mode, size, "")?;
        self.tar.body(path, size, data)
    }

    /// A small file generated in memory (manifest, checksums).
    pub fn generated(&mut self, path: &str, mode: u32, content: &[u8]) -> Result<String> {
        self.file(path, mode, content.len() as u64, content)
    }

    /// Write the end-of-archive marker and finish compression.
    pub fn finish(self) -> Result<(W, Written)> {
        let out = self.tar.finish()?;
        let tee = out.finish().context("cannot finish compression")?;
        let written = Written {
            sha256: hex(&tee.hasher.finalize()),
            size: tee.len,
        };
        Ok((tee.inner, written))
    }
}

/// Decompressing reader for a bundle, chosen by file name.
pub fn decoder<'a, R: io::BufRead + 'a>(format: Format, input: R) -> Result<Box<dyn Read + 'a>> {
    Ok(match format {
        Format::TarZst => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Format::TarGz => Box::new(flate2::bufread::GzDecoder::new(input)),
    })
}

/// The format a stream's first bytes show (zstd or gzip magic), if any.
pub fn sniff(head: &[u8]) -> Option<Format> {
    match head {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Format::TarZst),
        [0x1f, 0x8b, ..] => Some(Format::TarGz),
        _ => None,
    }
}

/// Whether a zstd frame starting at `head` declares a content checksum (bit 2 of the frame
/// header descriptor, the byte after the magic); `None` if `head` is too short to tell.
pub fn zstd_frame_checksum(head: &[u8]) -> Option<bool> {
    head.get(4).map(|descriptor| descriptor & 0x04 != 0)
}

/// The format a bundle file name implies.
pub fn format_of(file_name: &str) -> Option<Format> {
    if file_name.ends_with(".tar.zst") {
        Some(Format::TarZst)
    } else if file_name.ends_with(".tar.gz") {
        Some(Format::TarGz)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_resolution() {
        assert_eq!(resolve_link("priv/a/l", "../b").as_deref(), Some("priv/b"));
        assert_eq!(resolve_link("l", "x/./y").as_deref(), Some("x/y"));
        assert_eq!(resolve_link("priv/l", "../..").as_deref(), None);
        assert_eq!(
            resolve_link("priv/l", "../../top/priv/x"),
            None,
            "climbing out and back in"
        );
        assert_eq!(resolve_link("priv/l", "..").as_deref(), Some(""));
    }

    #[test]
    fn symlinks_are_resolved_through_the_bundle_links() {
        let links = [
            ("priv/static/up", ".."),
            ("priv/latest", "static/index.html"),
            ("a", "b"),
            ("b", "a"),
        ];
        let target_of = |p: &str| links.iter().find(|(l, _)| *l == p).map(|(_, t)| *t);
        let resolve = |l, t| resolve_link_through(l, t, target_of);
        // The reproducer: `up -> ..`, then a path that climbs back through it.
        assert_eq!(resolve("priv/static/up", ".."), Ok("priv".into()));
        assert_eq!(
            resolve(
                "priv/static/root",
                "up/static/up/static/up/../../../../../../.."
            ),
            Err(LinkProblem::DotDotThroughLink("priv/static/up".into()))
        );
        // Through a link with names only: where it really leads.
        assert_eq!(
            resolve("priv/a", "static/up/static/x"),
            Ok("priv/static/x".into())
        );
        assert_eq!(
            resolve("priv/static/a", "../latest"),
            Ok("priv/latest".into())
        );
        assert_eq!(
            resolve("x", "priv/latest/y"),
            Ok("priv/static/index.html/y".into())
        );
        assert_eq!(resolve("priv/l", "../.."), Err(LinkProblem::Leaves));
        assert_eq!(resolve("l", "x/./y"), Ok("x/y".into()));
        assert_eq!(resolve("c", "a/x"), Err(LinkProblem::Loop));
    }

    #[test]
    fn ustar_name_split() {
        assert_eq!(split_ustar_name("a/b"), Some(("", "a/b")));
        let long = format!("{}/{}", "d".repeat(150), "f".repeat(100));
        assert_eq!(split_ustar_name(&long), Some((&long[..150], &long[151..])));
        assert_eq!(split_ustar_name(&"x".repeat(101)), None);
        assert_eq!(
            split_ustar_name(&format!("{}/{}", "d".repeat(156), "f")),
            None
        );
        assert!(check_entry_name("a\nb").is_err());
        let mut s = CaseClashes::default();
        for p in ["A", "a-b", "a-b/X", "a-b/y", "a-c", "b", "b/c/Y"] {
            assert_eq!(s.clash(p), None, "{p}");
        }
        assert_eq!(s.clash("b/c/y"), Some("b/c/Y".into()));
        assert_eq!(
            s.clash("b/c/Y"),
            None,
            "an exact duplicate is not a case clash"
        );
        assert_eq!(s.clash("a"), Some("A".into()));
        assert!(check_entry_name("a\\b").is_err());
    }

    fn write(c: Compression, data: &[u8]) -> (Vec<u8>, Written) {
        let mut w = ArchiveWriter::new(Vec::new(), c, 2, "top-1.0", 1_700_000_000).unwrap();
        w.dir("d").unwrap();
        w.file("d/f", MODE_FILE, data.len() as u64, data).unwrap();
        w.symlink("d/l", "f").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn headers_are_canonical_and_readable() {
        for format in [Format::TarZst, Format::TarGz] {
            let (bytes, written) = write(Compression { format, level: 3 }, b"hello");
            assert_eq!(written.size, bytes.len() as u64);
            assert_eq!(written.sha256, hex(&Sha256::digest(&bytes)));
            let reader = decoder(format, &bytes[..]).unwrap();
            let mut ar = tar::Archive::new(reader);
            let mut seen = Vec::new();
            for e in ar.entries().unwrap() {
                let e = e.unwrap();
                let h = e.header();
                assert_eq!(h.uid().unwrap(), 0);
                assert_eq!(h.gid().unwrap(), 0);
                assert_eq!(h.username_bytes(), Some(&b""[..]));
                assert_eq!(h.mtime().unwrap(), 1_700_000_000);
                assert!(h.as_ustar().is_some());
                seen.push((e.path().unwrap().display().to_string(), h.mode().unwrap()));
            }
            assert_eq!(
                seen,
                [
                    ("top-1.0".to_string(), 0o755),
                    ("top-1.0/d".to_string(), 0o755),
                    ("top-1.0/d/f".to_string(), 0o644),
                    ("top-1.0/d/l".to_string(), 0o777)
                ]
            );
        }
    }

    #[test]
    fn short_and_long_sources_are_errors() {
        let c = Compression {
            format: Format::TarZst,
            level: 1,
        };
        let mut w = ArchiveWriter::new(Vec::new(), c, 1, "t", 0).unwrap();
        let e = w.file("f", MODE_FILE, 10, &b"short"[..]).unwrap_err();
        assert!(e.to_string().contains("shrank"), "{e}");
        let mut w = ArchiveWriter::new(Vec::new(), c, 1, "t", 0).unwrap();
        let e = w.file("f", MODE_FILE, 2, &b"longer"[..]).unwrap_err();
        assert!(e.to_string().contains("grew"), "{e}");
    }

    /// The exact bytes of a fixed archive. Any change to headers, order, padding or compressor
    /// settings shows up here: optimisations must keep these, format changes must bump
    /// `FORMAT_VERSION` and update them deliberately.
    #[test]
    fn golden_bytes() {
        let compressible: Vec<u8> = b"priv file line\n"
            .iter()
            .copied()
            .cycle()
            .take(3 << 20)
            .collect();
        let mut state = 7u32;
        let noisy: Vec<u8> = (0..(1 << 20))
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (state >> 16) as u8
            })
            .collect();
        let digest = |format, level| {
            let mut w = ArchiveWriter::new(
                Vec::new(),
                Compression { format, level },
                2,
                "app-1.0.0",
                1_700_000_000,
            )
            .unwrap();
            w.dir("bin").unwrap();
            w.file("bin/app", MODE_EXEC, noisy.len() as u64, &noisy[..])
                .unwrap();
            w.dir("priv").unwrap();
            w.file(
                "priv/a.txt",
                MODE_FILE,
                compressible.len() as u64,
                &compressible[..],
            )
            .unwrap();
            w.symlink("priv/b.txt", "a.txt").unwrap();
            w.generated(MANIFEST, MODE_FILE, b"{}\n").unwrap();
            let (_, written) = w.finish().unwrap();
            written.sha256
        };
        assert_eq!(
            digest(Format::TarZst, 3),
            "c0c15553d3405cfeb2b98cb411d7bbaa53e42a20fc8a0ffd1aa9db1d0f9de40c"
        );
        assert_eq!(
            digest(Format::TarZst, 19),
            "13d4cfa4de020ad03316622216cc47a625d2e16eabdbf39e8e3fcaac0b47f134"
        );
        assert_eq!(
            digest(Format::TarGz, 6),
            "a1da108efd08d21be4a608f20a799df5f34b203980f0fda5256f92a16f6aa48c"
        );
    }

    #[test]
    fn zstd_bytes_do_not_depend_on_worker_count() {
        // Enough data for several multithreaded jobs.
        let data: Vec<u8> = (0..12u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 & 0x3f)
            .collect();
        for level in [3, 12] {
            let compress = |workers: u32| {
                let c = Compression {
                    format: Format::TarZst,
                    level,
                };
                let mut enc = Compressor::new(Vec::new(), c, workers).unwrap();
                enc.write_all(&data).unwrap();
                enc.finish().unwrap()
            };
            assert_eq!(compress(1), compress(4), "level {level}");
        }
    }
}
