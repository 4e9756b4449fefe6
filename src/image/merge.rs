//! The per-target images of one release (a CI matrix) as one multi-platform image: one
//! layout tar whose `index.json` names an image index with one manifest per platform, so
//! `skopeo copy --all` pushes a multi-arch image. Blobs are copied unchanged, once each.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

use super::build::{Built, Source, write_layout};
use super::{Descriptor, Index, MEDIA_INDEX, REF_NAME, json};

type Blobs = BTreeMap<String, (u64, Source)>;

/// Merge `images` (already verified) into `<out>/<name>-<version>.oci.tar`.
pub fn merge(images: &[Utf8PathBuf], out: &Utf8Path) -> Result<Built> {
    let mut blobs: Blobs = BTreeMap::new();
    let mut platforms: Vec<Descriptor> = Vec::new();
    let mut reference: Option<String> = None;
    for image in images {
        let index = read_image(image, &mut blobs)?;
        for d in index.manifests {
            add_platform(image, d, &mut platforms, &mut reference)?;
        }
    }
    let reference = reference.context("no images to merge")?;
    platforms.sort_by(|a, b| {
        let key = |d: &Descriptor| {
            d.platform
                .as_ref()
                .map(|p| (p.architecture.clone(), p.variant.clone()))
        };
        key(a).cmp(&key(b))
    });
    let inner = Index {
        schema_version: 2,
        media_type: Some(MEDIA_INDEX.into()),
        manifests: platforms,
    };
    let inner_bytes = json(&inner);
    let digest = format!(
        "sha256:{}",
        crate::archive::hex(&Sha256::digest(&inner_bytes))
    );
    let mut annotations = BTreeMap::new();
    annotations.insert(REF_NAME.to_string(), reference.clone());
    let outer = Index {
        schema_version: 2,
        media_type: Some(MEDIA_INDEX.into()),
        manifests: vec![Descriptor {
            media_type: MEDIA_INDEX.into(),
            digest: digest.clone(),
            size: inner_bytes.len() as u64,
            platform: None,
            annotations,
        }],
    };
    blobs.insert(
        digest.clone(),
        (inner_bytes.len() as u64, Source::Bytes(inner_bytes)),
    );
    // `localhost/<name>:<version>` → `<name>-<version>.oci.tar`.
    let short = reference.trim_start_matches("localhost/").replace(':', "-");
    let path = out.join(format!("{short}.oci.tar"));
    let size = write_layout(&path, blobs, &outer)?;
    Ok(Built {
        path,
        digest,
        size,
        base_digest: None,
    })
}

/// One image's blobs (noted where they start, copied later) and its index.
fn read_image(image: &Utf8PathBuf, blobs: &mut Blobs) -> Result<Index> {
    let file = crate::util::open_regular(image)
        .with_context(|| format!("`{image}`: cannot open the image"))?;
    let mut a = tar::Archive::new(std::io::BufReader::new(file));
    let mut index: Option<Index> = None;
    for entry in a
        .entries()
        .with_context(|| format!("`{image}`: not a tar"))?
    {
        let mut entry = entry.with_context(|| format!("`{image}`: not a tar"))?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./");
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let size = entry.header().size()?;
            let offset = entry.raw_file_position();
            blobs.entry(format!("sha256:{hex}")).or_insert((
                size,
                Source::Slice {
                    file: image.clone(),
                    offset,
                },
            ));
        } else if name == "index.json" {
            index = Some(
                serde_json::from_reader(&mut entry)
                    .with_context(|| format!("`{image}`: index.json is not an image index"))?,
            );
        }
    }
    index.with_context(|| format!("`{image}`: no index.json"))
}

/// One platform's manifest into the merged index: every image of one release, one image per
/// platform.
fn add_platform(
    image: &Utf8Path,
    mut d: Descriptor,
    platforms: &mut Vec<Descriptor>,
    reference: &mut Option<String>,
) -> Result<()> {
    let r = d
        .annotations
        .get(REF_NAME)
        .cloned()
        .with_context(|| format!("`{image}`: its image has no name"))?;
    match reference {
        Some(other) if *other != r => {
            bail!("`{image}` is {r}, but another image is {other}: merge one release at a time")
        }
        _ => *reference = Some(r),
    }
    let platform = d
        .platform
        .clone()
        .with_context(|| format!("`{image}`: its image names no platform"))?;
    if platforms
        .iter()
        .any(|p| p.platform.as_ref() == Some(&platform))
    {
        bail!(
            "`{image}`: a second image for {}/{}",
            platform.os,
            platform.architecture
        );
    }
    d.annotations.remove(REF_NAME);
    platforms.push(d);
    Ok(())
}
