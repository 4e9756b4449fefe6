//! `deploy`, `rollback` and `releases` over real SSH: a loopback `sshd`, several local users as
//! several hosts (see `hosts.rs`), each with its own deploy path and `shared/env` (its own
//! PORT), and the webapp fixture serving on each.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::hosts::{Hosts, Setup, Systemd};
use crate::support::*;

/// Each host's env file: its own port, a secret that must never be printed.
fn env_files(hosts: &Hosts, n: usize) -> (Vec<u16>, Vec<String>) {
    let mut ports = Vec::new();
    let mut args = Vec::new();
    for i in 1..=n {
        let port = free_port();
        let file = hosts.scratch.join(format!("h{i}.env"));
        fs::write(
            &file,
            format!("PORT={port}\nDATABASE_URL=postgres://db/SECRET-{i}\n"),
        )
        .unwrap();
        ports.push(port);
        args.push("--env-file".into());
        args.push(format!("h{i}={}", file.display()));
    }
    (ports, args)
}

fn summary(out: &std::process::Output) -> serde_json::Value {
    json_lines(out)
        .into_iter()
        .find(|v| v["reason"] == "deploy-summary")
        .unwrap_or_else(|| panic!("no summary:\n{}", stderr(out)))
}

fn get(port: u16, path: &str) -> String {
    http_get(port, path, Duration::from_secs(10))
}

const HEALTH: &[&str] = &[
    "--health-url",
    "http://127.0.0.1:${PORT}/env/RELEASE_VSN",
    "--healthy-for",
    "500ms",
    "--health-interval",
    "200ms",
    "--health-timeout",
    "1s",
    "--health-deadline",
    "4s",
];

fn deploy(hosts: &Hosts, bundle: &Path, n: usize, extra: &[&str]) -> std::process::Output {
    let args = deploy_args(hosts, bundle, n, extra);
    hosts.tool(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// First deploy to three hosts, an upgrade under load, two kinds of broken release, a
/// rollback past the bad ones, `releases`, pruning, then `exec`, `logs` and `status` on the
/// fleet. One fleet, its steps in order: each starts from what the one before left.
#[test]
fn a_fleet_is_deployed_upgraded_protected_from_bad_releases_and_rolled_back() {
    let Some(hosts) = Hosts::start(3, "fleet") else {
        return;
    };
    let scratch = Scratch::new();
    let v2 = webapp_at(&scratch, "1.3.0", "");
    let crashes = webapp_at(&scratch, "1.4.0", "WEBAPP_CRASH = \"1\"\n");
    let silent = webapp_at(&scratch, "1.5.0", "WEBAPP_SILENT = \"1\"\n");

    // Not this tool on the hosts, and no zstd but on the first: sh, coreutils, tar, gzip.
    let out = hosts.ssh(
        2,
        "command -v zstd || command -v cargo-release-bundle || echo none",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "none");

    let ports = first_deploy_gives_each_host_its_env(&hosts, webapp_bundle());
    upgrade_one_host_at_a_time_under_load(&hosts, &ports, &v2);
    a_release_that_exits_at_once_is_reverted(&hosts, &ports, &crashes);
    a_release_that_never_answers_is_reverted(&hosts, &ports, &silent);
    releases_lists_current_and_bad_ones(&hosts);
    rollback_goes_past_the_bad_releases(&hosts, &ports);
    revert_all_reverts_the_earlier_batches(&hosts, &ports, &v2);
    a_redeploy_sends_nothing_and_keep_prunes(&hosts, &ports, &v2);
    exec_runs_launcher_commands_on_every_host(&hosts, &ports);
    logs_read_and_follow_every_host(&hosts);
    status_reports_every_host(&hosts);
    the_host_log_records_every_event(&hosts);
}

/// Every host answers with `version`, and its `current` names it.
fn serving(hosts: &Hosts, ports: &[u16], version: &str) {
    for (i, port) in ports.iter().enumerate() {
        assert_eq!(get(*port, "/env/RELEASE_VSN"), version);
        assert_eq!(hosts.current(i + 1).as_deref(), Some(version));
    }
}

/// Each host's outcome in the deploy summary, in host order.
fn outcomes(out: &std::process::Output) -> Vec<String> {
    let s = summary(out);
    s["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["outcome"].as_str().unwrap().to_string())
        .collect()
}

/// First deploy, each host with its own env file: the secret is never printed, the env file
/// is private, the bundle's bytes go as they are where the host has zstd; returns the ports.
fn first_deploy_gives_each_host_its_env(hosts: &Hosts, v1: &Path) -> Vec<u16> {
    let (ports, env_args) = env_files(hosts, 3);
    let env_args: Vec<&str> = env_args.iter().map(String::as_str).collect();
    let out = deploy(hosts, v1, 3, &env_args);
    assert_success(&out);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("SECRET")
            && !stderr(&out).contains("SECRET"),
        "secrets are never printed"
    );
    let s = summary(&out);
    assert_eq!(s["success"], true);
    let bundle_size = fs::metadata(v1).unwrap().len();
    for (i, h) in s["hosts"].as_array().unwrap().iter().enumerate() {
        assert_eq!(h["outcome"], "deployed", "{s}");
        let sent = h["bytes_sent"].as_u64().unwrap();
        assert!(
            sent > 0 && sent < bundle_size * 3,
            "host {i}: {sent} bytes for a {bundle_size}-byte bundle"
        );
        // The first host has zstd: it gets the bundle's own bytes, nothing recompressed.
        if i == 0 && have("zstd") {
            assert_eq!(sent, bundle_size, "{s}");
        }
    }
    for (i, port) in ports.iter().enumerate() {
        assert_eq!(get(*port, "/env/RELEASE_VSN"), "1.2.0");
        assert_eq!(
            get(*port, "/env/DATABASE_URL"),
            format!("postgres://db/SECRET-{}", i + 1)
        );
        let root = hosts.root(i + 1);
        let mode = fs::metadata(root.join("shared/env")).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        assert!(root.join("shared/tmp/webapp.pid").is_file());
        assert!(!root.join(".deploy/lock").exists(), "lock released");
    }
    ports
}

/// Run `work` while a client keeps asking every port; returns its result and how many
/// requests were answered meanwhile.
fn asking_every_port<T>(ports: &[u16], work: impl FnOnce() -> T) -> (T, usize) {
    let stop = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for port in ports {
                    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", *port)) {
                        use std::io::{Read, Write};
                        let _ = s.write_all(b"GET /env/RELEASE_VSN HTTP/1.0\r\n\r\n");
                        let mut r = String::new();
                        if s.read_to_string(&mut r).is_ok() && r.starts_with("HTTP/1.1 200") {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let result = work();
        stop.store(true, Ordering::Relaxed);
        result
    });
    (result, answered.load(Ordering::Relaxed))
}

/// Upgrade one host at a time while a client keeps asking every host: batches of one (each
/// host stopped, switched and healthy before the next), the old release untouched, unchanged
/// files linked rather than sent again.
fn upgrade_one_host_at_a_time_under_load(hosts: &Hosts, ports: &[u16], v2: &Path) {
    let old = hosts.root(1).join("releases/1.2.0");
    let old_digest = sha256_file(&old.join("libexec/webapp"));
    let (out, answered) = asking_every_port(ports, || deploy(hosts, v2, 3, &["--batch", "1"]));
    assert_success(&out);
    assert!(answered > 10, "the hosts kept answering");
    serving(hosts, ports, "1.3.0");
    let events = json_lines(&out);
    let order: Vec<String> = events
        .iter()
        .filter(|e| e["reason"] == "deploy-event")
        .filter(|e| ["stopped", "healthy"].contains(&e["event"].as_str().unwrap()))
        .map(|e| {
            format!(
                "{} {}",
                e["host"].as_str().unwrap(),
                e["event"].as_str().unwrap()
            )
        })
        .collect();
    let expect = [
        "h1 stopped",
        "h1 healthy",
        "h2 stopped",
        "h2 healthy",
        "h3 stopped",
        "h3 healthy",
    ];
    assert_eq!(order, expect);
    assert_eq!(sha256_file(&old.join("libexec/webapp")), old_digest);
    let check = std::process::Command::new("sha256sum")
        .args(["--quiet", "-c", "SHA256SUMS"])
        .current_dir(&old)
        .output()
        .unwrap();
    assert!(check.status.success());
    let staged = events
        .iter()
        .find(|e| e["event"] == "staged" && e["host"] == "h1")
        .unwrap();
    assert!(staged["files_linked"].as_u64().unwrap() > 3, "{staged}");
}

/// A release whose binary exits at once: h1 reverted and serving 1.3.0, h2 and h3 not
/// touched, 1.4.0 marked bad, locks released, exit non-zero with h1's log tail.
fn a_release_that_exits_at_once_is_reverted(hosts: &Hosts, ports: &[u16], crashes: &Path) {
    let out = deploy(hosts, crashes, 3, &["--batch", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("h1: webapp 1.4.0 did not come up"), "{err}");
    assert!(
        err.contains("switched back to 1.3.0, which is serving"),
        "{err}"
    );
    assert!(
        err.contains("crash requested by WEBAPP_CRASH"),
        "the log tail is shown: {err}"
    );
    assert_eq!(outcomes(&out), ["reverted", "untouched", "untouched"]);
    serving(hosts, ports, "1.3.0");
    for i in 1..=3 {
        assert!(!hosts.root(i).join(".deploy/lock").exists());
    }
}

/// A release that runs but never answers its health URL: the same.
fn a_release_that_never_answers_is_reverted(hosts: &Hosts, ports: &[u16], silent: &Path) {
    // A shorter deadline than the fleet's: this release is never healthy (reverting h1 to
    // 1.3.0, which answers at once, needs far less).
    let out = deploy(
        hosts,
        silent,
        3,
        &["--batch", "1", "--health-deadline", "2s"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("h1: webapp 1.5.0 did not come up") && err.contains("did not answer"),
        "{err}"
    );
    serving(hosts, ports, "1.3.0");
}

/// `releases` shows each host's versions, the current one, the bad ones.
fn releases_lists_current_and_bad_ones(hosts: &Hosts) {
    let mut args = vec!["releases", "--message-format", "json"];
    let host_args = hosts.args(3);
    args.extend(host_args.iter().map(String::as_str));
    let out = hosts.tool(&args);
    assert_success(&out);
    let listed = json_lines(&out);
    let bad: Vec<String> = listed
        .iter()
        .filter(|r| r["host"] == "h1" && r["release"]["bad"] == true)
        .map(|r| r["release"]["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bad, ["1.4.0", "1.5.0"]);
    assert!(listed.iter().any(|r| r["host"] == "h3"
        && r["release"]["current"] == true
        && r["release"]["version"] == "1.3.0"));
}

/// Rollback goes past the bad releases to 1.2.0 on every host.
fn rollback_goes_past_the_bad_releases(hosts: &Hosts, ports: &[u16]) {
    let mut args = vec!["rollback"];
    let host_args = hosts.args(3);
    args.extend(host_args.iter().map(String::as_str));
    args.extend(HEALTH);
    assert_success(&hosts.tool(&args));
    serving(hosts, ports, "1.2.0");
}

/// With revert-all, a failure in the second batch also reverts the first: a health command
/// that fails on h2 only (it sees h2's shared/env).
fn revert_all_reverts_the_earlier_batches(hosts: &Hosts, ports: &[u16], v2: &Path) {
    let check = format!("test \"$PORT\" != {}", ports[1]);
    // h2 is never healthy, not even back on 1.2.0: a short deadline, waited out twice.
    let args = [
        "--batch",
        "1",
        "--revert-all",
        "--health-deadline",
        "2s",
        "--health-command",
        &check,
    ];
    let out = deploy(hosts, v2, 3, &args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(outcomes(&out), ["reverted", "reverted", "untouched"]);
    serving(hosts, ports, "1.2.0");
}

/// Deploying 1.3.0 again sends nothing (it is installed); keep 2 prunes the bad ones first.
fn a_redeploy_sends_nothing_and_keep_prunes(hosts: &Hosts, ports: &[u16], v2: &Path) {
    let out = deploy(hosts, v2, 3, &["--batch", "100%", "--keep", "2"]);
    assert_success(&out);
    serving(hosts, ports, "1.3.0");
    for i in 1..=3 {
        let mut left: Vec<String> = fs::read_dir(hosts.root(i).join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["1.2.0", "1.3.0"]);
    }
    let s = summary(&out);
    let hosts_sent = s["hosts"].as_array().unwrap();
    assert!(hosts_sent.iter().all(|h| h["bytes_sent"] == 0), "{s}");
}

/// The host's own log has an event of every kind the steps above caused.
fn the_host_log_records_every_event(hosts: &Hosts) {
    let log = fs::read_to_string(hosts.root(1).join(".deploy/log.jsonl")).unwrap();
    for event in [
        "staged",
        "switched",
        "healthy",
        "failed",
        "reverted",
        "rolled-back",
        "marked-bad",
        "pruned",
    ] {
        assert!(
            log.contains(&format!("\"event\":\"{event}\"")),
            "{event}: {log}"
        );
    }
}

/// `exec` on three hosts: each line prefixed with its host, arguments arriving exactly as
/// given (spaces, quotes, `$`, a newline), the host's shared/env in effect, and the exit code
/// and summary naming the one host where the command failed.
fn exec_runs_launcher_commands_on_every_host(hosts: &Hosts, ports: &[u16]) {
    let exec = |command: &[&str]| {
        let mut args: Vec<String> = vec!["exec".into()];
        args.extend(hosts.args(3));
        args.push("--".into());
        args.extend(command.iter().map(|a| a.to_string()));
        hosts.tool(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = exec(&["migrate", "a b", "it's", "$HOME", "two\nlines"]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    for h in ["h1", "h2", "h3"] {
        assert!(
            text.contains(&format!("{h}: migrate up a b it's $HOME two\n"))
                && text.contains(&format!("{h}: lines (command: migrate)\n")),
            "{text}"
        );
    }
    let out = exec(&["env"]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("h2: PORT={} (from env file)", ports[1])),
        "{text}"
    );
    // --raw: one host's bytes as they are; -i: a terminal (here from `script`).
    let mut raw: Vec<String> = vec!["exec".into(), "--raw".into()];
    raw.extend(hosts.args(1));
    raw.extend(["--", "migrate", "a\u{1}b"].map(String::from));
    let out = hosts.tool(&raw.iter().map(String::as_str).collect::<Vec<_>>());
    assert_success(&out);
    assert_eq!(out.stdout, b"migrate up a\x01b (command: migrate)\n");
    let mut interactive: Vec<String> = vec!["exec".into(), "-i".into()];
    interactive.extend(hosts.args(3));
    let out = hosts.tool(
        &interactive
            .iter()
            .chain(&["--".to_string(), "migrate".to_string()])
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("one host, and 3 are selected"),
        "{}",
        stderr(&out)
    );
    if have("script") {
        let mut words = vec![
            tool().display().to_string(),
            "release-bundle".into(),
            "exec".into(),
            "-i".into(),
        ];
        words.extend(hosts.args(1));
        words.extend(["--", "migrate", "console"].map(String::from));
        let line: Vec<String> = words
            .iter()
            .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
            .collect();
        let out = std::process::Command::new("script")
            .args(["-qec", &line.join(" "), "/dev/null"])
            .current_dir(&hosts.scratch.path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("migrate up console (command: migrate)"),
            "{text}{}",
            stderr(&out)
        );
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "script (util-linux) is required in CI"
        );
        eprintln!("skipped: exec -i (no `script` for a terminal)");
    }

    // h3's shared/env unreadable by its user: the launcher refuses there, only there.
    let env3 = hosts.root(3).join("shared/env");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&env3, fs::Permissions::from_mode(0o000)).unwrap();
    let out = exec(&["env"]);
    fs::set_permissions(&env3, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("failed on h3 (exit 1)") && !stderr(&out).contains("h1 (exit"),
        "{}",
        stderr(&out)
    );
}

/// `logs`: the last lines of the right host's log, filtered on the host, escaped; `-f` shows
/// a new line within 2 s and leaves no `tail` on any host once interrupted.
fn logs_read_and_follow_every_host(hosts: &Hosts) {
    let append = |i: usize, text: &str| {
        use std::io::Write;
        let log = hosts.root(i).join("shared/tmp/log/webapp.log");
        let mut f = fs::OpenOptions::new().append(true).open(log).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    append(2, "marker-h2 \x1b[31mred\x1b[0m\nplain-h2\n");
    let mut args: Vec<String> = vec!["logs".into()];
    args.extend(hosts.args(3));
    let run = |extra: &[&str]| {
        let mut all = args.clone();
        all.extend(extra.iter().map(|s| s.to_string()));
        hosts.tool(&all.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = run(&["--grep", "marker", "-n", "5"]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        text, "h2: marker-h2 \\x1b[31mred\\x1b[0m\n",
        "only h2's matching line, escaped"
    );
    let out = run(&["-n", "1"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("h2: plain-h2\n") && text.matches("h1: ").count() == 1,
        "{text}"
    );

    // -f: a line written on h1 shows up within 2 s; an interrupt leaves no tail anywhere.
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut follow = tool_command(&hosts.scratch.path);
    follow
        .args(&args)
        .args(["-f", "-n", "0"])
        .stdout(std::process::Stdio::piped())
        .process_group(0);
    let mut child = KillOnDrop(follow.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    // Once h1's tail runs (under a loaded machine the SSH sessions take a moment).
    let following = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let out = std::process::Command::new("pgrep")
            .args(["-u", &hosts.users[0], "-x", "tail"])
            .output()
            .unwrap();
        out.status.success()
    });
    assert!(following, "no tail started on h1");
    std::thread::sleep(Duration::from_millis(200));
    append(1, "followed-line\n");
    let seen = std::time::Instant::now();
    let got = rx
        .recv_timeout(Duration::from_secs(2))
        .expect("no followed line within 2 s");
    assert_eq!(got, "h1: followed-line", "{:?}", seen.elapsed());
    let pgid = child.0.id() as i32;
    unsafe { libc::kill(-pgid, libc::SIGINT) };
    let _ = child.0.wait();
    let tails = || {
        let users = hosts.users.join(",");
        let out = std::process::Command::new("pgrep")
            .args(["-u", &users, "-x", "tail"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let gone = (0..40).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        tails().is_empty()
    });
    assert!(gone, "tail left behind on a host: pids {}", tails());
}

/// `status`: every host running `current`, then a stopped service, a stale lock and an
/// unreachable host (a closed port), each reported, with exit code 1 and JSON.
fn status_reports_every_host(hosts: &Hosts) {
    // An extra host whose port is closed, in a copy of the SSH config.
    let config = hosts.scratch.join("ssh_config_dead");
    let mut text = fs::read_to_string(&hosts.ssh_config).unwrap();
    text = format!(
        "Host dead\n  HostName 127.0.0.1\n  Port {}\n  User rbhost1\n{text}",
        free_port()
    );
    fs::write(&config, text).unwrap();
    let status = |extra: &[&str]| {
        let mut args: Vec<String> = vec!["status".into(), "--message-format".into(), "json".into()];
        // The copy of the SSH config (it names the same hosts, and the dead one).
        let mut host_args = hosts.args(3);
        host_args[1] = config.display().to_string();
        args.extend(host_args);
        args.extend(extra.iter().map(|a| a.to_string()));
        let out = hosts.tool(&args.iter().map(String::as_str).collect::<Vec<_>>());
        (out.status.code(), json_lines(&out))
    };
    let (code, all) = status(&[]);
    assert_eq!(code, Some(0), "{all:?}");
    for s in &all {
        assert_eq!(s["reachable"], true, "{s}");
        assert_eq!(s["process"]["release"], s["current"], "{s}");
        assert!(s["lock"].is_null(), "{s}");
        assert_eq!(s["last_event"]["event"], "pruned", "{s}");
    }
    // h2 stopped, a stale lock on h1, and the dead host.
    let out = hosts.ssh(2, &format!("{}/current/bin/webapp stop", hosts.path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lock = hosts.root(1).join(".deploy/lock");
    fs::create_dir_all(&lock).unwrap();
    fs::write(
        lock.join("holder"),
        "pid=1 start=1 boot=x who=gone version=9\n",
    )
    .unwrap();
    let (code, all) = status(&["--host", "dead", "--timeout", "5s"]);
    assert_eq!(code, Some(1), "{all:?}");
    let by = |h: &str| all.iter().find(|s| s["host"] == h).unwrap().clone();
    assert_eq!(by("h1")["lock"]["live"], false);
    assert!(by("h2")["process"].is_null());
    assert_eq!(by("h2")["problems"][0], "the service is not running");
    assert_eq!(by("dead")["reachable"], false);
    assert_eq!(by("h3")["problems"].as_array().unwrap().len(), 0);
    fs::remove_dir_all(&lock).unwrap();
}

fn deploy_args(hosts: &Hosts, bundle: &Path, n: usize, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "deploy".into(),
        bundle.display().to_string(),
        "--message-format".into(),
        "json".into(),
    ];
    args.extend(hosts.args(n));
    // The health flags, except those `extra` sets itself.
    for pair in HEALTH.chunks(2) {
        if !extra.contains(&pair[0]) {
            args.extend(pair.iter().map(|s| s.to_string()));
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Dry runs, a tampered bundle, `--stage-only`, a lock held by a slow deploy and broken
/// once its holder is killed, a host key that does not match, and the systemd unit.
#[test]
fn locks_kills_tampering_and_host_keys() {
    let Some(hosts) = Hosts::start(2, "locks") else {
        return;
    };
    let scratch = Scratch::new();
    let v1 = webapp_bundle();
    let v2 = webapp_at(&scratch, "1.3.0", "");
    let v3 = webapp_at(&scratch, "1.4.0", "");

    a_dry_run_prints_the_plan_and_creates_nothing(&hosts, v1);
    let (ports, env_args) = env_files(&hosts, 2);
    let env_args: Vec<&str> = env_args.iter().map(String::as_str).collect();
    assert_success(&deploy(&hosts, v1, 2, &env_args));
    a_dry_run_of_an_upgrade_says_what_moves(&hosts, &v2);
    a_dry_run_plans_other_bytes_beside(&hosts, &scratch);
    a_tampered_bundle_touches_no_host(&hosts, &scratch, &v2);
    stage_only_sends_and_switches_nothing(&hosts, &ports, &v2);
    a_slow_deploy_holds_the_lock_until_killed(&hosts, &v2, &v3);
    the_dead_holders_lock_is_stale_and_broken_when_asked(&hosts, &ports, &v3);
    a_host_key_that_does_not_match_is_refused(&hosts, &v2);
    systemd_unit_describes_the_layout(&hosts);
}

/// The tool run with `first` (the subcommand and its leading words), then `n` hosts' flags
/// and `rest`.
fn tool_on_hosts(hosts: &Hosts, first: &[&str], n: usize, rest: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = first.iter().map(|a| a.to_string()).collect();
    args.extend(hosts.args(n));
    args.extend(rest.iter().map(|a| a.to_string()));
    hosts.tool(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A dry run reads the hosts and prints the plan; nothing is created on them.
fn a_dry_run_prints_the_plan_and_creates_nothing(hosts: &Hosts, v1: &Path) {
    let v1 = v1.display().to_string();
    let out = tool_on_hosts(hosts, &["deploy", &v1, "--dry-run"], 2, &[]);
    assert_success(&out);
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        plan.contains("Would deploy webapp 1.2.0") && plan.contains("batch 2: h2"),
        "{plan}"
    );
    assert!(plan.contains("switch, start 1.2.0"), "{plan}");
    assert!(
        !hosts.root(1).exists() && !hosts.root(2).exists(),
        "a dry run creates nothing"
    );
}

/// A dry run of an upgrade: what would be sent, stopped and started.
fn a_dry_run_of_an_upgrade_says_what_moves(hosts: &Hosts, v2: &Path) {
    let v2 = v2.display().to_string();
    let json = ["--message-format", "json"];
    let out = tool_on_hosts(hosts, &["deploy", &v2, "--dry-run"], 2, &json);
    assert_success(&out);
    let plan = &json_lines(&out)[0];
    assert_eq!(plan["hosts"][0]["stop"], "1.2.0");
    assert_eq!(plan["hosts"][0]["start"], "1.3.0");
    assert!(
        plan["hosts"][0]["files_to_link"].as_u64().unwrap() > 0,
        "{plan}"
    );
    assert!(!hosts.root(1).join("releases/1.3.0").exists());
}

/// A dry run takes the deploy's decisions: 1.2.0 from other bytes would go beside the
/// installed 1.2.0 as 1.2.0+<id>; nothing changes.
fn a_dry_run_plans_other_bytes_beside(hosts: &Hosts, scratch: &Scratch) {
    let other = crate::verify::webapp_with_other_bytes(&scratch.path);
    let other = other.display().to_string();
    let out = tool_on_hosts(hosts, &["deploy", &other, "--dry-run"], 2, &[]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Would deploy webapp 1.2.0+"), "{text}");
    assert!(text.contains("Nothing was changed (--dry-run)."), "{text}");
    let beside = fs::read_dir(hosts.root(1).join("releases"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("1.2.0+"));
    assert!(!beside, "the dry run installed something");
}

/// A tampered bundle is refused before any host is touched.
fn a_tampered_bundle_touches_no_host(hosts: &Hosts, scratch: &Scratch, v2: &Path) {
    let tampered = scratch.join("tampered/webapp-1.3.0-x86_64-unknown-linux-gnu.tar.zst");
    fs::create_dir_all(tampered.parent().unwrap()).unwrap();
    let mut bytes = fs::read(v2).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&tampered, bytes).unwrap();
    let out = deploy(hosts, &tampered, 2, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not verify") && stderr(&out).contains("nothing was deployed"),
        "{}",
        stderr(&out)
    );
    assert!(!hosts.root(1).join("releases/1.3.0").exists());
    assert_eq!(hosts.current(1).as_deref(), Some("1.2.0"));
}

/// --stage-only sends 1.3.0 everywhere and switches nothing; the deploy after it then
/// switches without sending it again.
fn stage_only_sends_and_switches_nothing(hosts: &Hosts, ports: &[u16], v2: &Path) {
    let out = deploy(hosts, v2, 2, &["--stage-only"]);
    assert_success(&out);
    let s = summary(&out);
    for h in s["hosts"].as_array().unwrap() {
        assert_eq!(h["outcome"], "staged", "{s}");
        assert_eq!(h["current"], "1.2.0", "{s}");
    }
    for i in 1..=2 {
        assert!(hosts.root(i).join("releases/1.3.0/SHA256SUMS").is_file());
        assert_eq!(hosts.current(i).as_deref(), Some("1.2.0"));
    }
    assert_eq!(get(ports[0], "/env/RELEASE_VSN"), "1.2.0");
}

/// A deploy that is slow to call its release healthy holds the locks; a second deploy is
/// refused, naming the holder. Then the first is killed with SIGKILL mid-switch, and a
/// transfer it might have left behind is put on h2.
fn a_slow_deploy_holds_the_lock_until_killed(hosts: &Hosts, v2: &Path, v3: &Path) {
    let slow_health = ["--healthy-for", "30s", "--health-deadline", "60s"];
    let args = deploy_args(hosts, v2, 2, &slow_health);
    let mut slow = tool_command(&hosts.scratch.path)
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(slow.stdout.take().unwrap()));
    loop {
        let line = lines.next().expect("the deploy reports a switch").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "started" && v["host"] == "h1" {
            break;
        }
    }
    let out = deploy(hosts, v3, 2, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("another deploy holds") && err.contains("who="),
        "{err}"
    );
    slow.kill().unwrap();
    slow.wait().unwrap();
    let leftover = format!("{}/releases/.incoming-1-1", hosts.path);
    let made = hosts.ssh(2, &format!("mkdir -p {leftover}/release"));
    assert!(made.status.success());
}

/// The lock holder is gone once its connection is: stale, reported, broken when asked, and
/// the transfer it left is swept.
fn the_dead_holders_lock_is_stale_and_broken_when_asked(hosts: &Hosts, ports: &[u16], v3: &Path) {
    let mut stale = None;
    for _ in 0..50 {
        let out = deploy(hosts, v3, 2, &[]);
        if stderr(&out).contains("stale") {
            stale = Some(out);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = stale.expect("the lock became stale");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--break-lock"), "{}", stderr(&out));
    let out = deploy(hosts, v3, 2, &["--break-lock"]);
    assert_success(&out);
    let events = json_lines(&out);
    let swept = events
        .iter()
        .any(|e| e["event"] == "swept" && e["host"] == "h2");
    assert!(swept, "{events:?}");
    assert!(!hosts.root(2).join("releases/.incoming-1-1").exists());
    serving(hosts, ports, "1.4.0");
    for i in 1..=2 {
        assert!(!hosts.root(i).join(".deploy/lock").exists());
    }
}

/// A host whose key does not match the pinned one is refused; nothing changes there.
fn a_host_key_that_does_not_match_is_refused(hosts: &Hosts, v2: &Path) {
    let other_key = hosts.scratch.join("other_host_key");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let known = fs::read_to_string(hosts.scratch.join("known_hosts")).unwrap();
    let host_field = known.split_whitespace().next().unwrap().to_string();
    let other_pub = fs::read_to_string(other_key.with_extension("pub")).unwrap();
    let other: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let bad_known = hosts.scratch.join("bad_known_hosts");
    fs::write(&bad_known, format!("{host_field} {}\n", other.join(" "))).unwrap();
    let config = fs::read_to_string(&hosts.ssh_config).unwrap();
    let bad_config = hosts.scratch.join("bad_ssh_config");
    let known_path = hosts.scratch.join("known_hosts");
    let config = config.replace(known_path.to_str().unwrap(), bad_known.to_str().unwrap());
    fs::write(&bad_config, config).unwrap();
    let mut args = deploy_args(hosts, v2, 1, &[]);
    let at = args.iter().position(|a| a == "--ssh-config").unwrap();
    args[at + 1] = bad_config.display().to_string();
    let out = hosts.tool(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Host key verification failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(hosts.current(1).as_deref(), Some("1.4.0"));
}

/// The unit for the layout on a host; the service runs as the deploy user unless told
/// otherwise.
fn systemd_unit_describes_the_layout(hosts: &Hosts) {
    let out = tool_on_hosts(hosts, &["systemd-unit"], 1, &[]);
    assert_success(&out);
    let unit = String::from_utf8_lossy(&out.stdout).into_owned();
    let root = hosts.root(1).display().to_string();
    for line in [
        format!("ExecStart={root}/current/bin/webapp start"),
        format!("EnvironmentFile=-{root}/shared/env"),
        format!("\nUser={}\n", hosts.users[0]),
    ] {
        assert!(unit.contains(&line), "{line}: {unit}");
    }
}

/// `[package.metadata.release.deploy]` with a destination: `deploy --dest NAME` without a
/// bundle builds one first, and takes hosts, path, SSH config and health from the manifest;
/// `releases --dest` reads the same table. Bad keys there are errors naming the key.
#[test]
fn a_destination_from_the_manifest() {
    let Some(hosts) = Hosts::start(1, "dest") else {
        return;
    };
    let fx = Fixture::new("webapp");
    let port = free_port();
    let env = fx.scratch.join("h1.env");
    fs::write(&env, format!("PORT={port}\nDATABASE_URL=postgres://db/x\n")).unwrap();
    let table = format!(
        "\n[package.metadata.release.deploy]\nkeep = 3\n\n[package.metadata.release.deploy.health]\nurl = \"http://127.0.0.1:${{PORT}}/env/RELEASE_VSN\"\nhealthy-for = \"500ms\"\ninterval = \"200ms\"\ncommand = \"test -x bin/webapp && test -n \\\"$DATABASE_URL\\\"\"\n\n[package.metadata.release.deploy.destinations.staging]\nhosts = [\"h1\"]\npath = \"{}\"\nssh-config = \"{}\"\n",
        hosts.path, "deploy/ssh_config"
    );
    // The SSH config is named relative to the manifest.
    fs::create_dir_all(fx.root.join("deploy")).unwrap();
    fs::copy(&hosts.ssh_config, fx.root.join("deploy/ssh_config")).unwrap();
    let manifest = fx.root.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).unwrap() + &table;
    fs::write(&manifest, &text).unwrap();
    let env_arg = env.to_str().unwrap();
    let args = [
        "deploy",
        "--dest",
        "staging",
        "--env-file",
        env_arg,
        "--message-format",
        "json",
    ];
    let out = fx.run(&args);
    assert_success(&out);
    assert_eq!(get(port, "/env/RELEASE_VSN"), "1.2.0");
    let summary = summary(&out);
    assert_eq!(summary["hosts"][0]["host"], "h1");
    assert_eq!(summary["hosts"][0]["outcome"], "deployed");
    releases_finds_the_destination_from_anywhere(&fx);
    // A wrong value in the table: named with its file and key.
    fs::write(&manifest, text.replace("keep = 3", "keep = \"all\"")).unwrap();
    let out = fx.run(&["releases", "--dest", "staging"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let named = err.contains("Cargo.toml") && err.contains("package.metadata.release.deploy.keep");
    assert!(named, "{err}");
    let required = text.replace("keep = 3", "keep = 3\nrequire-signature = true");
    fs::write(&manifest, required).unwrap();
    require_signature_lets_only_checked_bundles_out(&fx, &env);
}

/// From another directory the manifest's relative ssh-config still applies; an unknown
/// destination is named, with the ones there are.
fn releases_finds_the_destination_from_anywhere(fx: &Fixture) {
    let manifest = fx.root.join("Cargo.toml");
    let args = [
        "releases",
        "--dest",
        "staging",
        "--manifest-path",
        manifest.to_str().unwrap(),
    ];
    assert_success(&run_tool(&fx.scratch.path, &args, &[]));
    let out = fx.run(&["releases", "--dest", "staging"]);
    assert_success(&out);
    assert!(stdout(&out).starts_with("1.2.0 (current, deployed 20"));
    let out = fx.run(&["releases", "--dest", "production"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no destination `production`") && err.contains("staging"),
        "{err}"
    );
}

/// `require-signature`: an unsigned bundle, or one not checked against a signer, is refused
/// before any host is contacted; a signed one checked with --minisign-key goes out.
fn require_signature_lets_only_checked_bundles_out(fx: &Fixture, env: &Path) {
    let out = fx.run(&["deploy", "--dest", "staging"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("deploy.require-signature is set"), "{err}");
    if !have("minisign") {
        return;
    }
    let (key, public) = minisign_keypair(&fx.scratch.path, "ci");
    // The same bundle the first deploy built (bundling is reproducible), to sign.
    let signed_dir = fx.scratch.join("signed");
    let copy = bundle_into(&fx.root, &signed_dir, &[]);
    let copy = copy.to_str().unwrap();
    let checked = |extra: &[&str]| {
        let mut args = vec!["deploy", copy, "--dest", "staging"];
        args.extend_from_slice(extra);
        args.extend(["--minisign-key", public.to_str().unwrap()]);
        fx.run(&args)
    };
    let out = checked(&[]);
    assert_eq!(out.status.code(), Some(1), "unsigned: {}", stderr(&out));
    assert!(stderr(&out).contains("does not verify"), "{}", stderr(&out));
    let sign = [
        "sign",
        copy,
        "--signer",
        "minisign",
        "--key",
        key.to_str().unwrap(),
    ];
    assert_success(&run_tool(&fx.root, &sign, &[]));
    assert_success(&checked(&["--env-file", env.to_str().unwrap()]));
}

/// A host with nothing but busybox on its PATH (its sh runs host.sh; its coreutils, tar and
/// gzip serve host.sh and the launcher): a deploy, an upgrade, a rollback, a revert,
/// pruning, `exec`, `status` and `logs` work there as on a GNU system.
#[test]
fn a_busybox_host_is_deployed_upgraded_and_rolled_back() {
    let setup = Setup {
        busybox: true,
        ..Default::default()
    };
    let Some(hosts) = Hosts::start_with(1, "busybox", setup) else {
        return;
    };
    let tools = hosts.ssh(
        1,
        "for t in sh mv stat tar gzip; do readlink -f \"$(command -v $t)\"; done",
    );
    let tools = String::from_utf8_lossy(&tools.stdout).into_owned();
    assert_eq!(
        tools.lines().filter(|l| l.ends_with("/busybox")).count(),
        5,
        "{tools}"
    );
    let scratch = Scratch::new();
    let v2 = webapp_at(&scratch, "1.3.0", "");
    let (ports, env_args) = env_files(&hosts, 1);
    let env_args: Vec<&str> = env_args.iter().map(String::as_str).collect();
    assert_success(&deploy(&hosts, webapp_bundle(), 1, &env_args));
    serving(&hosts, &ports, "1.2.0");
    assert_success(&deploy(&hosts, &v2, 1, &[]));
    serving(&hosts, &ports, "1.3.0");
    assert_success(&tool_on_hosts(&hosts, &["rollback"], 1, HEALTH));
    serving(&hosts, &ports, "1.2.0");
    // A redeploy of 1.3.0 pruning all but two releases (1.4.0 is never healthy: its
    // failure and revert run there too).
    let bad = webapp_at(&scratch, "1.4.0", "WEBAPP_CRASH = \"1\"\n");
    assert_eq!(deploy(&hosts, &bad, 1, &[]).status.code(), Some(1));
    serving(&hosts, &ports, "1.2.0");
    assert_success(&deploy(&hosts, &v2, 1, &["--keep", "2"]));
    let left = fs::read_dir(hosts.root(1).join("releases"))
        .unwrap()
        .count();
    assert_eq!(left, 2, "kept two releases");
    let out = tool_on_hosts(&hosts, &["exec"], 1, &["--", "migrate", "a b"]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("h1: migrate up a b"),
        "{}",
        stdout(&out)
    );
    let out = tool_on_hosts(&hosts, &["status", "--message-format", "json"], 1, &[]);
    assert_success(&out);
    let status = &json_lines(&out)[0];
    assert_eq!(status["process"]["release"], "1.3.0", "{status}");
    let out = tool_on_hosts(&hosts, &["logs", "-n", "1"], 1, &[]);
    assert_success(&out);
    assert!(stdout(&out).starts_with("h1: "), "{}", stdout(&out));
}

/// `deploy.service = "systemd"` against a real systemd (PID 1 of its own namespaces, see
/// `hosts.rs`): the unit `systemd-unit` prints is installed on the host, and deploys,
/// a failed release's revert and a rollback all stop and start the service through
/// `systemctl`, so systemd supervises the process that serves.
#[test]
fn deploys_restart_through_a_real_systemd() {
    let scratch = Scratch::new();
    let Some(systemd) = Systemd::boot(&scratch.join("systemd.log")) else {
        return;
    };
    let setup = Setup {
        users: Some(vec!["root".into()]),
        systemd: Some(&systemd),
        ..Default::default()
    };
    let Some(hosts) = Hosts::start_with(1, "systemd", setup) else {
        return;
    };
    let root = hosts.root(1);
    let v1 = webapp_bundle().to_path_buf();
    let v2 = webapp_at(&scratch, "1.3.0", "");
    let crashes = webapp_at(&scratch, "1.4.0", "WEBAPP_CRASH = \"1\"\n");

    // The project says its hosts run the service under systemd.
    let fx = Fixture::new("webapp");
    fx.append(
        "Cargo.toml",
        &format!(
            "\n[package.metadata.release.deploy]\nservice = \"systemd\"\npath = \"{}\"\n",
            root.display()
        ),
    );

    // The operator installs the unit for the layout.
    // The deploy user here is root: named, since the unit never defaults to root.
    let out = fx.run(&["systemd-unit", "--user", "root"]);
    assert_success(&out);
    let unit = scratch.join("webapp.service");
    fs::write(&unit, &out.stdout).unwrap();
    let out = systemd.run(&format!(
        "cp {} /run/systemd/system/webapp.service && systemctl daemon-reload",
        unit.display()
    ));
    assert!(out.status.success(), "{}", stderr(&out));

    let (ports, env_args) = env_files(&hosts, 1);
    let port = ports[0];
    let deploy = |bundle: &Path, extra: &[&str]| {
        let mut args = deploy_args(&hosts, bundle, 1, extra);
        args.extend(env_args.iter().cloned());
        fx.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // systemd's view: is the unit active, and which process is its main one.
    let main_pid = || {
        let out = systemd.run("systemctl show -P MainPID webapp.service");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let active = || {
        let out = systemd.run("systemctl is-active webapp.service");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };

    let out = deploy(&v1, &[]);
    assert_success(&out);
    assert_eq!(get(port, "/env/RELEASE_VSN"), "1.2.0");
    assert_eq!(active(), "active");
    let first = main_pid();
    assert_ne!(first, "0", "systemd supervises the service");
    // The launcher under systemd writes the pid file too: it names systemd's main process.
    let pid_file = fs::read_to_string(root.join("shared/tmp/webapp.pid")).unwrap();
    assert_eq!(pid_file.trim(), first);

    let out = deploy(&v2, &[]);
    assert_success(&out);
    assert_eq!(get(port, "/env/RELEASE_VSN"), "1.3.0");
    assert_eq!(active(), "active");
    let second = main_pid();
    assert!(second != first && second != "0", "{first} then {second}");

    // A release that exits at once: systemd restarts it until its start limit; the deploy
    // reverts to 1.3.0 through systemctl, which must start the unit again all the same.
    let out = deploy(&crashes, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(hosts.current(1).as_deref(), Some("1.3.0"));
    assert_eq!(get(port, "/env/RELEASE_VSN"), "1.3.0");
    assert_eq!(active(), "active");

    // Rollback to 1.2.0, past the bad 1.4.0, through systemctl.
    let mut args = vec!["rollback".to_string()];
    args.extend(hosts.args(1));
    args.extend(HEALTH.iter().map(|s| s.to_string()));
    let out = fx.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_success(&out);
    assert_eq!(hosts.current(1).as_deref(), Some("1.2.0"));
    assert_eq!(get(port, "/env/RELEASE_VSN"), "1.2.0");
    assert_eq!(active(), "active");
    let out = systemd.run("systemctl stop webapp.service");
    assert!(out.status.success());
}
