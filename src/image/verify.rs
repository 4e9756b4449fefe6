//! `verify IMAGE.oci.tar`: the layout walked from `index.json` to manifests, configs and
//! layers; every blob re-hashed, every layer's uncompressed digest checked against its
//! `diff_id`, every layer entry held to the bundle's entry rules, and, for each image, its
//! layers applied **in the manifest's order** (later layers replace and white out earlier
//! files, exactly as runtimes apply them) before the release's files are checked against the
//! `MANIFEST.json` inside and the entrypoint against what the stack really holds. Findings and
//! exit codes are the bundle verifier's.
//!
//! Reads: one sequential pass hashes the whole file and every blob, keeps the small ones (the
//! JSON documents) and notes where each blob's bytes start; then each image's layers are read
//! in order by seeking to them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use anyhow::{Context, Result};
use camino::Utf8Path;
use sha2::Digest;

use super::build::Hashing;
use super::layers::LayerFacts;
use super::{Descriptor, ImageConfigDoc, ImageManifest, Index, MEDIA_INDEX};
use crate::archive::manifest::Manifest;
use crate::archive::{self, hex};
use crate::verify::{Finding, Reference, Report};

/// Blobs kept in memory (JSON documents); larger ones are only hashed.
const SMALL: u64 = 4 << 20;

struct Blob {
    size: u64,
    digest_ok: bool,
    bytes: Option<Vec<u8>>,
    /// Where the blob's bytes start in the layout tar.
    offset: u64,
}

/// What the sequential pass learns: the blobs, the two top-level documents, the file's digest.
#[derive(Default)]
struct Layout {
    blobs: BTreeMap<String, Blob>,
    index: Option<Vec<u8>>,
    oci_layout: Option<Vec<u8>>,
    sha256: String,
}

/// One image of the layout: its manifest and config.
struct Image {
    manifest: ImageManifest,
    config: ImageConfigDoc,
}

/// Verify an OCI image layout tar. `Err` only for I/O problems with the file itself.
pub fn verify_image(path: &Utf8Path) -> Result<Report> {
    let mut findings = Vec::new();
    let layout = scan(path, &mut findings)?;
    check_oci_layout(&layout, &mut findings);
    let mut report = Report {
        bundle: path.to_owned(),
        sha256: layout.sha256.clone(),
        manifest: None,
        name: None,
        version: None,
        files: 0,
        reference: Reference::None,
        findings: Vec::new(),
    };
    let Some(index) = layout
        .index
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
    let images = images(&layout.blobs, &index, &mut findings);
    let mut file = crate::util::open_regular(path)
        .with_context(|| format!("`{path}`: cannot open the image"))?;
    let mut checked = BTreeSet::new();
    for image in &images {
        let stack = apply_layers(&mut file, &layout.blobs, image, &mut checked, &mut findings)
            .with_context(|| format!("`{path}`: cannot read"))?;
        check_release(image, &stack, &mut report, &mut findings);
    }
    findings.sort_by(|a, b| (a.severity, &a.path).cmp(&(b.severity, &b.path)));
    report.findings = findings;
    Ok(report)
}

/// The one sequential pass: the whole file hashed as the tar is read, every entry's name and
/// kind checked, every blob hashed (small ones kept), and where each blob starts.
fn scan(path: &Utf8Path, findings: &mut Vec<Finding>) -> Result<Layout> {
    let f = crate::util::open_regular(path)
        .with_context(|| format!("`{path}`: cannot open the image"))?;
    let mut a = tar::Archive::new(Hashing::new(BufReader::new(f)));
    let mut layout = Layout::default();
    for entry in a
        .entries()
        .with_context(|| format!("`{path}`: not a tar"))?
    {
        let entry = entry.with_context(|| format!("`{path}`: not a tar"))?;
        scan_entry(entry, &mut layout, findings)
            .with_context(|| format!("`{path}`: cannot read"))?;
    }
    // The end-of-archive blocks and anything after them count towards the file's digest.
    let mut whole = a.into_inner();
    io::copy(&mut whole, &mut io::sink()).with_context(|| format!("`{path}`: cannot read"))?;
    layout.sha256 = whole.digest().trim_start_matches("sha256:").to_string();
    Ok(layout)
}

fn scan_entry<R: Read>(
    mut entry: tar::Entry<R>,
    layout: &mut Layout,
    findings: &mut Vec<Finding>,
) -> Result<()> {
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
        return Ok(());
    }
    let kind = entry.header().entry_type();
    if kind.is_dir() {
        return Ok(());
    }
    if !kind.is_file() {
        findings.push(Finding::error(
            "bad-kind",
            Some(&name),
            "only directories and files belong in an image layout",
        ));
        return Ok(());
    }
    let size = entry.header().size()?;
    if name == "index.json" || name == "oci-layout" {
        let mut b = Vec::new();
        (&mut entry).take(SMALL).read_to_end(&mut b)?;
        *(if name == "index.json" {
            &mut layout.index
        } else {
            &mut layout.oci_layout
        }) = Some(b);
        return Ok(());
    }
    let Some(hex_name) = name.strip_prefix("blobs/sha256/") else {
        findings.push(Finding::warning(
            "unexpected-entry",
            Some(&name),
            "not part of an OCI image layout",
        ));
        return Ok(());
    };
    let offset = entry.raw_file_position();
    let mut h = Hashing::new(Vec::new());
    if size <= SMALL {
        io::copy(&mut entry, &mut h)?;
    } else {
        let mut sink = Hashing::new(io::sink());
        io::copy(&mut entry, &mut sink)?;
        h.hash = sink.hash;
    }
    let digest_ok = hex(&h.hash.clone().finalize()) == hex_name;
    if !digest_ok {
        findings.push(Finding::error(
            "blob-digest",
            Some(&name),
            "the blob's content does not match its name",
        ));
    }
    layout.blobs.insert(
        format!("sha256:{hex_name}"),
        Blob {
            size,
            digest_ok,
            bytes: (size <= SMALL).then_some(h.inner),
            offset,
        },
    );
    Ok(())
}

fn check_oci_layout(layout: &Layout, findings: &mut Vec<Finding>) {
    match layout
        .oci_layout
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
}

/// index -> manifests (through nested indexes) -> config; layers present with their sizes.
fn images(
    blobs: &BTreeMap<String, Blob>,
    index: &Index,
    findings: &mut Vec<Finding>,
) -> Vec<Image> {
    let mut images = Vec::new();
    let mut queue: Vec<Descriptor> = index.manifests.clone();
    while let Some(d) = queue.pop() {
        let Some(bytes) = document(blobs, &d, findings) else {
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
        if let Some(image) = image(blobs, &d, bytes, findings) {
            images.push(image);
        }
    }
    images
}

fn image(
    blobs: &BTreeMap<String, Blob>,
    d: &Descriptor,
    bytes: &[u8],
    findings: &mut Vec<Finding>,
) -> Option<Image> {
    let manifest: ImageManifest = serde_json::from_slice(bytes)
        .map_err(|e| {
            findings.push(Finding::error(
                "bad-manifest",
                Some(&d.digest),
                format!("not an image manifest: {e}"),
            ))
        })
        .ok()?;
    let config_bytes = document(blobs, &manifest.config, findings)?;
    let config: ImageConfigDoc = serde_json::from_slice(config_bytes)
        .map_err(|e| {
            findings.push(Finding::error(
                "bad-config",
                Some(&manifest.config.digest),
                format!("not an image config: {e}"),
            ))
        })
        .ok()?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        findings.push(Finding::error(
            "diff-ids",
            Some(&manifest.config.digest),
            format!(
                "{} layers but {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        ));
    }
    // Every layer is looked at (each missing one is reported), not only up to the first.
    let missing = manifest
        .layers
        .iter()
        .filter(|l| !present(blobs, l, findings))
        .count();
    let all_present = missing == 0;
    all_present.then_some(Image { manifest, config })
}

/// The image's file system: its layers applied bottom to top, in the manifest's order. Each
/// layer's `diff_id` is checked the first time a layer is read (`checked`).
fn apply_layers(
    file: &mut std::fs::File,
    blobs: &BTreeMap<String, Blob>,
    image: &Image,
    checked: &mut BTreeSet<String>,
    findings: &mut Vec<Finding>,
) -> io::Result<LayerFacts> {
    // The release's directory, as the image's environment names it.
    let root = image
        .config
        .config
        .env
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("RELEASE_ROOT="))
        .map(|r| r.trim_matches('/').to_string());
    let mut stack = LayerFacts {
        root,
        ..LayerFacts::default()
    };
    for (l, diff_id) in image
        .manifest
        .layers
        .iter()
        .zip(&image.config.rootfs.diff_ids)
    {
        let gzip = l.media_type.ends_with("+gzip");
        if !gzip && l.media_type != super::MEDIA_LAYER {
            findings.push(Finding::error(
                "layer-type",
                Some(&l.digest),
                format!("unsupported layer media type {}", l.media_type),
            ));
            continue;
        }
        let Some(blob) = blobs.get(&l.digest) else {
            continue;
        };
        file.seek(SeekFrom::Start(blob.offset))?;
        let bytes = BufReader::new(Read::by_ref(file).take(blob.size));
        let raw: Box<dyn Read + '_> = if gzip {
            Box::new(flate2::read::GzDecoder::new(bytes))
        } else {
            Box::new(bytes)
        };
        let mut head = Hashing::new(io::sink());
        let mut tee = TeeRead {
            inner: raw,
            hash: &mut head,
        };
        stack.walk(&l.digest, &mut tee, findings);
        io::copy(&mut tee, &mut io::sink()).ok();
        if checked.insert(l.digest.clone()) && head.digest() != *diff_id {
            findings.push(Finding::error(
                "diff-id",
                Some(&l.digest),
                format!(
                    "the layer decompresses to {} but the config says {diff_id}",
                    head.digest()
                ),
            ));
        }
    }
    Ok(stack)
}

/// The release inside an image's file system: its files against its MANIFEST.json, and what
/// the image runs.
fn check_release(
    image: &Image,
    stack: &LayerFacts,
    report: &mut Report,
    findings: &mut Vec<Finding>,
) {
    let Some((root, bytes)) = &stack.manifest else {
        findings.push(Finding::error(
            "no-release",
            None,
            "no layer holds a release (MANIFEST.json beside SHA256SUMS)",
        ));
        return;
    };
    let m = match serde_json::from_slice::<Manifest>(bytes) {
        Ok(m) => m,
        Err(e) => {
            findings.push(Finding::error(
                "bad-manifest",
                Some(&format!("{root}/MANIFEST.json")),
                format!("{e}"),
            ));
            return;
        }
    };
    for f in &m.files {
        let at = format!("{root}/{}", f.path);
        let finding = match (&f.sha256, stack.files.get(&at)) {
            (Some(want), Some(got)) if want == got => continue,
            (Some(_), Some(_)) => ("content-mismatch", "differs from MANIFEST.json"),
            (Some(_), None) => (
                "missing-file",
                "listed in MANIFEST.json, not in the image's file system",
            ),
            (None, _) => continue,
        };
        let (code, why) = finding;
        if !findings
            .iter()
            .any(|x| x.path.as_deref() == Some(at.as_str()) && x.code == code)
        {
            findings.push(Finding::error(code, Some(&at), why));
        }
    }
    report.files = m.files.len();
    report.name = Some(m.name.clone());
    report.version = Some(m.version.clone());
    check_run_config(&image.config, root, stack, findings);
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
