//! One file's record in the archive against its entry in MANIFEST.json, and the SBOM the
//! manifest lists: what `consistency` asks of each pair.

use std::fs::File;
use std::io;

use super::consistency::finding;
use super::record::{Record, RecordKind};
use super::target::check_executable;
use super::{Finding, Severity};
use crate::archive;
use crate::archive::manifest::{FileKind, FileRecord, Manifest};

/// An entry (as the archive has it) against its MANIFEST.json record.
pub(super) fn compare(r: &Record, f: &FileRecord, target: &str, p: &str, out: &mut Vec<Finding>) {
    match (r.kind, f.kind) {
        (RecordKind::Symlink, FileKind::Symlink) => {
            if f.target.as_deref() != Some(&r.target) {
                finding(
                    out,
                    Severity::Error,
                    "symlink-mismatch",
                    Some(p),
                    format!(
                        "manifest says target {:?}, the archive has {:?}",
                        f.target, r.target
                    ),
                );
            }
        }
        (RecordKind::File, kind) if kind != FileKind::Symlink => {
            compare_file(r, f, kind, target, p, out)
        }
        (_, kind) => finding(
            out,
            Severity::Error,
            "kind-mismatch",
            Some(p),
            format!("manifest says {kind:?}, the archive has another kind of entry").to_lowercase(),
        ),
    }
}

/// A regular file: size, mode (0755 for what runs), digest, and an executable's target.
fn compare_file(
    r: &Record,
    f: &FileRecord,
    kind: FileKind,
    target: &str,
    p: &str,
    out: &mut Vec<Finding>,
) {
    let mut error = |code: &'static str, message: String| {
        finding(out, Severity::Error, code, Some(p), message);
    };
    if r.size != f.size {
        error(
            "size-mismatch",
            format!("manifest says {} bytes, the archive has {}", f.size, r.size),
        );
    }
    let mode = format!("{:04o}", r.mode);
    if mode != f.mode {
        error(
            "mode-mismatch",
            format!("manifest says mode {}, the archive has {mode}", f.mode),
        );
    }
    let runs = matches!(
        kind,
        FileKind::Executable | FileKind::Launcher | FileKind::Hook
    );
    if runs && r.mode != u64::from(archive::MODE_EXEC) {
        error(
            "not-executable",
            format!("a {kind:?} must be mode 0755, the archive has {mode}").to_lowercase(),
        );
    }
    if f.sha256.as_deref() != Some(&r.sha256) {
        error(
            "checksum-mismatch",
            format!(
                "MANIFEST.json says {}, the content hashes to {}",
                f.sha256.as_deref().unwrap_or("nothing"),
                r.sha256
            ),
        );
    }
    if kind == FileKind::Executable
        && let Err(why) = check_executable(&r.head, target)
    {
        error(
            "target",
            format!("{why} (the manifest's target is {target})"),
        );
    }
}

/// The SBOM, when the manifest lists one, parses and names the package; a bundle without one
/// gets a warning (bundles made before SBOMs were added have none).
pub(super) fn check_sbom(
    spooled: Option<&File>,
    m: &Manifest,
    path: &str,
    findings: &mut Vec<Finding>,
) -> io::Result<Option<Vec<u8>>> {
    let Some(file) = spooled else {
        finding(
            findings,
            Severity::Warning,
            "sbom-missing",
            Some(path),
            "the bundle carries no SBOM.cdx.json".into(),
        );
        return Ok(None);
    };
    let mut bytes = Vec::new();
    let mut reader = io::BufReader::new(file);
    io::Seek::rewind(&mut reader)?;
    io::Read::read_to_end(&mut reader, &mut bytes)?;
    match crate::attest::sbom::component_names(&bytes) {
        Ok(names) if names.contains(&m.package) => {}
        Ok(_) => finding(
            findings,
            Severity::Error,
            "sbom-incomplete",
            Some(path),
            format!("the SBOM does not list the package `{}`", m.package),
        ),
        Err(e) => finding(
            findings,
            Severity::Error,
            "sbom-invalid",
            Some(path),
            format!("SBOM.cdx.json is not a CycloneDX document: {e}"),
        ),
    }
    Ok(Some(bytes))
}
