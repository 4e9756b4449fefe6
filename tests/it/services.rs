//! Real service shapes (reduced to `fixtures/static-site`): a service serving `assets/`
//! relative to its working directory, one told where its data is through `args` and `env`
//! with `${RELEASE_PRIV}`, and the README's snippet finding priv under `cargo run` and in a
//! release.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn bundle(fx: &Fixture) -> (std::path::PathBuf, String) {
    let out = fx.run(&[
        "--message-format",
        "json",
        "--out-dir",
        fx.out().to_str().unwrap(),
    ]);
    assert_success(&out);
    let msg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (msg["path"].as_str().unwrap().into(), stderr(&out))
}

/// Extract `bundle` below a path with spaces; returns the release root (canonical).
fn install(bundle: &Path, scratch: &Scratch, name: &str) -> std::path::PathBuf {
    let opt = scratch.join(format!("opt dir/{name}"));
    extract(bundle, &opt, "gnu");
    let top = fs::read_dir(&opt).unwrap().next().unwrap().unwrap().path();
    top.canonicalize().unwrap()
}

fn launcher(root: &Path, cwd: &Path, port: u16, args: &[&str]) -> std::process::Output {
    Command::new(root.join("bin/static-site"))
        .args(args)
        .current_dir(cwd)
        .env("PORT", port.to_string())
        .env_remove("RELEASE_TMP")
        .env_remove("RELEASE_ROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

struct Stop<'a>(&'a Path, &'a Path);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        let _ = launcher(self.0, self.1, 0, &["stop"]);
    }
}

#[test]
fn the_service_finds_its_data_in_a_release() {
    let fx = Fixture::new("static-site");
    let (path, err) = bundle(&fx);
    assert!(
        err.contains("env.SITE_LITERAL") && err.contains("stays literal"),
        "a `$` that is not substituted is warned about: {err}"
    );
    let root = install(&path, &fx.scratch, "default");
    let elsewhere = fx.scratch.join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    let port = free_port();
    assert_success(&launcher(&root, &elsewhere, port, &["daemon"]));
    let _stop = Stop(&root, &elsewhere);
    let get = |p: &str| http_get(port, p, Duration::from_secs(10));
    let data = root.join("priv/data").display().to_string();
    assert_eq!(
        get("/cwd"),
        root.display().to_string(),
        "starts in RELEASE_ROOT"
    );
    assert_eq!(
        get("/assets/index.html"),
        fs::read_to_string(fx.root.join("assets/index.html")).unwrap()
    );
    assert_eq!(
        get("/args"),
        format!("--data={data}\n--name=static-site-0.3.0")
    );
    assert_eq!(get("/env/SITE_DATA"), data);
    assert_eq!(get("/env/SITE_LITERAL"), "$HOME stays");
    assert_eq!(get("/priv/data/hello.txt"), "hello from priv/data\n");
}

#[test]
fn workdir_false_keeps_the_callers_directory_and_a_subdirectory_can_be_chosen() {
    for (setting, expect_assets) in [("workdir = false", false), ("workdir = \"priv\"", false)] {
        let fx = Fixture::new("static-site");
        fx.edit(
            "Cargo.toml",
            "[package.metadata.release]\n",
            &format!("[package.metadata.release]\n{setting}\n"),
        );
        let (path, _) = bundle(&fx);
        let root = install(&path, &fx.scratch, "x");
        let elsewhere = fx.scratch.join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        let port = free_port();
        assert_success(&launcher(&root, &elsewhere, port, &["daemon"]));
        let _stop = Stop(&root, &elsewhere);
        let get = |p: &str| http_get(port, p, Duration::from_secs(10));
        let cwd = if setting.contains("false") {
            elsewhere.canonicalize().unwrap()
        } else {
            root.join("priv")
        };
        assert_eq!(get("/cwd"), cwd.display().to_string(), "{setting}");
        assert_eq!(
            get("/assets/index.html") != "not found",
            expect_assets,
            "{setting}"
        );
        // Data reached through RELEASE_PRIV does not depend on the working directory.
        assert_eq!(get("/priv/data/hello.txt"), "hello from priv/data\n");
    }
}

/// The README's snippet is the fixture's, and it finds priv under `cargo run` too.
#[test]
fn the_readme_snippet_finds_priv_under_cargo_run() {
    let snippet = |text: &str| -> String {
        let start = text
            .find("// README: finding priv files")
            .expect("start marker");
        let end = text.find("// README: end").expect("end marker");
        text[start..end]
            .lines()
            .skip(1)
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let fixture = fs::read_to_string(repo().join("fixtures/static-site/src/main.rs")).unwrap();
    assert_eq!(
        snippet(&readme),
        snippet(&fixture),
        "README and fixture differ"
    );

    let fx = Fixture::new("static-site");
    let port = free_port();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let child = Command::new(cargo)
        .args(["run", "-q", "--offline"])
        .current_dir(fx.scratch.path.clone())
        .arg("--manifest-path")
        .arg(fx.root.join("Cargo.toml"))
        .env("PORT", port.to_string())
        .env_remove("RELEASE_PRIV")
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _kill = KillOnDrop(child);
    assert_eq!(
        http_get(port, "/priv/data/hello.txt", Duration::from_secs(120)),
        "hello from priv/data\n"
    );
}
