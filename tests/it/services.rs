//! Real service shapes (reduced to `fixtures/static-site`): a service serving `assets/`
//! relative to its working directory, one told where its data is through `args` and `env`
//! with `${RELEASE_PRIV}`, and the launcher page's snippet finding priv under `cargo run` and in a
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

/// `bin/static-site daemon` from `cwd` (created) on a free port; stopped when dropped.
fn serve<'a>(root: &'a Path, cwd: &'a Path) -> (u16, Stop<'a>) {
    fs::create_dir_all(cwd).unwrap();
    let port = free_port();
    assert_success(&launcher(root, cwd, port, &["daemon"]));
    (port, Stop(root, cwd))
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
    let (port, _stop) = serve(&root, &elsewhere);
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
        let (port, _stop) = serve(&root, &elsewhere);
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

/// The launcher page's snippet (docs/launcher.md) is the fixture's, and it finds priv under
/// `cargo run` too.
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
    let page = fs::read_to_string(repo().join("docs/launcher.md")).unwrap();
    let fixture = fs::read_to_string(repo().join("fixtures/static-site/src/main.rs")).unwrap();
    assert_eq!(
        snippet(&page),
        snippet(&fixture),
        "docs/launcher.md and the fixture differ"
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

/// An example `/home/...` path in a binary's help text (miniserve's `/home/hello/`) fails
/// `verify --strict` until it is allowed, by `verify --allow-path` or by the bundle's own
/// `[verify] allow-paths`, which the manifest records; other paths are still reported.
#[test]
fn example_paths_can_be_allowed() {
    let fx = Fixture::new("static-site");
    let (path, _) = bundle(&fx);
    let dir = path.parent().unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "--strict", "--message-format", "json"];
        args.extend_from_slice(extra);
        args.push(path.to_str().unwrap());
        let out = run_tool(dir, &args, &[]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = verify(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("`/home/hello/`") && text.contains("allow-paths"),
        "{text}"
    );
    let (code, text) = verify(&["--allow-path", "/home/hello/"]);
    assert_eq!(code, Some(0), "{text}");

    fx.edit(
        "Cargo.toml",
        "[package.metadata.release]\n",
        "[package.metadata.release.verify]\nallow-paths = [\"/home/hello/\"]\n\n[package.metadata.release]\n",
    );
    let (path, _) = bundle(&fx);
    let out = run_tool(
        path.parent().unwrap(),
        &["verify", "--strict", path.to_str().unwrap()],
        &[],
    );
    assert_success(&out);
    let top = extract(&path, &fx.scratch.join("x"), "gnu");
    let top = fs::read_dir(&top).unwrap().next().unwrap().unwrap().path();
    assert_eq!(
        manifest(&top)["allow_paths"],
        serde_json::json!(["/home/hello/"])
    );

    // Allowing one path does not hide another.
    fs::write(
        fx.root.join("assets/leak.txt"),
        "built in /home/alice/src\n",
    )
    .unwrap();
    let (path, _) = bundle(&fx);
    let out = run_tool(
        path.parent().unwrap(),
        &[
            "verify",
            "--strict",
            "--message-format",
            "json",
            path.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("`/home/alice/`") && !text.contains("`/home/hello/`"),
        "{text}"
    );
}

/// The build machine's own paths (the workspace, HOME, CARGO_HOME, the target directory) in a
/// shipped file stop the bundle, naming the file, the path and what it is.
#[test]
fn the_build_machines_own_paths_are_refused_at_bundle_time() {
    let fx = Fixture::new("static-site");
    let root = fx.root.canonicalize().unwrap();
    fs::write(
        fx.root.join("priv/data/config.txt"),
        format!("templates = {}/templates\n", root.display()),
    )
    .unwrap();
    let out = fx.run(&["--out-dir", fx.out().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`priv/data/config.txt`")
            && err.contains(&format!(
                "`{}`, the workspace root, at offset 12",
                root.display()
            )),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(fx.out())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| n.to_string_lossy().starts_with('.')),
        "nothing under a final name: {left:?}"
    );

    let home = std::env::var("HOME").unwrap();
    if home.len() > 1 {
        // Before a `/`, and where it ends the string (`env!("HOME")` compiled in).
        for text in [
            format!("cache = {home}/.cache/site\n"),
            format!("home = \"{home}\""),
            home.clone(),
        ] {
            fs::write(fx.root.join("priv/data/config.txt"), &text).unwrap();
            let out = fx.run(&["--out-dir", fx.out().to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(1), "{text}: {}", stderr(&out));
            assert!(stderr(&out).contains("your HOME"), "{}", stderr(&out));
        }
        // An allowed prefix is accepted (here: this HOME, as if it were an example path).
        fx.edit(
            "Cargo.toml",
            "[package.metadata.release]\n",
            &format!(
                "[package.metadata.release.verify]\nallow-paths = [\"{}/\"]\n\n[package.metadata.release]\n",
                home.trim_end_matches('/')
            ),
        );
        assert_success(&fx.run(&["--out-dir", fx.out().to_str().unwrap()]));
    }
}
