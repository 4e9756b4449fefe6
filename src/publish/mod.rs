//! `cargo release-bundle merge DIR... --out DIR`: gather the bundles that CI matrix jobs
//! produced, verify each (its sidecar included), refuse duplicates and conflicting versions,
//! and write one `SHA256SUMS` over all archives plus an `index.json` for release pages.

use std::collections::BTreeMap;
use std::fs;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::archive;
use crate::archive::companions::{Companion, IMAGE_EXTENSION};
use crate::util::{copy_atomically, write_atomically};
use crate::verify::{self, Severity};

#[derive(Debug, Clone, Serialize)]
struct Indexed {
    name: String,
    version: String,
    package: String,
    target: String,
    profile: String,
    /// File name, relative to the index.
    path: String,
    sha256: String,
    size: u64,
}

/// The bundles and the OCI image tars in a directory, each list sorted.
fn archives_in(dir: &Utf8Path) -> Result<(Vec<Utf8PathBuf>, Vec<Utf8PathBuf>)> {
    let bundles = bundles_in(dir)?;
    let mut images = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("`{dir}`: cannot read the directory"))? {
        let entry = entry.with_context(|| format!("`{dir}`: cannot read the directory"))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.ends_with(IMAGE_EXTENSION) && entry.file_type()?.is_file() {
            images.push(dir.join(name));
        }
    }
    images.sort();
    Ok((bundles, images))
}

fn bundles_in(dir: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("`{dir}`: cannot read the directory"))? {
        let entry = entry.with_context(|| format!("`{dir}`: cannot read the directory"))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if archive::format_of(&name).is_some() && entry.file_type()?.is_file() {
            out.push(dir.join(name));
        }
    }
    out.sort();
    Ok(out)
}

/// The bundles found in the input directories, verified and indexed; `problems` says why
/// they cannot be merged (then nothing may be written).
pub struct Gathered {
    pub problems: Vec<String>,
    index: BTreeMap<String, (Indexed, Utf8PathBuf)>,
    /// Per-target images, verified, to merge into one multi-platform image.
    images: Vec<Utf8PathBuf>,
}

/// Whether a verified bundle may be merged: it has its `.sha256` beside it and no error
/// finding; what is wrong goes to `problems`.
fn checked(path: &Utf8Path, report: &verify::Report, problems: &mut Vec<String>) -> bool {
    let sidecar = Utf8PathBuf::from(format!("{path}.sha256"));
    if !sidecar.is_file() {
        problems.push(format!("`{path}`: has no `.sha256` file beside it"));
    }
    if report.passes(false) {
        return true;
    }
    for f in report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
    {
        let place = f
            .path
            .as_deref()
            .map(|p| format!("{p}: "))
            .unwrap_or_default();
        problems.push(format!("`{path}`: {place}{} [{}]", f.message, f.code));
    }
    false
}

/// Find and verify every bundle in `dirs`; refuse duplicates and conflicting versions.
pub fn gather(dirs: &[Utf8PathBuf]) -> Result<Gathered> {
    let mut found = Vec::new();
    let mut images = Vec::new();
    for dir in dirs {
        let (b, i) = archives_in(dir)?;
        found.extend(b);
        images.extend(i);
    }
    if found.is_empty() {
        bail!(
            "no bundles (`*.tar.zst`, `*.tar.gz`) in {}",
            dirs.iter()
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut problems = Vec::new();
    let mut index: BTreeMap<String, (Indexed, Utf8PathBuf)> = BTreeMap::new();
    let mut versions: BTreeMap<String, (String, Utf8PathBuf)> = BTreeMap::new();
    for path in &found {
        let report = verify::verify_file(path, None, verify::Limits::default(), &[], None)?;
        if !checked(path, &report, &mut problems) {
            continue;
        }
        let Some(m) = &report.manifest else { continue };
        let file_name = path.file_name().unwrap_or_default().to_string();
        if let Some((_, other)) = index.get(&file_name) {
            problems.push(format!("`{path}` and `{other}` are both `{file_name}`"));
            continue;
        }
        match versions.get(&m.name) {
            Some((v, other)) if *v != m.version => {
                problems.push(format!(
                    "`{path}` is {} {} but `{other}` is version {v}",
                    m.name, m.version
                ));
                continue;
            }
            _ => {
                versions.insert(m.name.clone(), (m.version.clone(), path.clone()));
            }
        }
        // The sidecar was checked against this digest while verifying.
        let sha256 = report.sha256.clone();
        let size = fs::metadata(path)
            .with_context(|| format!("`{path}`: cannot stat"))?
            .len();
        let entry = Indexed {
            name: m.name.clone(),
            version: m.version.clone(),
            package: m.package.clone(),
            target: m.target.clone(),
            profile: m.profile.clone(),
            path: file_name.clone(),
            sha256,
            size,
        };
        index.insert(file_name, (entry, path.clone()));
    }
    for image in &images {
        let report = crate::image::verify::verify_image(image)?;
        for f in report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
        {
            problems.push(format!("`{image}`: {} [{}]", f.message, f.code));
        }
    }
    Ok(Gathered {
        problems,
        index,
        images,
    })
}

/// Write the gathered bundles, their sidecars, `SHA256SUMS` and `index.json` into `out`.
/// Every file goes through a temporary file renamed into place; a bundle already there must
/// be the same bytes. Returns the index entries, as JSON values.
pub fn write(gathered: &Gathered, out: &Utf8Path) -> Result<Vec<serde_json::Value>> {
    let index = &gathered.index;
    fs::create_dir_all(out).with_context(|| format!("`{out}`: cannot create"))?;
    for (name, (entry, source)) in index {
        let dest = out.join(name);
        // A regular file already there must be this bundle; a symlink or nothing is replaced
        // by a rename (never written through).
        let existing = fs::symlink_metadata(&dest).ok();
        if existing.as_ref().is_some_and(|m| m.file_type().is_file()) {
            if crate::util::sha256_of(&dest)? != entry.sha256 {
                bail!("`{dest}` already exists with other content; merge into an empty directory");
            }
        } else {
            copy_atomically(source, &dest, 0o644)?;
        }
        // Provenance and signatures travel with their bundle (verify checked that the
        // provenance names it; signatures are checked by whoever holds the signers); each
        // is read without following a link, so a link cannot publish another file.
        for companion in Companion::ALL {
            if companion == Companion::Sha256 {
                continue;
            }
            let from = companion.path(source);
            if fs::symlink_metadata(&from).is_ok() {
                copy_atomically(&from, &companion.path(&dest), 0o644)?;
            }
        }
        // The sidecar says what verify computed (and checked against the source's sidecar).
        let sidecar = format!("{}  {name}\n", entry.sha256);
        write_atomically(&out.join(format!("{name}.sha256")), sidecar.as_bytes())?;
    }
    let mut sums: String = index
        .values()
        .map(|(e, _)| format!("{}  {}\n", e.sha256, e.path))
        .collect();
    let mut images = Vec::new();
    if !gathered.images.is_empty() {
        let built = crate::image::merge::merge(&gathered.images, out)?;
        let name = built.path.file_name().unwrap_or_default().to_string();
        let sha256 = crate::util::sha256_of(&built.path)?;
        sums.push_str(&format!("{sha256}  {name}\n"));
        write_atomically(
            &out.join(format!("{name}.sha256")),
            format!("{sha256}  {name}\n").as_bytes(),
        )?;
        images.push(serde_json::json!({
            "path": name,
            "sha256": sha256,
            "size": built.size,
            "index_digest": built.digest,
            "merged_from": gathered.images.iter().map(|p| p.file_name().unwrap_or_default()).collect::<Vec<_>>(),
        }));
    }
    write_atomically(&out.join("SHA256SUMS"), sums.as_bytes())?;
    let entries: Vec<&Indexed> = index.values().map(|(e, _)| e).collect();
    let doc = if images.is_empty() {
        serde_json::json!({ "bundles": entries })
    } else {
        serde_json::json!({ "bundles": entries, "images": images })
    };
    let mut json = serde_json::to_vec_pretty(&doc)?;
    json.push(b'\n');
    write_atomically(&out.join("index.json"), &json)?;
    entries
        .iter()
        .map(|e| serde_json::to_value(e).context("cannot describe a bundle"))
        .collect()
}
