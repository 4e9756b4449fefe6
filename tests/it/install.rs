//! `install`, `rollback` and `releases` on this machine: releases side by side, `current`
//! switched atomically, restarts through the launchers with a health wait, an automatic
//! revert of a release that does not stay up, the lock, and pruning.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;

fn tool_at(dir: &Path, args: &[&str]) -> std::process::Output {
    run_tool(dir, args, &[])
}

/// `releases --path`, with the deploy times (which vary) cut out of each line.
fn releases(dir: &Path, path: &str) -> String {
    let out = tool_at(dir, &["releases", "--path", path]);
    assert_success(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut cut = String::new();
    for line in text.lines() {
        let (head, _) = line.split_once("deployed 20").unwrap_or((line, ""));
        let head = head.trim_end_matches(", ").trim_end();
        cut.push_str(head);
        if !head.ends_with(')') {
            cut.push(')');
        }
        cut.push('\n');
    }
    assert!(text.contains("deployed 20"), "{text}");
    cut
}

struct StopAll(PathBuf);

impl Drop for StopAll {
    fn drop(&mut self) {
        let launcher = self.0.join("current/bin/webapp");
        let _ = std::process::Command::new(launcher).arg("stop").output();
    }
}

#[test]
fn install_upgrade_revert_and_rollback() {
    let scratch = Scratch::new();
    let v1 = webapp_bundle().to_path_buf();
    let v2 = webapp_at(&scratch, "1.3.0", "");
    let bad = webapp_at(&scratch, "1.4.0", "WEBAPP_CRASH = \"1\"\n");
    let path = scratch.join("srv/webapp");
    let p = path.to_str().unwrap();
    let port = free_port();
    // The host's environment, as an operator writes it: outside any release, installed 0600
    // by the first install and never printed.
    let env = scratch.join("host.env");
    fs::write(
        &env,
        format!("PORT={port}\nDATABASE_URL=postgres://db/SECRET\n"),
    )
    .unwrap();
    let _stop = StopAll(path.clone());
    let get = |what: &str| http_get(port, what, Duration::from_secs(10));
    let install = |bundle: &Path| {
        tool_at(
            &scratch.path,
            &[
                "install",
                bundle.to_str().unwrap(),
                "--path",
                p,
                "--restart",
                "--healthy-for",
                "1",
            ],
        )
    };

    let out = tool_at(
        &scratch.path,
        &[
            "install",
            v1.to_str().unwrap(),
            "--path",
            p,
            "--restart",
            "--healthy-for",
            "1",
            "--env-file",
            env.to_str().unwrap(),
        ],
    );
    assert_success(&out);
    assert!(
        !stderr(&out).contains("SECRET")
            && !String::from_utf8_lossy(&out.stdout).contains("SECRET")
    );
    let mode = fs::metadata(path.join("shared/env"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(get("/env/RELEASE_VSN"), "1.2.0");
    assert_eq!(get("/env/DATABASE_URL"), "postgres://db/SECRET");
    assert_eq!(
        fs::read_link(path.join("current")).unwrap(),
        Path::new("releases/1.2.0")
    );
    assert!(
        path.join("shared/tmp/webapp.pid").is_file(),
        "pid file in shared/tmp"
    );
    let first_pid = get("/pid");

    assert_success(&install(&v2));
    assert_eq!(get("/env/RELEASE_VSN"), "1.3.0");
    assert_ne!(get("/pid"), first_pid, "the old process was stopped");
    assert!(
        path.join("releases/1.2.0/bin/webapp").is_file(),
        "the old release stays"
    );

    // A release that exits at once: reverted, marked bad, the previous one serving.
    let out = install(&bad);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("webapp 1.4.0 did not come up")
            && err.contains("switched back to 1.3.0, which is serving")
            && err.contains("1.4.0 is marked bad"),
        "{err}"
    );
    assert_eq!(get("/env/RELEASE_VSN"), "1.3.0");
    let listed = releases(&scratch.path, p);
    assert_eq!(listed, "1.2.0 ()\n1.3.0 (current)\n1.4.0 (marked bad)\n");

    // Rollback skips the bad release.
    let out = tool_at(
        &scratch.path,
        &["rollback", "--path", p, "--healthy-for", "1500ms"],
    );
    assert_success(&out);
    assert_eq!(get("/env/RELEASE_VSN"), "1.2.0");

    // The same bundle again changes nothing; keep 2 prunes the bad release first.
    let out = tool_at(
        &scratch.path,
        &[
            "install",
            v2.to_str().unwrap(),
            "--path",
            p,
            "--restart",
            "--healthy-for",
            "1",
            "--keep",
            "2",
        ],
    );
    assert_success(&out);
    assert_eq!(get("/env/RELEASE_VSN"), "1.3.0");
    let listed = releases(&scratch.path, p);
    assert_eq!(listed, "1.2.0 ()\n1.3.0 (current)\n", "{}", stderr(&out));
    let log = fs::read_to_string(path.join(".deploy/log.jsonl")).unwrap();
    for event in [
        "staged",
        "switched",
        "healthy",
        "failed",
        "marked-bad",
        "reverted",
        "pruned",
    ] {
        assert!(
            log.contains(&format!("\"event\":\"{event}\"")),
            "{event}: {log}"
        );
    }
}

#[test]
fn the_lock_and_changed_bundles_are_refused() {
    let scratch = Scratch::new();
    let path = scratch.join("srv");
    let p = path.to_str().unwrap();
    let bundle = webapp_bundle().to_str().unwrap().to_string();
    // Held by a live process: refused, naming the holder.
    fs::create_dir_all(path.join(".deploy/lock")).unwrap();
    fs::write(
        path.join(".deploy/lock/holder"),
        format!("pid={} who=test version=9.9.9\n", std::process::id()),
    )
    .unwrap();
    let out = tool_at(&scratch.path, &["install", &bundle, "--path", p]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("another deploy holds") && stderr(&out).contains("who=test"),
        "{}",
        stderr(&out)
    );
    // Left by a process that is gone: stale, broken only when asked.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    fs::write(
        path.join(".deploy/lock/holder"),
        format!("pid={dead} who=test version=9.9.9\n"),
    )
    .unwrap();
    let out = tool_at(&scratch.path, &["install", &bundle, "--path", p]);
    assert!(stderr(&out).contains("--break-lock"), "{}", stderr(&out));
    assert_success(&tool_at(
        &scratch.path,
        &["install", &bundle, "--path", p, "--break-lock"],
    ));
    assert!(
        !path.join(".deploy/lock").exists(),
        "released after the install"
    );
    // Without --restart: staged and switched, nothing started.
    assert_eq!(
        fs::read_link(path.join("current")).unwrap(),
        Path::new("releases/1.2.0")
    );
    // Another bundle with the same version is refused: installed releases never change.
    let entries = crate::verify::entries_of(webapp_bundle());
    let mut entries = entries;
    let i = crate::verify::find(&mut entries, "webapp-1.2.0/priv/templates/greeting.txt");
    entries[i].data[0] ^= 0x20;
    entries[i].fix_checksum();
    crate::verify::reseal(&mut entries);
    let other = scratch.join("other/webapp-1.2.0-x86_64-unknown-linux-gnu.tar.zst");
    fs::create_dir_all(other.parent().unwrap()).unwrap();
    crate::verify::write_entries(&entries, &other);
    let out = tool_at(
        &scratch.path,
        &["install", other.to_str().unwrap(), "--path", p],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already installed there from another bundle"),
        "{}",
        stderr(&out)
    );
}

/// A unit for the installed layout: systemd supervises `current/bin/<name> start` directly.
#[test]
fn a_systemd_unit_for_the_layout() {
    let scratch = Scratch::new();
    let path = scratch.join("srv/webapp");
    let p = path.to_str().unwrap();
    assert_success(&tool_at(
        &scratch.path,
        &["install", webapp_bundle().to_str().unwrap(), "--path", p],
    ));
    let out = tool_at(
        &scratch.path,
        &["systemd-unit", "--path", p, "--user", "webapp"],
    );
    assert_success(&out);
    let unit = String::from_utf8(out.stdout).unwrap();
    let root = path.canonicalize().unwrap();
    for line in [
        "Type=exec".to_string(),
        "User=webapp".to_string(),
        format!("ExecStart={}/current/bin/webapp start", root.display()),
        format!("EnvironmentFile=-{}/shared/env", root.display()),
        "Restart=on-failure".to_string(),
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}:\n{unit}");
    }
    assert!(!unit.contains("PIDFile"), "{unit}");
    // systemd's own check, where systemd is installed (optional, as the issue says).
    let analyze = std::process::Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
        .unwrap();
    if !analyze.status.success() {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let file = scratch.join("webapp.service");
    fs::write(&file, &unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}
