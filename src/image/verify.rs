//! `verify IMAGE.oci.tar`: the layout walked from `index.json` to manifests, configs and
//! layers; every blob re-hashed, every layer's uncompressed digest checked against its
//! `diff_id`, every layer entry held to the bundle's entry rules, and the release's files
//! checked against the `MANIFEST.json` inside the image. Findings and exit codes are the
//! bundle verifier's.
//!
//! Two passes over the file: the first hashes every blob and keeps the small ones (the JSON
//! documents); the second streams each layer.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufReader, Read};

use anyhow::{Context, Result};
use camino::Utf8Path;
use sha2::{Digest, Sha256};

use super::build::Hashing;
use super::{Descriptor, ImageConfigDoc, ImageManifest, Index, LAYER_MTIME, MEDIA_INDEX};
use crate::archive::manifest::Manifest;
use crate::archive::{self, hex};
use crate::verify::{Finding, Reference, Report};

/// Blobs kept in memory (JSON documents); larger ones are only hashed.
const SMALL: u64 = 4 << 20;

struct Blob {
    size: u64,
    digest_ok: bool,
    bytes: Option<Vec<u8>>,
}

fn open(path: &Utf8Path) -> Result<tar::Archive<BufReader<std::fs::File>>> {
    let f = crate::fsutil::open_regular(path)
        .with_context(|| format!("`{path}`: cannot open the image"))?;
    Ok(tar::Archive::new(BufReader::new(f)))
}

/// Verify an OCI image layout tar. `Err` only for I/O problems with the file itself.
pub fn verify_image(path: &Utf8Path) -> Result<Report> {
    let mut findings = Vec::new();
    let mut blobs: BTreeMap<String, Blob> = BTreeMap::new();
    let mut index_bytes = None;
    let mut layout_bytes = None;
    let mut whole = Hashing::new(io::sink());
    {
        let f = crate::fsutil::open_regular(path)
            .with_context(|| format!("`{path}`: cannot open the image"))?;
        io::copy(&mut BufReader::new(f), &mut whole)
            .with_context(|| format!("`{path}`: cannot read"))?;
    }
    let mut a = open(path)?;
    for entry in a
        .entries()
        .with_context(|| format!("`{path}`: not a tar"))?
    {
        let mut entry = entry.with_context(|| format!("`{path}`: not a tar"))?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let name = name
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if let Err(why) = archive::check_entry_name(&name) {
            findings.push(Finding::error(
                "bad-name",
                Some(&name),
                format!("`{name}` {why}"),
            ));
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            findings.push(Finding::error(
                "bad-kind",
                Some(&name),
                "only directories and files belong in an image layout",
            ));
            continue;
        }
        let size = entry.header().size()?;
        match name.as_str() {
            "index.json" | "oci-layout" => {
                let mut b = Vec::new();
                (&mut entry).take(SMALL).read_to_end(&mut b)?;
                if name == "index.json" {
                    index_bytes = Some(b);
                } else {
                    layout_bytes = Some(b);
                }
            }
            _ => {
                let Some(hex_name) = name.strip_prefix("blobs/sha256/") else {
                    findings.push(Finding::warning(
                        "unexpected-entry",
                        Some(&name),
                        "not part of an OCI image layout",
                    ));
                    continue;
                };
                let mut h = Hashing::new(Vec::new());
                if size <= SMALL {
                    io::copy(&mut entry, &mut h)?;
                } else {
                    let mut sink = Hashing::new(io::sink());
                    io::copy(&mut entry, &mut sink)?;
                    h = Hashing {
                        inner: Vec::new(),
                        hash: sink.hash,
                        size: sink.size,
                    };
                }
                let ok = hex(&h.hash.clone().finalize()) == hex_name;
                if !ok {
                    findings.push(Finding::error(
                        "blob-digest",
                        Some(&name),
                        "the blob's content does not match its name",
                    ));
                }
                let bytes = (size <= SMALL).then_some(h.inner);
                blobs.insert(
                    format!("sha256:{hex_name}"),
                    Blob {
                        size,
                        digest_ok: ok,
                        bytes,
                    },
                );
            }
        }
    }
    match layout_bytes
        .as_deref()
        .map(serde_json::from_slice::<serde_json::Value>)
    {
        Some(Ok(v)) if v["imageLayoutVersion"] == "1.0.0" => {}
        _ => findings.push(Finding::error(
            "no-layout",
            Some("oci-layout"),
            "missing or not {\"imageLayoutVersion\":\"1.0.0\"}",
        )),
    }
    let mut report = Report {
        bundle: path.to_owned(),
        sha256: whole.digest().trim_start_matches("sha256:").to_string(),
        manifest: None,
        name: None,
        version: None,
        files: 0,
        reference: Reference::None,
        findings: Vec::new(),
    };
    let Some(index) = index_bytes
        .as_deref()
        .and_then(|b| serde_json::from_slice::<Index>(b).ok())
    else {
        findings.push(Finding::error(
            "no-index",
            Some("index.json"),
            "missing or not an OCI image index",
        ));
        report.findings = findings;
        return Ok(report);
    };
    // index -> manifests (through nested indexes) -> config and layers.
    let mut images: Vec<(Descriptor, ImageManifest, ImageConfigDoc)> = Vec::new();
    let mut queue: Vec<Descriptor> = index.manifests.clone();
    while let Some(d) = queue.pop() {
        let Some(bytes) = document(&blobs, &d, &mut findings) else {
            continue;
        };
        if d.media_type == MEDIA_INDEX {
            match serde_json::from_slice::<Index>(bytes) {
                Ok(i) => queue.extend(i.manifests),
                Err(e) => findings.push(Finding::error(
                    "bad-index",
                    Some(&d.digest),
                    format!("not an image index: {e}"),
                )),
            }
            continue;
        }
        let m: ImageManifest = match serde_json::from_slice(bytes) {
            Ok(m) => m,
            Err(e) => {
                findings.push(Finding::error(
                    "bad-manifest",
                    Some(&d.digest),
                    format!("not an image manifest: {e}"),
                ));
                continue;
            }
        };
        let Some(cb) = document(&blobs, &m.config, &mut findings) else {
            continue;
        };
        let c: ImageConfigDoc = match serde_json::from_slice(cb) {
            Ok(c) => c,
            Err(e) => {
                findings.push(Finding::error(
                    "bad-config",
                    Some(&m.config.digest),
                    format!("not an image config: {e}"),
                ));
                continue;
            }
        };
        if c.rootfs.diff_ids.len() != m.layers.len() {
            findings.push(Finding::error(
                "diff-ids",
                Some(&m.config.digest),
                format!(
                    "{} layers but {} diff_ids",
                    m.layers.len(),
                    c.rootfs.diff_ids.len()
                ),
            ));
        }
        for l in &m.layers {
            present(&blobs, l, &mut findings);
        }
        images.push((d, m, c));
    }
    // Second pass: each layer once, with the diff_id any image expects of it.
    let mut wanted: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for (_, m, c) in &images {
        for (l, id) in m.layers.iter().zip(&c.rootfs.diff_ids) {
            let gzip = l.media_type.ends_with("+gzip");
            if !gzip && l.media_type != super::MEDIA_LAYER {
                findings.push(Finding::error(
                    "layer-type",
                    Some(&l.digest),
                    format!("unsupported layer media type {}", l.media_type),
                ));
                continue;
            }
            wanted.insert(l.digest.clone(), (id.clone(), gzip));
        }
    }
    // The release's directory, as the images' environment names it.
    let root = images
        .iter()
        .filter_map(|(_, _, c)| c.config.env.as_ref())
        .flatten()
        .find_map(|e| e.strip_prefix("RELEASE_ROOT="))
        .map(|r| r.trim_matches('/').to_string());
    let mut layers = LayerFacts {
        root: root.clone(),
        ..LayerFacts::default()
    };
    let mut a = open(path)?;
    for entry in a
        .entries()
        .with_context(|| format!("`{path}`: not a tar"))?
    {
        let entry = entry.with_context(|| format!("`{path}`: not a tar"))?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let Some(hex_name) = name.trim_start_matches("./").strip_prefix("blobs/sha256/") else {
            continue;
        };
        let digest = format!("sha256:{hex_name}");
        let Some((diff_id, gzip)) = wanted.get(&digest) else {
            continue;
        };
        let blob = BufReader::new(entry);
        let mut head = Hashing::new(io::sink());
        let raw: Box<dyn Read> = if *gzip {
            Box::new(flate2::read::GzDecoder::new(blob))
        } else {
            Box::new(blob)
        };
        let mut tee = TeeRead {
            inner: raw,
            hash: &mut head,
        };
        layers.walk(&digest, &mut tee, &mut findings);
        io::copy(&mut tee, &mut io::sink()).ok();
        if head.digest() != *diff_id {
            findings.push(Finding::error(
                "diff-id",
                Some(&digest),
                format!(
                    "the layer decompresses to {} but the config says {diff_id}",
                    head.digest()
                ),
            ));
        }
    }
    // The release inside: its files against its MANIFEST.json.
    match &layers.manifest {
        Some((root, bytes)) => match serde_json::from_slice::<Manifest>(bytes) {
            Ok(m) => {
                for f in &m.files {
                    let at = format!("{root}/{}", f.path);
                    match (&f.sha256, layers.files.get(&at)) {
                        (Some(want), Some(got)) if want == got => {}
                        (Some(_), Some(_)) => findings.push(Finding::error(
                            "content-mismatch",
                            Some(&at),
                            "differs from MANIFEST.json",
                        )),
                        (Some(_), None) => findings.push(Finding::error(
                            "missing-file",
                            Some(&at),
                            "listed in MANIFEST.json, not in any layer",
                        )),
                        (None, _) => {}
                    }
                }
                report.files = m.files.len();
                report.name = Some(m.name.clone());
                report.version = Some(m.version.clone());
                for (_, _, c) in &images {
                    check_run_config(c, root, &layers, &mut findings);
                }
            }
            Err(e) => findings.push(Finding::error(
                "bad-manifest",
                Some(&format!("{root}/MANIFEST.json")),
                format!("{e}"),
            )),
        },
        None => findings.push(Finding::error(
            "no-release",
            None,
            "no layer holds a release (MANIFEST.json beside SHA256SUMS)",
        )),
    }
    findings.sort_by(|a, b| (a.severity, &a.path).cmp(&(b.severity, &b.path)));
    report.findings = findings;
    Ok(report)
}

/// The bytes of a document blob that exists with the size its descriptor says.
fn document<'b>(
    blobs: &'b BTreeMap<String, Blob>,
    d: &Descriptor,
    findings: &mut Vec<Finding>,
) -> Option<&'b [u8]> {
    if !present(blobs, d, findings) {
        return None;
    }
    let b = blobs.get(&d.digest)?;
    match &b.bytes {
        Some(bytes) if b.digest_ok => Some(bytes),
        _ => None,
    }
}

fn present(blobs: &BTreeMap<String, Blob>, d: &Descriptor, findings: &mut Vec<Finding>) -> bool {
    match blobs.get(&d.digest) {
        None => {
            findings.push(Finding::error(
                "missing-blob",
                Some(&d.digest),
                format!(
                    "{} named by a descriptor is not in the layout",
                    d.media_type
                ),
            ));
            false
        }
        Some(b) if b.size != d.size => {
            findings.push(Finding::error(
                "blob-size",
                Some(&d.digest),
                format!("{} bytes, the descriptor says {}", b.size, d.size),
            ));
            false
        }
        Some(_) => true,
    }
}

struct TeeRead<'h, R> {
    inner: R,
    hash: &'h mut Hashing<io::Sink>,
}

impl<R: Read> Read for TeeRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.hash.update(&buf[..n]);
        self.hash.size += n as u64;
        Ok(n)
    }
}

/// What the layers hold: file digests and modes by path, directories, and the release's
/// `MANIFEST.json` (its directory and bytes).
#[derive(Default)]
struct LayerFacts {
    /// The release's directory (no leading slash): entries below it are held to the
    /// canonical headers.
    root: Option<String>,
    files: BTreeMap<String, String>,
    executables: BTreeSet<String>,
    dirs: BTreeSet<String>,
    manifest: Option<(String, Vec<u8>)>,
}

impl LayerFacts {
    fn walk(&mut self, layer: &str, raw: &mut dyn Read, findings: &mut Vec<Finding>) {
        let mut a = tar::Archive::new(raw);
        let Ok(entries) = a.entries() else {
            findings.push(Finding::error("bad-layer", Some(layer), "not a tar"));
            return;
        };
        let mut sums = BTreeSet::new();
        for entry in entries {
            let mut entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    findings.push(Finding::error(
                        "bad-layer",
                        Some(layer),
                        format!("cannot read: {e}"),
                    ));
                    return;
                }
            };
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = name
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/')
                .to_string();
            if name.is_empty() {
                continue;
            }
            if let Err(why) = archive::check_entry_name(&name) {
                findings.push(Finding::error(
                    "bad-name",
                    Some(&name),
                    format!("in layer {layer}: `{name}` {why}"),
                ));
                continue;
            }
            let h = entry.header();
            let kind = h.entry_type();
            let ours = self
                .root
                .as_ref()
                .is_some_and(|r| name == *r || name.starts_with(&format!("{r}/")));
            if ours
                && (h.uid().ok() != Some(0)
                    || h.gid().ok() != Some(0)
                    || h.mtime().ok() != Some(LAYER_MTIME))
            {
                findings.push(Finding::error(
                    "noncanonical-header",
                    Some(&name),
                    "owner or mtime differs from the image's canonical headers",
                ));
            }
            if kind.is_dir() {
                self.dirs.insert(name);
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let escapes = if target.starts_with('/') {
                    target.split('/').any(|c| c == "..")
                } else {
                    archive::resolve_link(&name, &target).is_none() && kind.is_symlink()
                };
                if escapes || target.is_empty() {
                    findings.push(Finding::error(
                        "link-escapes",
                        Some(&name),
                        format!("link to `{target}` leaves the image's root"),
                    ));
                }
            } else if kind.is_file() {
                let mode = h.mode().unwrap_or(0);
                let mut hasher = Sha256::new();
                let mut keep = Vec::new();
                let manifest = name.ends_with("/MANIFEST.json");
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match entry.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            hasher.update(&buf[..n]);
                            if manifest && keep.len() < (64 << 20) {
                                keep.extend_from_slice(&buf[..n]);
                            }
                        }
                        Err(e) => {
                            findings.push(Finding::error(
                                "bad-layer",
                                Some(&name),
                                format!("cannot read: {e}"),
                            ));
                            return;
                        }
                    }
                }
                if name.ends_with("/SHA256SUMS") {
                    sums.insert(name.trim_end_matches("/SHA256SUMS").to_string());
                }
                if manifest {
                    let dir = name.trim_end_matches("/MANIFEST.json").to_string();
                    self.manifest = Some((dir, keep));
                }
                if mode & 0o111 != 0 {
                    self.executables.insert(name.clone());
                }
                self.files.insert(name, hex(&hasher.finalize()));
            } else {
                findings.push(Finding::error(
                    "bad-kind",
                    Some(&name),
                    "devices, FIFOs and other special files do not belong in a release image",
                ));
            }
        }
    }
}

/// The entrypoint is a shipped executable; the user is not root.
fn check_run_config(
    c: &ImageConfigDoc,
    root: &str,
    layers: &LayerFacts,
    findings: &mut Vec<Finding>,
) {
    let entry = c.config.entrypoint.clone().unwrap_or_default();
    match entry.first() {
        Some(program) => {
            let at = program.trim_start_matches('/');
            if !at.starts_with(&format!("{root}/")) || !layers.executables.contains(at) {
                findings.push(Finding::error("entrypoint", None, format!("the entrypoint `{program}` is not an executable of the release under /{root}")));
            }
        }
        None => findings.push(Finding::error(
            "entrypoint",
            None,
            "the image has no entrypoint",
        )),
    }
    match c.config.user.as_deref() {
        None | Some("") | Some("0") | Some("root") | Some("0:0") => findings.push(
            Finding::warning("root-user", None, "the image runs as root"),
        ),
        Some(_) => {}
    }
}
