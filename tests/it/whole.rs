//! The whole release over real SSH: the release command (a migration) runs once per deploy,
//! on the primary host, from the new release, before any host switches; hooks run on this
//! machine around deploys and rollbacks with their documented environment; secrets from
//! `deploy.env-command` reach each host's `shared/env` and nothing else.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::hosts::Hosts;
use crate::support::*;

const SECRET: &str = "postgres://db/SECRET-FROM-COMMAND-7731";

/// Lines of host `i`'s migration log: (version, milliseconds, release root).
fn migrations(hosts: &Hosts, i: usize) -> Vec<(String, u64, String)> {
    let text = fs::read_to_string(hosts.root(i).join("shared/migrations.log")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_string(), f[1].parse().unwrap(), f[2].to_string())
        })
        .collect()
}

/// Host `i`'s deploy log as JSON events.
fn events(hosts: &Hosts, i: usize) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(hosts.root(i).join(".deploy/log.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every process's command line mentions the secret? Sampled until `stop`.
fn watch_cmdlines(stop: &AtomicBool) -> bool {
    let mut seen = false;
    while !stop.load(Ordering::SeqCst) {
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            seen |= String::from_utf8_lossy(&cmdline).contains("SECRET-FROM-COMMAND");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen
}

#[test]
fn the_release_command_runs_once_first_with_hooks_and_secrets() {
    let Some(hosts) = Hosts::start(2, "whole") else {
        return;
    };
    let scratch = Scratch::new();
    let v1 = webapp_bundle().to_path_buf();
    let v2 = webapp_at(&scratch, "1.3.0", "");
    let v3 = webapp_at(&scratch, "1.4.0", "");
    let fx = Fixture::new("webapp");
    let hook_log = fx.scratch.join("hooks.log");
    let hook = format!(
        "#!/bin/sh\n[ -f {stop} ] && exit 7\nprintf '%s %s %s [%s] %s %s\\n' \"$1\" \"$RELEASE_BUNDLE_NAME\" \"$RELEASE_BUNDLE_VERSION\" \"$RELEASE_BUNDLE_HOSTS\" \"$RELEASE_BUNDLE_ROLES\" \"$RELEASE_BUNDLE_OUTCOME\" >> {log}\nenv >> {log}.env\necho hello from \"$1\"\ncase \"$1\" in post-*) [ -f {post} ] && exit 9 ;; esac\nexit 0\n",
        stop = fx.scratch.join("stop").display(),
        post = fx.scratch.join("post-fails").display(),
        log = hook_log.display()
    );
    fs::create_dir_all(fx.root.join("deploy")).unwrap();
    for name in ["pre-deploy", "post-deploy", "pre-rollback", "post-rollback"] {
        let path = fx.root.join("deploy").join(name);
        fs::write(&path, hook.replace("\"$1\"", name)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let secret_file = fx.scratch.join("vault");
    fs::write(&secret_file, format!("DATABASE_URL={SECRET}\n")).unwrap();
    fx.append(
        "Cargo.toml",
        &format!(
            "\n[package.metadata.release.deploy]\nrelease-command = \"migrate\"\nshared-dirs = [\"upload\", \"db/sqlite\"]\nenv-command = \"cat {}\"\n\n[package.metadata.release.deploy.hooks]\npre-deploy = \"deploy/pre-deploy\"\npost-deploy = \"deploy/post-deploy\"\npre-rollback = \"deploy/pre-rollback\"\npost-rollback = \"deploy/post-rollback\"\n",
            secret_file.display()
        ),
    );
    let (ports, env_args) = hosts.env_files_with_migrations(&fx.scratch.path, 2);
    let run = |command: &str, bundle: Option<&Path>, extra: &[&str]| {
        let mut args = vec![command.to_string()];
        args.extend(bundle.map(|b| b.display().to_string()));
        args.extend(hosts.args(2));
        args.extend(
            [
                "--message-format",
                "json",
                "--health-url",
                "http://127.0.0.1:${PORT}/env/RELEASE_VSN",
                "--healthy-for",
                "300ms",
                "--health-interval",
                "100ms",
            ]
            .map(String::from),
        );
        if command == "deploy" {
            args.extend(env_args.iter().cloned());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        fx.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // First deploy, watching every command line for the secret meanwhile.
    let stop = AtomicBool::new(false);
    let (out, leaked) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch_cmdlines(&stop));
        let out = run("deploy", Some(&v1), &[]);
        stop.store(true, Ordering::SeqCst);
        (out, watcher.join().unwrap())
    });
    assert_success(&out);
    assert!(!leaked, "the secret appeared in a command line");
    let said = json_lines(&out);
    assert!(
        said.iter().any(|e| e["reason"] == "hook-output"
            && e["hook"] == "pre-deploy"
            && e["line"] == "hello from pre-deploy"),
        "the hook's output is in the report"
    );
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        !shown.contains("SECRET-FROM-COMMAND"),
        "the secret was printed"
    );
    for i in 1..=2 {
        let env = hosts.root(i).join("shared/env");
        assert!(fs::read_to_string(&env).unwrap().contains(SECRET));
        assert_eq!(
            fs::metadata(&env).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let log = fs::read_to_string(hosts.root(i).join(".deploy/log.jsonl")).unwrap();
        assert!(
            !log.contains("SECRET-FROM-COMMAND"),
            "the secret is in host {i}'s log"
        );
        assert_eq!(get(ports[i - 1]), "1.2.0");
        // Data that outlives releases: shared-dirs, and RELEASE_SHARED for the service.
        assert!(
            hosts.root(i).join("shared/upload").is_dir()
                && hosts.root(i).join("shared/db/sqlite").is_dir()
        );
        let shared = http_get(ports[i - 1], "/env/RELEASE_SHARED", Duration::from_secs(10));
        assert_eq!(
            Path::new(&shared),
            hosts.root(i).join("shared").canonicalize().unwrap()
        );
    }
    // Once, on the primary (h1), from the new release, before any switch.
    let ran = migrations(&hosts, 1);
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert!(ran[0].2.ends_with("releases/1.2.0"), "{ran:?}");
    assert!(
        migrations(&hosts, 2).is_empty(),
        "the release command ran on h2"
    );
    for i in 1..=2 {
        let switched = events(&hosts, i)
            .into_iter()
            .find(|e| e["event"] == "switched")
            .unwrap();
        assert!(
            ran[0].1 / 1000 <= switched["time"].as_u64().unwrap(),
            "h{i} switched before the migration"
        );
    }
    assert!(
        events(&hosts, 1)
            .iter()
            .any(|e| e["event"] == "release-command-ran")
    );
    let reported: Vec<serde_json::Value> = json_lines(&out);
    assert!(reported.iter().any(|e| e["event"] == "output" && e["line"].as_str().unwrap_or("").contains("migrate")), "the release command's output is in the report");

    // The same bundle again: nothing switches, nothing migrates. Then an upgrade: once more.
    assert_success(&run("deploy", Some(&v1), &[]));
    assert_eq!(migrations(&hosts, 1).len(), 1);
    assert_success(&run("deploy", Some(&v2), &[]));
    let ran = migrations(&hosts, 1);
    assert_eq!(ran.len(), 2);
    assert!(
        ran[1].0 == "1.3.0" && ran[1].2.ends_with("releases/1.3.0"),
        "{ran:?}"
    );

    // Rollback: no migration; the rollback hooks hear the outcome.
    assert_success(&run("rollback", None, &[]));
    assert_eq!(
        migrations(&hosts, 1).len(),
        2,
        "rollback ran the release command"
    );
    assert_eq!(get(ports[0]), "1.2.0");

    // A failing migration: nothing switches anywhere, exit 1, the event on the primary.
    let fail_env = |i: usize| fx.scratch.join(format!("h{i}.env"));
    for i in 1..=2 {
        let mut text = fs::read_to_string(fail_env(i)).unwrap();
        text.push_str("MIGRATE_FAIL=1.4.0\n");
        fs::write(fail_env(i), text).unwrap();
    }
    let out = run("deploy", Some(&v3), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("h1: the release command `migrate` exited 4; no host was switched"),
        "{}",
        stderr(&out)
    );
    for i in 1..=2 {
        assert_eq!(hosts.current(i).as_deref(), Some("1.2.0"));
        assert_eq!(get(ports[i - 1]), "1.2.0");
    }
    assert!(
        events(&hosts, 1)
            .iter()
            .any(|e| e["event"] == "release-command-failed" && e["code"] == 4)
    );
    // --skip-release-command: switches without it (it would fail), and says so.
    let out = run("deploy", Some(&v3), &["--skip-release-command"]);
    assert_success(&out);
    assert!(
        events(&hosts, 1)
            .iter()
            .any(|e| e["event"] == "release-command-skipped")
    );
    assert_eq!(get(ports[1]), "1.4.0");

    // A failing pre-deploy hook: no host is contacted.
    fs::write(fx.scratch.join("stop"), "").unwrap();
    let before = events(&hosts, 1).len();
    let out = run("deploy", Some(&v2), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the pre-deploy hook") && stderr(&out).contains("exited 7"),
        "{}",
        stderr(&out)
    );
    assert_eq!(events(&hosts, 1).len(), before, "a host was contacted");
    fs::remove_file(fx.scratch.join("stop")).unwrap();

    let hooks = fs::read_to_string(&hook_log).unwrap();
    let lines: Vec<&str> = hooks.lines().collect();
    assert_eq!(lines[0], "pre-deploy webapp 1.2.0 [h1 h2] web ");
    assert_eq!(lines[1], "post-deploy webapp 1.2.0 [h1 h2] web success");
    assert!(
        lines.contains(&"pre-rollback webapp  [h1 h2] web "),
        "{hooks}"
    );
    assert!(
        lines.contains(&"post-rollback webapp  [h1 h2] web success"),
        "{hooks}"
    );
    assert!(
        lines.contains(&"post-deploy webapp 1.4.0 [h1 h2] web failed"),
        "{hooks}"
    );
    let hook_env = fs::read_to_string(format!("{}.env", hook_log.display())).unwrap();
    assert!(
        !hook_env.contains("SECRET-FROM-COMMAND"),
        "a hook saw the secret"
    );

    // 1.2.0 again from other bytes (a config change, no version bump): installed beside the
    // first 1.2.0 as 1.2.0+<digest>, and rollback moves between them.
    let rebuilt = webapp_at(&scratch, "1.2.0", "CONFIG_ONLY = \"changed\"\n");
    let digest = sha256_file(&rebuilt);
    let id = format!("1.2.0+{}", &digest[..12]);
    // --dry-run decides as the deploy does: beside, under the new name, not refused.
    let plan = run("deploy", Some(&rebuilt), &["--dry-run"]);
    assert_success(&plan);
    let plan = json_lines(&plan);
    assert_eq!(plan[0]["version"], id.as_str(), "{plan:?}");
    assert_success(&run("deploy", Some(&rebuilt), &[]));
    for i in 1..=2 {
        assert_eq!(hosts.current(i).as_deref(), Some(id.as_str()));
        assert!(
            hosts.root(i).join("releases/1.2.0").is_dir(),
            "the first 1.2.0 is kept"
        );
        assert_eq!(get(ports[i - 1]), "1.2.0");
    }
    let config = |port| http_get(port, "/env/CONFIG_ONLY", Duration::from_secs(10));
    assert_eq!(config(ports[0]), "changed");
    assert_success(&run("rollback", None, &["--version", "1.2.0"]));
    assert_eq!(hosts.current(1).as_deref(), Some("1.2.0"));
    assert_eq!(config(ports[0]), "");
    // A failing post-deploy hook: the hosts moved (the report says so), the exit code is not 0.
    fs::write(fx.scratch.join("post-fails"), "").unwrap();
    let out = run("deploy", Some(&v2), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the post-deploy hook") && stderr(&out).contains("exited 9"),
        "{}",
        stderr(&out)
    );
    assert_eq!(hosts.current(1).as_deref(), Some("1.3.0"));
}

fn get(port: u16) -> String {
    http_get(port, "/env/RELEASE_VSN", Duration::from_secs(10))
}
