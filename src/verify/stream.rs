//! The decompression pipeline: the raw bytes are hashed and counted as they are read, and
//! decompressed on a thread of their own that hands chunks to the checking thread, so
//! decompression overlaps hashing and checking.

use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};

use sha2::{Digest, Sha256};

use crate::archive::read::CountingReader;
use crate::archive::{self, Format};

/// Hashes and counts the raw (compressed) bytes as they are read.
pub(super) struct HashingReader<R> {
    pub(super) input: R,
    pub(super) hasher: Sha256,
    pub(super) count: Arc<AtomicU64>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Decompressed data handed from the decompressing thread to the checking thread.
pub(super) type Chunk = io::Result<Vec<u8>>;

/// Reads the chunks the decompressing thread sends.
pub(super) struct ChannelReader {
    pub(super) rx: Receiver<Chunk>,
    pub(super) chunk: Vec<u8>,
    pub(super) at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk?;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// What the decompressing thread saw of the raw stream.
pub(super) struct InputEnd {
    pub(super) sha256: String,
    /// Bytes after the end of the compressed stream (when it ended cleanly).
    pub(super) trailing: Option<u64>,
}

const CHUNK: usize = 1 << 20;

/// Decompress `raw` and send it on in chunks; then hash whatever is left of the input.
/// Runs on its own thread, so decompression overlaps hashing and checking.
pub(super) fn decompress<R: Read>(
    mut raw: BufReader<HashingReader<R>>,
    format: Format,
    tx: SyncSender<Chunk>,
) -> io::Result<InputEnd> {
    fn pump(mut d: impl Read, tx: &SyncSender<Chunk>) -> bool {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            let result = loop {
                match d.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(true),
                    Ok(n) => {
                        filled += n;
                        if filled == buf.len() {
                            break Ok(false);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(filled);
            if !buf.is_empty() && tx.send(Ok(buf)).is_err() {
                return false;
            }
            match result {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return false;
                }
            }
        }
    }
    let clean = match format {
        Format::TarZst => match zstd::stream::read::Decoder::with_buffer(&mut raw) {
            Ok(d) => pump(d.single_frame(), &tx),
            Err(e) => {
                let _ = tx.send(Err(e));
                false
            }
        },
        Format::TarGz => pump(flate2::bufread::GzDecoder::new(&mut raw), &tx),
    };
    drop(tx);
    let mut rest = CountingReader {
        inner: &mut raw,
        count: 0,
    };
    io::copy(&mut rest, &mut io::sink())?;
    let trailing = clean.then_some(rest.count);
    Ok(InputEnd {
        sha256: archive::hex(&raw.into_inner().hasher.finalize()),
        trailing,
    })
}
