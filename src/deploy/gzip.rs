//! Gzip for transfers to hosts, which can decompress nothing else: the stream is cut into
//! 1 MiB pieces compressed on several threads, each piece one gzip member (members in a row
//! are one gzip stream to `gzip -d` and `tar -xz`). A piece that looks random (order-0
//! entropy near 8 bits a byte: already-compressed assets) is stored, not searched for
//! matches that are not there, which is most of gzip's time on such data.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

const PIECE: usize = 1 << 20;

/// A numbered piece of the input.
type Piece = (u64, Vec<u8>);

/// Bits per byte above which a piece is stored.
const RANDOM: f64 = 7.9;

/// Order-0 entropy of `data`, in bits per byte.
pub fn entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u64; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// One gzip member holding `data`.
pub fn member(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let level = if entropy(data) > RANDOM { 0 } else { level };
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        flate2::Compression::new(level),
    );
    gz.write_all(data)?;
    gz.finish()
}

/// Cuts what is written into pieces and hands them to the workers, numbered.
struct Pieces {
    buf: Vec<u8>,
    next: u64,
    jobs: SyncSender<Piece>,
}

impl Pieces {
    fn send(&mut self) -> io::Result<()> {
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.jobs
            .send((self.next, piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the compressor stopped"))?;
        self.next += 1;
        Ok(())
    }
}

impl Write for Pieces {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIECE {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn work(
    jobs: Arc<Mutex<Receiver<Piece>>>,
    done: SyncSender<(u64, io::Result<Vec<u8>>)>,
    level: u32,
) {
    loop {
        // The lock is held only to take the next piece.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((index, piece)) = job else { return };
        if done.send((index, member(&piece, level))).is_err() {
            return;
        }
    }
}

/// Write what `produce` writes to `out` as gzip, compressed by `workers` threads; `out` back.
pub fn compress<W: Write + Send>(
    mut out: W,
    workers: usize,
    level: u32,
    produce: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<W> {
    let workers = workers.max(1);
    std::thread::scope(|scope| {
        let (jobs_tx, jobs_rx) = sync_channel::<Piece>(workers * 2);
        let (done_tx, done_rx) = sync_channel::<(u64, io::Result<Vec<u8>>)>(workers * 2);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        for _ in 0..workers {
            let (jobs, done) = (jobs_rx.clone(), done_tx.clone());
            scope.spawn(move || work(jobs, done, level));
        }
        drop((jobs_rx, done_tx));
        let writer = scope.spawn(move || -> io::Result<W> {
            let mut next = 0u64;
            let mut waiting = BTreeMap::new();
            for (index, member) in done_rx {
                waiting.insert(index, member?);
                while let Some(m) = waiting.remove(&next) {
                    out.write_all(&m)?;
                    next += 1;
                }
            }
            out.flush()?;
            Ok(out)
        });
        let mut pieces = Pieces {
            buf: Vec::with_capacity(PIECE),
            next: 0,
            jobs: jobs_tx,
        };
        let produced = produce(&mut pieces);
        // The last piece; an empty stream is still one (empty) member.
        let last = if produced.is_ok() && (!pieces.buf.is_empty() || pieces.next == 0) {
            pieces.send()
        } else {
            Ok(())
        };
        drop(pieces);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // What went wrong first: the producer, else the writer (a closed pipe shows there).
        produced?;
        let out = written?;
        last?;
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn members_in_a_row_decompress_to_the_input() {
        let mut input = Vec::new();
        for i in 0..(3 * PIECE + 123) {
            input.push(if i % 3 == 0 {
                (i * 7919 % 251) as u8
            } else {
                b'a' + (i % 5) as u8
            });
        }
        let gz = compress(Vec::new(), 3, 6, |w| Ok(w.write_all(&input)?)).unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == input);
        assert!(
            gz.len() < input.len() / 2,
            "compressible data is compressed"
        );
        let empty = compress(Vec::new(), 2, 6, |_| Ok(())).unwrap();
        assert!(!empty.is_empty(), "one empty member");
    }

    #[test]
    fn random_pieces_are_stored() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let random: Vec<u8> = (0..PIECE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(entropy(&random) > RANDOM);
        assert!(entropy(b"aaaaabbbbbcccc") < 2.0);
        let m = member(&random, 6).unwrap();
        assert!(
            m.len() > random.len() && m.len() < random.len() + 200,
            "stored: {}",
            m.len()
        );
    }
}
