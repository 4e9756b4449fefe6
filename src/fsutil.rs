//! Small file-system helpers shared by the commands: atomic writes outside the bundle, and
//! opening a path only when it is a regular file.

use anyhow::{Context, Result};
use camino::Utf8Path;

/// Write `content` at `path` through a temporary file in the same directory, renamed into
/// place when complete (keeping the old file's permissions when there is one).
pub fn write_atomically(path: &Utf8Path, content: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_str().is_empty())
        .unwrap_or(Utf8Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in `{dir}`"))?;
    std::io::Write::write_all(&mut tmp, content)
        .with_context(|| format!("cannot write `{path}`"))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    } else {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write `{path}`"))?;
    Ok(())
}

/// Open `path` for reading only if it is a regular file (following symlinks). The open never
/// blocks: a FIFO, device or directory put where a file is expected is refused, not waited on.
pub fn open_regular(path: impl AsRef<std::path::Path>) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("is {what}, not a regular file"),
        ));
    }
    // O_NONBLOCK means nothing for regular files; leave it set.
    Ok(file)
}
