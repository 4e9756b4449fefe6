//! The bundle's digest against what it can be checked with: `PATH.sha256` beside it and an
//! expected digest from elsewhere (`--sha256`). Only the second says where a bundle came from.

use std::io::Read;

use anyhow::{Context, Result};
use camino::Utf8Path;

use super::consistency::finding;
use super::{Finding, Severity};

pub(super) fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `PATH.sha256` (and `--sha256`) against the archive's digest.
/// What the bundle's digest was checked against: only an expected digest given from outside
/// (`--sha256`, or in future a signature) proves where a bundle came from. A sidecar lies
/// beside the bundle, and whoever could replace the one could replace the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reference {
    /// A valid signature by a key in `--allowed-signers`: origin is checked.
    Signature,
    /// `--sha256 HEX`: origin is checked, as far as that digest is trusted.
    ExpectedDigest,
    /// Only the `.sha256` beside the bundle: internal consistency, not origin.
    SidecarOnly,
    /// Nothing but the bundle's own MANIFEST.json and SHA256SUMS.
    None,
}

/// The sidecar's first line: `<64 hex>  <file name>`, naming this digest and file.
fn check_line(
    text: &str,
    sidecar: &str,
    file_name: &str,
    digest: &str,
    findings: &mut Vec<Finding>,
) {
    let line = text.lines().next().unwrap_or_default();
    let parsed = line.split_once("  ").or_else(|| line.split_once(" *"));
    match parsed {
        Some((hex, name)) if is_hex64(hex) => {
            if hex != digest {
                finding(
                    findings,
                    Severity::Error,
                    "sidecar-mismatch",
                    None,
                    format!("`{sidecar}` says {hex}, the archive's SHA-256 is {digest}"),
                );
            }
            if name != file_name {
                finding(
                    findings,
                    Severity::Warning,
                    "sidecar-name",
                    None,
                    format!("`{sidecar}` names {name:?}, not {file_name:?}"),
                );
            }
        }
        _ => finding(
            findings,
            Severity::Error,
            "sidecar-format",
            None,
            format!("`{sidecar}` is not `<64 hex>  <file name>`"),
        ),
    }
}

pub fn check_sidecar(
    path: &Utf8Path,
    digest: &str,
    expected: Option<&str>,
    findings: &mut Vec<Finding>,
) -> Result<Reference> {
    let reference = match expected {
        Some(_) => Reference::ExpectedDigest,
        None => Reference::SidecarOnly,
    };
    if let Some(hex) = expected {
        let hex = hex.trim().to_ascii_lowercase();
        if hex != digest {
            finding(
                findings,
                Severity::Error,
                "sha256",
                None,
                format!("expected SHA-256 {hex} (--sha256), the archive's is {digest}"),
            );
        }
    }
    let sidecar = format!("{path}.sha256");
    let text = match crate::util::open_regular(&sidecar) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if expected.is_none() {
                finding(
                    findings,
                    Severity::Note,
                    "no-sidecar",
                    None,
                    format!(
                        "no `{sidecar}` to check the archive against; pass --sha256 to check a known digest"
                    ),
                );
            }
            return Ok(match expected {
                Some(_) => Reference::ExpectedDigest,
                None => Reference::None,
            });
        }
        Err(e) => return Err(e).with_context(|| format!("`{sidecar}`: cannot read")),
        Ok(f) => {
            let mut text = String::new();
            f.take(4096)
                .read_to_string(&mut text)
                .with_context(|| format!("`{sidecar}`: cannot read"))?;
            text
        }
    };
    let file_name = path.file_name().unwrap_or_default();
    check_line(&text, &sidecar, file_name, digest, findings);
    Ok(reference)
}
