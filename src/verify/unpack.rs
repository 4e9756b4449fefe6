//! `cargo release-bundle unpack`: verify and extract in one pass into a fresh directory next
//! to the destination, then rename it into place. Only entries that passed verification are
//! written; files are created exclusively (never through an existing path or symlink) with
//! explicit modes; nothing is renamed into place unless the whole bundle verified.
//!
//! The temporary directory is private (0700) whatever the umask, and locked while in use: a
//! later `unpack` to the same destination removes the ones left by a killed run (same owner,
//! unlocked). SIGINT and SIGTERM stop the walk and remove it.

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use camino::{Utf8Component, Utf8Path, Utf8PathBuf};

use crate::archive::{MODE_DIR, MODE_EXEC, MODE_FILE};
use crate::verify::Sink;

/// Set by the SIGINT/SIGTERM handler; checked by the walk on every chunk.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether SIGINT or SIGTERM arrived since [`catch_signals`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

extern "C" fn on_signal(_: libc::c_int) {
    // Async-signal-safe: one atomic store.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Route SIGINT and SIGTERM to [`INTERRUPTED`], so the walk stops and the temporary
/// directory is removed on the way out.
pub fn catch_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only stores to an atomic; `sa` is fully initialised
        // (zeroed, then the fields sigaction reads are set).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(signal, &sa, std::ptr::null_mut());
        }
    }
}

/// The prefix of this destination's temporary directories.
fn temp_prefix(dest: &Utf8Path) -> String {
    format!(".{}.unpack-", dest.file_name().unwrap_or("bundle"))
}

/// Remove temporary directories a killed `unpack` to `dest` left in `parent`: only real
/// directories (not symlinks) owned by this user that no running `unpack` holds locked.
fn remove_stale(parent: &Utf8Path, prefix: &str) -> Vec<Utf8PathBuf> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(parent) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| n.starts_with(prefix)) else {
            continue;
        };
        let path = parent.join(name);
        let owned_dir =
            fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_dir() && m.uid() == uid);
        // Opened without following a symlink swapped in since the check.
        let handle = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&path);
        if let (true, Ok(dir)) = (owned_dir, handle)
            && dir.try_lock().is_ok()
            && fs::remove_dir_all(&path).is_ok()
        {
            removed.push(path);
        }
    }
    removed
}

/// Writes verified entries below a private temporary directory. Failures are kept, not
/// raised, so the archive is still read to the end and every finding is reported.
pub struct Extractor {
    tmp: tempfile::TempDir,
    /// Holds the lock that marks `tmp` as in use.
    _lock: File,
    /// Dropped after `tmp` (fields drop in order), so the parents are empty by then.
    created: CreatedDirs,
    dirs: BTreeSet<String>,
    error: Option<String>,
    /// Stale temporary directories removed on the way in.
    pub removed: Vec<Utf8PathBuf>,
    /// The archive's mtime, set on every entry before the tree is moved into place.
    mtime: Option<u64>,
}

impl Extractor {
    /// A fresh, private (0700), locked directory next to `dest`, after removing stale ones.
    pub fn new(dest: &Utf8Path) -> Result<Extractor> {
        if !matches!(
            dest.components().next_back(),
            Some(Utf8Component::Normal(_))
        ) {
            bail!("`{dest}`: the destination must name a new directory (not `.`, `..` or `/`)");
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_str().is_empty() => p.to_owned(),
            _ => Utf8PathBuf::from("."),
        };
        // Missing parents are created, as `mkdir -p` would (0755), and removed again unless
        // the bundle is moved into place; the destination itself is created only by the
        // final rename.
        let created = CreatedDirs(
            parent
                .ancestors()
                .take_while(|a| !a.as_str().is_empty() && fs::symlink_metadata(a).is_err())
                .map(Utf8Path::to_owned)
                .collect(),
        );
        DirBuilder::new()
            .recursive(true)
            .mode(MODE_DIR)
            .create(&parent)
            .with_context(|| format!("`{parent}`: cannot create the parent directory"))?;
        let prefix = temp_prefix(dest);
        let removed = remove_stale(&parent, &prefix);
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(&parent)
            .with_context(|| format!("`{parent}`: cannot create a temporary directory"))?;
        let lock = File::open(tmp.path())
            .and_then(|f| f.try_lock().map(|()| f).map_err(io::Error::from))
            .with_context(|| format!("`{}`: cannot lock", tmp.path().display()))?;
        Ok(Extractor {
            tmp,
            created,
            _lock: lock,
            dirs: BTreeSet::from([String::new()]),
            error: None,
            removed,
            mtime: None,
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Parents must be directories this extractor created.
    fn parent_ok(&mut self, rel: &str) -> bool {
        let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
        if self.dirs.contains(parent) {
            return true;
        }
        self.fail(rel, io::Error::other("parent directory was not extracted"));
        false
    }

    /// Move the extracted tree into place at `dest` (which must not exist).
    pub fn finish(self, dest: &Utf8Path) -> Result<()> {
        if let Some(e) = self.error {
            bail!("`{dest}`: extraction failed: {e}");
        }
        if fs::symlink_metadata(dest).is_ok() {
            bail!("`{dest}` already exists; refusing to replace it");
        }
        fs::set_permissions(self.tmp.path(), Permissions::from_mode(MODE_DIR))
            .with_context(|| format!("`{}`: cannot set permissions", self.tmp.path().display()))?;
        if let Some(mtime) = self.mtime {
            set_mtimes(self.tmp.path(), mtime)?;
        }
        let tmp = self.tmp.keep();
        if let Err(e) = fs::rename(&tmp, dest) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e)
                .with_context(|| format!("`{dest}`: cannot move the extracted bundle into place"));
        }
        self.created.keep();
        Ok(())
    }
}

/// Parent directories this unpack created, deepest first: removed (when still empty) unless
/// the bundle was moved into place, so a refusal leaves nothing behind.
struct CreatedDirs(Vec<Utf8PathBuf>);

impl CreatedDirs {
    fn keep(mut self) {
        self.0.clear();
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Give every entry below `root` (the root included, symlinks themselves rather than their
/// targets) the archive's mtime, children before their directories, so every host serves the
/// same `Last-Modified` for the same file.
fn set_mtimes(root: &std::path::Path, mtime: u64) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let when = libc::timespec {
        tv_sec: libc::time_t::try_from(mtime).unwrap_or(libc::time_t::MAX),
        tv_nsec: 0,
    };
    let times = [when, when];
    for entry in walkdir::WalkDir::new(root).contents_first(true) {
        let entry = entry.with_context(|| format!("`{}`: cannot walk", root.display()))?;
        let path = std::ffi::CString::new(entry.path().as_os_str().as_bytes())
            .with_context(|| format!("`{}`: path holds a NUL", entry.path().display()))?;
        // SAFETY: `path` is a valid C string and `times` holds two timespecs, as utimensat
        // requires; AT_SYMLINK_NOFOLLOW sets a symlink's own time.
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                path.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("`{}`: cannot set its mtime", entry.path().display()));
        }
    }
    Ok(())
}

impl Sink for Extractor {
    fn mtime(&mut self, mtime: u64) {
        self.mtime = Some(mtime);
    }

    fn fail(&mut self, rel: &str, e: io::Error) {
        if self.error.is_none() {
            self.error = Some(format!("`{rel}`: {e}"));
        }
    }

    fn dir(&mut self, rel: &str) {
        if rel.is_empty() || !self.parent_ok(rel) {
            return;
        }
        let result = DirBuilder::new()
            .mode(MODE_DIR)
            .create(self.path(rel))
            .and_then(|()| fs::set_permissions(self.path(rel), Permissions::from_mode(MODE_DIR)));
        match result {
            Ok(()) => {
                self.dirs.insert(rel.to_string());
            }
            Err(e) => self.fail(rel, e),
        }
    }

    fn begin_file(&mut self, rel: &str) -> Option<File> {
        if !self.parent_ok(rel) {
            return None;
        }
        // create_new: O_CREAT|O_EXCL, which also refuses an existing symlink.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.path(rel))
        {
            Ok(f) => Some(f),
            Err(e) => {
                self.fail(rel, e);
                None
            }
        }
    }

    fn end_file(&mut self, rel: &str, file: File, mode: u32) {
        let mode = if mode == MODE_EXEC {
            MODE_EXEC
        } else {
            MODE_FILE
        };
        let result = file
            .set_permissions(Permissions::from_mode(mode))
            .and_then(|()| file.sync_all());
        if let Err(e) = result {
            self.fail(rel, e);
        }
    }

    fn symlink(&mut self, rel: &str, target: &str) {
        if self.parent_ok(rel)
            && let Err(e) = std::os::unix::fs::symlink(target, self.path(rel))
        {
            self.fail(rel, e);
        }
    }

    fn cancelled(&self) -> bool {
        interrupted()
    }
}
