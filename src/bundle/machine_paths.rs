//! The build machine's own paths — `HOME`, the workspace, `CARGO_HOME`, the target directory —
//! found in a file as it streams into the bundle. Such a path in a shipped file is a leak of
//! the builder's machine (and breaks reproducibility), so bundling refuses it, naming the file,
//! the offset and which path it is; prefixes in `[verify] allow-paths` are accepted.
//! Generic home-like strings are `verify`'s to warn about; these are the known ones.

use std::io::{self, Read};

use aho_corasick::{AhoCorasick, MatchKind};

/// The known paths of this machine, as searchable patterns. A pattern is found where it ends
/// a path (followed by `/`, the end of the file, NUL, a quote, whitespace or another byte no
/// file name continues with), so `env!("HOME")` compiled in is found as well as `$HOME/…`,
/// and `/home/alice` is not taken for `/home/al`.
pub struct MachinePaths {
    ac: Option<AhoCorasick>,
    labels: Vec<(String, &'static str)>,
    longest: usize,
}

/// The first known path found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub offset: u64,
    pub path: String,
    pub what: &'static str,
}

impl MachinePaths {
    /// `paths` are `(directory, what it is)`; `/` and empty paths, and those an allowed prefix
    /// covers, are left out.
    pub fn new(paths: &[(&str, &'static str)], allow: &[String]) -> MachinePaths {
        let mut labels: Vec<(String, &'static str)> = Vec::new();
        for (path, what) in paths {
            let path = path.trim_end_matches('/').to_string();
            let dir = format!("{path}/");
            let covered = allow.iter().any(|a| dir.starts_with(a.as_str()));
            if !path.is_empty() && !covered && !labels.iter().any(|(p, _)| *p == path) {
                labels.push((path, what));
            }
        }
        let ac = (!labels.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(labels.iter().map(|(p, _)| p.as_bytes()))
                    .ok()
            })
            .flatten();
        let longest = labels.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
        MachinePaths {
            ac,
            labels,
            longest,
        }
    }

    /// Wrap a file's reader so its bytes are searched as they pass.
    pub fn scan<R: Read>(&self, inner: R) -> Scan<'_, R> {
        Scan {
            inner,
            paths: self,
            carry: Vec::new(),
            offset: 0,
            hit: None,
        }
    }
}

/// A reader that searches what passes through it for the machine's paths.
pub struct Scan<'p, R> {
    inner: R,
    paths: &'p MachinePaths,
    /// The end of the previous read, so a path split across two reads is found.
    carry: Vec<u8>,
    /// Offset in the file of the first byte after `carry`.
    offset: u64,
    hit: Option<Hit>,
}

impl<R> Scan<'_, R> {
    /// The reader underneath, to read past the search.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The first known path the file held, once it has been read.
    pub fn hit(&self) -> Option<&Hit> {
        self.hit.as_ref()
    }
}

impl<R: Read> Read for Scan<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let (None, Some(ac)) = (&self.hit, &self.paths.ac) {
            let mut window = std::mem::take(&mut self.carry);
            let base = self.offset - window.len() as u64;
            window.extend_from_slice(&buf[..n]);
            // A match too near the end might be the start of a longer path that continues in
            // the next read, and whether it ends a path is decided by the byte after it: both
            // are decided then (or at the end of the file, `n == 0`). The earliest, then the
            // longest, match that ends a path wins.
            let decided =
                |m: &aho_corasick::Match| n == 0 || window.len() - m.start() > self.paths.longest;
            let found = ac
                .find_overlapping_iter(&window)
                .filter(|m| decided(m) && ends_path(window.get(m.end()).copied()))
                .min_by_key(|m| (m.start(), std::cmp::Reverse(m.end())));
            if let Some(m) = found {
                let (path, what) = &self.paths.labels[m.pattern().as_usize()];
                self.hit = Some(Hit {
                    offset: base + m.start() as u64,
                    path: path.clone(),
                    what,
                });
            }
            let keep = window.len().min(self.paths.longest);
            self.carry = window[window.len() - keep..].to_vec();
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// Whether the byte after a match (`None`: the end of the file) ends the path there: a file
/// name continues only with letters, digits, `.`, `_`, `-`, `+`, `~`, `@` or non-ASCII bytes.
fn ends_path(next: Option<u8>) -> bool {
    match next {
        None => true,
        Some(b) => !(b.is_ascii_alphanumeric() || b".-_+~@".contains(&b) || b >= 0x80),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(paths: &MachinePaths, chunks: &[&[u8]]) -> Option<Hit> {
        let data: Vec<u8> = chunks.concat();
        let mut reader = paths.scan(ChunkReader(chunks.to_vec()));
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        reader.hit().cloned()
    }

    struct ChunkReader<'a>(Vec<&'a [u8]>);

    impl Read for ChunkReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let chunk = self.0[0];
            let n = chunk.len().min(buf.len());
            buf[..n].copy_from_slice(&chunk[..n]);
            if n == chunk.len() {
                self.0.remove(0);
            } else {
                self.0[0] = &chunk[n..];
            }
            Ok(n)
        }
    }

    #[test]
    fn finds_the_longest_known_path_across_reads() {
        let paths = MachinePaths::new(
            &[
                ("/home/al", "HOME"),
                ("/home/al/src/app", "the workspace"),
                ("/", "HOME"),
            ],
            &[],
        );
        let hit = scan(&paths, &[b"x /home/al/sr", b"c/app/main.rs"]).unwrap();
        assert_eq!((hit.offset, hit.what), (2, "the workspace"));
        let hit = scan(&paths, &[b"0123", b"/home/al/.bashrc"]).unwrap();
        assert_eq!((hit.offset, hit.path.as_str()), (4, "/home/al"));
        assert_eq!(scan(&paths, &[b"/home/alice/ is someone else"]), None);
        assert_eq!(scan(&paths, &[b"/home/al.old/x"]), None);
        let allowed = MachinePaths::new(&[("/home/al", "HOME")], &["/home/al/".into()]);
        assert_eq!(scan(&allowed, &[b"/home/al/x"]), None);
        // A workspace path that is not followed by `/` still counts as HOME's.
        let hit = scan(&paths, &[b"/home/al/src/apple"]).unwrap();
        assert_eq!((hit.offset, hit.what), (0, "HOME"));
    }

    #[test]
    fn a_path_is_found_wherever_it_ends() {
        let paths = MachinePaths::new(&[("/home/al", "HOME")], &[]);
        let cases: [(&[&[u8]], Option<u64>); 9] = [
            (&[b"/home/al"], Some(0)),
            (&[b"x=/home/al\0"], Some(2)),
            (&[b"\"/home/al\""], Some(1)),
            (&[b"'/home/al' "], Some(1)),
            (&[b"HOME=/home/al\n"], Some(5)),
            (&[b"/home/a", b"l"], Some(0)),
            (&[b"/home/al", b"ice"], None),
            (&[b"/home/al", b"/x"], Some(0)),
            (&[b"/home/alb"], None),
        ];
        for (chunks, want) in cases {
            assert_eq!(scan(&paths, chunks).map(|h| h.offset), want, "{chunks:?}");
        }
    }
}
