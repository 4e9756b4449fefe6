//! Test support: fixture copies in temp dirs (kept when a test fails), running the tool,
//! reading bundles, and external tools that must exist in CI.

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn tool() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cargo-release-bundle"))
}

/// A temporary directory that is kept (and its path printed) when the test panics.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    pub path: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("crb-test-")
            .tempdir()
            .unwrap();
        let path = dir.path().to_path_buf();
        Scratch {
            dir: Some(dir),
            path,
        }
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("kept test directory: {}", dir.keep().display());
        }
    }
}

/// Copy a directory tree, keeping symlinks and modes, skipping `target/`.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let ft = entry.file_type().unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_name() == "target" {
            continue;
        }
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path()).unwrap(), &dest).unwrap();
        } else if ft.is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A copy of `fixtures/<name>` in a fresh scratch directory, at `<scratch>/<name>`.
pub struct Fixture {
    pub scratch: Scratch,
    pub root: PathBuf,
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        Self::from_path(&repo().join("fixtures").join(name))
    }

    pub fn from_path(src: &Path) -> Fixture {
        let scratch = Scratch::new();
        let root = scratch.join(src.file_name().unwrap());
        copy_tree(src, &root);
        Fixture { scratch, root }
    }

    /// Replace `from` with `to` in a file of the fixture; `from` must be there, so an edit that
    /// no longer applies fails the test instead of silently testing nothing.
    pub fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.root.join(file);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "`{from}` is not in {}", path.display());
        fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    /// Append `text` to a file of the fixture (a table to its `Cargo.toml`, say).
    pub fn append(&self, file: &str, text: &str) {
        let path = self.root.join(file);
        let mut all = fs::read_to_string(&path).unwrap();
        all.push_str(text);
        fs::write(&path, all).unwrap();
    }

    pub fn out(&self) -> PathBuf {
        self.scratch.join("out")
    }

    /// Run the tool in the fixture root: `cargo-release-bundle release-bundle ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run_tool(&self.root, args, env)
    }

    /// Run, assert success, and return the parsed JSON bundle messages.
    pub fn bundle(&self, args: &[&str]) -> Vec<serde_json::Value> {
        self.bundle_env(args, &[])
    }

    pub fn bundle_env(&self, args: &[&str], env: &[(&str, &str)]) -> Vec<serde_json::Value> {
        let mut all = vec!["--message-format", "json"];
        all.extend_from_slice(args);
        let out = self.run_env(&all, env);
        assert_success(&out);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

pub fn tool_command(dir: &Path) -> Command {
    let mut cmd = Command::new(tool());
    cmd.arg("release-bundle").current_dir(dir);
    for var in [
        "SOURCE_DATE_EPOCH",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CLICOLOR_FORCE",
        "RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

pub fn run_tool(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tool_command(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "tool failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// Every external tool some test runs. `tools_the_tests_need_are_installed` fails when one is
/// missing, so a skip never passes unnoticed.
pub const TOOLS: &[&str] = &[
    "tar",
    "bsdtar",
    "zstd",
    "gzip",
    "sha256sum",
    "shellcheck",
    "dash",
    "bash",
    "busybox",
    "git",
    "python3",
    "prlimit",
    "mkfifo",
    "script",
    "ssh-keygen",
    "ssh-agent",
    "ssh-add",
    "ssh",
    "sshd",
    "useradd",
    "runuser",
    "podman",
    "skopeo",
    "umoci",
    "runc",
    "ldd",
    "minisign",
];

/// Whether an external tool is installed. In CI (`CI` set) a missing tool fails the test;
/// elsewhere the caller skips, and this says so (and `tools_the_tests_need_are_installed`
/// fails, unless `RELEASE_BUNDLE_ALLOW_SKIP=1`).
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{tool}` is required in CI but not installed"
        );
        eprintln!("skipped: `{tool}` is not installed (it is required when CI is set)");
    }
    found
}

/// Run an external command, asserting success.
pub fn sh(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{program} {}` failed in {}:\n{}{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every path below `root` with its kind and mode, sorted (for comparing extractions).
pub fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name().min_depth(1) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        let desc = if meta.file_type().is_symlink() {
            format!("{rel} -> {}", fs::read_link(e.path()).unwrap().display())
        } else {
            format!("{rel} {:o}", meta.permissions().mode() & 0o7777)
        };
        out.push(desc);
    }
    out
}

/// One tar header as read back by the `tar` crate.
#[derive(Debug)]
pub struct HeaderInfo {
    pub path: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    pub is_ustar: bool,
    pub cksum_ok: bool,
    pub link: Option<String>,
}

pub fn headers(bundle: &Path) -> Vec<HeaderInfo> {
    let file = fs::File::open(bundle).unwrap();
    let reader: Box<dyn Read> = if bundle.to_string_lossy().ends_with(".tar.gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(zstd::stream::read::Decoder::new(file).unwrap())
    };
    let mut archive = tar::Archive::new(reader);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            let mut copy = h.clone();
            copy.set_cksum();
            HeaderInfo {
                path: String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mtime: h.mtime().unwrap(),
                uname: h.username_bytes().unwrap_or_default().to_vec(),
                gname: h.groupname_bytes().unwrap_or_default().to_vec(),
                is_ustar: h.as_ustar().is_some(),
                cksum_ok: copy.as_bytes() == h.as_bytes(),
                link: e
                    .link_name_bytes()
                    .map(|b| String::from_utf8(b.into_owned()).unwrap()),
            }
        })
        .collect()
}

/// Extract with an external tool into a fresh directory; returns the directory.
pub fn extract(bundle: &Path, into: &Path, tool: &str) -> PathBuf {
    fs::create_dir_all(into).unwrap();
    let b = bundle.to_str().unwrap();
    let i = into.to_str().unwrap();
    let gz = b.ends_with(".tar.gz");
    match tool {
        "gnu" if gz => sh(into, "tar", &["-xzf", b, "-C", i]),
        "gnu" => sh(into, "tar", &["--zstd", "-xf", b, "-C", i]),
        "bsdtar" => sh(into, "bsdtar", &["-xf", b, "-C", i]),
        other => panic!("unknown extractor {other}"),
    };
    into.to_path_buf()
}

pub fn manifest(top: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(top.join("MANIFEST.json")).unwrap()).unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over loopback, retrying until the server answers or `timeout` passes.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut s) => {
                use std::io::Write;
                s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                    .unwrap();
                let mut resp = String::new();
                s.read_to_string(&mut resp).unwrap();
                return resp
                    .split_once("\r\n\r\n")
                    .map(|(_, b)| b.to_string())
                    .unwrap_or_default();
            }
            Err(e) if start.elapsed() > timeout => panic!("no server on port {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Kills the child when dropped, so a failing test leaves no server behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let bytes = fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The webapp bundle, built once for every test that only reads it (in cargo's per-target test tmp dir).
pub fn webapp_bundle() -> &'static Path {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("launcher-webapp");
        let src = base.join("webapp");
        let _ = fs::remove_dir_all(&src);
        copy_tree(&repo().join("fixtures/webapp"), &src);
        let target = base.join("target");
        bundle_into(
            &src,
            &base.join("out"),
            &["--target-dir", target.to_str().unwrap()],
        )
    })
}

/// Bundle the project in `src` into `out` (then `extra`), asserting success; the bundle.
pub fn bundle_into(src: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "--message-format",
        "json",
        "-q",
        "--out-dir",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run_tool(src, &args, &[]);
    assert_success(&out);
    let msg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    PathBuf::from(msg["path"].as_str().unwrap())
}

/// `unpack <bundle> --to <to>`, run in `dir`.
pub fn unpack_to(dir: &Path, bundle: &Path, to: &Path) -> Output {
    let args = [
        "unpack",
        bundle.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ];
    run_tool(dir, &args, &[])
}

/// `fixtures/<fixture>` copied to `to`, its version (`1.0.0` there) set to `version`.
pub fn fixture_at(fixture: &str, to: &Path, version: &str) {
    let _ = fs::remove_dir_all(to);
    copy_tree(&repo().join("fixtures").join(fixture), to);
    let manifest = to.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("1.0.0"), "{fixture} is at 1.0.0");
    fs::write(&manifest, text.replacen("1.0.0", version, 1)).unwrap();
}

/// Run git in `dir` with a fixed identity and commit date, asserting success; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_DATE", "@1600000000 +0000")
        .env("GIT_COMMITTER_DATE", "@1600000000 +0000")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The webapp fixture at `version`, with `extra` added to its release table; its bundle.
pub fn webapp_at(scratch: &Scratch, version: &str, extra: &str) -> PathBuf {
    let fx = Fixture::new("webapp");
    fx.edit(
        "Cargo.toml",
        "version = \"1.2.0\"",
        &format!("version = \"{version}\""),
    );
    fx.edit(
        "Cargo.toml",
        "[package.metadata.release.env]\n",
        &format!("[package.metadata.release.env]\n{extra}"),
    );
    bundle_into(&fx.root, &scratch.join("bundles"), &[])
}

/// The name of the user running the tests.
pub fn current_user() -> String {
    sh(Path::new("/"), "id", &["-un"]).trim().to_string()
}

/// `verify --message-format json` with `args` (the bundle among them), run in `dir`: the
/// process's output and its findings, one JSON value per line.
pub fn verify_json(dir: &Path, args: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let mut all = vec!["verify", "--message-format", "json"];
    all.extend_from_slice(args);
    let out = run_tool(dir, &all, &[]);
    let findings = json_lines(&out);
    (out, findings)
}

/// The JSON objects a command printed on stdout, one per line.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A passwordless minisign key pair `<name>.key`, `<name>.pub` made by the `minisign` tool in
/// `dir`: (secret, public).
pub fn minisign_keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, public) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    let made = Command::new("minisign")
        .args(["-G", "-W", "-f", "-s"])
        .arg(&key)
        .arg("-p")
        .arg(&public)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (key, public)
}
