//! One image's file system, as runtimes build it: layer tars applied in order (later
//! entries replace earlier ones, whiteouts remove), each entry held to the bundle's name
//! rules; what it holds (file digests, executables, the release's `MANIFEST.json`) for
//! `verify` to check. Also the rule base layers are held to at build time.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use sha2::{Digest, Sha256};

use super::LAYER_MTIME;
use crate::archive::{self, hex};
use crate::verify::Finding;

/// What the layers hold: file digests and modes by path, directories, and the release's
/// `MANIFEST.json` (its directory and bytes).
#[derive(Default)]
pub(super) struct LayerFacts {
    /// The release's directory (no leading slash): entries below it are held to the
    /// canonical headers.
    pub root: Option<String>,
    pub files: BTreeMap<String, String>,
    pub executables: BTreeSet<String>,
    pub dirs: BTreeSet<String>,
    pub manifest: Option<(String, Vec<u8>)>,
}

impl LayerFacts {
    /// Apply one layer on top of what the earlier ones left.
    pub(super) fn walk(&mut self, layer: &str, raw: &mut dyn Read, findings: &mut Vec<Finding>) {
        let mut a = tar::Archive::new(raw);
        let Ok(entries) = a.entries() else {
            findings.push(Finding::error("bad-layer", Some(layer), "not a tar"));
            return;
        };
        for entry in entries {
            let applied = entry
                .map_err(|e| (layer.to_string(), e.to_string()))
                .and_then(|mut e| self.entry(&mut e, layer, findings));
            if let Err((at, why)) = applied {
                findings.push(Finding::error(
                    "bad-layer",
                    Some(&at),
                    format!("cannot read: {why}"),
                ));
                return;
            }
        }
    }

    /// One layer entry, checked and applied. `Err((path, why))` when the layer cannot be
    /// read further.
    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        layer: &str,
        findings: &mut Vec<Finding>,
    ) -> Result<(), (String, String)> {
        let raw = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match layer_path(&raw) {
            Ok(Some(name)) => name,
            Ok(None) => return Ok(()),
            Err(why) => {
                findings.push(Finding::error(
                    "bad-name",
                    Some(&raw),
                    format!("in layer {layer}: `{raw}` {why}"),
                ));
                return Ok(());
            }
        };
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
        if let Some(gone) = whiteout(&name) {
            self.remove(&gone, name.ends_with("/.wh..wh..opq"));
            return Ok(());
        }
        // A later layer's entry replaces whatever an earlier layer had at that path.
        self.files.remove(&name);
        self.executables.remove(&name);
        if kind.is_dir() {
            self.dirs.insert(name);
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.link(name, &target, kind.is_hard_link(), findings);
        } else if kind.is_file() {
            let mode = h.mode().unwrap_or(0);
            self.file(name, mode, entry)?;
        } else {
            findings.push(Finding::error(
                "bad-kind",
                Some(&name),
                "devices, FIFOs and other special files do not belong in a release image",
            ));
        }
        Ok(())
    }

    /// A symlink or hard link: it must stay inside the image; a hard link holds its target's
    /// content (and mode), a symlink holds no file.
    fn link(&mut self, name: String, target: &str, hard: bool, findings: &mut Vec<Finding>) {
        let escapes = if target.starts_with('/') {
            target.split('/').any(|c| c == "..")
        } else {
            archive::resolve_link(&name, target).is_none() && !hard
        };
        if escapes || target.is_empty() {
            findings.push(Finding::error(
                "link-escapes",
                Some(&name),
                format!("link to `{target}` leaves the image's root"),
            ));
        }
        let target = target.trim_start_matches("./").trim_start_matches('/');
        if hard && let Some(digest) = self.files.get(target).cloned() {
            if self.executables.contains(target) {
                self.executables.insert(name.clone());
            }
            self.files.insert(name, digest);
        }
    }

    /// A regular file: its digest, whether it is executable, and the release's manifest.
    fn file(
        &mut self,
        name: String,
        mode: u32,
        content: &mut dyn Read,
    ) -> Result<(), (String, String)> {
        let mut hasher = Sha256::new();
        let mut keep = Vec::new();
        let manifest = name.ends_with("/MANIFEST.json");
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match content.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    if manifest && keep.len() < (64 << 20) {
                        keep.extend_from_slice(&buf[..n]);
                    }
                }
                Err(e) => return Err((name, e.to_string())),
            }
        }
        if manifest {
            let dir = name.trim_end_matches("/MANIFEST.json").to_string();
            self.manifest = Some((dir, keep));
        }
        if mode & 0o111 != 0 {
            self.executables.insert(name.clone());
        }
        self.files.insert(name, hex(&hasher.finalize()));
        Ok(())
    }
}

/// A layer entry's path as runtimes read it: `./`, `/` and a trailing `/` dropped, the root
/// itself (`.`, `./`, `/`: what umoci and others write) `None`; the bundle's name rules for
/// everything else. The one rule for base layers at build time and every layer in `verify`.
pub(super) fn layer_path(raw: &str) -> Result<Option<String>, String> {
    let mut name = raw;
    while let Some(rest) = name.strip_prefix("./") {
        name = rest;
    }
    let name = name.trim_start_matches('/').trim_end_matches('/');
    if name.is_empty() || name == "." {
        return Ok(None);
    }
    archive::check_entry_name(name).map_err(|why| why.to_string())?;
    Ok(Some(name.to_string()))
}

/// The error findings one layer (a base's, at build time) would get from `verify`: what
/// build refuses, so that no image is written that our own verify refuses.
pub(super) fn layer_errors(digest: &str, layer: &mut dyn Read) -> Vec<Finding> {
    let mut findings = Vec::new();
    LayerFacts::default().walk(digest, layer, &mut findings);
    findings.retain(|f| f.severity == crate::verify::Severity::Error);
    findings
}

/// The path a whiteout entry removes (`dir/.wh.name` removes `dir/name`; the opaque marker
/// `dir/.wh..wh..opq` removes what is below `dir`), or `None` for an ordinary entry.
fn whiteout(name: &str) -> Option<String> {
    let (dir, base) = name.rsplit_once('/').unwrap_or(("", name));
    let gone = base.strip_prefix(".wh.")?;
    let gone = if gone == ".wh..opq" { "" } else { gone };
    Some(match (dir, gone) {
        ("", g) => g.to_string(),
        (d, "") => d.to_string(),
        (d, g) => format!("{d}/{g}"),
    })
}

impl LayerFacts {
    /// Remove `path` (unless `below_only`) and everything below it, as a whiteout does.
    fn remove(&mut self, path: &str, below_only: bool) {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let hit = |p: &String| p.starts_with(&prefix) || (!below_only && p == path);
        self.files.retain(|p, _| !hit(p));
        self.executables.retain(|p| !hit(p));
        self.dirs.retain(|p| !hit(p));
        if self
            .manifest
            .as_ref()
            .is_some_and(|(dir, _)| hit(&format!("{dir}/MANIFEST.json")))
        {
            self.manifest = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_paths_as_runtimes_read_them() {
        let cases = [
            (".", Ok(None)),
            ("./", Ok(None)),
            ("/", Ok(None)),
            ("./etc/passwd", Ok(Some("etc/passwd"))),
            ("/usr/bin/", Ok(Some("usr/bin"))),
            ("././bin/sh", Ok(Some("bin/sh"))),
        ];
        for (raw, want) in cases {
            let want: Result<Option<String>, String> =
                want.map(|o: Option<&str>| o.map(String::from));
            assert_eq!(layer_path(raw), want, "{raw}");
        }
        assert!(layer_path("opt/../../etc/evil").is_err());
    }

    #[test]
    fn whiteouts_name_what_they_remove() {
        let cases = [
            ("app/bin/.wh.web", Some("app/bin/web")),
            ("app/.wh..wh..opq", Some("app")),
            (".wh.etc", Some("etc")),
            ("app/bin/web", None),
            ("app/bin/web.wh.x", None),
        ];
        for (name, want) in cases {
            assert_eq!(whiteout(name).as_deref(), want, "{name}");
        }
    }

    #[test]
    fn a_whiteout_removes_the_path_and_what_is_below() {
        let mut stack = LayerFacts::default();
        for p in ["app/bin/web", "app/bin/webby", "app/lib/x", "other"] {
            stack.files.insert(p.into(), "d".into());
            stack.executables.insert(p.into());
        }
        stack.remove("app/bin/web", false);
        assert!(!stack.files.contains_key("app/bin/web"));
        assert!(stack.files.contains_key("app/bin/webby"));
        stack.remove("app", true);
        assert_eq!(stack.files.keys().collect::<Vec<_>>(), ["other"]);
        assert_eq!(stack.executables.iter().collect::<Vec<_>>(), ["other"]);
    }
}
