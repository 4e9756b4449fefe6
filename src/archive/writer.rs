//! The one place entries are encoded and written: [`TarWriter`], used by the bundle writer
//! (through compression) and by image layers.

use std::io::{self, Read, Write};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::header::{self, Kind};
use super::{BLOCK, BUFFER, MAX_MTIME, check_entry_name, check_link_target, hex};

/// Canonical tar entries (every header through [`header::encode`]: uid/gid 0, no names,
/// one mtime) written uncompressed to `out`, at full paths the caller gives in order. The
/// bundle writer and image layers both write through it.
pub struct TarWriter<W: Write> {
    out: W,
    mtime: u64,
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, mtime: u64) -> Result<Self> {
        if mtime > MAX_MTIME {
            bail!("timestamp {mtime} does not fit a ustar header");
        }
        Ok(TarWriter {
            out,
            mtime,
            buf: vec![0; BUFFER],
        })
    }

    /// One header for `full`; names and link targets checked as bundles check them.
    pub fn header(
        &mut self,
        kind: Kind,
        full: &str,
        mode: u32,
        size: u64,
        link: &str,
    ) -> Result<()> {
        check_entry_name(full).map_err(|why| anyhow::anyhow!("`{full}` {why}"))?;
        if kind == Kind::Symlink {
            check_link_target(link).map_err(|why| anyhow::anyhow!("`{full}`: symlink {why}"))?;
        }
        let entry = header::Entry {
            kind,
            path: full,
            mode,
            size,
            mtime: self.mtime,
            link,
        };
        let block = header::encode(&entry).map_err(|why| anyhow::anyhow!("`{full}` {why}"))?;
        self.out.write_all(&block)?;
        Ok(())
    }

    /// Stream exactly `size` bytes of `data` as the body of the entry just started (`label`
    /// names it in errors); its SHA-256 (hex).
    pub fn body(&mut self, label: &str, size: u64, mut data: impl Read) -> Result<String> {
        let mut hasher = Sha256::new();
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match data.read(&mut self.buf[..want]) {
                Ok(0) => {
                    bail!("`{label}` shrank while it was being bundled ({left} bytes missing)")
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read `{label}`")),
            };
            hasher.update(&self.buf[..n]);
            self.out.write_all(&self.buf[..n])?;
            left -= n as u64;
        }
        if data.read(&mut self.buf[..1])? != 0 {
            bail!("`{label}` grew while it was being bundled");
        }
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0; BLOCK][..BLOCK - rem])?;
        }
        Ok(hex(&hasher.finalize()))
    }

    /// The end-of-archive marker; the writer back.
    pub fn finish(mut self) -> Result<W> {
        self.out.write_all(&[0; 2 * BLOCK])?;
        Ok(self.out)
    }
}
