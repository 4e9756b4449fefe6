//! The pieces one tar entry passes through in the checker: why an entry type is refused,
//! where a usable entry lands, the taps every chunk of a regular file feeds, and the limits
//! each chunk is held to.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use sha2::{Digest, Sha256};

use std::sync::atomic::{AtomicU64, Ordering};

use super::leaks::LeakScanner;
use super::{Limits, Sink};
use crate::archive::header::{
    TYPE_BLOCK_DEVICE, TYPE_CHAR_DEVICE, TYPE_DIR, TYPE_FIFO, TYPE_GNU_LONGLINK, TYPE_GNU_LONGNAME,
    TYPE_GNU_SPARSE, TYPE_HARDLINK, TYPE_OLD_REGULAR, TYPE_PAX, TYPE_PAX_GLOBAL, TYPE_REGULAR,
    TYPE_SYMLINK,
};

/// Where an entry that passed its header checks lands.
pub(super) struct Placed {
    /// Its full path, when it is usable (an allowed type, a sound header, a good name).
    pub(super) path: Option<String>,
    /// Below the top directory.
    pub(super) rel_path: Option<String>,
    /// Whether it may be extracted.
    pub(super) writable: bool,
    pub(super) link_target: Option<String>,
}

/// What every chunk of a regular file passes through.
pub(super) struct Taps {
    pub(super) hasher: Sha256,
    /// The first 64 bytes (for recognising executables).
    pub(super) head: Vec<u8>,
    pub(super) scanner: Option<LeakScanner>,
    /// The metadata spool (MANIFEST.json, SHA256SUMS, the SBOM).
    pub(super) keep: Option<BufWriter<File>>,
    /// The extraction sink's file.
    pub(super) out: Option<File>,
    pub(super) write_error: Option<io::Error>,
    pub(super) spool_error: Option<io::Error>,
}

impl Taps {
    pub(super) fn feed(&mut self, data: &[u8]) {
        self.hasher.update(data);
        if self.head.len() < 64 {
            let more = data.len().min(64 - self.head.len());
            self.head.extend_from_slice(&data[..more]);
        }
        if let Some(s) = self.scanner.as_mut() {
            s.feed(data);
        }
        if let Some(k) = self.keep.as_mut()
            && let Err(e) = k.write_all(data)
        {
            self.spool_error = Some(e);
            self.keep = None;
        }
        if let Some(f) = self.out.as_mut()
            && let Err(e) = io::Write::write_all(f, data)
        {
            self.write_error = Some(e);
            self.out = None;
        }
    }
}

/// Why an entry type is refused (code, reason); `None` for files, directories and symlinks.
pub(super) fn refusal(kind: u8) -> Option<(&'static str, &'static str)> {
    match kind {
        TYPE_REGULAR | TYPE_DIR | TYPE_SYMLINK => None,
        TYPE_OLD_REGULAR => Some((
            "old-type",
            "old-style regular file (typeflag NUL); the writer uses `0`",
        )),
        TYPE_HARDLINK => Some(("hard-link", "hard link entries are not allowed")),
        TYPE_CHAR_DEVICE | TYPE_BLOCK_DEVICE => Some(("device", "device entries are not allowed")),
        TYPE_FIFO => Some(("fifo", "FIFO entries are not allowed")),
        TYPE_PAX | TYPE_PAX_GLOBAL => Some((
            "pax-extension",
            "PAX extended headers are never written by the bundler",
        )),
        TYPE_GNU_LONGNAME | TYPE_GNU_LONGLINK => Some((
            "gnu-extension",
            "GNU long-name entries are never written by the bundler",
        )),
        TYPE_GNU_SPARSE => Some(("sparse", "sparse entries are not allowed")),
        _ => Some(("entry-type", "unknown entry type")),
    }
}

/// When the sink asks the checker to stop, the finding that says so.
pub(super) fn cancelled(sink: Option<&dyn Sink>) -> Option<(&'static str, String)> {
    sink.filter(|s| s.cancelled())
        .map(|_| ("interrupted", "interrupted; stopped reading".to_string()))
}

/// The limit `decompressed` bytes (read so far) break, with a message, if any.
pub(super) fn limit_hit(
    limits: &Limits,
    compressed: &AtomicU64,
    decompressed: u64,
) -> Option<(&'static str, String)> {
    let compressed = compressed.load(Ordering::Relaxed).max(1);
    if decompressed > limits.max_size {
        let max = limits.max_size;
        return Some((
            "limit-size",
            format!("decompresses to more than {max} bytes; refusing to read further"),
        ));
    }
    if decompressed > limits.ratio_floor && decompressed / compressed > limits.max_ratio {
        return Some((
            "limit-ratio",
            format!(
                "{compressed} compressed bytes expand to {decompressed} (more than {}x): refusing to read further (compression bomb?)",
                limits.max_ratio
            ),
        ));
    }
    None
}
