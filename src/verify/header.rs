//! Per-entry checks on one header before anything is derived from it: the name, the
//! canonical header fields (owner, mode, mtime, device numbers, magic) and symlink targets.

use super::{Checker, RawHeader};
use crate::archive::{self, header::Kind};

fn show(v: Option<u64>) -> String {
    v.map_or("?".into(), |n| n.to_string())
}

impl Checker<'_> {
    /// Name checks; returns the UTF-8 path when it is safe to use.
    pub(super) fn check_name(&mut self, raw: &[u8]) -> Option<String> {
        let shown = String::from_utf8_lossy(raw).into_owned();
        let Ok(path) = String::from_utf8(raw.to_vec()) else {
            self.error("name-not-utf8", &shown, "entry name is not UTF-8");
            return None;
        };
        if let Err(why) = archive::check_entry_name(&path) {
            let shown = shown.escape_debug().to_string();
            self.error("unsafe-name", &shown, format!("entry name {why}"));
            return None;
        }
        Some(path)
    }

    pub(super) fn check_header(&mut self, h: &RawHeader, path: &str, kind: u8) -> bool {
        let before = self.findings.len();
        let ok = self.check_header_values(h, path, kind);
        // Values that pass can still be spelled differently from what the writer produces
        // (another name/prefix split, bytes after a string's NUL, padding): refuse those too.
        if ok
            && self.findings.len() == before
            && let Some(fields) = h.noncanonical_fields()
            && !fields.is_empty()
        {
            self.error(
                "non-canonical-header",
                path,
                format!(
                    "header field(s) {} differ from the bytes the bundler writes for this entry",
                    fields.join(", ")
                ),
            );
        }
        ok
    }

    /// Ustar, owner, device numbers, the bundle's one mtime, a mode of this kind's set;
    /// false when the mode cannot be read (nothing else can be judged).
    fn check_header_values(&mut self, h: &RawHeader, path: &str, kind: u8) -> bool {
        if !h.is_ustar() {
            self.error(
                "not-ustar",
                path,
                "header is not plain ustar (magic `ustar\\0`, version `00`)",
            );
        }
        self.check_owner_and_device(h, path);
        if let Some(mtime) = self.number(path, "mtime", h.mtime()) {
            self.check_mtime(path, mtime);
        }
        let Some(mode) = self.number(path, "mode", h.mode()) else {
            return false;
        };
        self.check_mode(path, kind, mode);
        true
    }

    /// A numeric header field's value, or a `bad-header` finding naming it.
    fn number(&mut self, path: &str, what: &str, value: Result<u64, String>) -> Option<u64> {
        value
            .map_err(|e| self.error("bad-header", path, format!("{what} field {e}")))
            .ok()
    }

    /// Owned by 0/0 with empty names; device numbers 0/0.
    fn check_owner_and_device(&mut self, h: &RawHeader, path: &str) {
        let (uid, gid) = (
            self.number(path, "uid", h.uid()),
            self.number(path, "gid", h.gid()),
        );
        if uid != Some(0) || gid != Some(0) {
            self.error(
                "owner",
                path,
                format!("expected uid/gid 0/0, found {}/{}", show(uid), show(gid)),
            );
        }
        if !h.uname().is_empty() || !h.gname().is_empty() {
            let (u, g) = (
                String::from_utf8_lossy(h.uname()),
                String::from_utf8_lossy(h.gname()),
            );
            self.error(
                "owner-name",
                path,
                format!("expected empty user/group names, found {u:?}/{g:?}"),
            );
        }
        let (major, minor) = (
            self.number(path, "devmajor", h.dev_major()),
            self.number(path, "devminor", h.dev_minor()),
        );
        if major != Some(0) || minor != Some(0) {
            let found = format!("{}/{}", show(major), show(minor));
            let message = format!("expected device numbers 0/0, found {found}");
            self.error("device-numbers", path, message);
        }
    }

    /// Every entry has the first entry's mtime (which extraction then gives directories).
    fn check_mtime(&mut self, path: &str, mtime: u64) {
        match self.mtime {
            None => {
                self.mtime = Some(mtime);
                if let Some(sink) = self.extract.as_deref_mut() {
                    sink.mtime(mtime);
                }
            }
            Some(first) if first != mtime => self.error(
                "mtime",
                path,
                format!("expected the bundle's single mtime {first}, found {mtime}"),
            ),
            Some(_) => {}
        }
    }

    /// No setuid, setgid or sticky bit; otherwise one of the modes this kind may have.
    fn check_mode(&mut self, path: &str, kind: u8, mode: u64) {
        if mode & 0o7000 != 0 {
            self.error(
                "special-mode",
                path,
                format!("mode {mode:04o} has setuid, setgid or sticky bits"),
            );
            return;
        }
        let allowed = Kind::from_typeflag(kind).unwrap_or(Kind::File).modes();
        if !allowed.iter().any(|&m| u64::from(m) == mode) {
            let want: Vec<String> = allowed.iter().map(|m| format!("{m:04o}")).collect();
            self.error(
                "mode",
                path,
                format!("expected mode {}, found {mode:04o}", want.join(" or ")),
            );
        }
    }

    pub(super) fn check_link(&mut self, path: &str, target: &[u8]) -> Option<String> {
        let Ok(target) = String::from_utf8(target.to_vec()) else {
            self.error("symlink", path, "symlink target is not UTF-8");
            return None;
        };
        let top = self.top.clone().unwrap_or_default();
        if let Err(why) = archive::check_link_target(&target) {
            self.error(
                "symlink",
                path,
                format!("symlink {why}: it must be a plain relative path"),
            );
            return None;
        }
        let rel = path
            .strip_prefix(&top)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(path);
        if archive::resolve_link(rel, &target).is_none() {
            self.error(
                "symlink-escape",
                path,
                format!("symlink target {target:?} leaves the bundle"),
            );
            return None;
        }
        Some(target)
    }
}
