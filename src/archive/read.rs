//! Reading bundles back, for verification: a strict ustar block reader that reports what it
//! sees (it never interprets PAX/GNU extensions, never follows anything, never writes), and a
//! counting reader so callers can bound decompression ratios.

use std::io::{self, Read};

use super::BLOCK;

pub use super::header::RawHeader;

/// What follows the end-of-archive marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trailer {
    /// Exactly the two zero blocks the writer produces.
    Canonical,
    /// More zero padding than the writer produces.
    ExtraZeros(u64),
    /// Non-zero data after the end-of-archive marker.
    Data,
}

/// Reads tar blocks from a decompressed stream.
pub struct TarReader<R> {
    inner: R,
    /// Decompressed bytes consumed so far.
    pub offset: u64,
    buf: Vec<u8>,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            offset: 0,
            buf: vec![0; 256 * 1024],
        }
    }

    fn block(&mut self) -> io::Result<[u8; BLOCK]> {
        let mut b = [0u8; BLOCK];
        self.inner.read_exact(&mut b)?;
        self.offset += BLOCK as u64;
        Ok(b)
    }

    /// The next header, or `Ok(None)` at the end-of-archive marker (whose trailer is then
    /// available from [`TarReader::trailer`]). A truncated stream is an `UnexpectedEof` error.
    pub fn next_header(&mut self) -> io::Result<Option<RawHeader>> {
        let bytes = self.block()?;
        if bytes.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        Ok(Some(RawHeader { bytes }))
    }

    /// After the first zero block: check the rest of the stream.
    pub fn trailer(&mut self) -> io::Result<Trailer> {
        let mut zeros = 0u64;
        let mut saw_data = false;
        loop {
            let n = match self.inner.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.offset += n as u64;
            if self.buf[..n].iter().any(|&b| b != 0) {
                saw_data = true;
                break;
            }
            zeros += n as u64;
        }
        Ok(if saw_data {
            Trailer::Data
        } else if zeros == BLOCK as u64 {
            Trailer::Canonical
        } else if zeros < BLOCK as u64 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the end-of-archive marker is incomplete",
            ));
        } else {
            Trailer::ExtraZeros(zeros - BLOCK as u64)
        })
    }

    /// Stream `size` bytes of content (plus padding) to `sink`.
    pub fn content(
        &mut self,
        size: u64,
        mut sink: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        let mut left = padded;
        let mut data_left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            self.inner.read_exact(&mut self.buf[..want])?;
            self.offset += want as u64;
            let data = (data_left.min(want as u64)) as usize;
            sink(&self.buf[..data])?;
            data_left -= data as u64;
            left -= want as u64;
        }
        Ok(())
    }
}

/// Counts the bytes read through it (the compressed size consumed so far).
pub struct CountingReader<R> {
    pub inner: R,
    pub count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Format;
    use crate::archive::{ArchiveWriter, Compression, MODE_FILE};

    #[test]
    fn reads_back_what_the_writer_wrote() {
        let c = Compression {
            format: Format::TarGz,
            level: 1,
        };
        let mut w = ArchiveWriter::new(Vec::new(), c, 1, "top", 42).unwrap();
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        w.file(&long, MODE_FILE, 3, &b"abc"[..]).unwrap();
        let (bytes, _) = w.finish().unwrap();
        let mut r = TarReader::new(flate2::read::GzDecoder::new(&bytes[..]));
        let top = r.next_header().unwrap().unwrap();
        assert_eq!(top.path_bytes(), b"top");
        assert!(top.checksum().is_ok() && top.is_ustar());
        assert_eq!(top.typeflag(), b'5');
        let f = r.next_header().unwrap().unwrap();
        assert_eq!(f.path_bytes(), format!("top/{long}").into_bytes());
        assert_eq!(
            (f.size().unwrap(), f.mode().unwrap(), f.mtime().unwrap()),
            (3, 0o644, 42)
        );
        let mut got = Vec::new();
        r.content(3, |b| {
            got.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, b"abc");
        assert!(r.next_header().unwrap().is_none());
        assert_eq!(r.trailer().unwrap(), Trailer::Canonical);
    }
}

/// One entry of an archive, for comparing two bundles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySummary {
    pub path: String,
    pub typeflag: u8,
    pub mode: u64,
    pub mtime: u64,
    pub size: u64,
    pub link: String,
    /// Hex SHA-256 of the content.
    pub sha256: String,
}

/// Every entry of a bundle file (zstd or gzip, by its magic number), in archive order.
pub fn summarize(path: &camino::Utf8Path) -> anyhow::Result<Vec<EntrySummary>> {
    use anyhow::Context;
    use sha2::{Digest, Sha256};
    let file = std::fs::File::open(path).with_context(|| format!("`{path}`: cannot open"))?;
    let mut input = io::BufReader::new(file);
    let format = super::sniff(io::BufRead::fill_buf(&mut input)?)
        .with_context(|| format!("`{path}`: not a zstd or gzip stream"))?;
    let mut r = TarReader::new(super::decoder(format, input)?);
    let mut out = Vec::new();
    while let Some(h) = r
        .next_header()
        .with_context(|| format!("`{path}`: cannot read"))?
    {
        let size = h.size().map_err(anyhow::Error::msg)?;
        let mut hasher = Sha256::new();
        r.content(size, |d| {
            hasher.update(d);
            Ok(())
        })
        .with_context(|| format!("`{path}`: cannot read"))?;
        out.push(EntrySummary {
            path: String::from_utf8_lossy(&h.path_bytes()).into_owned(),
            typeflag: h.typeflag(),
            mode: h.mode().unwrap_or(0),
            mtime: h.mtime().unwrap_or(0),
            size,
            link: String::from_utf8_lossy(h.link_bytes()).into_owned(),
            sha256: super::hex(&hasher.finalize()),
        });
    }
    Ok(out)
}

/// Tar-aware differences between two bundles, one line per differing entry, in path order.
pub fn differences(original: &[EntrySummary], rebuilt: &[EntrySummary]) -> Vec<(String, String)> {
    use std::collections::BTreeMap;
    let a: BTreeMap<&str, &EntrySummary> = original.iter().map(|e| (e.path.as_str(), e)).collect();
    let b: BTreeMap<&str, &EntrySummary> = rebuilt.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut paths: Vec<&str> = a.keys().chain(b.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();
    let mut out = Vec::new();
    for p in paths {
        let what = match (a.get(p), b.get(p)) {
            (Some(_), None) => vec!["only in the original".to_string()],
            (None, Some(_)) => vec!["only in the rebuild".to_string()],
            (Some(x), Some(y)) => {
                let mut d = Vec::new();
                if x.typeflag != y.typeflag || x.link != y.link {
                    d.push(format!(
                        "type or link target differs ({:?} -> {:?} vs {:?} -> {:?})",
                        x.typeflag as char, x.link, y.typeflag as char, y.link
                    ));
                }
                if x.sha256 != y.sha256 || x.size != y.size {
                    d.push(format!(
                        "content differs ({} bytes, sha256 {} vs {} bytes, sha256 {})",
                        x.size,
                        &x.sha256[..12],
                        y.size,
                        &y.sha256[..12]
                    ));
                }
                if x.mode != y.mode {
                    d.push(format!("mode differs ({:04o} vs {:04o})", x.mode, y.mode));
                }
                if x.mtime != y.mtime {
                    d.push(format!("mtime differs ({} vs {})", x.mtime, y.mtime));
                }
                d
            }
            (None, None) => Vec::new(),
        };
        if !what.is_empty() {
            out.push((p.to_string(), what.join("; ")));
        }
    }
    out
}
