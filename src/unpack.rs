//! `cargo release-bundle unpack`: verify and extract in one pass into a fresh directory next
//! to the destination, then rename it into place. Only entries that passed verification are
//! written; files are created exclusively (never through an existing path or symlink) with
//! explicit modes; nothing is renamed into place unless the whole bundle verified.

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::archive::{MODE_DIR, MODE_EXEC, MODE_FILE};
use crate::cli::UnpackOpts;
use crate::shell::Shell;
use crate::verify;

/// Writes verified entries below a private temporary directory. Failures are kept, not
/// raised, so the archive is still read to the end and every finding is reported.
pub struct Extractor {
    tmp: tempfile::TempDir,
    dirs: BTreeSet<String>,
    error: Option<String>,
}

impl Extractor {
    /// A fresh, private (0700) directory next to `dest`.
    pub fn new(dest: &Utf8Path) -> Result<Extractor> {
        let parent = match dest.parent() {
            Some(p) if !p.as_str().is_empty() => p.to_owned(),
            _ => Utf8PathBuf::from("."),
        };
        let name = dest.file_name().unwrap_or("bundle");
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.unpack-"))
            .tempdir_in(&parent)
            .with_context(|| format!("`{parent}`: cannot create a temporary directory"))?;
        Ok(Extractor {
            tmp,
            dirs: BTreeSet::from([String::new()]),
            error: None,
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn fail(&mut self, rel: &str, e: io::Error) {
        if self.error.is_none() {
            self.error = Some(format!("`{rel}`: {e}"));
        }
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

    pub fn dir(&mut self, rel: &str) {
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

    pub fn begin_file(&mut self, rel: &str) -> Option<File> {
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

    pub fn end_file(&mut self, rel: &str, file: File, mode: u32) {
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

    pub fn symlink(&mut self, rel: &str, target: &str) {
        if self.parent_ok(rel)
            && let Err(e) = std::os::unix::fs::symlink(target, self.path(rel))
        {
            self.fail(rel, e);
        }
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
        let tmp = self.tmp.keep();
        if let Err(e) = fs::rename(&tmp, dest) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e)
                .with_context(|| format!("`{dest}`: cannot move the extracted bundle into place"));
        }
        Ok(())
    }
}

/// `unpack PATH --to DIR`: 0 installed, 1 refused (findings, or DIR exists), 2 I/O error.
pub fn run(opts: &UnpackOpts, shell: &Shell) -> Result<u8> {
    let dest = &opts.to;
    if fs::symlink_metadata(dest).is_ok() {
        shell.error(format!(
            "`{dest}` already exists; unpack creates a new directory"
        ));
        return Ok(1);
    }
    let mut extractor = Extractor::new(dest)?;
    let report = verify::verify_file(
        &opts.path,
        opts.check.sha256.as_deref(),
        verify::limits(&opts.check),
        Some(&mut extractor),
    )?;
    verify::print(&report, &opts.check, shell);
    if !report.passes(opts.check.strict) {
        shell.error(format!(
            "`{}` did not verify; nothing was installed",
            opts.path
        ));
        return Ok(1);
    }
    extractor.finish(dest)?;
    shell.status(
        "Unpacked",
        format!("{} into {dest}", opts.path.file_name().unwrap_or_default()),
    );
    Ok(0)
}
