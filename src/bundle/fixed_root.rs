//! Building a workspace that sits inside a larger repository through a fixed path.
//!
//! cargo hashes a path dependency's absolute path into symbol names unless it lies inside the
//! workspace, so a workspace in `repo/examples/` depending on `repo/axum/` gives other bytes in
//! every checkout, even with the repository root remapped. Building through a symlink at a
//! path that is the same everywhere (`/tmp/cargo-release-bundle/repo` -> the checkout's
//! repository root) gives cargo the same paths in every checkout; the link's path is then
//! remapped like the workspace's. The link is ours alone while we build: it is taken under a
//! lock, never followed if another user owns it, and replaced by a rename.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

/// The fixed path, the same on every machine (`CARGO_RELEASE_BUNDLE_FIXED_ROOT` overrides it;
/// bytes then match only builds that use the same override).
pub const DEFAULT: &str = "/tmp/cargo-release-bundle/repo";

/// A symlink at the fixed path to this checkout's repository root, held under a lock until
/// dropped.
pub struct FixedRoot {
    link: Utf8PathBuf,
    repo: Utf8PathBuf,
    _lock: File,
}

fn uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

impl FixedRoot {
    /// Point the fixed path at `repo`, waiting for another build of ours that uses it.
    pub fn acquire(repo: &Utf8Path) -> Result<FixedRoot> {
        let link = std::env::var("CARGO_RELEASE_BUNDLE_FIXED_ROOT")
            .map(Utf8PathBuf::from)
            .unwrap_or_else(|_| Utf8PathBuf::from(DEFAULT));
        let base = link
            .parent()
            .filter(|p| !p.as_str().is_empty())
            .with_context(|| format!("`{link}`: the fixed build path needs a parent directory"))?
            .to_owned();
        let help = "help: set CARGO_RELEASE_BUNDLE_FIXED_ROOT to a path of your own (the bytes then match builds that use the same path)";
        match fs::symlink_metadata(&base) {
            Ok(m) if m.file_type().is_dir() => {
                let shared = m.permissions().mode() & 0o1777 == 0o1777;
                if m.uid() != uid() && !shared {
                    bail!(
                        "`{base}` belongs to uid {} and is not a shared (1777) directory\n{help}",
                        m.uid()
                    );
                }
            }
            Ok(_) => bail!("`{base}` is not a directory\n{help}"),
            Err(_) => {
                fs::create_dir_all(&base).with_context(|| format!("`{base}`: cannot create"))?;
                // Shared like /tmp: others may build through their own link; the sticky bit
                // keeps them from touching ours.
                fs::set_permissions(&base, fs::Permissions::from_mode(0o1777))
                    .with_context(|| format!("`{base}`: cannot set its mode"))?;
            }
        }
        let lock_path = Utf8PathBuf::from(format!("{link}.lock"));
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o666)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&lock_path)
            .or_else(|_| {
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&lock_path)
            })
            .with_context(|| format!("`{lock_path}`: cannot open the lock\n{help}"))?;
        lock.lock()
            .with_context(|| format!("`{lock_path}`: cannot lock"))?;
        if let Ok(m) = fs::symlink_metadata(&link)
            && (!m.file_type().is_symlink() || m.uid() != uid())
        {
            bail!(
                "`{link}` exists and is not a symlink of yours (uid {}); refusing to build through it\n{help}",
                m.uid()
            );
        }
        let temp = Utf8PathBuf::from(format!("{link}.{}", std::process::id()));
        let _ = fs::remove_file(&temp);
        std::os::unix::fs::symlink(repo, &temp)
            .with_context(|| format!("`{temp}`: cannot create a symlink"))?;
        fs::rename(&temp, &link)
            .with_context(|| format!("`{link}`: cannot put the symlink in place"))?;
        Ok(FixedRoot {
            link,
            repo: repo.to_owned(),
            _lock: lock,
        })
    }

    /// The fixed path (the link).
    pub fn path(&self) -> &Utf8Path {
        &self.link
    }

    /// `real` (inside the repository) as seen through the fixed path.
    pub fn through(&self, real: &Utf8Path) -> Option<Utf8PathBuf> {
        real.strip_prefix(&self.repo)
            .ok()
            .map(|rel| self.link.join(rel))
    }
}

impl Drop for FixedRoot {
    fn drop(&mut self) {
        // Still under the lock: the link is ours.
        let _ = fs::remove_file(&self.link);
    }
}
