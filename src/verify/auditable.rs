//! Bundles built with `auditable = true`: the dependency list `cargo auditable` embeds in
//! each executable (the zlib-compressed JSON of an ELF section named `.dep-v0`) must name
//! only crates the bundle's SBOM lists. Checked in a second pass over the bundle, and only
//! when the SBOM says the executables carry such a list; each executable is spooled to an
//! anonymous temporary file to find the section (never held in memory).

use std::io::{self, Read, Seek, SeekFrom};

use camino::Utf8Path;

use super::Finding;
use crate::archive::{self, Format};

/// Largest `.dep-v0` section read, compressed and decompressed.
const MAX_SECTION: u64 = 16 << 20;

fn field(b: &[u8], at: usize, len: usize, little: bool) -> u64 {
    let bytes = &b[at..at + len];
    let mut v = 0u64;
    for i in 0..len {
        let byte = if little { bytes[len - 1 - i] } else { bytes[i] };
        v = (v << 8) | u64::from(byte);
    }
    v
}

trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// The decompressed `.dep-v0` section of an ELF file, if it has one.
pub fn dep_v0(file: &mut (impl Read + Seek)) -> io::Result<Option<Vec<u8>>> {
    let mut h = [0u8; 64];
    file.seek(SeekFrom::Start(0))?;
    if file.read(&mut h)? < 52 || &h[..4] != b"\x7fELF" {
        return Ok(None);
    }
    let wide = h[4] == 2;
    let little = h[5] == 1;
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (
            field(&h, 0x28, 8, little),
            field(&h, 0x3A, 2, little),
            field(&h, 0x3C, 2, little),
            field(&h, 0x3E, 2, little),
        )
    } else {
        (
            field(&h, 0x20, 4, little),
            field(&h, 0x2E, 2, little),
            field(&h, 0x30, 2, little),
            field(&h, 0x32, 2, little),
        )
    };
    if shoff == 0 || shnum == 0 || shstrndx >= shnum || shentsize < if wide { 64 } else { 40 } {
        return Ok(None);
    }
    // (name offset, file offset, size) of section `i`.
    let section = |file: &mut dyn ReadSeek, i: u64| -> io::Result<(u64, u64, u64)> {
        let mut s = vec![0u8; shentsize as usize];
        file.seek(SeekFrom::Start(shoff + i * shentsize))?;
        file.read_exact(&mut s)?;
        Ok(if wide {
            (
                field(&s, 0, 4, little),
                field(&s, 24, 8, little),
                field(&s, 32, 8, little),
            )
        } else {
            (
                field(&s, 0, 4, little),
                field(&s, 16, 4, little),
                field(&s, 20, 4, little),
            )
        })
    };
    let (_, names_at, names_size) = section(file, shstrndx)?;
    if names_size > MAX_SECTION {
        return Ok(None);
    }
    let mut found = None;
    {
        let mut names = vec![0u8; names_size as usize];
        file.seek(SeekFrom::Start(names_at))?;
        file.read_exact(&mut names)?;
        for i in 0..shnum {
            let (name, at, size) = section(file, i)?;
            let name = name as usize;
            if name < names.len() && names[name..].starts_with(b".dep-v0\0") {
                found = Some((at, size));
                break;
            }
        }
    }
    let Some((at, size)) = found else {
        return Ok(None);
    };
    if size > MAX_SECTION {
        return Err(io::Error::other(".dep-v0 is larger than 16 MiB"));
    }
    file.seek(SeekFrom::Start(at))?;
    let compressed = (&mut *file).take(size);
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_SECTION)
        .read_to_end(&mut out)?;
    Ok(Some(out))
}

/// The (name, version) of every package in a `.dep-v0` list.
pub fn packages(json: &[u8]) -> Result<Vec<(String, String)>, String> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    v["packages"]
        .as_array()
        .ok_or("no `packages` list")?
        .iter()
        .map(|p| match (p["name"].as_str(), p["version"].as_str()) {
            (Some(n), Some(v)) => Ok((n.to_string(), v.to_string())),
            _ => Err("a package without name or version".to_string()),
        })
        .collect()
}

/// The second pass, when the SBOM says the executables carry their dependency lists.
pub fn check(
    bundle: &Utf8Path,
    top: &str,
    sbom: &[u8],
    findings: &mut Vec<Finding>,
) -> io::Result<()> {
    if !crate::attest::sbom::says_auditable(sbom) {
        return Ok(());
    }
    let listed = crate::attest::sbom::components(sbom);
    let file = crate::util::open_regular(bundle)?;
    let format = archive::format_of(bundle.as_str()).unwrap_or(Format::TarZst);
    let decoder = archive::decoder(format, io::BufReader::new(file)).map_err(io::Error::other)?;
    let mut tar = tar::Archive::new(decoder);
    let mut executables = 0;
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(rel) = path.strip_prefix(&format!("{top}/")) else {
            continue;
        };
        let shipped = rel.starts_with("libexec/") || rel.starts_with("bin/");
        if !shipped || !entry.header().entry_type().is_file() {
            continue;
        }
        let mut spool = tempfile::tempfile()?;
        io::copy(&mut entry, &mut spool)?;
        let list = match dep_v0(&mut spool) {
            Ok(Some(list)) => list,
            Ok(None) => {
                let mut magic = [0u8; 4];
                spool.seek(SeekFrom::Start(0))?;
                if spool.read(&mut magic)? == 4 && &magic == b"\x7fELF" {
                    findings.push(Finding::error(
                        "auditable-missing",
                        Some(&path),
                        "the SBOM says the executables carry their dependency list, and this one has no `.dep-v0` section",
                    ));
                }
                continue;
            }
            Err(e) => {
                findings.push(Finding::error(
                    "auditable-invalid",
                    Some(&path),
                    format!("its `.dep-v0` section cannot be read: {e}"),
                ));
                continue;
            }
        };
        executables += 1;
        match packages(&list) {
            Ok(pkgs) => {
                for (name, version) in pkgs {
                    if !listed.iter().any(|(n, v)| *n == name && *v == version) {
                        findings.push(Finding::error(
                            "auditable-not-in-sbom",
                            Some(&path),
                            format!("its embedded dependency list names {name} {version}, which SBOM.cdx.json does not list"),
                        ));
                    }
                }
            }
            Err(e) => findings.push(Finding::error(
                "auditable-invalid",
                Some(&path),
                format!("its `.dep-v0` list does not parse: {e}"),
            )),
        }
    }
    if executables > 0 {
        findings.push(Finding::note(
            "auditable",
            None,
            format!("{executables} executable(s) carry a dependency list, each within the SBOM"),
        ));
    }
    Ok(())
}
