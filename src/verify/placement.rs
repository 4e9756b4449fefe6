//! Where an entry goes in the bundle: below the one top directory, in canonical order
//! (body sorted bytewise, then MANIFEST.json, then SHA256SUMS), under parents seen before it
//! and never through a symlink, with no name that clashes but for case.

use super::checker::Checker;
use crate::archive::header::{TYPE_DIR, TYPE_SYMLINK};
use crate::archive::read::RawHeader;
use crate::archive::{MANIFEST, SHA256SUMS, Section};

impl Checker<'_> {
    /// Top directory, containment and canonical order; whether the entry may be extracted
    /// (in order and not a duplicate).
    fn check_place(&mut self, path: &str, kind: u8) -> bool {
        let Some(top) = self.top.clone() else {
            self.section = Section::Body;
            if kind == TYPE_DIR && !path.contains('/') {
                self.top = Some(path.to_string());
                return true;
            }
            self.top = Some(path.split('/').next().unwrap_or(path).to_string());
            self.canonical = false;
            self.error(
                "order",
                path,
                "the first entry must be the bundle's top directory",
            );
            return false;
        };
        let Some(rel) = path.strip_prefix(&top).and_then(|r| r.strip_prefix('/')) else {
            let message = if path == top {
                "the top directory appears twice".to_string()
            } else {
                format!("entry is outside the top directory `{top}/`")
            };
            self.error(
                if path == top {
                    "duplicate"
                } else {
                    "outside-top"
                },
                path,
                message,
            );
            self.canonical = false;
            return false;
        };
        if self.section == Section::Body && self.last_body.as_deref() == Some(rel) {
            self.error("duplicate", path, "duplicate entry");
            self.canonical = false;
            return false;
        }
        let next = Section::of(rel);
        let in_order = match (self.section, next) {
            (Section::Body, Section::Body) => {
                self.last_body.as_deref().is_none_or(|last| last < rel)
            }
            (Section::Body, Section::Manifest) | (Section::Manifest, Section::Sums) => true,
            _ => false,
        };
        if !in_order {
            let why = if next != Section::Body {
                format!(
                    "`{MANIFEST}` and `{SHA256SUMS}` must be the last two entries, in that order"
                )
            } else {
                "entries must be sorted bytewise by path, before MANIFEST.json and SHA256SUMS"
                    .to_string()
            };
            self.error("order", path, format!("out of canonical order: {why}"));
            self.canonical = false;
        }
        if next == Section::Body {
            self.last_body = Some(rel.to_string());
        }
        self.section = self.section.max(next);
        in_order
    }

    /// Parents must be directories seen earlier; never a symlink (write-through).
    fn check_parents(&mut self, path: &str) -> bool {
        let mut parents: Vec<&str> =
            std::iter::successors(path.rsplit_once('/').map(|(p, _)| p), |p| {
                p.rsplit_once('/').map(|(p, _)| p)
            })
            .collect();
        parents.reverse();
        for p in parents {
            if self.dirs.contains(p) {
                continue;
            }
            if self.symlinks.contains(p) {
                self.error(
                    "through-symlink",
                    path,
                    format!("is written through the symlink `{p}`"),
                );
            } else {
                self.error(
                    "missing-parent",
                    path,
                    format!("its parent `{p}` has no directory entry before it"),
                );
            }
            return false;
        }
        true
    }

    /// Where a usable entry goes: in order, under existing parents, no case clash, a symlink
    /// that stays inside. Whether it may be extracted, and a symlink's target.
    pub(super) fn placement(
        &mut self,
        path: &str,
        kind: u8,
        h: &RawHeader,
    ) -> (bool, Option<String>) {
        let placed = self.check_place(path, kind);
        let parents = self.check_parents(path);
        if let Some(other) = self.case_clashes.clash(path) {
            self.error(
                "case-duplicate",
                path,
                format!("`{other}` has the same name but for case (breaks extraction on macOS and Windows)"),
            );
        }
        let mut writable = parents && placed;
        let mut link_target = None;
        if kind == TYPE_SYMLINK {
            link_target = self.check_link(path, h.link_bytes());
            writable &= link_target.is_some();
        }
        (writable, link_target)
    }

    /// `path` below the top directory (`""` for the top directory itself).
    pub(super) fn relative(&self, path: &str) -> Option<String> {
        let top = self.top.as_deref()?;
        if path == top {
            Some(String::new())
        } else {
            path.strip_prefix(top)?.strip_prefix('/').map(String::from)
        }
    }
}
