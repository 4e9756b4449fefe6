//! Cross-checks once the whole archive has been read: sidecar, manifest ⇔ SHA256SUMS ⇔
//! archive, symlink targets, and executables against the target triple.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use anyhow::{Context, Result};
use camino::Utf8Path;

use super::{Finding, Seen, Severity, Walk};
use crate::archive::manifest::{FORMAT_VERSION, FileKind, Manifest};
use crate::archive::{MANIFEST, SHA256SUMS};

#[derive(Debug, Default)]
pub struct Summary {
    pub name: Option<String>,
    pub version: Option<String>,
    pub files: usize,
    /// The parsed manifest, when it parsed.
    pub manifest: Option<Manifest>,
}

fn finding(
    findings: &mut Vec<Finding>,
    severity: Severity,
    code: &'static str,
    path: Option<&str>,
    message: String,
) {
    findings.push(Finding {
        severity,
        code,
        path: path.map(String::from),
        message,
    });
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `PATH.sha256` (and `--sha256`) against the archive's digest.
pub fn check_sidecar(
    path: &Utf8Path,
    digest: &str,
    expected: Option<&str>,
    findings: &mut Vec<Finding>,
) -> Result<()> {
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
    let text = match std::fs::File::open(&sidecar) {
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
            return Ok(());
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
    Ok(())
}

/// ELF `e_machine` for a target triple's architecture, if we know it.
fn elf_machine(arch: &str) -> Option<u16> {
    Some(match arch {
        "x86_64" => 62,
        "i386" | "i586" | "i686" => 3,
        "aarch64" => 183,
        a if a.starts_with("arm") || a.starts_with("thumb") => 40,
        a if a.starts_with("riscv64") => 243,
        "powerpc64" | "powerpc64le" => 21,
        "powerpc" => 20,
        "s390x" => 22,
        "loongarch64" => 258,
        _ => return None,
    })
}

/// Whether the first bytes of an executable fit the target triple.
pub fn check_executable(head: &[u8], target: &str) -> Result<(), String> {
    let arch = target.split('-').next().unwrap_or_default();
    if target.contains("windows") {
        return if head.starts_with(b"MZ") {
            Ok(())
        } else {
            Err("is not a PE executable".into())
        };
    }
    if target.contains("apple") {
        let cpu = match head {
            [0xcf, 0xfa, 0xed, 0xfe, a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
            [0xca, 0xfe, 0xba, 0xbe, ..] => return Ok(()),
            _ => return Err("is not a Mach-O executable".into()),
        };
        let want = match arch {
            "x86_64" => 0x0100_0007,
            "aarch64" | "arm64" => 0x0100_000c,
            _ => return Ok(()),
        };
        return if cpu == want {
            Ok(())
        } else {
            Err(format!(
                "is a Mach-O executable for CPU type {cpu:#x}, not {arch}"
            ))
        };
    }
    if !head.starts_with(b"\x7fELF") || head.len() < 20 {
        return Err("is not an ELF executable".into());
    }
    let machine = match head[5] {
        2 => u16::from_be_bytes([head[18], head[19]]),
        _ => u16::from_le_bytes([head[18], head[19]]),
    };
    match elf_machine(arch) {
        Some(want) if want != machine => Err(format!(
            "is an ELF executable for machine {machine}, not {arch} ({want})"
        )),
        _ => Ok(()),
    }
}

pub(super) fn check(walk: &Walk<'_>, file_name: &str, findings: &mut Vec<Finding>) -> Summary {
    let mut out = Summary::default();
    let Some(top) = walk.top.clone() else {
        finding(
            findings,
            Severity::Error,
            "empty",
            None,
            "the archive has no entries".into(),
        );
        return out;
    };
    let in_top = |p: &str| {
        p.strip_prefix(&top)
            .and_then(|r| r.strip_prefix('/'))
            .map(String::from)
    };
    // Entries relative to the top directory.
    let archive: BTreeMap<String, &Seen> = walk
        .seen
        .iter()
        .filter_map(|(p, s)| Some((in_top(p)?, s)))
        .collect();
    out.files = archive
        .values()
        .filter(|s| matches!(s, Seen::File { .. }))
        .count();
    let full = |rel: &str| format!("{top}/{rel}");

    for (rel, seen) in &archive {
        if let Seen::Symlink { target } = seen {
            let resolved = crate::archive::resolve_link(rel, target);
            let exists = resolved
                .as_deref()
                .is_some_and(|r| r.is_empty() || walk.seen.contains_key(&full(r)));
            if !exists {
                finding(
                    findings,
                    Severity::Error,
                    "symlink-dangling",
                    Some(&full(rel)),
                    format!("symlink target {target:?} is not in the bundle"),
                );
            }
        }
    }

    // SHA256SUMS ⇔ archive.
    match &walk.sums {
        None => finding(
            findings,
            Severity::Error,
            "sums-missing",
            Some(&full(SHA256SUMS)),
            "the archive has no SHA256SUMS".into(),
        ),
        Some(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let mut listed = BTreeSet::new();
            for (i, line) in text.lines().enumerate() {
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
                if !listed.insert(rel.to_string()) {
                    finding(
                        findings,
                        Severity::Error,
                        "sums-duplicate",
                        Some(&full(rel)),
                        "listed twice in SHA256SUMS".into(),
                    );
                }
                match archive.get(rel) {
                    Some(Seen::File { sha256, .. }) if sha256 != hex => finding(
                        findings,
                        Severity::Error,
                        "checksum-mismatch",
                        Some(&full(rel)),
                        format!("SHA256SUMS says {hex}, the content hashes to {sha256}"),
                    ),
                    Some(Seen::File { .. }) => {}
                    _ => finding(
                        findings,
                        Severity::Error,
                        "missing",
                        Some(&full(rel)),
                        "listed in SHA256SUMS but not a file in the archive".into(),
                    ),
                }
            }
            for (rel, seen) in &archive {
                if matches!(seen, Seen::File { .. }) && rel != SHA256SUMS && !listed.contains(rel) {
                    finding(
                        findings,
                        Severity::Error,
                        "unlisted",
                        Some(&full(rel)),
                        "file in the archive but not in SHA256SUMS".into(),
                    );
                }
            }
        }
    }

    // MANIFEST.json ⇔ archive.
    let Some(bytes) = &walk.manifest else {
        finding(
            findings,
            Severity::Error,
            "manifest-missing",
            Some(&full(MANIFEST)),
            "the archive has no MANIFEST.json".into(),
        );
        return out;
    };
    let manifest: Manifest = match serde_json::from_slice(bytes) {
        Ok(m) => m,
        Err(e) => {
            finding(
                findings,
                Severity::Error,
                "manifest-invalid",
                Some(&full(MANIFEST)),
                format!("MANIFEST.json does not parse: {e}"),
            );
            return out;
        }
    };
    let m = &manifest;
    out.name = Some(m.name.clone());
    out.version = Some(m.version.clone());
    out.manifest = Some(m.clone());
    let mpath = full(MANIFEST);
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
    let mut listed = BTreeSet::new();
    for f in &m.files {
        let p = full(&f.path);
        if !listed.insert(f.path.clone()) {
            finding(
                findings,
                Severity::Error,
                "manifest-duplicate",
                Some(&p),
                "listed twice in MANIFEST.json".into(),
            );
            continue;
        }
        match (archive.get(&f.path), f.kind) {
            (None, _) => finding(
                findings,
                Severity::Error,
                "missing",
                Some(&p),
                "listed in MANIFEST.json but not in the archive".into(),
            ),
            (Some(Seen::Symlink { target }), FileKind::Symlink) => {
                if f.target.as_deref() != Some(target) {
                    finding(
                        findings,
                        Severity::Error,
                        "symlink-mismatch",
                        Some(&p),
                        format!(
                            "manifest says target {:?}, the archive has {target:?}",
                            f.target
                        ),
                    );
                }
            }
            (
                Some(Seen::File {
                    size,
                    mode,
                    sha256,
                    head,
                }),
                kind,
            ) if kind != FileKind::Symlink => {
                if *size != f.size {
                    finding(
                        findings,
                        Severity::Error,
                        "size-mismatch",
                        Some(&p),
                        format!("manifest says {} bytes, the archive has {size}", f.size),
                    );
                }
                let mode = format!("{mode:04o}");
                if mode != f.mode {
                    finding(
                        findings,
                        Severity::Error,
                        "mode-mismatch",
                        Some(&p),
                        format!("manifest says mode {}, the archive has {mode}", f.mode),
                    );
                }
                if matches!(
                    kind,
                    FileKind::Executable | FileKind::Launcher | FileKind::Hook
                ) && mode != "0755"
                {
                    finding(
                        findings,
                        Severity::Error,
                        "not-executable",
                        Some(&p),
                        format!("a {kind:?} must be mode 0755, the archive has {mode}")
                            .to_lowercase(),
                    );
                }
                if f.sha256.as_deref() != Some(sha256) {
                    finding(
                        findings,
                        Severity::Error,
                        "checksum-mismatch",
                        Some(&p),
                        format!(
                            "MANIFEST.json says {}, the content hashes to {sha256}",
                            f.sha256.as_deref().unwrap_or("nothing")
                        ),
                    );
                }
                if kind == FileKind::Executable
                    && let Err(why) = check_executable(head, &m.target)
                {
                    finding(
                        findings,
                        Severity::Error,
                        "target",
                        Some(&p),
                        format!("{why} (the manifest's target is {})", m.target),
                    );
                }
            }
            (Some(_), kind) => finding(
                findings,
                Severity::Error,
                "kind-mismatch",
                Some(&p),
                format!("manifest says {kind:?}, the archive has another kind of entry")
                    .to_lowercase(),
            ),
        }
    }
    if let Some(l) = m.files.iter().find(|f| f.kind == FileKind::Launcher)
        && l.path != format!("bin/{}", m.name)
    {
        finding(
            findings,
            Severity::Error,
            "launcher",
            Some(&full(&l.path)),
            format!("the launcher must be `bin/{}`", m.name),
        );
    }
    for (rel, seen) in &archive {
        let metadata = rel == MANIFEST || rel == SHA256SUMS;
        if !matches!(seen, Seen::Dir) && !metadata && !listed.contains(rel) {
            finding(
                findings,
                Severity::Error,
                "unlisted",
                Some(&full(rel)),
                "in the archive but not in MANIFEST.json".into(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_targets() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18] = 62;
        assert!(check_executable(&elf, "x86_64-unknown-linux-gnu").is_ok());
        assert_eq!(
            check_executable(&elf, "aarch64-unknown-linux-gnu").unwrap_err(),
            "is an ELF executable for machine 62, not aarch64 (183)"
        );
        assert!(check_executable(b"#!/bin/sh\n", "x86_64-unknown-linux-gnu").is_err());
        assert!(check_executable(b"MZ\x90\0", "x86_64-pc-windows-msvc").is_ok());
        let macho = [0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0, 0, 0x01];
        assert!(check_executable(&macho, "aarch64-apple-darwin").is_ok());
        assert!(check_executable(&macho, "x86_64-apple-darwin").is_err());
    }
}
