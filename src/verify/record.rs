//! What verify keeps of each entry for the cross-checks: a [`Record`] per entry inside the top
//! directory, spooled as JSON lines to an anonymous temporary file, and the symlinks (kept in
//! memory until the end, to resolve them through each other).

use std::fs::File;
use std::io;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    Dir,
    File,
    Symlink,
}

/// What the cross-checks need of one entry inside the top directory. Spooled to a temporary
/// file, one JSON line each, in archive order: memory does not grow with the entry count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Relative to the top directory.
    pub path: String,
    pub kind: RecordKind,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub mode: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// The first bytes of a file that starts like an executable (ELF, PE, Mach-O), for the
    /// target check; empty for other files, which fail that check the same way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub head: Vec<u8>,
}

/// A symlink, kept until the end to resolve it through the others and check that its target
/// is in the bundle.
#[derive(Debug, Clone)]
pub struct Link {
    /// Relative to the top directory.
    pub path: String,
    pub target: String,
}

/// An anonymous temporary file for what verification spools; errors name the directory.
pub fn spool() -> io::Result<File> {
    tempfile::tempfile().map_err(|e| {
        let dir = std::env::temp_dir();
        io::Error::new(
            e.kind(),
            format!(
                "cannot create a temporary file in `{}` (set TMPDIR): {e}",
                dir.display()
            ),
        )
    })
}
