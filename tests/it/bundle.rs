//! Bundling the webapp fixture: layout, extraction with real tools, checksums, headers,
//! and the service really running from the extracted bundle.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn host() -> String {
    let out = Command::new("rustc").arg("-vV").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .unwrap()
}

#[test]
fn webapp_bundle_extracts_verifies_and_serves() {
    let fx = Fixture::new("webapp");
    let out = fx.out();
    let msgs = fx.bundle(&["--out-dir", out.to_str().unwrap()]);
    assert_eq!(msgs.len(), 1);
    let target = host();
    let (path, name) = the_report_names_the_bundle(&msgs[0], &out, &target);
    the_sidecar_and_provenance_name_it(&out, &path, &name);
    if !(have("sha256sum") && have("zstd") && have("tar") && have("bsdtar")) {
        return;
    }
    let top = gnu_tar_and_bsdtar_extract_the_same_tree(&fx, &out, &path, &name);
    the_tree_and_its_sums(&top);
    the_manifest_describes_the_tree(&top, &fx, &target);
    the_service_runs_without_the_launcher(&top);
}

/// The JSON report: package, version, profile, target, and the bundle's path, size and digest.
fn the_report_names_the_bundle(
    m: &serde_json::Value,
    out: &Path,
    target: &str,
) -> (PathBuf, String) {
    let name = format!("webapp-1.2.0-{target}.tar.zst");
    assert_eq!(m["reason"], "bundle");
    assert_eq!(m["package"], "webapp");
    assert_eq!(m["name"], "webapp");
    assert_eq!(m["version"], "1.2.0");
    assert_eq!(m["profile"], "release");
    assert_eq!(m["target"], target);
    let path = PathBuf::from(m["path"].as_str().unwrap());
    assert!(path.is_absolute());
    assert_eq!(path, out.join(&name));
    assert_eq!(
        m["size"].as_u64().unwrap(),
        fs::metadata(&path).unwrap().len()
    );
    assert_eq!(m["sha256"].as_str().unwrap(), sha256_file(&path));
    (path, name)
}

/// `<bundle>.sha256` and `<bundle>.intoto.jsonl` beside it, and nothing else.
fn the_sidecar_and_provenance_name_it(out: &Path, path: &Path, name: &str) {
    // The sidecar: `<hex>  <file name>`, checked by sha256sum itself.
    let sidecar = fs::read_to_string(out.join(format!("{name}.sha256"))).unwrap();
    assert_eq!(sidecar, format!("{}  {name}\n", sha256_file(path)));
    let only_final = fs::read_dir(out).unwrap().count();
    assert_eq!(
        only_final, 3,
        "only the bundle, its sidecar and its provenance are left in the out dir"
    );
    // Provenance: an in-toto statement naming this bundle and its digest.
    let statement: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(out.join(format!("{name}.intoto.jsonl"))).unwrap(),
    )
    .unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(statement["subject"][0]["name"], name);
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        sha256_file(path).as_str()
    );
    assert_eq!(
        statement["predicate"]["runDetails"]["builder"]["id"],
        "local"
    );
}

/// Both extractors give one top directory with the same tree, and its sums check.
fn gnu_tar_and_bsdtar_extract_the_same_tree(
    fx: &Fixture,
    out: &Path,
    path: &Path,
    name: &str,
) -> PathBuf {
    sh(out, "sha256sum", &["-c", &format!("{name}.sha256")]);
    sh(out, "zstd", &["-t", "-q", name]);

    let gnu = extract(path, &fx.scratch.join("gnu"), "gnu");
    let bsd = extract(path, &fx.scratch.join("bsd"), "bsdtar");
    assert_eq!(
        listing(&gnu),
        listing(&bsd),
        "GNU tar and bsdtar extract the same tree"
    );
    assert_eq!(fs::read_dir(&gnu).unwrap().count(), 1, "one top directory");
    let top = gnu.join("webapp-1.2.0");
    sh(&top, "sha256sum", &["-c", "--strict", "SHA256SUMS"]);
    sh(
        &bsd.join("webapp-1.2.0"),
        "sha256sum",
        &["-c", "--strict", "SHA256SUMS"],
    );
    top
}

/// The extracted tree, modes and links, and SHA256SUMS listing every file but itself.
fn the_tree_and_its_sums(top: &Path) {
    assert_eq!(
        listing(top),
        [
            "MANIFEST.json 644",
            "README.md 644",
            "SBOM.cdx.json 644",
            "SHA256SUMS 644",
            "bin 755",
            "bin/webapp 755",
            "hooks 755",
            "hooks/post-start.sh 755",
            "hooks/post-stop.sh 755",
            "hooks/pre-start.sh 755",
            "hooks/pre-stop.sh 755",
            "libexec 755",
            "libexec/webapp 755",
            "libexec/webapp-migrate 755",
            "priv 755",
            "priv/scripts 755",
            "priv/scripts/warmup.sh 755",
            "priv/static 755",
            "priv/static/index.html 644",
            "priv/static/latest.html -> index.html",
            "priv/templates 755",
            "priv/templates/greeting.txt 644",
            "share 755",
            "share/systemd 755",
            "share/systemd/webapp.service 644",
        ]
    );
    // SHA256SUMS lists every file but itself (symlinks are covered by their target).
    let sums = fs::read_to_string(top.join("SHA256SUMS")).unwrap();
    let listed: Vec<&str> = sums
        .lines()
        .map(|l| l.split_once("  ").unwrap().1)
        .collect();
    assert_eq!(
        listed,
        [
            "README.md",
            "SBOM.cdx.json",
            "bin/webapp",
            "hooks/post-start.sh",
            "hooks/post-stop.sh",
            "hooks/pre-start.sh",
            "hooks/pre-stop.sh",
            "libexec/webapp",
            "libexec/webapp-migrate",
            "priv/scripts/warmup.sh",
            "priv/static/index.html",
            "priv/templates/greeting.txt",
            "share/systemd/webapp.service",
            "MANIFEST.json"
        ]
    );
}

/// MANIFEST.json: identity, toolchain, timestamp, compression, and every file's kind and sum.
fn the_manifest_describes_the_tree(top: &Path, fx: &Fixture, target: &str) {
    let man = manifest(top);
    assert_eq!(man["format_version"], 1);
    assert_eq!(man["name"], "webapp");
    assert_eq!(man["package"], "webapp");
    assert_eq!(man["version"], "1.2.0");
    assert_eq!(man["profile"], "release");
    assert_eq!(man["target"], target);
    assert_eq!(man["top_dir"], "webapp-1.2.0");
    assert!(man["rustc"]["release"].as_str().unwrap().starts_with("1."));
    assert_eq!(man["rustc"]["commit_hash"].as_str().unwrap().len(), 40);
    assert_eq!(man["timestamp"]["source"], "constant");
    assert_eq!(man["timestamp"]["epoch"], 315_532_800);
    assert!(man["git"].is_null(), "the scratch copy is not in git");
    assert_eq!(
        man["cargo_lock_sha256"],
        sha256_file(&fx.root.join("Cargo.lock")).as_str()
    );
    assert_eq!(man["compression"]["format"], "tar.zst");
    assert_eq!(man["compression"]["level"], 3);
    assert!(
        man["compression"]["encoder"]
            .as_str()
            .unwrap()
            .contains("libzstd 1.5.7")
    );
    let files = man["files"].as_array().unwrap();
    let kinds: Vec<String> = files
        .iter()
        .map(|f| {
            format!(
                "{} {} {}",
                f["path"].as_str().unwrap(),
                f["kind"].as_str().unwrap(),
                f["mode"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "README.md include 0644",
            "SBOM.cdx.json sbom 0644",
            "bin/webapp launcher 0755",
            "hooks/post-start.sh hook 0755",
            "hooks/post-stop.sh hook 0755",
            "hooks/pre-start.sh hook 0755",
            "hooks/pre-stop.sh hook 0755",
            "libexec/webapp executable 0755",
            "libexec/webapp-migrate executable 0755",
            "priv/scripts/warmup.sh priv 0755",
            "priv/static/index.html priv 0644",
            "priv/static/latest.html symlink 0777",
            "priv/templates/greeting.txt priv 0644",
            "share/systemd/webapp.service include 0644",
        ]
    );
    for f in files.iter().filter(|f| f["kind"] != "symlink") {
        let on_disk = top.join(f["path"].as_str().unwrap());
        assert_eq!(f["sha256"].as_str().unwrap(), sha256_file(&on_disk));
        assert_eq!(
            f["size"].as_u64().unwrap(),
            fs::metadata(&on_disk).unwrap().len()
        );
    }
    let link = files.iter().find(|f| f["kind"] == "symlink").unwrap();
    assert_eq!(link["target"], "index.html");
}

/// The extracted service runs without the launcher too (finding priv next to its executable)
/// and serves its priv files over loopback.
fn the_service_runs_without_the_launcher(top: &Path) {
    let port = free_port();
    let child = Command::new(top.join("libexec/webapp"))
        .env("PORT", port.to_string())
        .env_remove("RELEASE_PRIV")
        .current_dir("/")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child);
    let index = fs::read_to_string(top.join("priv/static/index.html")).unwrap();
    assert_eq!(
        http_get(port, "/index.html", Duration::from_secs(10)),
        index
    );
    assert_eq!(
        http_get(port, "/latest.html", Duration::from_secs(1)),
        index
    );
    let migrate = sh(
        top,
        &top.join("libexec/webapp-migrate").display().to_string(),
        &["up"],
    );
    assert_eq!(migrate, "migrate up (command: )\n");
}

#[test]
fn headers_are_canonical() {
    let fx = Fixture::new("webapp");
    let msgs = fx.bundle_env(
        &["--out-dir", fx.out().to_str().unwrap()],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    let hs = headers(std::path::Path::new(msgs[0]["path"].as_str().unwrap()));
    assert!(hs.len() > 10);
    assert_eq!(hs[0].path, "webapp-1.2.0");
    assert_eq!(hs[0].kind, tar::EntryType::Directory);
    let n = hs.len();
    assert_eq!(hs[n - 2].path, "webapp-1.2.0/MANIFEST.json");
    assert_eq!(hs[n - 1].path, "webapp-1.2.0/SHA256SUMS");
    let body: Vec<&str> = hs[1..n - 2].iter().map(|h| h.path.as_str()).collect();
    let mut sorted = body.clone();
    sorted.sort();
    assert_eq!(body, sorted, "entries are sorted bytewise");
    let mut seen = std::collections::BTreeSet::new();
    for h in &hs {
        assert!(h.is_ustar, "{}: plain ustar", h.path);
        assert!(h.cksum_ok, "{}: checksum", h.path);
        assert_eq!((h.uid, h.gid), (0, 0), "{}", h.path);
        assert!(h.uname.is_empty() && h.gname.is_empty(), "{}", h.path);
        assert_eq!(h.mtime, 1_700_000_000, "{}", h.path);
        match h.kind {
            tar::EntryType::Directory => assert_eq!(h.mode, 0o755, "{}", h.path),
            tar::EntryType::Regular => assert!(h.mode == 0o644 || h.mode == 0o755, "{}", h.path),
            tar::EntryType::Symlink => {
                assert_eq!(h.mode, 0o777);
                assert_eq!(h.link.as_deref(), Some("index.html"));
            }
            other => panic!("{}: unexpected entry type {other:?}", h.path),
        }
        // Explicit directories: every parent comes before its children.
        if let Some((parent, _)) = h.path.rsplit_once('/') {
            assert!(
                seen.contains(parent),
                "{}: parent `{parent}` not seen first",
                h.path
            );
        }
        assert!(seen.insert(h.path.clone()), "{}: duplicate", h.path);
    }
}

#[test]
fn gzip_format_and_default_out_dir() {
    let fx = Fixture::new("webapp");
    // Default out dir: <target-dir>/release-bundle/<profile>/; prod overrides the level.
    let msgs = fx.bundle(&["--format", "tar.gz"]);
    let path = std::path::PathBuf::from(msgs[0]["path"].as_str().unwrap());
    assert_eq!(
        path.parent().unwrap(),
        fx.root.join("target/release-bundle/release")
    );
    assert!(path.to_str().unwrap().ends_with(".tar.gz"));
    let first = fs::read(&path).unwrap();
    // gzip header: mtime 0, OS byte 255.
    assert_eq!(&first[4..8], &[0, 0, 0, 0]);
    assert_eq!(first[9], 255);
    let again = fx.bundle(&["--format", "tar.gz"]);
    assert_eq!(
        fs::read(again[0]["path"].as_str().unwrap()).unwrap(),
        first,
        "gzip bundles are reproducible"
    );
    if !(have("tar") && have("bsdtar") && have("gzip")) {
        return;
    }
    sh(
        path.parent().unwrap(),
        "gzip",
        &["-t", path.to_str().unwrap()],
    );
    let top = extract(&path, &fx.scratch.join("x"), "gnu").join("webapp-1.2.0");
    let man = manifest(&top);
    assert_eq!(man["compression"]["format"], "tar.gz");
    assert_eq!(man["compression"]["level"], 3);
    let bsd = extract(&path, &fx.scratch.join("y"), "bsdtar");
    sh(
        &bsd.join("webapp-1.2.0"),
        "sha256sum",
        &["-c", "SHA256SUMS"],
    );
}

#[test]
fn prod_profile_overrides_level() {
    let fx = Fixture::new("webapp");
    let msgs = fx.bundle(&[
        "--profile",
        "prod",
        "--out-dir",
        fx.out().to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(msgs[0]["profile"], "prod");
    assert!(
        fx.root
            .join("target/release-bundle/cargo/prod/webapp")
            .exists(),
        "built in the prod profile, in the bundle's own target directory"
    );
    assert!(
        !fx.root.join("target/prod").exists(),
        "a plain `cargo build --profile prod` keeps its own artifacts"
    );
    if !have("tar") {
        return;
    }
    let top = extract(
        std::path::Path::new(msgs[0]["path"].as_str().unwrap()),
        &fx.scratch.join("x"),
        "gnu",
    );
    assert_eq!(
        manifest(&top.join("webapp-1.2.0"))["compression"]["level"],
        19
    );
}

#[test]
fn failed_build_keeps_the_previous_bundle() {
    let fx = Fixture::new("webapp");
    let out = fx.out();
    let msgs = fx.bundle(&["--out-dir", out.to_str().unwrap()]);
    let path = std::path::PathBuf::from(msgs[0]["path"].as_str().unwrap());
    let before = fs::read(&path).unwrap();
    let sidecar = format!("{}.sha256", path.display());
    let sidecar_before = fs::read(&sidecar).unwrap();

    fs::write(
        fx.root.join("src/main.rs"),
        "fn main() { let x: u32 = \"not a number\"; }\n",
    )
    .unwrap();
    let res = fx.run(&["--out-dir", out.to_str().unwrap()]);
    assert!(!res.status.success());
    let err = stderr(&res);
    assert!(
        err.contains("error[E0308]"),
        "cargo's diagnostics are shown:\n{err}"
    );
    assert!(
        err.contains("error: `cargo build` failed for package `webapp`"),
        "{err}"
    );
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "the previous bundle is intact"
    );
    assert_eq!(fs::read(&sidecar).unwrap(), sidecar_before);
    assert_eq!(
        fs::read_dir(&out).unwrap().count(),
        3,
        "no temporary files are left behind (bundle, sidecar, provenance)"
    );
}

#[test]
fn runs_as_a_cargo_subcommand() {
    let fx = Fixture::new("webapp");
    let bin_dir = tool().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let out = Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(["release-bundle", "--out-dir"])
        .arg(fx.out())
        .current_dir(&fx.root)
        .env("PATH", &path)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert_success(&out);
    let err = stderr(&out);
    assert!(
        err.contains("    Bundling webapp v1.2.0 (release, "),
        "{err}"
    );
    assert!(err.contains("    Finished "), "{err}");
    assert!(
        err.contains("        Next cargo release-bundle verify "),
        "{err}"
    );
    // The bundle, its sidecar and its provenance.
    assert_eq!(fs::read_dir(fx.out()).unwrap().count(), 3);

    let help = Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(["help", "release-bundle"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_success(&help);
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: cargo release-bundle"));
}

#[test]
fn unknown_keys_warn_with_a_suggestion() {
    let fx = Fixture::new("webapp");
    fx.edit(
        "Cargo.toml",
        "compression-level = 3",
        "compression-level = 3\nexclued = []",
    );
    let out = fx.run(&["--out-dir", fx.out().to_str().unwrap()]);
    assert_success(&out);
    let err = stderr(&out);
    assert!(
        err.contains("warning: Cargo.toml: package.metadata.release.exclued: unknown key, ignored\nhelp: did you mean `exclude`?"),
        "{err}"
    );
    assert!(
        !err.contains("sign-tag"),
        "cargo-release keys are ignored silently:\n{err}"
    );
    let out = fx.run(&[
        "--strict",
        "--out-dir",
        fx.scratch.join("strict").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: Cargo.toml: package.metadata.release.exclued: unknown key\n")
            && !err.contains("ignored"),
        "an error does not say the key is ignored: {err}"
    );
    assert!(!fx.scratch.join("strict").exists());
}

#[test]
fn refuses_names_that_cannot_be_stored() {
    use std::os::unix::ffi::OsStrExt;
    let fx = Fixture::new("webapp");
    let bad = fx
        .root
        .join("priv")
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    fs::write(&bad, "x").unwrap();
    let out = fx.run(&["--out-dir", fx.out().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: `")
            && err.contains("caf")
            && err.contains("file name is not UTF-8"),
        "{err}"
    );
    fs::remove_file(&bad).unwrap();

    let long = "n".repeat(120);
    fs::write(fx.root.join("priv").join(&long), "x").unwrap();
    let out = fx.run(&["--out-dir", fx.out().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("error: `priv/{long}` (from the priv file `")),
        "{err}"
    );
    assert!(err.contains("too long for a plain ustar header"), "{err}");
    assert!(!fx.out().exists(), "nothing written");
    assert!(!fx.root.join("target/release").exists(), "nothing built");
}

#[test]
fn priv_can_be_disabled_and_executables_keep_exec_bits() {
    let fx = Fixture::new("webapp");
    fx.edit(
        "Cargo.toml",
        "name = \"webapp\"\nbins",
        "name = \"webapp\"\npriv = false\nbins",
    );
    let msgs = fx.bundle(&["--out-dir", fx.out().to_str().unwrap()]);
    let hs = headers(std::path::Path::new(msgs[0]["path"].as_str().unwrap()));
    assert!(hs.iter().all(|h| !h.path.contains("/priv")), "{hs:?}");
    let exe = hs
        .iter()
        .find(|h| h.path == "webapp-1.2.0/libexec/webapp")
        .unwrap();
    assert_eq!(exe.mode, 0o755);
}

#[test]
fn features_target_and_cargo_flags_are_forwarded() {
    let fx = Fixture::new("webapp");
    let target = host();
    let msgs = fx.bundle(&[
        "--out-dir",
        fx.out().to_str().unwrap(),
        "--target",
        &target,
        "-F",
        "metrics",
        "--locked",
        "--offline",
    ]);
    let path = std::path::PathBuf::from(msgs[0]["path"].as_str().unwrap());
    assert!(path.ends_with(format!("webapp-1.2.0-{target}.tar.zst")));
    assert!(
        fx.root
            .join("target/release-bundle/cargo")
            .join(&target)
            .join("release/webapp")
            .exists(),
        "built for the explicit target"
    );
    if !have("tar") {
        return;
    }
    let top = extract(&path, &fx.scratch.join("x"), "gnu").join("webapp-1.2.0");
    assert_eq!(manifest(&top)["features"], serde_json::json!(["metrics"]));
}

#[test]
fn a_killed_run_leaves_no_file_under_the_final_name() {
    let fx = Fixture::new("webapp");
    let out = fx.out();
    // The debug build's test hook stops the run once its temporary bundle exists and says
    // where: the kill then lands at that known point, not at a moment a timer guessed.
    let marker = fx.scratch.join("paused");
    let mut cmd = tool_command(&fx.root);
    cmd.args(["--out-dir", out.to_str().unwrap(), "-q"])
        .env("CARGO_RELEASE_BUNDLE_PAUSE_FOR_TEST", &marker);
    let child = cmd.stderr(Stdio::null()).spawn().unwrap();
    let mut guard = KillOnDrop(child);
    let start = std::time::Instant::now();
    while !marker.exists() {
        assert!(
            guard.0.try_wait().unwrap().is_none(),
            "the run ended before reaching the pause"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "never paused");
        std::thread::sleep(Duration::from_millis(20));
    }
    let temp = std::path::PathBuf::from(fs::read_to_string(&marker).unwrap());
    assert!(
        temp.exists() && temp.parent() == Some(out.as_path()),
        "the bundle is first written to a temporary file in the out dir: {}",
        temp.display()
    );
    let name = temp.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with('.') && name.ends_with(".tmp"), "{name}");
    guard.0.kill().unwrap();
    guard.0.wait().unwrap();
    let names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with('.') && n.ends_with(".tmp")),
        "only hidden temporary files may remain after a kill: {names:?}"
    );
}
