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
    // The old file's mode, when it is a regular file (a planted symlink is replaced, and
    // what it points to is neither read nor written).
    if let Ok(meta) = std::fs::symlink_metadata(path).and_then(|m| {
        if m.file_type().is_file() {
            Ok(m)
        } else {
            Err(std::io::Error::other("not a regular file"))
        }
    }) {
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

/// [`open_regular`], refusing a symbolic link as the last component (`O_NOFOLLOW`): for
/// inputs that are published elsewhere, so a planted link cannot publish another file.
pub fn open_regular_nofollow(path: impl AsRef<std::path::Path>) -> std::io::Result<std::fs::File> {
    let path = path.as_ref();
    if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is a symbolic link; refusing to follow it",
        ));
    }
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    Ok(file)
}

/// Copy `source` to `dest` through a fresh temporary file in `dest`'s directory (random name,
/// created exclusively), renamed into place: nothing planted at a predictable name or at
/// `dest` (a symlink) is followed, and
/// `source` itself is read only if it is not a link. The content streams; `mode` is set before the rename.
pub fn copy_atomically(source: &Utf8Path, dest: &Utf8Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = dest
        .parent()
        .filter(|d| !d.as_str().is_empty())
        .unwrap_or(Utf8Path::new("."));
    let mut input =
        open_regular_nofollow(source).with_context(|| format!("cannot read `{source}`"))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in `{dir}`"))?;
    std::io::copy(&mut input, &mut tmp)
        .with_context(|| format!("cannot copy `{source}` to `{dir}`"))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of a temporary file in `{dir}`"))?;
    tmp.persist(dest)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move `{dest}` into place"))?;
    Ok(())
}

/// SHA-256 (hex) of a regular file, streamed.
pub fn sha256_of(path: &Utf8Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = open_regular(path).with_context(|| format!("cannot read `{path}`"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match std::io::Read::read(&mut file, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read `{path}`")),
        };
        hasher.update(&buf[..n]);
    }
    Ok(crate::archive::hex(&hasher.finalize()))
}
/// A path as the user should see it: relative to the working directory when below it.
pub fn display_path(path: &camino::Utf8Path) -> camino::Utf8PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| camino::Utf8PathBuf::from_path_buf(cwd).ok())
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(camino::Utf8Path::to_owned))
        .filter(|p| !p.as_str().is_empty())
        .unwrap_or_else(|| path.to_owned())
}

/// A Unix time as `2026-12-01T05:30:00Z`.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_times() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc(1_795_930_200), "2026-11-29T05:30:00Z");
    }
}
