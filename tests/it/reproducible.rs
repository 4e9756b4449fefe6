//! Reproducible across machines: the same commit gives the same bytes from another checkout
//! path, CARGO_HOME, umask, time zone and locale, with the user's own rustflags intact; and
//! `verify --rebuild` proves it (or names what differs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use crate::verify::{entries_of, find, reseal, write_entries};

fn real_cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"))
}

/// The toolchain the tests run with, pinned so that a test that swaps `HOME` or `CARGO_HOME`
/// still finds it when the test binary runs on its own (without `cargo test`'s environment):
/// `RUSTUP_HOME` and `RUSTUP_TOOLCHAIN` where rustup is in use.
fn toolchain_env() -> Vec<(String, String)> {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let mut env = Vec::new();
    let rustup_home = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".rustup"));
    if rustup_home.is_dir() {
        env.push(("RUSTUP_HOME".into(), rustup_home.display().to_string()));
        let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok().or_else(|| {
            let out = Command::new("rustup")
                .args(["show", "active-toolchain"])
                .output()
                .ok()?;
            let text = String::from_utf8(out.stdout).ok()?;
            text.split_whitespace().next().map(String::from)
        });
        if let Some(toolchain) = toolchain {
            env.push(("RUSTUP_TOOLCHAIN".into(), toolchain));
        }
    }
    env
}

/// Bundle `root` with the given environment (and umask), returning the bundle's path.
fn bundle_in(root: &Path, out: &Path, umask: &str, env: &[(&str, &str)]) -> (PathBuf, String) {
    bundle_with(root, out, umask, env, &[])
}

/// [`bundle_in`] with more arguments for the tool.
fn bundle_with(
    root: &Path,
    out: &Path,
    umask: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> (PathBuf, String) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "umask {umask} && exec \"$0\" release-bundle --message-format json --out-dir \"$@\""
        ))
        .arg(tool())
        .arg(out)
        .args(args)
        .current_dir(root)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    for (k, v) in toolchain_env() {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap();
    assert_success(&output);
    let msg: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    (
        PathBuf::from(msg["path"].as_str().unwrap()),
        stderr(&output),
    )
}

/// A second CARGO_HOME elsewhere, sharing the already-fetched registry.
fn other_cargo_home(scratch: &Scratch) -> PathBuf {
    let home = scratch.join("another home/cargo");
    fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::symlink(real_cargo_home().join("registry"), home.join("registry")).unwrap();
    home
}

/// Two checkouts of `native` at different paths, bundled under different environments.
fn two_checkouts(config: Option<&str>) -> (Vec<u8>, Vec<u8>, Fixture, PathBuf) {
    let one = Fixture::new("native");
    let scratch = &one.scratch;
    let two = scratch.join("some other place/deeper/native");
    copy_tree(&repo().join("fixtures/native"), &two);
    if let Some(config) = config {
        for root in [&one.root, &two] {
            fs::create_dir_all(root.join(".cargo")).unwrap();
            fs::write(root.join(".cargo/config.toml"), config).unwrap();
        }
    }
    let home = other_cargo_home(scratch);
    let (a, _) = bundle_in(
        &one.root,
        &scratch.join("out-a"),
        "022",
        &[("TZ", "UTC"), ("LC_ALL", "C")],
    );
    let (b, _) = bundle_in(
        &two,
        &scratch.join("out-b"),
        "077",
        &[
            ("CARGO_HOME", home.to_str().unwrap()),
            ("TZ", "Pacific/Chatham"),
            ("LC_ALL", "C.UTF-8"),
            ("HOME", scratch.join("another home").to_str().unwrap()),
        ],
    );
    // The provenance beside each is identical too (no clock, no path).
    let provenance = |p: &Path| fs::read(format!("{}.intoto.jsonl", p.display())).unwrap();
    assert!(
        provenance(&a) == provenance(&b),
        "provenance differs between checkouts"
    );
    (fs::read(&a).unwrap(), fs::read(&b).unwrap(), one, a)
}

fn run_bundled(bundle: &Path, into: &Path) -> String {
    let top = extract(bundle, into, "gnu").join("native-0.2.0");
    let out = Command::new(top.join("libexec/native"))
        .arg("a/b")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn same_bytes_from_another_checkout_home_umask_tz_and_locale() {
    if !have("tar") {
        return;
    }
    let (a, b, fx, path) = two_checkouts(None);
    assert!(a == b, "bundles built in two checkouts differ");
    // The C code's __FILE__ and the registry crate's panic paths were remapped.
    assert_eq!(
        run_bundled(&path, &fx.scratch.join("x")),
        "/build/workspace/csrc/where.c Some(1) 0\n"
    );
    let verify = run_tool(
        &fx.scratch.path,
        &["verify", "--strict", path.to_str().unwrap()],
        &[],
    );
    assert_success(&verify);
    let top = fx.scratch.join("x/native-0.2.0");
    assert_eq!(
        manifest(&top)["path_remap"],
        serde_json::json!(["/build/workspace", "/build/cargo-home"])
    );
}

/// Every bundle of a fixture, as (file name, bytes).
fn bundles_in(
    root: &Path,
    out: &Path,
    umask: &str,
    env: &[(&str, &str)],
) -> Vec<(String, Vec<u8>)> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "umask {umask} && exec \"$0\" release-bundle -q --out-dir \"$1\""
        ))
        .arg(tool())
        .arg(out)
        .current_dir(root)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("CARGO_TARGET_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    assert_success(&cmd.output().unwrap());
    let mut all: Vec<(String, Vec<u8>)> = fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".sha256"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect();
    all.sort();
    all
}

#[test]
fn every_fixture_is_reproducible_across_checkouts() {
    for name in ["webapp", "workspace", "hostile"] {
        let one = Fixture::new(name);
        let two = one.scratch.join("elsewhere entirely").join(name);
        copy_tree(&repo().join("fixtures").join(name), &two);
        let home = other_cargo_home(&one.scratch);
        let a = bundles_in(&one.root, &one.scratch.join("a"), "022", &[("TZ", "UTC")]);
        let b = bundles_in(
            &two,
            &one.scratch.join("b"),
            "077",
            &[
                ("TZ", "Asia/Kolkata"),
                ("LC_ALL", "C.UTF-8"),
                ("CARGO_HOME", home.to_str().unwrap()),
            ],
        );
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len(), "{name}");
        for ((na, ba), (nb, bb)) in a.iter().zip(&b) {
            assert_eq!(na, nb);
            assert!(ba == bb, "{name}: {na} differs between checkouts");
        }
    }
}

#[test]
fn user_rustflags_keep_working() {
    if !have("tar") {
        return;
    }
    let (a, b, fx, path) =
        two_checkouts(Some("[build]\nrustflags = [\"--cfg\", \"native_flag\"]\n"));
    assert!(
        a == b,
        "bundles with build.rustflags differ across checkouts"
    );
    assert!(
        run_bundled(&path, &fx.scratch.join("x")).starts_with("native_flag /build/workspace/"),
        "the user's flag took effect"
    );
    // The same flag through RUSTFLAGS gives the same bytes.
    let fresh = Fixture::new("native");
    let (c, _) = bundle_in(
        &fresh.root,
        &fresh.scratch.join("out"),
        "022",
        &[("RUSTFLAGS", "--cfg native_flag")],
    );
    assert!(
        fs::read(&c).unwrap() == a,
        "RUSTFLAGS and build.rustflags give the same bytes"
    );
}

#[test]
fn warnings_for_what_cannot_be_reproduced() {
    let fx = Fixture::new("webapp");
    // A path dependency outside the workspace.
    let helper = fx.scratch.join("helper");
    fs::create_dir_all(helper.join("src")).unwrap();
    fs::write(
        helper.join("Cargo.toml"),
        "[package]\nname = \"helper\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    fs::write(helper.join("src/lib.rs"), "pub fn help() {}\n").unwrap();
    fx.edit(
        "Cargo.toml",
        "[features]",
        "[dependencies]\nhelper = { path = \"../helper\" }\n\n[features]",
    );
    let out = fx.run(&["--out-dir", fx.out().to_str().unwrap()]);
    assert_success(&out);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "warning: `Cargo.toml`: path dependency `helper` at `{}` is outside the workspace",
            helper.display()
        )),
        "{err}"
    );
    // --strict refuses.
    let out = fx.run(&[
        "--strict",
        "--out-dir",
        fx.scratch.join("strict").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn verify_rebuild_end_to_end() {
    if !have("git") {
        return;
    }
    let fx = Fixture::new("webapp");
    fs::write(fx.root.join(".gitignore"), "target/\n").unwrap();
    git(&fx.root, &["init", "-q"]);
    git(&fx.root, &["add", "-A"]);
    git(&fx.root, &["commit", "-q", "-m", "release"]);
    let (bundle, err) = bundle_in(&fx.root, &fx.out(), "022", &[]);
    assert!(!err.contains("warning"), "{err}");
    let b = bundle.to_str().unwrap();

    let out = run_tool(
        &fx.root,
        &["verify", "--message-format", "json", "--rebuild", b],
        &[],
    );
    let (code, msgs) = (out.status.code().unwrap(), json_lines(&out));
    assert_eq!(code, 0, "{msgs:#?}");
    // It says what it is doing while the build runs again (cargo's lines included).
    let err = stderr(&out);
    for step in ["Checking out", "Rebuilding", "Finished", "Comparing"] {
        assert!(err.contains(step), "{step}: {err}");
    }
    assert!(
        msgs.iter().any(|m| m["code"] == "rebuild-identical"),
        "{msgs:#?}"
    );

    // A priv file changed after bundling (manifest and sums resealed, so plain verify passes).
    let top = "webapp-1.2.0";
    let mut entries = entries_of(&bundle);
    let i = find(&mut entries, &format!("{top}/priv/templates/greeting.txt"));
    entries[i].data[0] ^= 0x20;
    entries[i].fix_checksum();
    reseal(&mut entries);
    let tampered = fx
        .scratch
        .join("tampered")
        .join(bundle.file_name().unwrap());
    fs::create_dir_all(tampered.parent().unwrap()).unwrap();
    write_entries(&entries, &tampered);
    let t = tampered.to_str().unwrap();
    assert_eq!(
        verify_json(&fx.root, &[t]).0.status.code(),
        Some(0),
        "internally consistent"
    );
    let (out, msgs) = verify_json(&fx.root, &["--rebuild", t]);
    let code = out.status.code().unwrap();
    assert_eq!(code, 1);
    let hit = msgs.iter().find(|m| {
        m["code"] == "rebuild-differs" && m["path"] == format!("{top}/priv/templates/greeting.txt")
    });
    assert!(
        hit.is_some_and(|m| m["message"]
            .as_str()
            .unwrap()
            .starts_with("content differs")),
        "{msgs:#?}"
    );

    // Refusals: another toolchain, a commit that is not there.
    for (field, value, expect) in [
        (
            "rustc",
            serde_json::json!({"release": "1.0.0", "commit_hash": "abc", "host": "x"}),
            "the bundle was built with rustc 1.0.0 (abc), this machine has rustc",
        ),
        (
            "git",
            serde_json::json!({"commit": "0123456789012345678901234567890123456789", "dirty": false, "workspace": ""}),
            "commit 0123456789012345678901234567890123456789 is not available",
        ),
    ] {
        let mut entries = entries_of(&bundle);
        let mi = find(&mut entries, &format!("{top}/MANIFEST.json"));
        let mut m: serde_json::Value = serde_json::from_slice(&entries[mi].data).unwrap();
        m[field] = value;
        entries[mi].set_data(serde_json::to_vec_pretty(&m).unwrap());
        entries[mi].fix_checksum();
        reseal(&mut entries);
        write_entries(&entries, &tampered);
        let (out, msgs) = verify_json(&fx.root, &["--rebuild", t]);
        let code = out.status.code().unwrap();
        assert_eq!(code, 1);
        let refused = msgs
            .iter()
            .find(|m| m["code"] == "rebuild-refused")
            .unwrap_or_else(|| panic!("{msgs:#?}"));
        assert!(
            refused["message"].as_str().unwrap().contains(expect),
            "{refused}"
        );
    }
}

/// axum's shape: a workspace in a subdirectory of its repository (`examples/app`), with a
/// path dependency `helper`. Returns the repository and the workspace directories.
fn axum_shape(
    scratch: &Scratch,
    at: &str,
    helper_at: &str,
    profile: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let repo_dir = scratch.join(at);
    let app = repo_dir.join("examples/app");
    let helper = scratch.join(helper_at);
    fs::create_dir_all(app.join("src")).unwrap();
    fs::create_dir_all(helper.join("src")).unwrap();
    fs::write(
        helper.join("Cargo.toml"),
        "[package]\nname = \"helper\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    // Its path is compiled in twice: in symbol names (cargo's hash of the path) and file!().
    fs::write(
        helper.join("src/lib.rs"),
        "pub fn origin() -> &'static str {\n    file!()\n}\n",
    )
    .unwrap();
    let dep = pathdiff(&helper, &app);
    fs::write(
        app.join("Cargo.toml"),
        format!("[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n[dependencies]\nhelper = {{ path = \"{dep}\" }}\n\n[package.metadata.release]\n{profile}"),
    )
    .unwrap();
    fs::write(
        app.join("src/main.rs"),
        "fn main() {\n    println!(\"{}\", helper::origin());\n}\n",
    )
    .unwrap();
    fs::write(repo_dir.join(".gitignore"), "target/\n").unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    sh(&app, &cargo, &["generate-lockfile", "--offline", "-q"]);
    (repo_dir, app)
}

/// `to`'s path from `from`, with `..` (both are below the same scratch directory).
fn pathdiff(to: &Path, from: &Path) -> String {
    let common = to.ancestors().find(|a| from.starts_with(a)).unwrap();
    let ups = from.strip_prefix(common).unwrap().components().count();
    let rest = to.strip_prefix(common).unwrap();
    format!("{}{}", "../".repeat(ups), rest.display())
}

/// A path dependency elsewhere in the same repository: built through a fixed path, two
/// checkouts give the same bytes and `verify --rebuild` finds them identical.
#[test]
fn a_workspace_inside_a_larger_repository_is_reproducible() {
    if !have("git") {
        return;
    }
    // Without debug info, with line tables and with full debug info (which record the
    // directory rustc ran in, resolved: the clone's own path).
    for (i, profile) in [
        "",
        "\n[profile.release]\ndebug = \"line-tables-only\"\n",
        "\n[profile.release]\ndebug = true\n",
    ]
    .into_iter()
    .enumerate()
    {
        checkouts_at_two_depths_give_the_same_bytes(profile, i == 0);
    }
}

fn checkouts_at_two_depths_give_the_same_bytes(profile: &str, rebuild: bool) {
    let scratch = Scratch::new();
    let mut bytes = Vec::new();
    for (at, out) in [("one/repo", "out-a"), ("two/deeper/repo", "out-b")] {
        let (repo_dir, app) = axum_shape(&scratch, at, &format!("{at}/helper"), profile);
        git(&repo_dir, &["init", "-q"]);
        git(&repo_dir, &["add", "-A"]);
        git(&repo_dir, &["commit", "-q", "-m", "release"]);
        // The second clone is named through a symlink (`--manifest-path`), so the paths cargo
        // uses differ from the resolved ones rustc records.
        let (bundle, err) = if bytes.is_empty() {
            bundle_in(&app, &scratch.join(out), "022", &[])
        } else {
            let link = scratch.join("two-link");
            std::os::unix::fs::symlink(scratch.join("two"), &link).unwrap();
            let manifest = link.join("deeper/repo/examples/app/Cargo.toml");
            let manifest = manifest.to_str().unwrap();
            bundle_with(
                &scratch.path,
                &scratch.join(out),
                "022",
                &[],
                &["--manifest-path", manifest],
            )
        };
        assert!(!err.contains("warning"), "{err}");
        if bytes.is_empty() && rebuild {
            let (out, msgs) = verify_json(&app, &["--rebuild", bundle.to_str().unwrap()]);
            let code = out.status.code().unwrap();
            assert_eq!(code, 0, "{msgs:#?}");
            assert!(
                msgs.iter().any(|m| m["code"] == "rebuild-identical"),
                "{msgs:#?}"
            );
        }
        bytes.push(fs::read(&bundle).unwrap());
    }
    assert!(
        bytes[0] == bytes[1],
        "two checkouts gave different bytes with {profile:?}"
    );
}

/// A path dependency outside the repository cannot be made reproducible: bundling warns and
/// records it, and `verify --rebuild` names it as the likely cause of its failure.
#[test]
fn a_rebuild_names_a_path_dependency_outside_the_repository() {
    if !have("git") {
        return;
    }
    let scratch = Scratch::new();
    let (repo_dir, app) = axum_shape(&scratch, "repo", "elsewhere/helper", "");
    git(&repo_dir, &["init", "-q"]);
    git(&repo_dir, &["add", "-A"]);
    git(&repo_dir, &["commit", "-q", "-m", "release"]);
    let (bundle, err) = bundle_in(&app, &scratch.join("out"), "022", &[]);
    assert!(err.contains("path dependency `helper`"), "{err}");
    // The rebuild's fresh checkout does not hold the dependency: the failure says why.
    let (out, msgs) = verify_json(&app, &["--rebuild", bundle.to_str().unwrap()]);
    let code = out.status.code().unwrap();
    assert_eq!(code, 1, "{msgs:#?}");
    let named = msgs.iter().any(|m| {
        m["code"] == "rebuild-failed"
            && m["message"].as_str().unwrap().contains(
                "likely cause: the path dependencies `helper` lie outside the workspace's repository",
            )
    });
    assert!(named, "{msgs:#?}");
}
