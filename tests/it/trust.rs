//! Trust: `verify` must see exactly what `tar` extracts. Headers mutated every way tar
//! implementations read differently; a bundle verify passes must extract to the same entries
//! with GNU tar, bsdtar and Python's `tarfile` as with `unpack`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use crate::verify::{TOP, TarEntry, entries_of, find, reseal, serialize, sha_hex, zstd_compress};

const NAME: &str = "webapp-1.2.0-x86_64-unknown-linux-gnu.tar.zst";

/// Run the tool in `dir`, assert that it refuses (exit 1, no panic), and return its stdout.
fn refused(dir: &Path, args: &[&str]) -> String {
    let out = run_tool(dir, args, &[]);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `unpack` of the bundle in `dir` refuses (exit 1) and installs nothing.
fn assert_unpack_refused(dir: &Path) {
    let to = dir.join("installed");
    let out = run_tool(dir, &["unpack", NAME, "--to", to.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!to.exists(), "unpack installed a refused bundle");
}

/// Write entries as a bundle with a matching sidecar (an attacker controls both).
fn write_bundle(dir: &Path, entries: &[TarEntry]) -> std::path::PathBuf {
    let bytes = zstd_compress(&serialize(entries));
    let path = dir.join(NAME);
    fs::write(&path, &bytes).unwrap();
    fs::write(
        dir.join(format!("{NAME}.sha256")),
        format!("{}  {NAME}\n", sha_hex(&bytes)),
    )
    .unwrap();
    path
}

/// `path kind size [-> link]` for every entry below `root`, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name().min_depth(1) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        out.push(if meta.file_type().is_symlink() {
            format!("{rel} l -> {}", fs::read_link(e.path()).unwrap().display())
        } else if meta.is_dir() {
            format!("{rel} d")
        } else {
            format!("{rel} f {}", meta.len())
        });
    }
    out.sort();
    out
}

/// What a tar makes of the bundle, extracting it into `into`: `Err` when it fails, else the
/// entries it created.
fn extract_with(
    program: &str,
    args: &[&str],
    bundle: &Path,
    into: &Path,
) -> Result<Vec<String>, String> {
    fs::create_dir_all(into).unwrap();
    let out = Command::new(program)
        .args(args)
        .arg(bundle)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(tree(into))
}

fn gnu_tar(bundle: &Path, into: &Path) -> Result<Vec<String>, String> {
    extract_with("tar", &["--zstd", "-xf"], bundle, into)
}

fn bsdtar(bundle: &Path, into: &Path) -> Result<Vec<String>, String> {
    extract_with("bsdtar", &["-xf"], bundle, into)
}

const PY_LIST: &str = r#"
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    for m in t:
        kind = "d" if m.isdir() else "l" if m.issym() else "f" if m.isreg() else "?" + repr(m.type)
        line = m.name + " " + kind
        if kind == "f":
            line += " " + str(m.size)
        if kind == "l":
            line += " -> " + m.linkname
        print(line)
"#;

fn python_tarfile(bundle: &Path, dir: &Path) -> Result<Vec<String>, String> {
    let plain = dir.join("plain.tar");
    sh(
        dir,
        "zstd",
        &[
            "-qdf",
            bundle.to_str().unwrap(),
            "-o",
            plain.to_str().unwrap(),
        ],
    );
    let out = Command::new("python3")
        .args(["-c", PY_LIST])
        .arg(&plain)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    Ok(lines)
}

/// Verify (strict) and, when it passes, compare what unpack installed with what each tar
/// extracts. Returns whether verify passed.
fn check_agreement(dir: &Path, entries: &[TarEntry], what: &str) -> bool {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    let bundle = write_bundle(dir, entries);
    let out = run_tool(dir, &["verify", "--strict", "-q", NAME], &[]);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{what}: {err}");
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        return false;
    }
    let unpacked = dir.join("unpacked");
    let out = run_tool(
        dir,
        &[
            "unpack",
            "--strict",
            "-q",
            NAME,
            "--to",
            unpacked.to_str().unwrap(),
        ],
        &[],
    );
    assert_success(&out);
    // unpack's tree is the top directory's contents; the tools' trees hold the top directory.
    let mut ours: Vec<String> = vec![format!("{TOP} d")];
    ours.extend(tree(&unpacked).into_iter().map(|l| format!("{TOP}/{l}")));
    ours.sort();
    for (tool, got) in [
        ("GNU tar", gnu_tar(&bundle, &dir.join("gnu"))),
        ("bsdtar", bsdtar(&bundle, &dir.join("bsd"))),
        ("python tarfile", python_tarfile(&bundle, dir)),
    ] {
        match got {
            Ok(entries) => assert_eq!(
                entries, ours,
                "{what}: verify passed, but {tool} extracts other entries"
            ),
            Err(e) => panic!("{what}: verify passed, but {tool} fails: {e}"),
        }
    }
    true
}

fn set_bytes(r: &mut TarEntry, offset: usize, bytes: &[u8]) {
    r.header[offset..offset + bytes.len()].copy_from_slice(bytes);
}

/// Canonical checksum (7 octal digits and a NUL) after a mutation.
fn fix(r: &mut TarEntry) {
    r.fix_checksum();
}

/// Spellings of `value` in a numeric field of `len` bytes that some tar reads as `value`.
fn spellings(value: u64, len: usize) -> Vec<(String, Vec<u8>)> {
    let d = len - 1;
    let mut out: Vec<(String, Vec<u8>)> = vec![
        (
            "leading space".into(),
            format!(" {value:0w$o}\0", w = d - 1).into_bytes(),
        ),
        (
            "trailing space".into(),
            format!("{value:0w$o} ", w = d).into_bytes(),
        ),
        (
            "space then NUL".into(),
            format!("{value:0w$o} \0", w = d - 1).into_bytes(),
        ),
        (
            "embedded space".into(),
            format!("0 {value:0w$o}", w = d - 1).into_bytes(),
        ),
        ("embedded NUL".into(), {
            let mut b = format!("0\0{value:0w$o}", w = d - 1).into_bytes();
            b.truncate(len);
            b
        }),
        (
            "two NULs".into(),
            format!("{value:0w$o}\0\0", w = d - 1).into_bytes(),
        ),
        (
            "no terminator".into(),
            format!("{value:0w$o}", w = len).into_bytes(),
        ),
        ("short, left aligned".into(), {
            let mut b = format!("{value:o}\0").into_bytes();
            b.resize(len, 0);
            b
        }),
        (
            "non-octal digit".into(),
            format!("{value:0w$o}8\0", w = d - 1).into_bytes(),
        ),
        (
            "sign".into(),
            format!("+{value:0w$o}\0", w = d - 1).into_bytes(),
        ),
        ("base-256".into(), {
            let mut b = vec![0u8; len];
            b[0] = 0x80;
            let be = value.to_be_bytes();
            b[len - 8..].copy_from_slice(&be);
            b
        }),
    ];
    let canonical = format!("{value:0w$o}\0", w = d).into_bytes();
    out.retain(|(_, b)| b.len() == len && *b != canonical);
    out
}

#[test]
fn verify_sees_what_tar_extracts() {
    if !(have("tar") && have("bsdtar") && have("zstd") && have("python3")) {
        return;
    }
    let good = entries_of(webapp_bundle());
    let scratch = Scratch::new();
    let dir = scratch.join("case");
    assert!(
        check_agreement(&dir, &good, "the unmodified bundle"),
        "the unmodified bundle must verify"
    );
    let target = find(&mut good.clone(), &format!("{TOP}/bin/webapp"));
    let numeric = [
        ("mode", 100, 8),
        ("uid", 108, 8),
        ("gid", 116, 8),
        ("size", 124, 12),
        ("mtime", 136, 12),
        ("devmajor", 329, 8),
        ("devminor", 337, 8),
    ];
    let mut cases = 0;
    for (field, offset, len) in numeric {
        let raw = &good[target].header[offset..offset + len];
        let text = String::from_utf8_lossy(&raw[..len - 1]).into_owned();
        let value = u64::from_str_radix(&text, 8).unwrap();
        for (how, bytes) in spellings(value, len) {
            let mut entries = good.clone();
            set_bytes(&mut entries[target], offset, &bytes);
            fix(&mut entries[target]);
            let what = format!("{field} spelt with {how} ({})", bytes.escape_ascii());
            assert!(
                !check_agreement(&dir, &entries, &what),
                "{what}: verify passed"
            );
            cases += 1;
        }
    }
    // Checksum spellings that GNU tar accepts.
    let sum = |r: &TarEntry| {
        let mut h = r.header;
        h[148..156].fill(b' ');
        h.iter().map(|&b| u64::from(b)).sum::<u64>()
    };
    let s = sum(&good[target]);
    for (how, text) in [
        ("six digits, NUL, space", format!("{s:06o}\0 ")),
        ("space terminated", format!("{s:07o} ")),
        ("leading space", format!(" {s:06o}\0")),
        ("left aligned", format!("{s:o}\0\0")),
    ] {
        let mut entries = good.clone();
        let mut field = text.into_bytes();
        field.resize(8, 0);
        set_bytes(&mut entries[target], 148, &field);
        let what = format!("checksum spelt {how}");
        assert!(
            !check_agreement(&dir, &entries, &what),
            "{what}: verify passed"
        );
        cases += 1;
    }
    // The same name split another way between prefix and name, magic variants, stray bytes.
    let short = find(&mut good.clone(), &format!("{TOP}/priv/static/index.html"));
    let mut split = good.clone();
    split[short].set_field(0, 100, b"index.html");
    split[short].set_field(345, 155, format!("{TOP}/priv/static").as_bytes());
    fix(&mut split[short]);
    let mut gnu_magic = good.clone();
    set_bytes(&mut gnu_magic[short], 257, b"ustar  \0");
    fix(&mut gnu_magic[short]);
    let mut after_nul = good.clone();
    set_bytes(&mut after_nul[short], 90, b"x");
    fix(&mut after_nul[short]);
    let mut padding = good.clone();
    set_bytes(&mut padding[short], 505, b"x");
    fix(&mut padding[short]);
    for (what, entries) in [
        ("name split into prefix", split),
        ("GNU magic", gnu_magic),
        ("a byte after the name's NUL", after_nul),
        ("a byte in the padding", padding),
    ] {
        assert!(
            !check_agreement(&dir, &entries, what),
            "{what}: verify passed"
        );
        cases += 1;
    }
    assert!(cases >= 70, "only {cases} cases");
}

/// The reproducer: a size field `0 0000002000` that a lenient reader takes as 1024 and tar as
/// 0, with a hidden header as the entry's content and the manifest resealed around it.
#[test]
fn a_hidden_entry_behind_a_lenient_size_is_refused() {
    if !(have("tar") && have("zstd")) {
        return;
    }
    let mut entries = entries_of(webapp_bundle());
    let readme = find(&mut entries, &format!("{TOP}/README.md"));
    let mut hidden = entries[readme].clone();
    hidden.set_field(0, 100, format!("{TOP}/bin/evil").as_bytes());
    hidden.set_field(100, 8, b"0000755\0");
    hidden.set_data(b"#!/bin/sh\nid\n".to_vec());
    hidden.fix_checksum();
    let mut content = hidden.header.to_vec();
    content.extend_from_slice(&hidden.data);
    content.resize(1024, 0);
    entries[readme].set_data(content);
    reseal(&mut entries);
    set_bytes(&mut entries[readme], 124, b"0 0000002000");
    entries[readme].fix_checksum();

    let scratch = Scratch::new();
    let bundle = write_bundle(&scratch.path, &entries);
    let gnu = scratch.join("gnu");
    let extracted = gnu_tar(&bundle, &gnu).expect("GNU tar extracts the crafted bundle");
    assert!(
        extracted
            .iter()
            .any(|l| l.starts_with(&format!("{TOP}/bin/evil f"))),
        "the crafted bundle no longer hides an entry from a lenient reader: {extracted:#?}"
    );
    let text = refused(
        &scratch.path,
        &["verify", "--strict", "--message-format", "json", NAME],
    );
    assert!(
        text.contains("\"code\":\"bad-header\"") && text.contains("size field"),
        "{text}"
    );
    assert_unpack_refused(&scratch.path);
}

/// Insert symlinks after `after` (canonical order kept) and list them in the manifest.
fn add_symlinks(entries: &mut Vec<TarEntry>, after: &str, links: &[(&str, &str)]) {
    let at = find(entries, &format!("{TOP}/{after}"));
    let like = entries[at].clone();
    for (i, (path, target)) in links.iter().enumerate() {
        let full = format!("{TOP}/{path}");
        let raw = TarEntry::crafted(&like, full.as_bytes(), b'2', 0o777, b"", target.as_bytes());
        entries.insert(at + 1 + i, raw);
    }
    let mi = find(entries, &format!("{TOP}/MANIFEST.json"));
    let mut manifest: serde_json::Value = serde_json::from_slice(&entries[mi].data).unwrap();
    let files = manifest["files"].as_array_mut().unwrap();
    for (path, target) in links {
        files.push(serde_json::json!({
            "path": path, "kind": "symlink", "mode": "0777", "size": 0, "target": target
        }));
    }
    files.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    entries[mi].set_data(serde_json::to_vec_pretty(&manifest).unwrap());
    reseal(entries);
}

/// `up -> ..` and a path that climbs back through it: lexically inside, on disk `/`.
#[test]
fn a_symlink_that_leaves_through_another_symlink_is_refused() {
    let scratch = Scratch::new();
    let root_target = "up/static/up/static/up/../../../../../../..";
    // Control: the same shape without the climb verifies, so the refusal below is about it.
    let mut fine = entries_of(webapp_bundle());
    add_symlinks(
        &mut fine,
        "priv/static/latest.html",
        &[
            ("priv/static/root", "up/static/index.html"),
            ("priv/static/up", ".."),
        ],
    );
    let dir = scratch.join("fine");
    fs::create_dir_all(&dir).unwrap();
    write_bundle(&dir, &fine);
    let out = run_tool(&dir, &["verify", "--strict", NAME], &[]);
    assert_success(&out);

    let mut entries = entries_of(webapp_bundle());
    add_symlinks(
        &mut entries,
        "priv/static/latest.html",
        &[("priv/static/root", root_target), ("priv/static/up", "..")],
    );
    write_bundle(&scratch.path, &entries);
    let text = refused(&scratch.path, &["verify", "--message-format", "json", NAME]);
    let hit = text.lines().any(|l| {
        let m: serde_json::Value = serde_json::from_str(l).unwrap();
        m["code"] == "symlink-escape"
            && m["path"] == format!("{TOP}/priv/static/root")
            && m["message"].as_str().unwrap().contains("`priv/static/up`")
    });
    assert!(hit, "{text}");
    assert_unpack_refused(&scratch.path);
}

/// A bundle holding one file of `size` zeros, compressed as it is generated.
fn zero_bomb(path: &Path, size: u64) {
    use std::io::Write;
    let good = entries_of(webapp_bundle());
    let mut bomb = TarEntry::crafted(
        &good[0],
        format!("{TOP}/bomb").as_bytes(),
        b'0',
        0o644,
        b"",
        b"",
    );
    bomb.set_field(124, 12, format!("{size:011o}\0").as_bytes());
    bomb.fix_checksum();
    let file = fs::File::create(path).unwrap();
    let mut enc = zstd::stream::write::Encoder::new(file, 1).unwrap();
    enc.include_checksum(true).unwrap();
    enc.write_all(&good[0].header).unwrap();
    enc.write_all(&bomb.header).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..size >> 20 {
        enc.write_all(&zeros).unwrap();
    }
    enc.write_all(&[0; 1024]).unwrap();
    enc.finish().unwrap();
}

/// The number after `expand to` in a limit-ratio message.
fn expanded(text: &str) -> u64 {
    let at = text.find("expand to ").expect("a limit-ratio message") + "expand to ".len();
    text[at..].split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn bombs_are_stopped_inside_the_entry() {
    let scratch = Scratch::new();
    let bundle = scratch.join("bomb.tar.zst");
    zero_bomb(&bundle, 1 << 30);
    assert!(fs::metadata(&bundle).unwrap().len() < 1 << 20);
    let text = refused(
        &scratch.path,
        &["verify", "--message-format", "json", "bomb.tar.zst"],
    );
    assert!(text.contains("\"code\":\"limit-ratio\""), "{text}");
    // Stopped within a chunk of the 64 MiB floor, not after the whole GiB.
    let n = expanded(&text);
    assert!(n < 80 << 20, "read {n} bytes before refusing: {text}");

    // A declared size past --max-size is refused before any of it is read.
    let text = refused(
        &scratch.path,
        &[
            "verify",
            "--message-format",
            "json",
            "--max-size",
            "100000000",
            "bomb.tar.zst",
        ],
    );
    assert!(
        text.contains("\"code\":\"limit-size\"") && text.contains("declares 1073741824 bytes"),
        "{text}"
    );

    // unpack under a 150 MiB file-size limit: it must refuse, not be killed by SIGXFSZ, and
    // leave nothing behind.
    let to = scratch.join("installed");
    let script = format!(
        "ulimit -f 307200 && exec '{}' release-bundle unpack bomb.tar.zst --to '{}'",
        tool().display(),
        to.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .current_dir(&scratch.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let left: Vec<_> = fs::read_dir(&scratch.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["bomb.tar.zst"], "unpack left files behind");
}

/// Start `unpack` of a 2 GiB entry under `umask 000` and wait until it is writing; returns
/// the child and its temporary directory.
fn unpack_in_flight(
    dir: &Path,
    to: &Path,
    not: Option<&Path>,
) -> (std::process::Child, std::path::PathBuf) {
    let script = format!(
        "umask 000 && exec '{}' release-bundle unpack -q --max-ratio 100000000 bomb.tar.zst --to '{}'",
        tool().display(),
        to.display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir)
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        let tmp = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                Some(p.as_path()) != not
                    && p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(".installed.unpack-")
            });
        if let Some(tmp) = tmp
            && fs::metadata(tmp.join("bomb")).is_ok_and(|m| m.len() > 0)
        {
            return (child, tmp);
        }
        if start.elapsed() > std::time::Duration::from_secs(30)
            || child.try_wait().unwrap().is_some()
        {
            let _ = child.kill();
            panic!("unpack never started writing");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn unpack_temp_dirs_are_private_and_never_left_behind() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new();
    zero_bomb(&scratch.join("bomb.tar.zst"), 2 << 30);
    let to = scratch.join("installed");

    // kill -9 mid-way: the directory stays, private despite umask 000.
    let (mut child, tmp) = unpack_in_flight(&scratch.path, &to, None);
    let mode = fs::metadata(&tmp).unwrap().permissions().mode() & 0o777;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(mode, 0o700, "the temporary directory is not private");
    assert!(tmp.exists());

    // The next unpack to the same destination removes it; SIGTERM removes its own.
    let (child, second) = unpack_in_flight(&scratch.path, &to, Some(&tmp));
    assert!(
        !tmp.exists(),
        "the stale temporary directory was not removed"
    );
    let pid = child.id().to_string();
    sh(&scratch.path, "kill", &["-TERM", &pid]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(!second.exists(), "SIGTERM left the temporary directory");
    assert!(!to.exists());
}

/// 64 MiB of distinct `/home/<user>/` paths in one file: verify lists a capped number,
/// counts the rest, and runs in flat memory (an address-space limit of 64 MiB; keeping every
/// distinct path took gigabytes).
#[test]
fn the_leak_scan_has_flat_memory() {
    use std::io::Write;
    if !have("prlimit") {
        return;
    }
    let scratch = Scratch::new();
    let good = entries_of(webapp_bundle());
    let lines = (64 << 20) / 16;
    let mut leak = TarEntry::crafted(
        &good[0],
        format!("{TOP}/leaky").as_bytes(),
        b'0',
        0o644,
        b"",
        b"",
    );
    leak.set_field(124, 12, format!("{:011o}\0", lines * 16).as_bytes());
    leak.fix_checksum();
    let path = scratch.join("leaky.tar.zst");
    let mut enc = zstd::stream::write::Encoder::new(fs::File::create(&path).unwrap(), 1).unwrap();
    enc.include_checksum(true).unwrap();
    enc.write_all(&good[0].header).unwrap();
    enc.write_all(&leak.header).unwrap();
    let mut block = Vec::with_capacity(1 << 20);
    for i in 0..lines {
        write!(block, "/home/u{i:07x}/ ").unwrap();
        if block.len() >= 1 << 20 {
            enc.write_all(&block).unwrap();
            block.clear();
        }
    }
    enc.write_all(&block).unwrap();
    enc.write_all(&[0; 1024]).unwrap();
    enc.finish().unwrap();

    let out = Command::new("prlimit")
        .arg(format!("--as={}:unlimited", 64u64 << 20))
        .arg("--")
        .arg(tool())
        .args([
            "release-bundle",
            "verify",
            "--message-format",
            "json",
            "leaky.tar.zst",
        ])
        .current_dir(&scratch.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let msgs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let leaks: Vec<&serde_json::Value> = msgs.iter().filter(|m| m["code"] == "leak").collect();
    assert_eq!(leaks.len(), 16 + 1, "{leaks:#?}");
    let summary = leaks.iter().find(|m| m["path"].is_null()).unwrap();
    let more = format!("{} more matches", lines - 16);
    assert!(
        summary["message"].as_str().unwrap().contains(&more),
        "{summary}"
    );
}

/// Run the tool with a deadline: a hang fails the test instead of stalling it.
fn run_with_deadline(dir: &Path, args: &[&str], secs: u64) -> std::process::Output {
    let mut cmd = tool_command(dir);
    cmd.args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(secs) {
            child.kill().unwrap();
            panic!("`{}` hung", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn special_files_as_sidecar_or_bundle_are_refused_without_blocking() {
    if !have("mkfifo") {
        return;
    }
    let scratch = Scratch::new();
    let bundle = scratch.join(NAME);
    fs::copy(webapp_bundle(), &bundle).unwrap();
    let sidecar = scratch.join(format!("{NAME}.sha256"));
    sh(&scratch.path, "mkfifo", &[sidecar.to_str().unwrap()]);
    for args in [
        vec!["verify", NAME],
        vec!["unpack", NAME, "--to", "installed"],
    ] {
        let out = run_with_deadline(&scratch.path, &args, 20);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.contains(&format!("{NAME}.sha256")) && err.contains("FIFO"),
            "{args:?}: {err}"
        );
    }
    assert!(!scratch.join("installed").exists());
    fs::remove_file(&sidecar).unwrap();
    fs::create_dir(&sidecar).unwrap();
    let out = run_with_deadline(&scratch.path, &["verify", NAME], 20);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("directory"), "{}", stderr(&out));

    let fifo = scratch.join("fifo.tar.zst");
    sh(&scratch.path, "mkfifo", &[fifo.to_str().unwrap()]);
    let out = run_with_deadline(&scratch.path, &["verify", "fifo.tar.zst"], 20);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("`fifo.tar.zst`"), "{}", stderr(&out));
}

#[test]
fn a_zstd_frame_without_its_checksum_fails_strict() {
    if !have("zstd") {
        return;
    }
    let scratch = Scratch::new();
    let plain = scratch.join("plain.tar");
    let bundle = scratch.join(NAME);
    sh(
        &scratch.path,
        "zstd",
        &[
            "-qdf",
            webapp_bundle().to_str().unwrap(),
            "-o",
            plain.to_str().unwrap(),
        ],
    );
    for (flag, warned) in [("--check", false), ("--no-check", true)] {
        sh(
            &scratch.path,
            "zstd",
            &[
                "-qf",
                flag,
                plain.to_str().unwrap(),
                "-o",
                bundle.to_str().unwrap(),
            ],
        );
        let digest = sha256_file(&bundle);
        fs::write(
            scratch.join(format!("{NAME}.sha256")),
            format!("{digest}  {NAME}\n"),
        )
        .unwrap();
        let out = run_tool(
            &scratch.path,
            &["verify", "--message-format", "json", NAME],
            &[],
        );
        assert_success(&out);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.contains("\"code\":\"zstd-checksum\""),
            warned,
            "{flag}: {text}"
        );
        let strict = run_tool(&scratch.path, &["verify", "--strict", NAME], &[]);
        assert_eq!(
            strict.status.code(),
            Some(if warned { 1 } else { 0 }),
            "{flag}: {}",
            stderr(&strict)
        );
    }
}

#[test]
fn summaries_say_whether_origin_was_checked() {
    let scratch = Scratch::new();
    let bundle = scratch.join(NAME);
    fs::copy(webapp_bundle(), &bundle).unwrap();
    let digest = sha256_file(&bundle);
    let summary = |args: &[&str]| -> (serde_json::Value, String) {
        let mut json = vec!["verify", "--message-format", "json"];
        json.extend_from_slice(args);
        json.push(NAME);
        let out = run_tool(&scratch.path, &json, &[]);
        assert_success(&out);
        let last = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .to_string();
        let mut human = vec!["verify"];
        human.extend_from_slice(args);
        human.push(NAME);
        let out = run_tool(&scratch.path, &human, &[]);
        assert_success(&out);
        (
            serde_json::from_str(&last).unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (json, human) = summary(&[]);
    assert_eq!(json["reference"], "none", "{json}");
    assert_eq!(json["origin_checked"], false);
    assert!(
        human.contains("consistent with its own metadata:")
            && human.contains("not where it came from"),
        "{human}"
    );

    fs::write(
        scratch.join(format!("{NAME}.sha256")),
        format!("{digest}  {NAME}\n"),
    )
    .unwrap();
    let (json, human) = summary(&[]);
    assert_eq!(json["reference"], "sidecar-only", "{json}");
    assert_eq!(json["origin_checked"], false);
    assert!(
        human.contains("the `.sha256` beside it") && human.contains("--sha256 HEX"),
        "{human}"
    );

    let (json, human) = summary(&["--sha256", &digest]);
    assert_eq!(json["reference"], "expected-digest", "{json}");
    assert_eq!(json["origin_checked"], true);
    assert!(!human.contains("not where it came from"), "{human}");
}

/// Every way a source could reach outside the package is refused before anything is built,
/// naming the key and the resolved path; nothing is written.
#[test]
fn sources_outside_the_package_are_refused() {
    use std::os::unix::fs::symlink;
    type Setup = fn(&Fixture, &Path);
    let cases: &[(&str, Setup, &str)] = &[
        (
            "priv -> ../.cargo",
            |fx, _| {
                fs::remove_dir_all(fx.root.join("priv")).unwrap();
                symlink("../.cargo", fx.root.join("priv")).unwrap();
            },
            "error: the package's `priv` directory resolves to `…/.cargo`, outside the package directory `…/webapp`",
        ),
        (
            "priv -> absolute ssh dir",
            |fx, ssh| {
                fs::remove_dir_all(fx.root.join("priv")).unwrap();
                symlink(ssh, fx.root.join("priv")).unwrap();
            },
            "error: the package's `priv` directory resolves to `…/home/.ssh`, outside",
        ),
        (
            "priv = \"pl\" -> ssh dir",
            |fx, ssh| {
                symlink(ssh, fx.root.join("pl")).unwrap();
                fx.edit(
                    "Cargo.toml",
                    "name = \"webapp\"\nbins",
                    "name = \"webapp\"\npriv = \"pl\"\nbins",
                );
            },
            "error: Cargo.toml: package.metadata.release.priv: \"pl\" resolves to `…/home/.ssh`, outside",
        ),
        (
            "include dl/* with dl -> ssh dir",
            |fx, ssh| {
                symlink(ssh, fx.root.join("dl")).unwrap();
                fx.edit(
                    "Cargo.toml",
                    "include = [",
                    "include = [\n  { source = \"dl/*\", dest = \"keys/\" },",
                );
            },
            "error: Cargo.toml: package.metadata.release.include[0].source: \"dl/*\" resolves to `…/home/.ssh`, outside",
        ),
        (
            "include ../secret.txt",
            |fx, _| {
                fx.edit(
                    "Cargo.toml",
                    "include = [",
                    "include = [\n  { source = \"../secret.txt\", dest = \"./\" },",
                )
            },
            "error: Cargo.toml: package.metadata.release.include[0].source: \"../secret.txt\" resolves to `…/secret.txt`, outside",
        ),
        (
            "include src/../../secret.txt",
            |fx, _| {
                fx.edit(
                    "Cargo.toml",
                    "include = [",
                    "include = [\n  { source = \"src/../../secret.txt\", dest = \"./\" },",
                )
            },
            "error: Cargo.toml: package.metadata.release.include[0].source: \"src/../../secret.txt\" resolves to `…/secret.txt`, outside",
        ),
        (
            "include ../*",
            |fx, _| {
                fx.edit(
                    "Cargo.toml",
                    "include = [",
                    "include = [\n  { source = \"../*\", dest = \"up/\" },",
                )
            },
            "error: Cargo.toml: package.metadata.release.include[0].source: \"../*\" resolves to `…`, outside",
        ),
        (
            "hook ../secret.txt",
            |fx, _| {
                fx.edit(
                    "Cargo.toml",
                    "pre-start = \"rel/hooks/pre_start.sh\"",
                    "pre-start = \"../secret.txt\"",
                )
            },
            "error: Cargo.toml: package.metadata.release.hooks.pre-start: \"../secret.txt\" resolves to `…/secret.txt`, outside",
        ),
    ];
    let wildcard = |pattern: &str, text: &str| {
        let mut rest = text;
        for (i, part) in pattern.split('…').enumerate() {
            match rest.find(part) {
                Some(at) if i > 0 || at == 0 => rest = &rest[at + part.len()..],
                _ => return false,
            }
        }
        true
    };
    for (what, setup, expected) in cases {
        let fx = Fixture::new("webapp");
        let canary = "CANARY-SECRET";
        fs::write(fx.scratch.join("secret.txt"), canary).unwrap();
        fs::create_dir_all(fx.scratch.join(".cargo")).unwrap();
        fs::write(fx.scratch.join(".cargo/credentials.toml"), canary).unwrap();
        let ssh = fx.scratch.join("home/.ssh");
        fs::create_dir_all(&ssh).unwrap();
        fs::write(ssh.join("id_ed25519"), canary).unwrap();
        setup(&fx, &ssh);
        let out_dir = fx.out();
        let out = fx.run(&["--out-dir", out_dir.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        let first = err.lines().next().unwrap_or_default();
        assert!(
            wildcard(expected, first),
            "{what}:\nexpected {expected}\nfound    {first}"
        );
        assert!(
            !out_dir.exists() || fs::read_dir(&out_dir).unwrap().next().is_none(),
            "{what}: wrote output"
        );
    }
}

/// A shared `--out` where another user planted symlinks at the names merge writes: nothing
/// is written through them, and the result checks out.
#[test]
fn merge_never_writes_through_planted_links() {
    let scratch = Scratch::new();
    let input = scratch.join("in");
    fs::create_dir_all(&input).unwrap();
    let bundle = input.join(NAME);
    fs::copy(webapp_bundle(), &bundle).unwrap();
    let digest = sha256_file(&bundle);
    fs::write(
        input.join(format!("{NAME}.sha256")),
        format!("{digest}  {NAME}\n"),
    )
    .unwrap();
    let provenance = format!("{}.intoto.jsonl", webapp_bundle().display());
    fs::copy(&provenance, input.join(format!("{NAME}.intoto.jsonl"))).unwrap();
    let out = scratch.join("out");
    fs::create_dir_all(&out).unwrap();
    let victim = scratch.join("root-only");
    fs::write(&victim, "precious\n").unwrap();
    let merge = || {
        let (input, out) = (input.to_str().unwrap(), out.to_str().unwrap());
        run_tool(&scratch.path, &["merge", input, "--out", out], &[])
    };
    for planted in [
        format!(".{NAME}.merge-tmp"),
        format!("{NAME}.sha256"),
        "SHA256SUMS".to_string(),
        "index.json".to_string(),
    ] {
        std::os::unix::fs::symlink(&victim, out.join(planted)).unwrap();
    }
    assert_success(&merge());
    assert_eq!(
        fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "written through a link"
    );
    for name in [
        NAME.to_string(),
        format!("{NAME}.sha256"),
        "SHA256SUMS".into(),
    ] {
        let meta = fs::symlink_metadata(out.join(&name)).unwrap();
        assert!(meta.file_type().is_file(), "{name} is not a regular file");
    }
    assert_eq!(sha256_file(&out.join(NAME)), digest);
    assert_eq!(
        fs::read(out.join(format!("{NAME}.intoto.jsonl"))).unwrap(),
        fs::read(&provenance).unwrap(),
        "provenance travels with its bundle"
    );
    if have("sha256sum") {
        sh(&out, "sha256sum", &["-c", &format!("{NAME}.sha256")]);
        sh(&out, "sha256sum", &["-c", "SHA256SUMS"]);
    }
    // Merging again into the same directory is a no-op; a different file there is refused.
    assert_success(&merge());
    fs::write(out.join(NAME), "other").unwrap();
    let res = merge();
    assert_ne!(res.status.code(), Some(0));
    assert!(
        stderr(&res).contains("already exists with other content"),
        "{}",
        stderr(&res)
    );
    // A minisign signature travels too; a companion that is a link to another file is
    // refused, never published.
    fs::remove_dir_all(&out).unwrap();
    fs::write(
        input.join(format!("{NAME}.minisig")),
        "a minisign signature\n",
    )
    .unwrap();
    assert_success(&merge());
    assert_eq!(
        fs::read_to_string(out.join(format!("{NAME}.minisig"))).unwrap(),
        "a minisign signature\n"
    );
    fs::remove_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&victim, input.join(format!("{NAME}.sig"))).unwrap();
    let res = merge();
    assert_ne!(res.status.code(), Some(0));
    assert!(stderr(&res).contains("symbolic link"), "{}", stderr(&res));
    assert!(!out.join(format!("{NAME}.sig")).exists());
}

/// A fresh clone without `.gitignore`: the tool's own target and out directories, created
/// by the first run, never make the second run "dirty" (and so different).
#[test]
fn the_tools_own_outputs_never_count_as_uncommitted_changes() {
    let fx = Fixture::new("native");
    let _ = fs::remove_file(fx.root.join(".gitignore"));
    git(&fx.root, &["init", "-q"]);
    git(&fx.root, &["add", "-A"]);
    git(&fx.root, &["commit", "-qm", "init"]);
    let mut bytes = Vec::new();
    for _ in 0..2 {
        let out = fx.run(&["--out-dir", "dist", "--message-format", "json"]);
        assert_success(&out);
        assert!(!stderr(&out).contains("uncommitted"), "{}", stderr(&out));
        let msg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let path = PathBuf::from(msg["path"].as_str().unwrap());
        bytes.push(fs::read(&path).unwrap());
        let top = extract(&path, &fx.scratch.join(format!("x{}", bytes.len())), "gnu");
        let dir = fs::read_dir(&top).unwrap().next().unwrap().unwrap().path();
        assert_eq!(manifest(&dir)["git"]["dirty"], false);
    }
    assert!(
        bytes[0] == bytes[1],
        "the second run in the same clone gave other bytes"
    );
    // A real change still counts.
    fs::write(fx.root.join("src/extra.rs"), "// new\n").unwrap();
    let out = fx.run(&["--out-dir", "dist"]);
    assert_success(&out);
    assert!(stderr(&out).contains("uncommitted"), "{}", stderr(&out));
}
