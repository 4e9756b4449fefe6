//! Same inputs, same bytes: across runs, after touching every source file, and with the
//! timestamp taken from SOURCE_DATE_EPOCH or the git commit.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

fn bundle_path(fx: &Fixture, out: &str, env: &[(&str, &str)]) -> PathBuf {
    let out = fx.scratch.join(out);
    let msgs = fx.bundle_env(&["--out-dir", out.to_str().unwrap()], env);
    PathBuf::from(msgs[0]["path"].as_str().unwrap())
}

fn bundle_bytes(fx: &Fixture, out: &str, env: &[(&str, &str)]) -> Vec<u8> {
    fs::read(bundle_path(fx, out, env)).unwrap()
}

fn touch_all(root: &Path) {
    for e in walkdir::WalkDir::new(root) {
        let e = e.unwrap();
        if e.path().components().any(|c| c.as_os_str() == "target") || e.path_is_symlink() {
            continue;
        }
        let t = filetime_now_plus(e.path());
        assert!(t, "touch {}", e.path().display());
    }
}

/// Set a file's mtime one hour ahead with `touch -d`.
fn filetime_now_plus(path: &Path) -> bool {
    Command::new("touch")
        .args(["-d", "+1 hour"])
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn same_inputs_same_bytes() {
    let fx = Fixture::new("webapp");
    let first = bundle_bytes(&fx, "one", &[]);
    let second = bundle_bytes(&fx, "two", &[]);
    assert!(first == second, "two runs give identical bytes");
    touch_all(&fx.root);
    // Force a real rebuild too: the executables are rebuilt from touched sources.
    let third = bundle_bytes(&fx, "three", &[]);
    assert!(first == third, "touching every source file changes nothing");

    let dated = bundle_path(&fx, "four", &[("SOURCE_DATE_EPOCH", "1700000000")]);
    assert!(fs::read(&dated).unwrap() != first);
    assert!(headers(&dated).iter().all(|h| h.mtime == 1_700_000_000));
}

#[test]
fn git_commit_time_is_the_timestamp() {
    if !have("git") || !have("tar") {
        return;
    }
    let fx = Fixture::new("webapp");
    fs::write(fx.root.join(".gitignore"), "target/\n").unwrap();
    git(&fx.root, &["init", "-q"]);
    git(&fx.root, &["add", "-A"]);
    git(&fx.root, &["commit", "-q", "-m", "fixture"]);
    let head = git(&fx.root, &["rev-parse", "HEAD"]);

    let out = fx.out();
    let msgs = fx.bundle(&["--out-dir", out.to_str().unwrap()]);
    let path = Path::new(msgs[0]["path"].as_str().unwrap()).to_path_buf();
    assert!(headers(&path).iter().all(|h| h.mtime == 1_600_000_000));
    let top = extract(&path, &fx.scratch.join("x"), "gnu").join("webapp-1.2.0");
    let man = manifest(&top);
    assert_eq!(man["timestamp"]["source"], "git-commit");
    assert_eq!(man["timestamp"]["epoch"], 1_600_000_000);
    assert_eq!(man["git"]["commit"], head.as_str());
    assert_eq!(man["git"]["dirty"], false);

    // SOURCE_DATE_EPOCH wins over the commit time.
    let msgs = fx.bundle_env(
        &["--out-dir", out.to_str().unwrap()],
        &[("SOURCE_DATE_EPOCH", "1234567890")],
    );
    assert!(
        headers(Path::new(msgs[0]["path"].as_str().unwrap()))
            .iter()
            .all(|h| h.mtime == 1_234_567_890)
    );

    // A dirty tree is recorded, and warned about.
    fs::write(fx.root.join("priv/templates/greeting.txt"), "changed\n").unwrap();
    let dirty = fx.run(&["--out-dir", fx.scratch.join("dirty").to_str().unwrap()]);
    assert_success(&dirty);
    assert!(
        stderr(&dirty).contains(&format!("the git work tree has uncommitted changes, so this bundle cannot be rebuilt from commit {}", &head[..12])),
        "{}",
        stderr(&dirty)
    );
    let msgs = fx.bundle(&["--out-dir", out.to_str().unwrap()]);
    let top = extract(
        Path::new(msgs[0]["path"].as_str().unwrap()),
        &fx.scratch.join("y"),
        "gnu",
    )
    .join("webapp-1.2.0");
    assert_eq!(manifest(&top)["git"]["dirty"], true);
    // verify says so, and `--strict` fails it.
    let bundle = msgs[0]["path"].as_str().unwrap();
    let out = fx.run(&["verify", bundle]);
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("warning[dirty]"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = fx.run(&["verify", "--strict", bundle]);
    assert_eq!(out.status.code(), Some(1));
}
