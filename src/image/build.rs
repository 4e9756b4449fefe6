//! Writing the image: the bundle's entries read once into two gzip layers (priv; the rest),
//! the base's blobs copied unchanged (each re-hashed on the way), the JSON documents, and
//! the OCI layout tar written under a temporary name and renamed into place.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

use super::{
    Base, Descriptor, ImageConfigDoc, ImageManifest, Index, LAYER_MTIME, MEDIA_CONFIG, MEDIA_INDEX,
    MEDIA_LAYER_GZIP, MEDIA_MANIFEST, Platform, REF_NAME, Spec, annotations, config_doc, json,
    parse_base, platform,
};
use crate::archive::header::Kind;
use crate::archive::manifest::Manifest;
use crate::archive::{self, Format, MODE_DIR, TarWriter, hex};

/// Counts and hashes what passes through.
pub(super) struct Hashing<W> {
    pub inner: W,
    pub hash: Sha256,
    pub size: u64,
}

impl<W> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
            size: 0,
        }
    }
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex(&self.hash.clone().finalize()))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

type LayerOut = Hashing<flate2::write::GzEncoder<Hashing<File>>>;

/// One layer being written: the tar (hashed uncompressed: the `diff_id`) inside gzip (hashed
/// compressed: the blob digest) inside an anonymous temporary file.
struct Layer {
    tar: TarWriter<LayerOut>,
}

impl Layer {
    fn new(parents: &[String]) -> Result<Layer> {
        let file = tempfile::tempfile().context("cannot create a temporary file")?;
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(Hashing::new(file), flate2::Compression::new(6));
        let mut tar = TarWriter::new(Hashing::new(gz), LAYER_MTIME)?;
        for p in parents {
            tar.header(Kind::Dir, p, MODE_DIR, 0, "")?;
        }
        Ok(Layer { tar })
    }

    /// The blob file (rewound), its descriptor, and its `diff_id`.
    fn finish(self) -> Result<(File, Descriptor, String)> {
        let raw = self.tar.finish()?;
        let diff_id = raw.digest();
        let blob = raw
            .inner
            .finish()
            .context("cannot finish a layer's compression")?;
        let descriptor = Descriptor {
            media_type: MEDIA_LAYER_GZIP.into(),
            digest: blob.digest(),
            size: blob.size,
            platform: None,
            annotations: BTreeMap::new(),
        };
        let mut file = blob.inner;
        file.rewind()?;
        Ok((file, descriptor, diff_id))
    }
}

/// Where a blob's bytes are when the layout is written.
pub(super) enum Source {
    File(File),
    Bytes(Vec<u8>),
    Path(Utf8PathBuf),
    /// Inside another file (an entry of another layout tar).
    Slice {
        file: Utf8PathBuf,
        offset: u64,
    },
}

/// A base image as read from disk: its blobs (by digest), manifest, config.
struct BaseImage {
    blobs_dir: Utf8PathBuf,
    manifest: ImageManifest,
    config: ImageConfigDoc,
    /// The base's manifest digest, recorded in our annotations.
    digest: String,
    has_shell: bool,
    _unpacked: Option<tempfile::TempDir>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Utf8Path, what: &str) -> Result<T> {
    let file = crate::util::open_regular(path)
        .with_context(|| format!("`{path}`: cannot open the {what}"))?;
    serde_json::from_reader(BufReader::new(file.take(16 << 20)))
        .with_context(|| format!("`{path}`: not an OCI {what}"))
}

fn blob_path(dir: &Utf8Path, digest: &str) -> Result<Utf8PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("`{digest}` is not a sha256 digest"))?;
    Ok(dir.join("blobs/sha256").join(hex))
}

/// SHA-256 of a file, `sha256:<hex>`, streamed.
fn digest_of(path: &Utf8Path) -> Result<String> {
    let mut h = Hashing::new(io::sink());
    let mut f =
        crate::util::open_regular(path).with_context(|| format!("`{path}`: cannot open"))?;
    io::copy(&mut f, &mut h).with_context(|| format!("`{path}`: cannot read"))?;
    Ok(h.digest())
}

fn load_base(text: &str, target: &str) -> Result<BaseImage> {
    let base = parse_base(text).map_err(anyhow::Error::msg)?;
    let (dir, reference, unpacked) = match base {
        Base::Layout { dir, reference } => (Utf8PathBuf::from(dir), reference, None),
        Base::Archive { file, reference } => {
            let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
            let f = crate::util::open_regular(&file)
                .with_context(|| format!("`{file}`: cannot open the base image"))?;
            let mut a = tar::Archive::new(BufReader::new(f));
            for entry in a
                .entries()
                .with_context(|| format!("`{file}`: not a tar"))?
            {
                let mut entry = entry.with_context(|| format!("`{file}`: not a tar"))?;
                let path = entry.path()?.to_string_lossy().into_owned();
                if entry.header().entry_type().is_file()
                    && archive::check_entry_name(path.trim_start_matches("./")).is_ok()
                {
                    let to = tmp.path().join(path.trim_start_matches("./"));
                    std::fs::create_dir_all(to.parent().unwrap_or(tmp.path()))?;
                    io::copy(&mut entry, &mut File::create(&to)?)?;
                }
            }
            let dir = Utf8PathBuf::from_path_buf(tmp.path().to_path_buf())
                .map_err(|p| anyhow::anyhow!("`{}`: not UTF-8", p.display()))?;
            (dir, reference, Some(tmp))
        }
    };
    let index: Index = read_json(&dir.join("index.json"), "image index")?;
    let chosen: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| match &reference {
            Some(r) => d
                .annotations
                .get(REF_NAME)
                .is_some_and(|n| n == r || n.ends_with(&format!(":{r}"))),
            None => true,
        })
        .collect();
    let mut descriptor = match chosen.as_slice() {
        [one] => (*one).clone(),
        [] => bail!(
            "`{dir}`: no image named {:?} in index.json",
            reference.unwrap_or_default()
        ),
        _ => bail!("`{dir}`: index.json holds several images; name one (`oci-layout:{dir}:REF`)"),
    };
    // A multi-platform index: the manifest for our platform.
    if descriptor.media_type == MEDIA_INDEX {
        let inner: Index = read_json(&blob_path(&dir, &descriptor.digest)?, "image index")?;
        let (arch, _) = platform(target).context("no OCI platform for the target")?;
        descriptor = inner
            .manifests
            .into_iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.architecture == arch && p.os == "linux")
            })
            .with_context(|| format!("`{dir}`: the base has no linux/{arch} image"))?;
    }
    let manifest_path = blob_path(&dir, &descriptor.digest)?;
    if digest_of(&manifest_path)? != descriptor.digest {
        bail!("`{manifest_path}`: does not match its digest");
    }
    let manifest: ImageManifest = read_json(&manifest_path, "image manifest")?;
    let config_path = blob_path(&dir, &manifest.config.digest)?;
    let config: ImageConfigDoc = read_json(&config_path, "image config")?;
    let has_shell = base_has_shell(&dir, &manifest)?;
    Ok(BaseImage {
        blobs_dir: dir,
        manifest,
        config,
        digest: descriptor.digest,
        has_shell,
        _unpacked: unpacked,
    })
}

/// Whether the base's layers hold `/bin/sh` (a file or a link). Each layer is first held to
/// the rules `verify` applies to layers: an image is never written that verify refuses.
fn base_has_shell(dir: &Utf8Path, manifest: &ImageManifest) -> Result<bool> {
    for layer in &manifest.layers {
        let path = blob_path(dir, &layer.digest)?;
        let f = crate::util::open_regular(&path)
            .with_context(|| format!("`{path}`: cannot open a base layer"))?;
        let mut reader: Box<dyn Read> = if layer.media_type.ends_with("gzip") {
            Box::new(flate2::read::GzDecoder::new(BufReader::new(f)))
        } else {
            Box::new(BufReader::new(f))
        };
        if let Some(first) = super::layers::layer_errors(&layer.digest, &mut reader).first() {
            bail!(
                "`{path}`: a base layer that `verify` would refuse: {} ({}); use another base",
                first.message,
                first.code
            );
        }
    }
    for layer in &manifest.layers {
        let path = blob_path(dir, &layer.digest)?;
        let f = crate::util::open_regular(&path)
            .with_context(|| format!("`{path}`: cannot open a base layer"))?;
        let reader: Box<dyn Read> = if layer.media_type.ends_with("gzip") {
            Box::new(flate2::read::GzDecoder::new(BufReader::new(f)))
        } else {
            Box::new(BufReader::new(f))
        };
        let mut a = tar::Archive::new(reader);
        for entry in a
            .entries()
            .with_context(|| format!("`{path}`: not a tar layer"))?
        {
            let entry = entry.with_context(|| format!("`{path}`: not a tar layer"))?;
            let p = entry.path()?.to_string_lossy().into_owned();
            if matches!(
                p.trim_start_matches("./").trim_start_matches('/'),
                "bin/sh" | "usr/bin/sh"
            ) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// What an image build wrote.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: Utf8PathBuf,
    /// The image manifest's digest (`sha256:…`): what a registry names it by.
    pub digest: String,
    pub size: u64,
    /// The base image's manifest digest, when there is a base.
    pub base_digest: Option<String>,
}

/// Build the image of `bundle` (whose manifest is `manifest`) into `out_dir`.
pub fn build(
    bundle: &Utf8Path,
    manifest: &Manifest,
    spec: &Spec,
    out_dir: &Utf8Path,
) -> Result<Built> {
    let base = match &spec.base {
        Some(b) => Some(load_base(b, &spec.target).with_context(|| format!("image.base = {b:?}"))?),
        None => {
            super::check_scratch(spec).map_err(anyhow::Error::msg)?;
            None
        }
    };
    let [
        (priv_file, priv_desc, priv_diff),
        (rest_file, rest_desc, rest_diff),
    ] = release_layers(bundle, manifest, &spec.root)?;
    let has_shell = base.as_ref().is_some_and(|b| b.has_shell);
    let mut spec = spec.clone();
    spec.shell = has_shell;
    let spec = &spec;
    let config = config_doc(
        spec,
        base.as_ref().map(|b| &b.config),
        &[priv_diff, rest_diff],
        has_shell,
    )
    .map_err(anyhow::Error::msg)?;
    let config_bytes = json(&config);
    let config_desc = descriptor_of(MEDIA_CONFIG, &config_bytes);
    let (manifest_bytes, manifest_desc) = image_manifest(
        spec,
        base.as_ref(),
        &config_desc,
        [priv_desc.clone(), rest_desc.clone()],
    )?;
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_INDEX.into()),
        manifests: vec![manifest_desc.clone()],
    };
    // Every blob once, by digest (sorted: the layout tar's order).
    let mut blobs: BTreeMap<String, (u64, Source)> = BTreeMap::new();
    if let Some(b) = &base {
        for d in b.manifest.layers.iter().chain([&b.manifest.config]) {
            blobs.insert(
                d.digest.clone(),
                (d.size, Source::Path(blob_path(&b.blobs_dir, &d.digest)?)),
            );
        }
    }
    for (desc, source) in [
        (&priv_desc, Source::File(priv_file)),
        (&rest_desc, Source::File(rest_file)),
        (&config_desc, Source::Bytes(config_bytes)),
        (&manifest_desc, Source::Bytes(manifest_bytes)),
    ] {
        blobs.insert(desc.digest.clone(), (desc.size, source));
    }
    let path = out_dir.join(super::file_name(&spec.name, &spec.version, &spec.target));
    let size = write_layout(&path, blobs, &index)?;
    Ok(Built {
        path,
        digest: manifest_desc.digest,
        size,
        base_digest: base.map(|b| b.digest),
    })
}

/// The release's two layers, read from the bundle once: `priv/` (which changes least), then
/// everything else with `/tmp`; each as its file, descriptor and diff_id.
fn release_layers(
    bundle: &Utf8Path,
    manifest: &Manifest,
    root: &str,
) -> Result<[(File, Descriptor, String); 2]> {
    let root = root.trim_start_matches('/').to_string();
    let mut parents = Vec::new();
    let mut at = String::new();
    for part in root.split('/') {
        at = if at.is_empty() {
            part.to_string()
        } else {
            format!("{at}/{part}")
        };
        parents.push(at.clone());
    }
    let mut priv_layer = Layer::new(&parents)?;
    let mut rest = Layer::new(&parents)?;
    let file = crate::util::open_regular(bundle)
        .with_context(|| format!("`{bundle}`: cannot open the bundle"))?;
    let format = archive::format_of(bundle.as_str()).unwrap_or(Format::TarZst);
    let mut tar = tar::Archive::new(archive::decoder(format, BufReader::new(file))?);
    let top = format!("{}/", manifest.top_dir);
    for entry in tar
        .entries()
        .with_context(|| format!("`{bundle}`: cannot read"))?
    {
        let mut entry = entry.with_context(|| format!("`{bundle}`: cannot read"))?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(rel) = path.strip_prefix(&top) else {
            continue;
        };
        let rel = rel.trim_end_matches('/').to_string();
        if rel.is_empty() {
            continue;
        }
        let layer = if rel == "priv" || rel.starts_with("priv/") {
            &mut priv_layer
        } else {
            &mut rest
        };
        copy_entry(layer, &mut entry, &format!("{root}/{rel}"))
            .with_context(|| format!("`{bundle}`: {path}"))?;
    }
    // /tmp, writable by whatever user the image runs as: RELEASE_TMP itself on scratch; on a
    // shell base the launcher makes its own RELEASE_TMP (0700) below it.
    rest.tar.header(Kind::Dir, "tmp", 0o1777, 0, "")?;
    Ok([priv_layer.finish()?, rest.finish()?])
}

/// One bundle entry into a layer at `full`, with the layer's canonical headers.
fn copy_entry<R: Read>(layer: &mut Layer, entry: &mut tar::Entry<R>, full: &str) -> Result<()> {
    let header = entry.header();
    let kind = header.entry_type();
    let mode = header.mode().context("mode")?;
    if kind.is_dir() {
        layer.tar.header(Kind::Dir, full, mode, 0, "")?;
    } else if kind.is_symlink() {
        let target = entry
            .link_name()?
            .context("a symlink without a target")?
            .to_string_lossy()
            .into_owned();
        layer.tar.header(Kind::Symlink, full, mode, 0, &target)?;
    } else {
        let size = header.size()?;
        layer.tar.header(Kind::File, full, mode, size, "")?;
        layer.tar.body(full, size, entry)?;
    }
    Ok(())
}

/// The image manifest over the base's layers and ours, and its descriptor for the index
/// (platform and reference name).
fn image_manifest(
    spec: &Spec,
    base: Option<&BaseImage>,
    config_desc: &Descriptor,
    ours: [Descriptor; 2],
) -> Result<(Vec<u8>, Descriptor)> {
    let mut layers = base.map(|b| b.manifest.layers.clone()).unwrap_or_default();
    layers.extend(ours);
    let mut notes = annotations(spec);
    if let Some(b) = base {
        notes.insert(
            "org.opencontainers.image.base.digest".into(),
            b.digest.clone(),
        );
    }
    let image_manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MEDIA_MANIFEST.into()),
        config: config_desc.clone(),
        layers,
        annotations: notes,
    };
    let manifest_bytes = json(&image_manifest);
    let mut manifest_desc = descriptor_of(MEDIA_MANIFEST, &manifest_bytes);
    let (arch, variant) = platform(&spec.target).context("no OCI platform for the target")?;
    manifest_desc.platform = Some(Platform {
        architecture: arch.into(),
        os: "linux".into(),
        variant: variant.map(String::from),
    });
    manifest_desc
        .annotations
        .insert(REF_NAME.into(), spec.ref_name());
    Ok((manifest_bytes, manifest_desc))
}

/// Write an OCI image layout tar at `path` (through a temporary file renamed into place):
/// the blobs in digest order, `index.json`, `oci-layout`. Every blob is re-hashed as it is
/// copied. Returns the file's size.
pub(super) fn write_layout(
    path: &Utf8Path,
    blobs: BTreeMap<String, (u64, Source)>,
    index: &Index,
) -> Result<u64> {
    let dir = path.parent().unwrap_or(Utf8Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in `{dir}`"))?;
    let mut out = TarWriter::new(Hashing::new(io::BufWriter::new(tmp.as_file())), LAYER_MTIME)?;
    out.header(Kind::Dir, "blobs", MODE_DIR, 0, "")?;
    out.header(Kind::Dir, "blobs/sha256", MODE_DIR, 0, "")?;
    for (digest, (size, source)) in blobs {
        let entry = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        out.header(Kind::File, &entry, archive::MODE_FILE, size, "")?;
        let written = match source {
            Source::File(f) => out.body(&entry, size, BufReader::new(f))?,
            Source::Bytes(b) => out.body(&entry, size, &b[..])?,
            Source::Path(p) => {
                let f = crate::util::open_regular(&p)
                    .with_context(|| format!("`{p}`: cannot open a blob"))?;
                out.body(&entry, size, BufReader::new(f)).with_context(|| {
                    format!("`{p}`: a blob of another size than its descriptor says")
                })?
            }
            Source::Slice { file, offset } => {
                let mut f = crate::util::open_regular(&file)
                    .with_context(|| format!("`{file}`: cannot open"))?;
                f.seek(io::SeekFrom::Start(offset))?;
                out.body(&entry, size, BufReader::new(f).take(size))
                    .with_context(|| format!("`{file}`: blob {digest}"))?
            }
        };
        if format!("sha256:{written}") != digest {
            bail!("blob {digest} does not match its digest (a blob that changed on disk?)");
        }
    }
    for (name, bytes) in [
        ("index.json", json(index)),
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
    ] {
        out.header(Kind::File, name, archive::MODE_FILE, bytes.len() as u64, "")?;
        out.body(name, bytes.len() as u64, &bytes[..])?;
    }
    let mut hashing = out.finish()?;
    hashing
        .flush()
        .with_context(|| format!("cannot write `{path}`"))?;
    let size = hashing.size;
    drop(hashing);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write `{path}`"))?;
    Ok(size)
}

fn descriptor_of(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: format!("sha256:{}", hex(&Sha256::digest(bytes))),
        size: bytes.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
    }
}
