//! Memory stays bounded: a 1 GiB priv file is bundled while the tool runs under an
//! address-space limit far below 1 GiB, and the result checks out with `sha256sum -c`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::*;

/// Run `program` with the soft limit lifted again (cargo and rustc need more than the tool).
fn unlimited_wrapper(dir: &std::path::Path, name: &str, program: &str) -> std::path::PathBuf {
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let path = dir.join(name);
    fs::write(
        &path,
        format!("#!/bin/sh\nulimit -S -v unlimited\nexec '{real}' \"$@\"\n"),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_1gib_priv_file_bundles_in_bounded_memory() {
    if !have("prlimit") || !have("sha256sum") || !have("tar") {
        return;
    }
    let fx = Fixture::new("webapp");
    // 1 GiB, sparse on disk: read back as zeros, so the test is fast, but every byte still
    // streams through hashing, tar and zstd.
    let big = fs::File::create(fx.root.join("priv/big.bin")).unwrap();
    big.set_len(1 << 30).unwrap();
    drop(big);
    let cargo = unlimited_wrapper(
        &fx.scratch.path,
        "cargo",
        &std::env::var("CARGO").unwrap_or("cargo".into()),
    );
    let rustc = unlimited_wrapper(&fx.scratch.path, "rustc", "rustc");
    let limit: u64 = 128 << 20;
    let out = Command::new("prlimit")
        .arg(format!("--as={limit}:unlimited"))
        .arg("--")
        .arg(tool())
        .args([
            "release-bundle",
            "--message-format",
            "json",
            "-q",
            "--out-dir",
        ])
        .arg(fx.out())
        .current_dir(&fx.root)
        .env("CARGO", &cargo)
        .env("RUSTC", &rustc)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert_success(&out);
    let msg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bundle = std::path::PathBuf::from(msg["path"].as_str().unwrap());
    assert!(
        fs::metadata(&bundle).unwrap().len() < 64 << 20,
        "zeros compress"
    );

    sh(
        bundle.parent().unwrap(),
        "sha256sum",
        &[
            "-c",
            &format!("{}.sha256", bundle.file_name().unwrap().to_str().unwrap()),
        ],
    );
    let top = extract(&bundle, &fx.scratch.join("x"), "gnu").join("webapp-1.2.0");
    assert_eq!(
        fs::metadata(top.join("priv/big.bin")).unwrap().len(),
        1 << 30
    );
    sh(&top, "sha256sum", &["-c", "--quiet", "SHA256SUMS"]);
}
