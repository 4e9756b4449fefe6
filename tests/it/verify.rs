//! `verify` and `unpack` against good bundles and a corpus of crafted bad archives, each
//! generated here from the good webapp bundle or from raw headers.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Output;

use sha2::Digest;

use crate::support::*;

/// One tar entry: a raw 512-byte header and its content.
#[derive(Clone)]
pub struct TarEntry {
    pub header: [u8; 512],
    pub data: Vec<u8>,
}

impl TarEntry {
    pub fn name(&self) -> String {
        let field = |o: usize, l: usize| {
            let f = &self.header[o..o + l];
            String::from_utf8_lossy(&f[..f.iter().position(|&b| b == 0).unwrap_or(l)]).into_owned()
        };
        let (prefix, name) = (field(345, 155), field(0, 100));
        if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        }
    }

    pub fn set_field(&mut self, offset: usize, len: usize, value: &[u8]) {
        self.header[offset..offset + len].fill(0);
        self.header[offset..offset + value.len()].copy_from_slice(value);
    }

    fn set_octal(&mut self, offset: usize, len: usize, value: u64) {
        let text = format!("{value:0width$o}\0", width = len - 1);
        self.set_field(offset, len, text.as_bytes());
    }

    fn set_name(&mut self, name: &[u8]) {
        self.set_field(345, 155, b"");
        self.set_field(0, 100, name);
    }

    pub fn set_data(&mut self, data: Vec<u8>) {
        self.set_octal(124, 12, data.len() as u64);
        self.data = data;
    }

    pub fn fix_checksum(&mut self) {
        self.header[148..156].fill(b' ');
        let sum: u32 = self.header.iter().map(|&b| u32::from(b)).sum();
        let text = format!("{sum:07o}\0");
        self.header[148..156].copy_from_slice(text.as_bytes());
    }

    /// A new entry shaped like `like` (same mtime, owner, magic), with another name and kind.
    pub fn crafted(
        like: &TarEntry,
        name: &[u8],
        kind: u8,
        mode: u64,
        data: &[u8],
        link: &[u8],
    ) -> TarEntry {
        let mut r = like.clone();
        r.set_name(name);
        r.header[156] = kind;
        r.set_octal(100, 8, mode);
        r.set_field(157, 100, link);
        r.set_data(data.to_vec());
        r.fix_checksum();
        r
    }
}

fn parse(tar: &[u8]) -> Vec<TarEntry> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at..at + 512].iter().any(|&b| b != 0) {
        let header: [u8; 512] = tar[at..at + 512].try_into().unwrap();
        let size_text = String::from_utf8_lossy(&header[124..136]);
        let size = u64::from_str_radix(size_text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .unwrap() as usize;
        at += 512;
        out.push(TarEntry {
            header,
            data: tar[at..at + size].to_vec(),
        });
        at += size.div_ceil(512) * 512;
    }
    out
}

pub fn serialize(entries: &[TarEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&e.header);
        out.extend_from_slice(&e.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

/// Compressed as the bundler does: one zstd frame with its content checksum.
pub fn zstd_compress(data: &[u8]) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_checksum(true).unwrap();
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn sha_hex(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A zstd bundle, decompressed and split into entries.
pub fn entries_of(bundle: &Path) -> Vec<TarEntry> {
    let mut tar = Vec::new();
    zstd::stream::read::Decoder::new(fs::File::open(bundle).unwrap())
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    parse(&tar)
}

/// Write entries as a zstd bundle.
pub fn write_entries(entries: &[TarEntry], bundle: &Path) {
    fs::write(bundle, zstd_compress(&serialize(entries))).unwrap();
}

/// The webapp bundle, version 1.2.0 still, with one byte of a template changed and its
/// manifest and sums made to agree: other bytes under the same version, in `dir/other/`.
pub fn webapp_with_other_bytes(dir: &Path) -> PathBuf {
    let mut entries = entries_of(webapp_bundle());
    let i = find(&mut entries, "webapp-1.2.0/priv/templates/greeting.txt");
    entries[i].data[0] ^= 0x20;
    entries[i].fix_checksum();
    reseal(&mut entries);
    let other = dir.join("other/webapp-1.2.0-x86_64-unknown-linux-gnu.tar.zst");
    fs::create_dir_all(other.parent().unwrap()).unwrap();
    write_entries(&entries, &other);
    other
}

/// The good webapp bundle, decompressed and split into entries.
fn good_entries() -> Vec<TarEntry> {
    entries_of(webapp_bundle())
}

pub fn find(entries: &mut [TarEntry], name: &str) -> usize {
    entries
        .iter()
        .position(|e| e.name() == name)
        .unwrap_or_else(|| panic!("no entry {name}"))
}

pub const TOP: &str = "webapp-1.2.0";

/// Rewrite MANIFEST.json and SHA256SUMS so they agree with the (tampered) content.
pub fn reseal(entries: &mut [TarEntry]) {
    reseal_in(entries, TOP)
}

/// The same for a bundle whose top directory is `top`.
pub fn reseal_in(entries: &mut [TarEntry], top: &str) {
    let files: Vec<(String, Vec<u8>, u64)> = entries
        .iter()
        .filter(|e| e.header[156] == b'0')
        .map(|e| {
            (
                e.name(),
                e.data.clone(),
                u64::from_str_radix(
                    String::from_utf8_lossy(&e.header[100..107]).trim_matches('\0'),
                    8,
                )
                .unwrap(),
            )
        })
        .collect();
    let mi = find(entries, &format!("{top}/MANIFEST.json"));
    let mut manifest: serde_json::Value = serde_json::from_slice(&entries[mi].data).unwrap();
    for f in manifest["files"].as_array_mut().unwrap() {
        let path = format!("{top}/{}", f["path"].as_str().unwrap());
        if let Some((_, data, mode)) = files.iter().find(|(n, _, _)| *n == path) {
            f["sha256"] = sha_hex(data).into();
            f["size"] = data.len().into();
            f["mode"] = format!("{mode:04o}").into();
        }
    }
    let mut json = serde_json::to_vec_pretty(&manifest).unwrap();
    json.push(b'\n');
    entries[mi].set_data(json);
    entries[mi].fix_checksum();
    let mut sums = String::new();
    for e in entries.iter().filter(|e| e.header[156] == b'0') {
        let rel = e
            .name()
            .strip_prefix(&format!("{top}/"))
            .unwrap()
            .to_string();
        if rel != "SHA256SUMS" {
            sums.push_str(&format!("{}  {rel}\n", sha_hex(&e.data)));
        }
    }
    let si = find(entries, &format!("{top}/SHA256SUMS"));
    entries[si].set_data(sums.into_bytes());
    entries[si].fix_checksum();
}

struct Case {
    dir: Scratch,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: Scratch::new(),
        }
    }

    /// Write `bytes` as a bundle, with a matching sidecar when `sidecar`.
    fn write(&self, name: &str, bytes: &[u8], sidecar: bool) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, bytes).unwrap();
        if sidecar {
            fs::write(
                self.dir.join(format!("{name}.sha256")),
                format!("{}  {name}\n", sha_hex(bytes)),
            )
            .unwrap();
        }
        path
    }

    fn bundle(&self, entries: &[TarEntry]) -> PathBuf {
        self.write(
            "webapp-1.2.0-x86_64-unknown-linux-gnu.tar.zst",
            &zstd_compress(&serialize(entries)),
            true,
        )
    }
}

/// verify of the bundle at `path`, run beside it, with `extra`.
fn verify(path: &Path, extra: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let mut args = extra.to_vec();
    args.push(path.to_str().unwrap());
    verify_json(path.parent().unwrap(), &args)
}

/// Assert that verification fails (exit 1, no panic) with a finding `code` on `path`.
fn assert_finding(
    path: &Path,
    extra: &[&str],
    code: &str,
    on: Option<&str>,
) -> Vec<serde_json::Value> {
    let (out, msgs) = verify(path, extra);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected findings for {code}; got {msgs:#?}\n{err}"
    );
    let hit = msgs.iter().any(|m| {
        m["reason"] == "finding" && m["code"] == code && on.is_none_or(|p| m["path"] == p)
    });
    assert!(hit, "no `{code}` finding on {on:?}: {msgs:#?}");
    let summary = msgs.last().unwrap();
    assert_eq!(summary["reason"], "verified");
    assert_eq!(summary["ok"], false);
    msgs
}

#[test]
fn good_bundles_verify_clean() {
    let bundle = webapp_bundle();
    let (out, msgs) = verify(bundle, &["--strict"]);
    assert_success(&out);
    assert_eq!(msgs.len(), 1, "no findings at all: {msgs:#?}");
    assert_eq!(msgs[0]["ok"], true);
    assert_eq!(msgs[0]["name"], "webapp");
    assert_eq!(
        msgs[0]["sha256"],
        sha256_file(bundle).as_str(),
        "the digest verify computed"
    );
    let human = run_tool(
        bundle.parent().unwrap(),
        &["verify", bundle.to_str().unwrap()],
        &[],
    );
    assert_success(&human);
    assert_eq!(
        String::from_utf8_lossy(&human.stdout),
        "verified webapp 1.2.0: 15 files, 0 errors, 0 warnings\n  consistent with its own metadata and the `.sha256` beside it: this shows the bundle is intact, not where it came from; pass --sha256 HEX with a digest from a trusted source, or --allowed-signers FILE, to check origin\n"
    );

    // gzip, and a workspace member with its own table.
    let fx = Fixture::new("workspace");
    let msgs = fx.bundle(&["--out-dir", fx.out().to_str().unwrap()]);
    for m in &msgs {
        let path = PathBuf::from(m["path"].as_str().unwrap());
        let (out, v) = verify(
            &path,
            &["--strict", "--sha256", m["sha256"].as_str().unwrap()],
        );
        assert_success(&out);
        assert_eq!(v.len(), 1, "{v:#?}");
    }
}

#[test]
fn tampering_is_detected() {
    let case = Case::new();
    let good = good_entries();
    let idx = |name: &str| {
        good.iter()
            .position(|e| e.name() == format!("{TOP}/{name}"))
            .unwrap()
    };

    // A changed byte in a priv file.
    let mut e = good.clone();
    let i = idx("priv/static/index.html");
    e[i].data[5] ^= 1;
    let b = case.bundle(&e);
    assert_finding(
        &b,
        &[],
        "checksum-mismatch",
        Some(&format!("{TOP}/priv/static/index.html")),
    );

    // An extra file, in canonical order.
    let mut e = good.clone();
    let at = idx("priv/templates/greeting.txt");
    let extra = TarEntry::crafted(
        &e[at],
        format!("{TOP}/priv/templates/zz.txt").as_bytes(),
        b'0',
        0o644,
        b"extra",
        b"",
    );
    e.insert(at + 1, extra);
    assert_finding(
        &case.bundle(&e),
        &[],
        "unlisted",
        Some(&format!("{TOP}/priv/templates/zz.txt")),
    );

    // A missing file.
    let mut e = good.clone();
    e.remove(idx("priv/templates/greeting.txt"));
    assert_finding(
        &case.bundle(&e),
        &[],
        "missing",
        Some(&format!("{TOP}/priv/templates/greeting.txt")),
    );

    // A changed mode.
    let mut e = good.clone();
    let i = idx("README.md");
    e[i].set_octal(100, 8, 0o755);
    e[i].fix_checksum();
    assert_finding(
        &case.bundle(&e),
        &[],
        "mode-mismatch",
        Some(&format!("{TOP}/README.md")),
    );

    // A swapped executable.
    let mut e = good.clone();
    let (a, m) = (idx("libexec/webapp"), idx("libexec/webapp-migrate"));
    let other = e[m].data.clone();
    e[a].set_data(other);
    e[a].fix_checksum();
    assert_finding(
        &case.bundle(&e),
        &[],
        "checksum-mismatch",
        Some(&format!("{TOP}/libexec/webapp")),
    );

    // An edited manifest with a matching SHA256SUMS: only the sidecar (or --sha256) can tell.
    let mut e = good.clone();
    let i = idx("priv/static/index.html");
    e[i].set_data(b"<p>defaced</p>\n".to_vec());
    e[i].fix_checksum();
    reseal(&mut e);
    let tampered = zstd_compress(&serialize(&e));
    let name = "webapp-1.2.0-x86_64-unknown-linux-gnu.tar.zst";
    let path = case.write(name, &tampered, false);
    let good_bytes = fs::read(webapp_bundle()).unwrap();
    fs::write(
        case.dir.join(format!("{name}.sha256")),
        format!("{}  {name}\n", sha_hex(&good_bytes)),
    )
    .unwrap();
    assert_finding(&path, &[], "sidecar-mismatch", None);
    fs::remove_file(case.dir.join(format!("{name}.sha256"))).unwrap();
    assert_finding(&path, &["--sha256", &sha_hex(&good_bytes)], "sha256", None);
    // Internally consistent: without a reference digest it verifies (with a note saying so).
    let (out, msgs) = verify(&path, &[]);
    assert_success(&out);
    assert!(msgs.iter().any(|m| m["code"] == "no-sidecar"), "{msgs:#?}");

    // A wrong-architecture executable.
    let mut e = good.clone();
    let i = idx("libexec/webapp");
    e[i].data[18] = 183;
    e[i].data[19] = 0;
    reseal(&mut e);
    assert_finding(
        &case.bundle(&e),
        &[],
        "target",
        Some(&format!("{TOP}/libexec/webapp")),
    );
}

#[test]
fn broken_streams_are_findings_not_panics() {
    let case = Case::new();
    let good = fs::read(webapp_bundle()).unwrap();
    let name = "webapp-1.2.0-x86_64-unknown-linux-gnu.tar.zst";
    // Truncated.
    let p = case.write(name, &good[..good.len() / 2], true);
    let msgs = verify(&p, &[]).1;
    assert!(
        msgs.iter()
            .any(|m| m["code"] == "truncated" || m["code"] == "corrupt"),
        "{msgs:#?}"
    );
    assert_finding(&p, &[], "truncated", None);
    // Random bytes.
    let mut noise = Vec::new();
    let mut x = 0x1234_5678_9abc_def0u64;
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push(x as u8);
    }
    assert_finding(&case.write(name, &noise, true), &[], "format", None);
    // Random bytes behind a zstd magic number.
    let mut fake = vec![0x28, 0xb5, 0x2f, 0xfd];
    fake.extend_from_slice(&noise);
    assert_finding(&case.write(name, &fake, true), &[], "corrupt", None);
    // Garbage after a complete zstd frame.
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"garbage");
    assert_finding(
        &case.write(name, &trailing, true),
        &[],
        "trailing-garbage",
        None,
    );
    // A flipped byte inside the compressed stream (the frame checksum catches it).
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let p = case.write(name, &flipped, true);
    let (out, _) = verify(&p, &[]);
    assert_eq!(out.status.code(), Some(1));
    // Truncated gzip.
    let fx = Fixture::new("workspace");
    let msgs = fx.bundle(&["--out-dir", fx.out().to_str().unwrap(), "-p", "worker"]);
    let gz = fs::read(msgs[0]["path"].as_str().unwrap()).unwrap();
    let p = case.write(
        "worker-0.3.1-x86_64-unknown-linux-gnu.tar.gz",
        &gz[..gz.len() - 40],
        true,
    );
    let msgs = verify(&p, &[]).1;
    assert!(
        msgs.iter()
            .any(|m| m["code"] == "truncated" || m["code"] == "corrupt"),
        "{msgs:#?}"
    );
    // A missing file is an I/O error: exit 2.
    let out = run_tool(&case.dir.path, &["verify", "nope.tar.zst"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: `nope.tar.zst`: cannot open the bundle"),
        "{}",
        stderr(&out)
    );
}

/// One crafted construction: what it is, how it edits the good entries, the finding's code
/// and the path the finding must name (`None`: any path).
type Construction = (
    &'static str,
    Box<dyn Fn(&mut Vec<TarEntry>)>,
    &'static str,
    Option<String>,
);

/// Where the good bundle's README.md entry is, and the entry: the model of crafted entries.
fn readme_entry(good: &[TarEntry]) -> (usize, TarEntry) {
    let readme = good
        .iter()
        .position(|e| e.name().ends_with("README.md"))
        .unwrap();
    (readme, good[readme].clone())
}

/// The corpus of unsafe constructions, each built from the good bundle's README.md entry:
/// inserted right after it, or editing it.
fn unsafe_constructions(good: &[TarEntry]) -> Vec<Construction> {
    let (readme, like) = readme_entry(good);
    let t = |rel: &str| format!("{TOP}/{rel}");
    // An entry of `kind` named `name` inserted after README.md.
    let ins = |name: &[u8], kind: u8, mode: u64, data: &[u8], link: &[u8]| {
        let raw = TarEntry::crafted(&like, name, kind, mode, data, link);
        Box::new(move |e: &mut Vec<TarEntry>| e.insert(readme + 1, raw.clone()))
            as Box<dyn Fn(&mut Vec<TarEntry>)>
    };
    // A file named `rel` under the top directory, expected to be named by the finding.
    let file = |rel: &str, kind: u8, mode: u64, link: &[u8]| {
        let data: &[u8] = if kind == b'0' { b"x" } else { b"" };
        ins(t(rel).as_bytes(), kind, mode, data, link)
    };
    // README.md's header edited in place.
    let edit = |f: fn(&mut TarEntry)| {
        Box::new(move |e: &mut Vec<TarEntry>| {
            f(&mut e[readme]);
            e[readme].fix_checksum();
        }) as Box<dyn Fn(&mut Vec<TarEntry>)>
    };
    let on = |rel: &str| Some(t(rel));
    let through = {
        let (link, evil) = (
            TarEntry::crafted(&like, t("RW").as_bytes(), b'2', 0o777, b"", b"priv"),
            TarEntry::crafted(&like, t("RW/evil").as_bytes(), b'0', 0o644, b"x", b""),
        );
        Box::new(move |e: &mut Vec<TarEntry>| {
            e.insert(readme + 1, link.clone());
            e.insert(readme + 2, evil.clone());
        })
    };
    let no_share = Box::new(|e: &mut Vec<TarEntry>| {
        e.retain(|r| r.name() != format!("{TOP}/share"));
    });
    // One row per construction, one line each (a table reads down its columns).
    #[rustfmt::skip]
    let rows: Vec<Construction> = vec![
        ("parent dir", ins(b"../evil", b'0', 0o644, b"x", b""), "unsafe-name", None),
        ("absolute", ins(b"/etc/evil", b'0', 0o644, b"x", b""), "unsafe-name", None),
        ("backslash", file("a\\b", b'0', 0o644, b""), "unsafe-name", None),
        ("control", file("a\nb", b'0', 0o644, b""), "unsafe-name", None),
        ("dot", file("./a", b'0', 0o644, b""), "unsafe-name", None),
        ("non-utf8", ins(&[TOP.as_bytes(), b"/caf\xe9"].concat(), b'0', 0o644, b"x", b""), "name-not-utf8", None),
        ("outside top", ins(b"other/file", b'0', 0o644, b"x", b""), "outside-top", Some("other/file".into())),
        ("duplicate", Box::new(move |e| e.insert(readme + 1, e[readme].clone())), "duplicate", on("README.md")),
        ("case duplicate", file("README.MD", b'0', 0o644, b""), "case-duplicate", on("README.MD")),
        ("hard link", file("RL", b'1', 0o644, b"/etc/passwd"), "hard-link", on("RL")),
        ("device", file("RD", b'3', 0o644, b""), "device", on("RD")),
        ("fifo", file("RF", b'6', 0o644, b""), "fifo", on("RF")),
        ("pax", ins(t("RP").as_bytes(), b'x', 0o644, b"20 path=/etc/passwd\n", b""), "pax-extension", on("RP")),
        ("gnu longname", ins(b"././@LongLink", b'L', 0o644, b"x", b""), "gnu-extension", Some("././@LongLink".into())),
        ("sparse", file("RS", b'S', 0o644, b""), "sparse", on("RS")),
        ("setuid", file("RU", b'0', 0o4755, b""), "special-mode", on("RU")),
        ("odd mode", file("RM", b'0', 0o600, b""), "mode", on("RM")),
        ("absolute symlink", file("RA", b'2', 0o777, b"/etc/passwd"), "symlink", on("RA")),
        ("escaping symlink", file("RE", b'2', 0o777, b"../../etc"), "symlink-escape", on("RE")),
        ("dangling symlink", file("RG", b'2', 0o777, b"nowhere"), "symlink-dangling", on("RG")),
        ("write through symlink", through, "through-symlink", on("RW/evil")),
        ("owner", edit(|r| r.set_octal(108, 8, 1000)), "owner", on("README.md")),
        ("user name", edit(|r| r.set_field(265, 32, b"alice")), "owner-name", on("README.md")),
        ("mtime", edit(|r| r.set_octal(136, 12, 1)), "mtime", on("README.md")),
        ("checksum", Box::new(move |e| e[readme].header[0] ^= 1), "bad-checksum", None),
        ("order", Box::new(move |e| e.swap(readme, readme + 1)), "order", None),
        ("missing parent", no_share, "missing-parent", None),
        ("data after end", Box::new(|_| {}), "trailing-data", None),
    ];
    rows
}

#[test]
fn unsafe_constructions_are_caught() {
    let case = Case::new();
    let good = good_entries();
    let mut failures = Vec::new();
    for (what, edit, code, on) in unsafe_constructions(&good) {
        let mut e = good.clone();
        edit(&mut e);
        let mut tar = serialize(&e);
        if what == "data after end" {
            tar.extend_from_slice(&[b'x'; 512]);
        }
        let path = case.write(
            "webapp-1.2.0-x86_64-unknown-linux-gnu.tar.zst",
            &zstd_compress(&tar),
            true,
        );
        let (out, msgs) = verify(&path, &[]);
        let hit = msgs
            .iter()
            .any(|m| m["code"] == code && on.as_ref().is_none_or(|p| m["path"] == p.as_str()));
        // Every row runs; the failures are reported together at the end.
        if stderr(&out).contains("panicked") {
            failures.push(format!("{what}: verify panicked: {}", stderr(&out)));
        } else if out.status.code() != Some(1) || !hit {
            failures.push(format!(
                "{what}: expected exit 1 with `{code}` on {on:?}, got {:?}: {msgs:#?}",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let left: Vec<_> = fs::read_dir(&case.dir.path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "verify writes nothing: {left:?}");
}

#[test]
fn leaks_are_warnings_naming_file_and_offset() {
    let case = Case::new();
    let mut e = good_entries();
    let i = find(&mut e, &format!("{TOP}/priv/templates/greeting.txt"));
    let mut data = vec![b'a'; 300_000];
    data.extend_from_slice(
        b" built in /home/alice/src/app and /root/.cargo/registry/src/index/foo ",
    );
    e[i].set_data(data);
    e[i].fix_checksum();
    reseal(&mut e);
    let path = case.bundle(&e);
    let (out, msgs) = verify(&path, &[]);
    assert_success(&out);
    let leaks: Vec<String> = msgs
        .iter()
        .filter(|m| m["code"] == "leak")
        .map(|m| m["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        leaks.iter().any(|l| l
            .starts_with("offset 300010: `/home/alice/` looks like a path on the build machine")),
        "{leaks:#?}"
    );
    assert!(
        leaks.iter().any(|l| l.contains("`.cargo/registry/src/`")),
        "{leaks:#?}"
    );
    assert!(
        msgs.iter()
            .filter(|m| m["code"] == "leak")
            .all(|m| m["path"] == format!("{TOP}/priv/templates/greeting.txt"))
    );
    // --strict turns warnings into failure.
    let (out, _) = verify(&path, &["--strict"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn compression_bombs_are_refused() {
    let case = Case::new();
    let good = good_entries();
    let like = good
        .iter()
        .find(|e| e.name().ends_with("README.md"))
        .unwrap();
    // 128 MiB of zeros in a few KiB, streamed into the compressor.
    let mut header = TarEntry::crafted(
        like,
        format!("{TOP}/bomb").as_bytes(),
        b'0',
        0o644,
        b"",
        b"",
    );
    header.set_octal(124, 12, 128 << 20);
    header.fix_checksum();
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.write_all(&good[0].header).unwrap();
    enc.write_all(&header.header).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..128 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    let path = case.write("bomb.tar.zst", &bomb, false);
    assert_finding(&path, &[], "limit-ratio", None);
    assert_finding(&path, &["--max-size", "1000000"], "limit-size", None);
    assert_finding(
        &case.bundle(&good),
        &["--max-entries", "5"],
        "limit-entries",
        None,
    );
}

/// `unpack <bundle> --to <dest>`, run in the case's directory.
fn unpack(case: &Case, bundle: &Path, dest: &Path) -> Output {
    unpack_to(&case.dir.path, bundle, dest)
}

/// The good bundle with a link out of the top and a file written through it, and a name
/// climbing out of the top.
fn escaping_bundle(case: &Case) -> PathBuf {
    let good = good_entries();
    let (readme, like) = readme_entry(&good);
    let t = |rel: &str| format!("{TOP}/{rel}");
    let mut e = good.clone();
    let crafted = [
        TarEntry::crafted(&like, t("RW").as_bytes(), b'2', 0o777, b"", b"../../../.."),
        TarEntry::crafted(&like, t("RW/evil").as_bytes(), b'0', 0o644, b"pwned", b""),
        TarEntry::crafted(&like, t("../evil2").as_bytes(), b'0', 0o644, b"pwned", b""),
    ];
    for (i, entry) in crafted.into_iter().enumerate() {
        e.insert(readme + 1 + i, entry);
    }
    case.bundle(&e)
}

/// A good bundle installs with its modes, links and sums, and its launcher works; an
/// existing destination is refused.
#[test]
fn unpack_installs_good_bundles() {
    let case = Case::new();
    let dest = case.dir.join("opt/webapp");
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    assert_success(&unpack(&case, webapp_bundle(), &dest));
    if have("sha256sum") {
        sh(&dest, "sha256sum", &["-c", "--quiet", "SHA256SUMS"]);
    }
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::symlink_metadata(dest.join(p)).unwrap();
        meta.permissions().mode() & 0o7777
    };
    let modes = [
        mode(""),
        mode("bin/webapp"),
        mode("README.md"),
        mode("priv"),
    ];
    assert_eq!(modes, [0o755, 0o755, 0o644, 0o755]);
    let link = fs::read_link(dest.join("priv/static/latest.html")).unwrap();
    assert_eq!(link, Path::new("index.html"));
    let version = std::process::Command::new(dest.join("bin/webapp"))
        .arg("version")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout), "webapp 1.2.0\n");

    let again = unpack(&case, webapp_bundle(), &dest);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
}

/// A bad bundle installs nothing, anywhere, and leaves no temporary directory nor any parent
/// it created; nor does a destination `x/..`.
#[test]
fn unpack_refuses_bad_bundles_and_leaves_nothing() {
    let case = Case::new();
    fs::create_dir_all(case.dir.join("opt")).unwrap();
    let bad = escaping_bundle(&case);
    let dest = case.dir.join("opt/bad");
    let out = unpack(&case, &bad, &dest);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("did not verify; nothing was installed"));
    assert!(!dest.exists());
    let opt = fs::read_dir(case.dir.join("opt")).unwrap().count();
    assert_eq!(opt, 0, "no temporary directory is left behind");
    for outside in ["evil", "evil2", "opt/evil", "opt/evil2"] {
        assert!(!case.dir.join(outside).exists(), "{outside} was written");
    }
    let out = unpack(&case, &bad, &case.dir.join("new/a/b"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !case.dir.join("new").exists(),
        "parents of a refused unpack"
    );
    let out = unpack(&case, webapp_bundle(), &case.dir.join("x/.."));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("must name a new directory"), "{err}");
    assert!(!case.dir.join("x").exists());
}

/// unpack gives every entry the archive's mtime (files, directories, symlinks and the root),
/// so every host serves the same `Last-Modified`; missing parents of `--to` are created.
#[test]
fn unpack_keeps_the_archive_mtime_and_creates_parents() {
    use std::os::unix::fs::MetadataExt;
    let bundle = webapp_bundle();
    let epoch = entries_of(bundle)
        .iter()
        .find(|e| e.name().ends_with("MANIFEST.json"))
        .map(|e| {
            let m: serde_json::Value = serde_json::from_slice(&e.data).unwrap();
            m["timestamp"]["epoch"].as_i64().unwrap()
        })
        .unwrap();
    let scratch = Scratch::new();
    let to = scratch.join("missing/parents/webapp");
    assert_success(&unpack_to(&scratch.path, bundle, &to));
    for rel in [
        "",
        "bin",
        "bin/webapp",
        "priv/static/index.html",
        "priv/static/latest.html",
    ] {
        let meta = fs::symlink_metadata(to.join(rel)).unwrap();
        assert_eq!(meta.mtime(), epoch, "{rel:?}");
    }
}

/// Provenance beside a bundle must describe it: another bundle's statement is an error.
#[test]
fn provenance_that_names_another_digest_is_an_error() {
    let case = Case::new();
    let name = "webapp-1.2.0-x86_64-unknown-linux-gnu.tar.zst";
    let bundle = case.write(name, &fs::read(webapp_bundle()).unwrap(), true);
    let statement =
        fs::read_to_string(format!("{}.intoto.jsonl", webapp_bundle().display())).unwrap();
    let provenance = case.dir.join(format!("{name}.intoto.jsonl"));
    fs::write(&provenance, &statement).unwrap();
    let (out, _) = verify(&bundle, &["--strict"]);
    assert_success(&out);
    let digest = sha256_file(webapp_bundle());
    fs::write(&provenance, statement.replace(&digest, &"0".repeat(64))).unwrap();
    let msgs = assert_finding(&bundle, &[], "provenance-mismatch", None);
    assert!(format!("{msgs:?}").contains("the bundle's is"), "{msgs:#?}");
}
