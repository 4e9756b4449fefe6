//! The leak scan: strings in shipped files that look like paths of the build machine
//! (home directories, cargo's registry, temporary build directories). Streaming, so a match
//! split across two reads is still found, and each distinct path is reported once, at its
//! first offset. At most [`MAX_HITS_PER_FILE`] distinct paths are kept per file (each at most
//! [`LEAK_CARRY`] bytes); the rest are only counted, so memory stays flat whatever the file.

use std::collections::BTreeMap;

use aho_corasick::AhoCorasick;

/// Strings that betray the build machine, checked with context by [`leak_at`].
pub const LEAK_PATTERNS: &[&str] = &[
    "/home/",
    "/Users/",
    "/root/",
    ".cargo/registry/src/",
    ".cargo/git/checkouts/",
    "/tmp/",
    "/private/var/folders/",
];

/// If `buf[at..]` (a pattern match) looks like a build-machine path, describe it.
pub fn leak_at(buf: &[u8], at: usize, pattern: usize) -> Option<String> {
    let p = LEAK_PATTERNS[pattern].as_bytes();
    // `/tmp/x/` inside `target/tmp/x/` is a relative path, not the build machine's.
    let inside_word =
        at > 0 && (buf[at - 1].is_ascii_alphanumeric() || b"._-~".contains(&buf[at - 1]));
    if p[0] == b'/' && inside_word {
        return None;
    }
    let rest = &buf[at + p.len()..];
    // User and directory names are short; a longer run is not reported (and a reported
    // path never exceeds LEAK_CARRY).
    let word = rest
        .iter()
        .take(MAX_NAME + 1)
        .take_while(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
        .count();
    if word > MAX_NAME {
        return None;
    }
    let needs_name = matches!(LEAK_PATTERNS[pattern], "/home/" | "/Users/" | "/tmp/");
    if needs_name && (word == 0 || rest.get(word) != Some(&b'/')) {
        return None;
    }
    let shown = if needs_name {
        &buf[at..at + p.len() + word + 1]
    } else {
        p
    };
    Some(String::from_utf8_lossy(shown).into_owned())
}

/// Whether a reported path is covered by an allowed prefix (or lies above one: an allowed
/// `/home/hello/docs` covers the `/home/hello/` the scan reports).
pub fn allowed(what: &str, allow: &[String]) -> bool {
    allow
        .iter()
        .any(|a| what.starts_with(a.as_str()) || a.starts_with(what))
}

pub struct LeakScanner {
    ac: AhoCorasick,
    /// Path prefixes not reported (`--allow-path`, `[verify] allow-paths`).
    allow: Vec<String>,
    carry: Vec<u8>,
    offset: u64,
    hits: BTreeMap<String, u64>,
    /// Matches not kept because `hits` was full (not necessarily distinct).
    more: u64,
}

/// Context kept between chunks; also bounds the length of a reported path.
const LEAK_CARRY: usize = 128;
/// Longest user or directory name after `/home/`, `/Users/` or `/tmp/` that is reported.
const MAX_NAME: usize = 64;
/// Distinct paths kept per file.
pub const MAX_HITS_PER_FILE: usize = 16;

/// What a scan found in one file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Hits {
    /// Distinct suspicious paths with their first offsets, at most [`MAX_HITS_PER_FILE`].
    pub first: BTreeMap<String, u64>,
    /// Further matches, counted only.
    pub more: u64,
}

impl LeakScanner {
    pub fn new(ac: AhoCorasick, allow: &[String]) -> Self {
        LeakScanner {
            ac,
            allow: allow.to_vec(),
            carry: Vec::new(),
            offset: 0,
            hits: BTreeMap::new(),
            more: 0,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let mut buf = std::mem::take(&mut self.carry);
        let base = self.offset - buf.len() as u64;
        buf.extend_from_slice(chunk);
        for m in self.ac.find_overlapping_iter(&buf) {
            // Matches within the carried tail are examined next time, with more context
            // (and only then: `<=`, so a match is never examined twice).
            if buf.len() - m.start() <= LEAK_CARRY && !chunk.is_empty() {
                continue;
            }
            if let Some(what) = leak_at(&buf, m.start(), m.pattern().as_usize())
                && !allowed(&what, &self.allow)
            {
                if self.hits.len() < MAX_HITS_PER_FILE || self.hits.contains_key(&what) {
                    self.hits.entry(what).or_insert(base + m.start() as u64);
                } else {
                    self.more += 1;
                }
            }
        }
        self.offset += chunk.len() as u64;
        let keep = buf.len().min(LEAK_CARRY);
        self.carry = buf[buf.len() - keep..].to_vec();
    }

    pub fn finish(mut self) -> Hits {
        self.feed(&[]);
        Hits {
            first: self.hits,
            more: self.more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> BTreeMap<String, u64> {
        let mut s = LeakScanner::new(AhoCorasick::new(LEAK_PATTERNS).unwrap(), &[]);
        for c in chunks {
            s.feed(c);
        }
        s.finish().first
    }

    #[test]
    fn allowed_prefixes_are_not_reported() {
        let allow = vec!["/home/hello/".to_string()];
        let mut s = LeakScanner::new(AhoCorasick::new(LEAK_PATTERNS).unwrap(), &allow);
        s.feed(b"see /home/hello/docs and /home/alice/src ");
        let hits = s.finish();
        assert_eq!(hits.first.keys().collect::<Vec<_>>(), ["/home/alice/"]);
    }

    #[test]
    fn hits_are_capped_and_counted() {
        let mut s = LeakScanner::new(AhoCorasick::new(LEAK_PATTERNS).unwrap(), &[]);
        for i in 0..1000 {
            s.feed(format!("x /home/{}{i:04}/y ", "u".repeat(50)).as_bytes());
        }
        let hits = s.finish();
        assert_eq!(hits.first.len(), MAX_HITS_PER_FILE);
        assert_eq!(hits.more, 1000 - MAX_HITS_PER_FILE as u64);
        assert!(hits.first.keys().all(|k| k.len() <= LEAK_CARRY), "{hits:?}");
    }

    #[test]
    fn finds_paths_across_chunk_boundaries() {
        let hits = scan(&[
            b"xx /home/al",
            b"ice/src and /root/.x and /home/ and /tmp/ alone",
        ]);
        assert_eq!(hits.get("/home/alice/"), Some(&3));
        assert_eq!(hits.get("/root/"), Some(&23));
        assert_eq!(hits.len(), 2, "{hits:?}");
        let hits = scan(&[b"/Users/bob/x", b".cargo/registry/src/a /tmp/.tmpAB12/t"]);
        assert_eq!(
            hits.keys().collect::<Vec<_>>(),
            [".cargo/registry/src/", "/Users/bob/", "/tmp/.tmpAB12/"]
        );
    }
}
