//! `install`, `rollback` and `releases` on this machine: releases side by side, `current`
//! switched atomically, restarts through the launchers with a health wait, an automatic
//! revert of a release that does not stay up, the lock, and pruning.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;

/// `releases --path`, with the deploy times (which vary) cut out of each line.
fn releases(dir: &Path, path: &str) -> String {
    let out = run_tool(dir, &["releases", "--path", path], &[]);
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

/// A deploy path on this machine and the port its service listens on (from the host's env
/// file); the service is stopped when it goes.
struct Local {
    scratch: Scratch,
    path: PathBuf,
    port: u16,
}

impl Local {
    fn new() -> Local {
        let scratch = Scratch::new();
        let path = scratch.join("srv/webapp");
        Local {
            scratch,
            path,
            port: free_port(),
        }
    }

    fn p(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The tool with `args` then `--path <path>` and `extra`.
    fn run(&self, args: &[&str], extra: &[&str]) -> std::process::Output {
        let mut all = args.to_vec();
        all.extend(["--path", self.p()]);
        all.extend_from_slice(extra);
        run_tool(&self.scratch.path, &all, &[])
    }

    /// `install <bundle> --restart --healthy-for 1 <extra>`.
    fn install(&self, bundle: &Path, extra: &[&str]) -> std::process::Output {
        let mut all = vec!["--restart", "--healthy-for", "1"];
        all.extend_from_slice(extra);
        self.run(&["install", bundle.to_str().unwrap()], &all)
    }

    fn get(&self, what: &str) -> String {
        http_get(self.port, what, Duration::from_secs(10))
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let launcher = self.path.join("current/bin/webapp");
        let _ = std::process::Command::new(launcher).arg("stop").output();
    }
}

#[test]
fn install_upgrade_revert_and_rollback() {
    let local = Local::new();
    let v2 = webapp_at(&local.scratch, "1.3.0", "");
    let bad = webapp_at(&local.scratch, "1.4.0", "WEBAPP_CRASH = \"1\"\n");
    the_first_install_takes_the_hosts_env_file(&local);
    let first_pid = local.get("/pid");
    assert_success(&local.install(&v2, &[]));
    assert_eq!(local.get("/env/RELEASE_VSN"), "1.3.0");
    assert_ne!(local.get("/pid"), first_pid, "the old process was stopped");
    let old = local.path.join("releases/1.2.0/bin/webapp");
    assert!(old.is_file(), "the old release stays");
    a_release_that_exits_at_once_is_reverted_and_marked_bad(&local, &bad);
    rollback_goes_past_the_bad_release(&local);
    a_reinstall_changes_nothing_and_keep_prunes(&local, &v2);
}

/// The host's environment, as an operator writes it: outside any release, installed 0600 by
/// the first install and never printed; the service runs from `current` with its pid file in
/// shared/tmp.
fn the_first_install_takes_the_hosts_env_file(local: &Local) {
    let env = local.scratch.join("host.env");
    let text = format!("PORT={}\nDATABASE_URL=postgres://db/SECRET\n", local.port);
    fs::write(&env, text).unwrap();
    let out = local.install(webapp_bundle(), &["--env-file", env.to_str().unwrap()]);
    assert_success(&out);
    assert!(!stderr(&out).contains("SECRET") && !stdout(&out).contains("SECRET"));
    let path = &local.path;
    let mode = fs::metadata(path.join("shared/env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(local.get("/env/RELEASE_VSN"), "1.2.0");
    assert_eq!(local.get("/env/DATABASE_URL"), "postgres://db/SECRET");
    let current = fs::read_link(path.join("current")).unwrap();
    assert_eq!(current, Path::new("releases/1.2.0"));
    let pid_file = path.join("shared/tmp/webapp.pid");
    assert!(pid_file.is_file(), "pid file in shared/tmp");
}

/// A release that exits at once: reverted, marked bad, the previous one serving.
fn a_release_that_exits_at_once_is_reverted_and_marked_bad(local: &Local, bad: &Path) {
    let out = local.install(bad, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("webapp 1.4.0 did not come up")
            && err.contains("switched back to 1.3.0, which is serving")
            && err.contains("1.4.0 is marked bad"),
        "{err}"
    );
    assert_eq!(local.get("/env/RELEASE_VSN"), "1.3.0");
    let listed = releases(&local.scratch.path, local.p());
    assert_eq!(listed, "1.2.0 ()\n1.3.0 (current)\n1.4.0 (marked bad)\n");
}

/// A dry run says where the rollback goes (past the bad release), and changes nothing; the
/// rollback then skips the bad release.
fn rollback_goes_past_the_bad_release(local: &Local) {
    let out = local.run(&["rollback"], &["--dry-run"]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("local: 1.3.0 -> 1.2.0"),
        "{}",
        stdout(&out)
    );
    assert_eq!(local.get("/env/RELEASE_VSN"), "1.3.0");
    assert_success(&local.run(&["rollback"], &["--healthy-for", "1500ms"]));
    assert_eq!(local.get("/env/RELEASE_VSN"), "1.2.0");
}

/// The same bundle again changes nothing; keep 2 prunes the bad release first. The log has
/// an event of every kind the steps caused.
fn a_reinstall_changes_nothing_and_keep_prunes(local: &Local, v2: &Path) {
    let out = local.install(v2, &["--keep", "2"]);
    assert_success(&out);
    assert_eq!(local.get("/env/RELEASE_VSN"), "1.3.0");
    let listed = releases(&local.scratch.path, local.p());
    assert_eq!(listed, "1.2.0 ()\n1.3.0 (current)\n", "{}", stderr(&out));
    let log = fs::read_to_string(local.path.join(".deploy/log.jsonl")).unwrap();
    let kinds = [
        "staged",
        "switched",
        "healthy",
        "failed",
        "marked-bad",
        "reverted",
        "pruned",
    ];
    for event in kinds {
        let line = format!("\"event\":\"{event}\"");
        assert!(log.contains(&line), "{event}: {log}");
    }
}

#[test]
fn the_lock_holds_and_a_changed_bundle_goes_beside() {
    let scratch = Scratch::new();
    let path = scratch.join("srv");
    lock_holders_are_judged_live_or_stale(&scratch, &path);
    another_bundle_of_the_same_version_goes_beside(&scratch, &path);
}

/// A lock held by a live process is refused, naming the holder; one left by a zombie, by a
/// process gone, or by a pid reused (another start time) is stale and broken only when
/// asked, and the install then releases it.
fn lock_holders_are_judged_live_or_stale(scratch: &Scratch, path: &Path) {
    let p = path.to_str().unwrap();
    let bundle = webapp_bundle().to_str().unwrap().to_string();
    // Held by a live process: refused, naming the holder.
    fs::create_dir_all(path.join(".deploy/lock")).unwrap();
    fs::write(
        path.join(".deploy/lock/holder"),
        format!("pid={} who=test version=9.9.9\n", std::process::id()),
    )
    .unwrap();
    let out = run_tool(&scratch.path, &["install", &bundle, "--path", p], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("another deploy holds") && stderr(&out).contains("who=test"),
        "{}",
        stderr(&out)
    );
    // A zombie (a killed deploy's shell not yet reaped) and a live process whose start time
    // differs (a pid reused after a reboot) are gone too: stale, not held.
    let zombie = std::process::Command::new("true").spawn().unwrap();
    let stat = |pid: u32| fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields = |pid: u32| -> Vec<String> {
        let text = stat(pid);
        let rest = text.rsplit_once(") ").map_or("", |(_, r)| r);
        rest.split_whitespace().map(String::from).collect()
    };
    for _ in 0..250 {
        if fields(zombie.id()).first().map(String::as_str) == Some("Z") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let me = std::process::id();
    for (pid, start) in [
        (zombie.id(), fields(zombie.id())[19].clone()),
        (me, "1".to_string()),
    ] {
        fs::write(
            path.join(".deploy/lock/holder"),
            format!(
                "pid={pid} start={start} boot={} who=test version=9.9.9\n",
                boot.trim()
            ),
        )
        .unwrap();
        let out = run_tool(&scratch.path, &["install", &bundle, "--path", p], &[]);
        assert!(
            stderr(&out).contains("is stale") && stderr(&out).contains("--break-lock"),
            "pid {pid}: {}",
            stderr(&out)
        );
    }
    // The same process, same boot and start time: held.
    fs::write(
        path.join(".deploy/lock/holder"),
        format!(
            "pid={me} start={} boot={} who=test version=9.9.9\n",
            fields(me)[19],
            boot.trim()
        ),
    )
    .unwrap();
    let out = run_tool(&scratch.path, &["install", &bundle, "--path", p], &[]);
    assert!(
        stderr(&out).contains("another deploy holds"),
        "{}",
        stderr(&out)
    );
    drop(zombie);
    // Left by a process that is gone: stale, broken only when asked.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    fs::write(
        path.join(".deploy/lock/holder"),
        format!("pid={dead} who=test version=9.9.9\n"),
    )
    .unwrap();
    let out = run_tool(&scratch.path, &["install", &bundle, "--path", p], &[]);
    assert!(stderr(&out).contains("--break-lock"), "{}", stderr(&out));
    assert_success(&run_tool(
        &scratch.path,
        &["install", &bundle, "--path", p, "--break-lock"],
        &[],
    ));
    assert!(
        !path.join(".deploy/lock").exists(),
        "released after the install"
    );
}

/// Without --restart: staged and switched, nothing started. Another bundle with the same
/// version goes beside it, as 1.2.0+<id>: installed releases never change, and a rebuild
/// without a version bump still installs.
fn another_bundle_of_the_same_version_goes_beside(scratch: &Scratch, path: &Path) {
    let p = path.to_str().unwrap();
    assert_eq!(
        fs::read_link(path.join("current")).unwrap(),
        Path::new("releases/1.2.0")
    );
    let before = sha256_file(&path.join("releases/1.2.0/priv/templates/greeting.txt"));
    let other = crate::verify::webapp_with_other_bytes(&scratch.path);
    let out = run_tool(
        &scratch.path,
        &["install", other.to_str().unwrap(), "--path", p],
        &[],
    );
    assert_success(&out);
    // Named by the commit it was built from (the tool's own checkout), else its digest.
    let current = fs::read_link(path.join("current")).unwrap();
    let current = current.to_str().unwrap();
    assert!(
        current.starts_with("releases/1.2.0+") && current.len() > "releases/1.2.0+".len() + 7,
        "{current}"
    );
    assert_eq!(
        sha256_file(&path.join("releases/1.2.0/priv/templates/greeting.txt")),
        before,
        "the installed 1.2.0 changed"
    );
}

/// A unit for the installed layout: systemd supervises `current/bin/<name> start` directly.
/// Every value is escaped by systemd's rules (a path with a space, `%h` and `$HOME`), and a
/// name the deploy user planted in the host's MANIFEST.json cannot add a directive.
#[test]
fn a_systemd_unit_for_the_layout() {
    let scratch = Scratch::new();
    let path = scratch.join("srv/my app %h $HOME");
    let p = path.to_str().unwrap();
    assert_success(&run_tool(
        &scratch.path,
        &["install", webapp_bundle().to_str().unwrap(), "--path", p],
        &[],
    ));
    let out = run_tool(
        &scratch.path,
        &["systemd-unit", "--path", p, "--user", "webapp"],
        &[],
    );
    assert_success(&out);
    let unit = String::from_utf8(out.stdout).unwrap();
    let root = path.canonicalize().unwrap();
    let escaped = root.to_str().unwrap().replace('%', "%%");
    for line in [
        "Type=exec".to_string(),
        "User=webapp".to_string(),
        format!("ExecStart=\"{escaped}/current/bin/webapp\" start"),
        format!("EnvironmentFile=-{escaped}/shared/env"),
        "Restart=on-failure".to_string(),
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}:\n{unit}");
    }
    assert!(!unit.contains("PIDFile"), "{unit}");
    // Without --user: the deploy user, and never root unless named.
    let out = run_tool(&scratch.path, &["systemd-unit", "--path", p], &[]);
    if current_user() == "root" {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("--user root"), "{}", stderr(&out));
        let out = run_tool(
            &scratch.path,
            &["systemd-unit", "--path", p, "--user", "root"],
            &[],
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("\nUser=root\n"));
    } else {
        let user = format!("\nUser={}\n", current_user());
        assert!(String::from_utf8_lossy(&out.stdout).contains(&user));
    }
    // A name planted in the installed MANIFEST.json: refused, nothing printed.
    let manifest = path.join("releases/1.2.0/MANIFEST.json");
    let mut perms = fs::metadata(&manifest).unwrap().permissions();
    perms.set_mode(0o644);
    fs::set_permissions(&manifest, perms).unwrap();
    let text = fs::read_to_string(&manifest).unwrap().replacen(
        "\"name\": \"webapp\"",
        "\"name\": \"webapp\\nExecStartPre=+/bin/sh -c id\"",
        1,
    );
    assert!(
        text.contains("ExecStartPre"),
        "the manifest names the release"
    );
    fs::write(&manifest, text).unwrap();
    let out = run_tool(
        &scratch.path,
        &["systemd-unit", "--path", p, "--user", "webapp"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("not a release name"),
        "{}",
        stderr(&out)
    );
    // systemd's own check of the escaped unit.
    if !have("systemd-analyze") {
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

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// What a failing release reports and leaves, from a hardening review: a release answering
/// 500 fails after `unhealthy-after` answers, not at the deadline; the health URL's secret
/// (`${TOKEN}` from shared/env) reaches no message, log or terminal; the failure shows the
/// new process's log lines only, with terminal escapes escaped; `.deploy/` is private;
/// pruning spares directories the tool never installed; rollback refuses a release whose
/// files were changed; a deploy path other users can write is refused.
#[test]
fn failures_are_reported_safely_and_releases_checked_before_switching() {
    let local = Local::new();
    let failing = webapp_at(&local.scratch, "1.6.0", "WEBAPP_FAIL = \"1\"\n");
    let v2 = webapp_at(&local.scratch, "1.3.0", "");
    let env = local.scratch.join("host.env");
    // CRLF, as written on Windows: the host script (expanding the health URL) and the
    // launcher (starting the service) read it the same way.
    let text = format!(
        "PORT={}\r\nDATABASE_URL=postgres://db\r\nTOKEN=SECRET-TOKEN\r\n",
        local.port
    );
    fs::write(&env, text).unwrap();
    let install = |bundle: &Path, extra: &[&str]| {
        let mut args = vec![
            "--health-url",
            "http://127.0.0.1:${PORT}/env/RELEASE_VSN?t=${TOKEN}",
            "--health-deadline",
            "60s",
            "--env-file",
            env.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        local.install(bundle, &args)
    };
    a_host_without_the_required_env_is_refused(&local);
    assert_success(&install(webapp_bundle(), &[]));
    let started = std::time::Instant::now();
    let out = install(&failing, &[]);
    // Far below the 60 s deadline: the third 500 in a row ends the wait.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "failed after {took:?}, not at once"
    );
    a_failing_release_is_reported_at_once_and_safely(&local, &out);
    // A directory the tool never installed is neither counted nor pruned.
    let path = &local.path;
    fs::create_dir_all(path.join("releases/0.0.1")).unwrap();
    assert_success(&install(&v2, &["--keep", "1"]));
    assert!(path.join("releases/0.0.1").is_dir(), "not ours: kept");
    let target = path.join("releases/1.2.0");
    assert!(target.is_dir(), "the rollback target stays");
    let bad = path.join("releases/1.6.0");
    assert!(!bad.exists(), "the bad release went first");
    a_changed_rollback_target_is_refused_and_marked_bad(&local);
    // A deploy path other users can write: refused, naming it.
    fs::set_permissions(path, fs::Permissions::from_mode(0o777)).unwrap();
    let out = install(&v2, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("is writable by other users"), "{err}");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    // `releases` swapped for a link: refused.
    let moved = local.scratch.join("moved");
    fs::rename(path.join("releases"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, path.join("releases")).unwrap();
    let out = install(&v2, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("is not a directory (a link"), "{err}");
}

/// A host without the environment the release requires: refused before the switch, naming
/// the variable, and the release is not marked bad (the host is at fault, not the release).
fn a_host_without_the_required_env_is_refused(local: &Local) {
    let bare = local.scratch.join("bare.env");
    fs::write(&bare, format!("PORT={}\n", local.port)).unwrap();
    let bundle = webapp_bundle().to_str().unwrap();
    let out = local.run(
        &["install", bundle],
        &["--restart", "--env-file", bare.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("requires DATABASE_URL") && err.contains("no host was switched"),
        "{err}"
    );
    assert!(!local.path.join("current").exists());
    assert!(!releases(&local.scratch.path, local.p()).contains("marked bad"));
}

/// A release answering 500 fails at once (three answers in a row), not at the deadline; the
/// report shows only the new process's log lines, escaped, and never the secret; the deploy
/// state is private.
fn a_failing_release_is_reported_at_once_and_safely(local: &Local, out: &std::process::Output) {
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(out);
    assert!(
        err.contains("?t=${TOKEN} answered 500 (3 times in a row)"),
        "{err}"
    );
    assert!(err.contains("webapp 1.6.0 failing"), "{err}");
    let old_lines = err.contains("webapp 1.2.0 listening");
    assert!(!old_lines, "only the new process's lines:\n{err}");
    assert!(err.contains("\\x1b[31mred\\x1b]0;title\\x07"), "{err}");
    assert!(
        !out.stderr.contains(&0x1b),
        "no raw escape reaches the terminal"
    );
    let deploy = local.path.join(".deploy");
    let log = fs::read_to_string(deploy.join("log.jsonl")).unwrap();
    for text in [err.as_str(), &stdout(out), &log] {
        assert!(!text.contains("SECRET-TOKEN"), "{text}");
    }
    assert_eq!(mode_of(&deploy), 0o700);
    assert_eq!(mode_of(&deploy.join("log.jsonl")), 0o600);
}

/// A changed file in the rollback target: refused before switching, marked bad.
fn a_changed_rollback_target_is_refused_and_marked_bad(local: &Local) {
    let changed = local
        .path
        .join("releases/1.2.0/priv/templates/greeting.txt");
    fs::set_permissions(&changed, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&changed, "tampered\n").unwrap();
    let out = local.run(&["rollback"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("releases/1.2.0 no longer matches its SHA256SUMS")
            && err.contains("greeting.txt"),
        "{err}"
    );
    let current = fs::read_link(local.path.join("current")).unwrap();
    assert_eq!(current, Path::new("releases/1.3.0"));
    let listed = releases(&local.scratch.path, local.p());
    assert!(listed.contains("1.2.0 (marked bad)"), "{listed}");
}
