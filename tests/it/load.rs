//! A bounded load generator for loopback: workers send `GET /` as fast as they can (fresh
//! connections, or keep-alive ones that reconnect when told `Connection: close`) and count
//! every request that was refused, reset, timed out or answered wrongly. Used by the
//! gapless-restart tests and by `benches/gapless.sh`.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the workers saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub refused: u64,
    pub reset: u64,
    pub timed_out: u64,
    pub bad: u64,
    /// Answers per version served.
    pub versions: BTreeMap<String, u64>,
    /// Latency of each answered request, in microseconds.
    pub latencies: Vec<u32>,
    pub first_failure: Option<String>,
}

impl Tally {
    pub fn failed(&self) -> u64 {
        self.refused + self.reset + self.timed_out + self.bad
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.reset += other.reset;
        self.timed_out += other.timed_out;
        self.bad += other.bad;
        for (v, n) in other.versions {
            *self.versions.entry(v).or_default() += n;
        }
        self.latencies.extend(other.latencies);
        self.first_failure = self.first_failure.take().or(other.first_failure);
    }

    /// The `p`th percentile latency (0 to 100).
    pub fn percentile(&mut self, p: usize) -> Duration {
        self.latencies.sort_unstable();
        let i = (self.latencies.len().saturating_sub(1) * p) / 100;
        Duration::from_micros(self.latencies.get(i).copied().unwrap_or(0) as u64)
    }

    fn fail(&mut self, kind: ErrorKind, what: String) {
        match kind {
            ErrorKind::ConnectionRefused => self.refused += 1,
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof => {
                self.reset += 1
            }
            ErrorKind::WouldBlock | ErrorKind::TimedOut => self.timed_out += 1,
            _ => self.bad += 1,
        }
        self.first_failure.get_or_insert(what);
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answered, {} refused, {} reset, {} timed out, {} bad; versions {:?}; first failure: {}",
            self.ok,
            self.refused,
            self.reset,
            self.timed_out,
            self.bad,
            self.versions,
            self.first_failure.as_deref().unwrap_or("none")
        )
    }
}

/// Running workers; [`Load::finish`] stops them and adds up what they saw.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Tally>>,
}

/// Start `fresh` workers opening a connection per request and `kept` workers on keep-alive
/// connections, against 127.0.0.1:`port`, for at most `bound`.
pub fn start(port: u16, fresh: usize, kept: usize, bound: Duration) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let workers = (0..fresh + kept)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || worker(port, i >= fresh, &stop, bound))
        })
        .collect();
    Load { stop, workers }
}

impl Load {
    pub fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        for w in self.workers {
            total.merge(w.join().expect("a load worker panicked"));
        }
        total
    }
}

fn worker(port: u16, keep_alive: bool, stop: &AtomicBool, bound: Duration) -> Tally {
    let mut tally = Tally::default();
    let started = Instant::now();
    let mut conn: Option<TcpStream> = None;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < bound && tally.ok < 2_000_000 {
        let t = Instant::now();
        let reused = conn.is_some();
        match request(port, &mut conn, keep_alive) {
            Ok(version) => {
                tally.ok += 1;
                *tally.versions.entry(version).or_default() += 1;
                tally
                    .latencies
                    .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Err((kind, what)) => {
                conn = None;
                let what = format!(
                    "{what} ({}connection)",
                    if reused { "reused " } else { "new " }
                );
                tally.fail(kind, what);
            }
        }
    }
    tally
}

/// One `GET /` on a fresh connection: the body (the version serving).
pub fn get(port: u16) -> Result<String, (ErrorKind, String)> {
    request(port, &mut None, false)
}

/// One request; `conn` is kept for the next one when the server keeps it open.
fn request(
    port: u16,
    conn: &mut Option<TcpStream>,
    keep_alive: bool,
) -> Result<String, (ErrorKind, String)> {
    fn err(what: &'static str) -> impl Fn(std::io::Error) -> (ErrorKind, String) {
        move |e| (e.kind(), format!("{what}: {e}"))
    }
    let mut stream = match conn.take() {
        Some(s) => s,
        None => {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(err("connect"))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .map_err(err("timeout"))?;
            s
        }
    };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let req = format!("GET / HTTP/1.1\r\nHost: load\r\nConnection: {connection}\r\n\r\n");
    stream.write_all(req.as_bytes()).map_err(err("write"))?;
    let (head, body) = read_response(&mut stream).map_err(err("read"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err((
            ErrorKind::InvalidData,
            format!("answered {:?}", head.lines().next()),
        ));
    }
    if keep_alive && !head.to_ascii_lowercase().contains("connection: close") {
        *conn = Some(stream);
    }
    Ok(body.trim().to_string())
}

/// Headers up to the blank line, then Content-Length bytes of body.
fn read_response(stream: &mut TcpStream) -> std::io::Result<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            let what = if buf.is_empty() {
                "closed without an answer"
            } else {
                "closed mid-answer"
            };
            return Err(std::io::Error::new(ErrorKind::UnexpectedEof, what));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "closed mid-body",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    Ok((head, body))
}
