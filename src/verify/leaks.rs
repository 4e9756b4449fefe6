//! The leak scan: strings in shipped files that look like paths of the build machine
//! (home directories, cargo's registry, temporary build directories). Streaming, so a match
//! split across two reads is still found, and each distinct path is reported once, at its
//! first offset.

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
    let word = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
        .count();
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

pub struct LeakScanner {
    ac: AhoCorasick,
    carry: Vec<u8>,
    offset: u64,
    hits: BTreeMap<String, u64>,
}

const LEAK_CARRY: usize = 128;

impl LeakScanner {
    pub fn new(ac: AhoCorasick) -> Self {
        LeakScanner {
            ac,
            carry: Vec::new(),
            offset: 0,
            hits: BTreeMap::new(),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let mut buf = std::mem::take(&mut self.carry);
        let base = self.offset - buf.len() as u64;
        buf.extend_from_slice(chunk);
        for m in self.ac.find_overlapping_iter(&buf) {
            // Matches near the end are re-examined with more context next time.
            if buf.len() - m.start() < LEAK_CARRY && !chunk.is_empty() {
                continue;
            }
            if let Some(what) = leak_at(&buf, m.start(), m.pattern().as_usize()) {
                self.hits.entry(what).or_insert(base + m.start() as u64);
            }
        }
        self.offset += chunk.len() as u64;
        let keep = buf.len().min(LEAK_CARRY);
        self.carry = buf[buf.len() - keep..].to_vec();
    }

    pub fn finish(mut self) -> BTreeMap<String, u64> {
        self.feed(&[]);
        self.hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> BTreeMap<String, u64> {
        let mut s = LeakScanner::new(AhoCorasick::new(LEAK_PATTERNS).unwrap());
        for c in chunks {
            s.feed(c);
        }
        s.finish()
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
