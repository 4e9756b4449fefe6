//! Processes on their roles over real SSH: web hosts run only `web`, worker hosts only
//! `worker`, a host with both runs both; the release command runs once, on the primary;
//! `--role worker` moves only the workers.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::hosts::Hosts;
use crate::support::*;

/// The roles fixture bundled at `version`.
fn roles_bundle(scratch: &Scratch, version: &str) -> PathBuf {
    let src = scratch.join(format!("roles-{version}"));
    copy_tree(&repo().join("fixtures/roles"), &src);
    let manifest = src.join("Cargo.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text.replacen("1.0.0", version, 1)).unwrap();
    let out_dir = scratch.join("bundles");
    let out = run_tool(
        &src,
        &[
            "--message-format",
            "json",
            "-q",
            "--out-dir",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_success(&out);
    let msg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    PathBuf::from(msg["path"].as_str().unwrap())
}

/// Host `i`'s worker heartbeat: the version writing it, once it is there (within 3 s).
fn heartbeat(hosts: &Hosts, i: usize, want: &str) -> Option<String> {
    let file = hosts.root(i).join("shared/heartbeat");
    let mut last = None;
    for _ in 0..30 {
        last = fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.split(' ').next().map(String::from));
        if last.as_deref() == Some(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

fn version(port: u16) -> Option<String> {
    std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    Some(http_get(port, "/", Duration::from_secs(5)))
}

#[test]
fn processes_run_on_their_roles() {
    let Some(hosts) = Hosts::start(3, "roles") else {
        return;
    };
    let scratch = Scratch::new();
    let (v1, v2) = (
        roles_bundle(&scratch, "1.0.0"),
        roles_bundle(&scratch, "1.1.0"),
    );
    let fx = Fixture::new("roles");
    fx.append(
        "Cargo.toml",
        "\n[package.metadata.release.deploy]\nrelease-command = \"migrate\"\nenv-command = \"printf API_TOKEN=sekrit-roles-42\"\n\n[package.metadata.release.deploy.roles.web]\nhosts = [\"h1\", \"h2\"]\nbatch = \"100%\"\n\n[package.metadata.release.deploy.roles.worker]\nhosts = [\"h2\", \"h3\"]\nenv-file = \"worker.env\"\n",
    );
    fs::write(fx.root.join("worker.env"), "WORKER_MODE=fast\n").unwrap();
    let mut common = vec![
        "--ssh-config".to_string(),
        hosts.ssh_config.display().to_string(),
        "--path".into(),
        hosts.path.clone(),
    ];
    common.extend(
        [
            "--health-url",
            "http://127.0.0.1:${PORT}/",
            "--healthy-for",
            "300ms",
            "--health-interval",
            "100ms",
        ]
        .map(String::from),
    );
    let (ports, env_args) = hosts.env_files_with_migrations(&fx.scratch.path, 3);
    // With env-command configured, each deploy installs shared/env from its sources: the
    // same --env-file flags go with every deploy (a host left out by --role is skipped).
    let deploy = |bundle: &Path, extra: &[&str]| {
        let mut args = vec!["deploy".to_string(), bundle.display().to_string()];
        args.extend(common.iter().cloned());
        args.extend(env_args.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        fx.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let migrations = |i: usize| {
        fs::read_to_string(hosts.root(i).join("shared/migrations.log"))
            .unwrap_or_default()
            .lines()
            .count()
    };

    let out = deploy(&v1, &["--message-format", "json"]);
    assert_success(&out);
    // The web role's batch is 100%: h2 switches before h1 is healthy; h3 (a worker) after.
    let events: Vec<(String, String)> = json_lines(&out)
        .iter()
        .filter(|e| e["reason"] == "deploy-event")
        .map(|e| {
            (
                e["host"].as_str().unwrap_or("").to_string(),
                e["event"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let at = |host: &str, event: &str| {
        events
            .iter()
            .position(|(h, e)| h == host && e == event)
            .unwrap_or_else(|| panic!("no {event} on {host}: {events:?}"))
    };
    assert!(at("h2", "switched") < at("h1", "healthy"), "{events:?}");
    assert!(at("h1", "healthy") < at("h3", "switched"), "{events:?}");
    // The worker role's env-file reaches its hosts only.
    let shared = |i: usize| fs::read_to_string(hosts.root(i).join("shared/env")).unwrap();
    // The secret from env-command reaches every host's shared/env, and not the report.
    assert!((1..=3).all(|i| shared(i).contains("API_TOKEN=sekrit-roles-42")));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("sekrit")
            && !stderr(&out).contains("sekrit")
    );
    assert!(
        !shared(1).contains("WORKER_MODE")
            && shared(2).contains("WORKER_MODE=fast")
            && shared(3).contains("WORKER_MODE=fast")
    );
    assert_eq!(version(ports[0]).as_deref(), Some("1.0.0"), "h1 runs web");
    assert_eq!(heartbeat(&hosts, 1, "1.0.0"), None, "h1 runs no worker");
    assert_eq!(version(ports[1]).as_deref(), Some("1.0.0"), "h2 runs web");
    assert_eq!(
        heartbeat(&hosts, 2, "1.0.0").as_deref(),
        Some("1.0.0"),
        "h2 runs the worker"
    );
    assert_eq!(version(ports[2]), None, "h3 runs no web");
    // The worker runs in ${RELEASE_SHARED} (its workdir): data that outlives releases.
    let cwd = fs::read_to_string(hosts.root(3).join("shared/worker-cwd")).unwrap();
    assert_eq!(
        Path::new(&cwd),
        hosts.root(3).join("shared").canonicalize().unwrap()
    );
    assert_eq!(
        heartbeat(&hosts, 3, "1.0.0").as_deref(),
        Some("1.0.0"),
        "h3 runs the worker"
    );
    assert_eq!(
        (migrations(1), migrations(2), migrations(3)),
        (1, 0, 0),
        "the migration runs once, on the primary"
    );

    // --role worker: only the worker hosts switch, and on h2 only the worker restarts.
    let out = deploy(&v2, &["--role", "worker"]);
    assert_success(&out);
    assert_eq!(hosts.current(1).as_deref(), Some("1.0.0"));
    assert_eq!(hosts.current(2).as_deref(), Some("1.1.0"));
    assert_eq!(hosts.current(3).as_deref(), Some("1.1.0"));
    assert_eq!(heartbeat(&hosts, 2, "1.1.0").as_deref(), Some("1.1.0"));
    assert_eq!(heartbeat(&hosts, 3, "1.1.0").as_deref(), Some("1.1.0"));
    assert_eq!(
        version(ports[1]).as_deref(),
        Some("1.0.0"),
        "h2's web was not part of --role worker"
    );
    assert_eq!(version(ports[0]).as_deref(), Some("1.0.0"));

    // `status`: per host what its roles run; h2's web still runs 1.0.0 under current 1.1.0.
    let mut args = vec![
        "status".to_string(),
        "--message-format".into(),
        "json".into(),
    ];
    args.extend(common.iter().take(4).cloned());
    let out = fx.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let reports = json_lines(&out);
    let of = |h: &str| reports.iter().find(|r| r["host"] == h).unwrap().clone();
    assert_eq!(of("h1")["problems"], serde_json::json!([]));
    assert_eq!(
        of("h3")["problems"],
        serde_json::json!([]),
        "h3 runs no web, and none is expected"
    );
    assert_eq!(of("h3")["processes"]["worker"]["release"], "1.1.0");
    let h2 = of("h2")["problems"].to_string();
    assert!(
        h2.contains("runs release 1.0.0, not the current 1.1.0"),
        "{h2}"
    );

    // The launcher on a host with both: status lists each process.
    let status = hosts.ssh(
        2,
        &format!("{}/current/bin/roles status", hosts.root(2).display()),
    );
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("[web] running") && text.contains("[worker] running"),
        "{text}"
    );
    // Each process with the release it runs: h2's web still 1.0.0, its worker 1.1.0.
    assert!(text.contains(", release 1.0.0, up "), "{text}");
    assert!(text.contains(", release 1.1.0, up "), "{text}");
    // --primary: the primary host only (the web role's first); releases --role: its hosts.
    let mut args = vec![
        "status".to_string(),
        "--primary".into(),
        "--message-format".into(),
        "json".into(),
    ];
    args.extend(common.iter().take(4).cloned());
    let reports = json_lines(&fx.run(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["host"], "h1");
    let mut args = vec!["releases".to_string(), "--role".into(), "worker".into()];
    args.extend(common.iter().take(4).cloned());
    let out = fx.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("h2:") && text.contains("h3:") && !text.contains("h1:"),
        "{text}"
    );

    // `logs --process worker` on the worker hosts.
    let mut args = vec![
        "logs".to_string(),
        "--process".into(),
        "worker".into(),
        "--role".into(),
        "worker".into(),
    ];
    args.extend(common.iter().take(4).cloned());
    let out = fx.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("h2: worker 1.1.0 started")
            && text.contains("h3: worker 1.1.0 started")
            && !text.contains("h1:"),
        "{text}"
    );

    // The whole release upgraded with one command, then rolled back with one: the migration
    // ran once more (the upgrade), not for the rollback.
    let before = migrations(1) + migrations(2) + migrations(3);
    assert_success(&deploy(&v2, &[]));
    assert_eq!(version(ports[0]).as_deref(), Some("1.1.0"));
    let rollback: Vec<String> = ["rollback".to_string()]
        .into_iter()
        .chain(common.iter().cloned())
        .collect();
    assert_success(&fx.run(&rollback.iter().map(String::as_str).collect::<Vec<_>>()));
    for i in 1..=3 {
        assert_eq!(hosts.current(i).as_deref(), Some("1.0.0"), "h{i}");
    }
    assert_eq!(version(ports[0]).as_deref(), Some("1.0.0"));
    assert_eq!(heartbeat(&hosts, 3, "1.0.0").as_deref(), Some("1.0.0"));
    let after = migrations(1) + migrations(2) + migrations(3);
    assert!(
        after == before + 1,
        "the upgrade migrates once, the rollback never ({before} → {after})"
    );

    // A role's own health: the workers' health command fails, so moving them fails and
    // they go back; the deploy's health (none) would have passed.
    fx.edit(
        "Cargo.toml",
        "env-file = \"worker.env\"\n",
        "env-file = \"worker.env\"\nhealth = { command = \"false\", deadline = \"2s\" }\n",
    );
    let out = deploy(&v2, &["--role", "worker"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the health command failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(hosts.current(3).as_deref(), Some("1.0.0"), "h3 went back");

    // `start worker`: one process in the foreground (as the host's user), until SIGTERM.
    let launcher = hosts.root(3).join("current/bin/roles");
    let user = &hosts.users[2];
    let stop = std::process::Command::new("runuser")
        .args(["-u", user, "--"])
        .arg(&launcher)
        .args(["stop", "worker"])
        .output()
        .unwrap();
    assert_success(&stop);
    let mut fg = std::process::Command::new("runuser")
        .args(["-u", user, "--"])
        .arg(&launcher)
        .args(["start", "worker"])
        .spawn()
        .unwrap();
    let beat = hosts.root(3).join("shared/heartbeat");
    let _ = fs::remove_file(&beat);
    let started = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        beat.exists()
    });
    let _ = std::process::Command::new("pkill")
        .args(["-TERM", "-u", user, "-x", "roles-worker"])
        .status();
    let _ = fg.wait();
    assert!(started, "start worker ran no worker");
}
