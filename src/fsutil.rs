//! Small file-system helpers shared by the commands that write outside the bundle itself.

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
