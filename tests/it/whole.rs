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

/// Two hosts and the webapp project with a migration as its release command, a secret from
/// env-command, shared-dirs, and the four hooks (each logs its arguments and environment,
/// and fails on demand: `stop` fails the pre hooks, `post-fails` the post hooks).
struct Whole {
    hosts: Hosts,
    fx: Fixture,
    env_args: Vec<String>,
    ports: Vec<u16>,
    hook_log: std::path::PathBuf,
}

impl Whole {
    fn start() -> Option<Whole> {
        let hosts = Hosts::start(2, "whole")?;
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
        Some(Whole {
            hosts,
            fx,
            env_args,
            ports,
            hook_log,
        })
    }

    /// `command` (deploy, rollback) of `bundle` on both hosts, JSON out, quick health.
    fn run(&self, command: &str, bundle: Option<&Path>, extra: &[&str]) -> std::process::Output {
        let mut args = vec![command.to_string()];
        args.extend(bundle.map(|b| b.display().to_string()));
        args.extend(self.hosts.args(2));
        let health = ["--health-url", "http://127.0.0.1:${PORT}/env/RELEASE_VSN"];
        args.extend(["--message-format", "json"].map(String::from));
        args.extend(health.map(String::from));
        args.extend(["--healthy-for", "300ms", "--health-interval", "100ms"].map(String::from));
        if command == "deploy" {
            args.extend(self.env_args.iter().cloned());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        self.fx
            .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Create (or remove) the file that makes the hooks fail.
    fn hooks_fail(&self, which: &str, fail: bool) {
        let file = self.fx.scratch.join(which);
        if fail {
            fs::write(file, "").unwrap();
        } else {
            fs::remove_file(file).unwrap();
        }
    }
}

#[test]
fn the_release_command_runs_once_first_with_hooks_and_secrets() {
    let Some(w) = Whole::start() else {
        return;
    };
    let scratch = Scratch::new();
    let v1 = webapp_bundle();
    let v2 = webapp_at(&scratch, "1.3.0", "");
    let v3 = webapp_at(&scratch, "1.4.0", "");
    let out = the_first_deploy_keeps_the_secret_and_makes_shared_dirs(&w, v1);
    the_migration_ran_once_on_the_primary_before_any_switch(&w, &out);
    a_redeploy_and_a_rollback_do_not_migrate(&w, v1, &v2);
    a_failing_migration_switches_nothing(&w, &v3);
    a_failing_pre_deploy_hook_contacts_no_host(&w, &v2);
    the_hooks_heard_every_outcome_and_no_secret(&w);
    other_bytes_go_beside_as_version_and_digest(&w, &scratch);
    a_failing_post_deploy_hook_fails_the_exit_code(&w, &v2);
}

/// First deploy, watching every command line for the secret meanwhile: the secret reaches
/// each host's private shared/env, and no command line, report or host log; hooks' output
/// is in the report; shared-dirs exist and RELEASE_SHARED names them.
fn the_first_deploy_keeps_the_secret_and_makes_shared_dirs(
    w: &Whole,
    v1: &Path,
) -> std::process::Output {
    let (hosts, ports) = (&w.hosts, &w.ports);
    let stop = AtomicBool::new(false);
    let (out, leaked) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch_cmdlines(&stop));
        let out = w.run("deploy", Some(v1), &[]);
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
        let shared = hosts.root(i).join("shared");
        assert!(shared.join("upload").is_dir() && shared.join("db/sqlite").is_dir());
        let told = http_get(ports[i - 1], "/env/RELEASE_SHARED", Duration::from_secs(10));
        assert_eq!(Path::new(&told), shared.canonicalize().unwrap());
    }
    out
}

/// Once, on the primary (h1), from the new release, before any switch; its output is in
/// the report and its event in the primary's log.
fn the_migration_ran_once_on_the_primary_before_any_switch(w: &Whole, out: &std::process::Output) {
    let hosts = &w.hosts;
    let ran = migrations(hosts, 1);
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert!(ran[0].2.ends_with("releases/1.2.0"), "{ran:?}");
    assert!(
        migrations(hosts, 2).is_empty(),
        "the release command ran on h2"
    );
    for i in 1..=2 {
        let switched = events(hosts, i)
            .into_iter()
            .find(|e| e["event"] == "switched")
            .unwrap();
        let switched_at = switched["time"].as_u64().unwrap();
        assert!(
            ran[0].1 / 1000 <= switched_at,
            "h{i} switched before the migration"
        );
    }
    assert!(
        events(hosts, 1)
            .iter()
            .any(|e| e["event"] == "release-command-ran")
    );
    let said = |e: &serde_json::Value| {
        e["event"] == "output" && e["line"].as_str().unwrap_or("").contains("migrate")
    };
    let reported = json_lines(out).iter().any(said);
    assert!(reported, "the release command's output is in the report");
}

/// The same bundle again: nothing switches, nothing migrates. Then an upgrade: once more.
/// Rollback: no migration.
fn a_redeploy_and_a_rollback_do_not_migrate(w: &Whole, v1: &Path, v2: &Path) {
    let hosts = &w.hosts;
    assert_success(&w.run("deploy", Some(v1), &[]));
    assert_eq!(migrations(hosts, 1).len(), 1);
    assert_success(&w.run("deploy", Some(v2), &[]));
    let ran = migrations(hosts, 1);
    assert_eq!(ran.len(), 2);
    assert!(
        ran[1].0 == "1.3.0" && ran[1].2.ends_with("releases/1.3.0"),
        "{ran:?}"
    );
    assert_success(&w.run("rollback", None, &[]));
    assert_eq!(
        migrations(hosts, 1).len(),
        2,
        "rollback ran the release command"
    );
    assert_eq!(get(w.ports[0]), "1.2.0");
}

/// A failing migration: nothing switches anywhere, exit 1, the event on the primary.
/// --skip-release-command then switches without it (it would fail), and says so.
fn a_failing_migration_switches_nothing(w: &Whole, v3: &Path) {
    let (hosts, ports) = (&w.hosts, &w.ports);
    for i in 1..=2 {
        let env = w.fx.scratch.join(format!("h{i}.env"));
        let text = fs::read_to_string(&env).unwrap();
        fs::write(&env, text + "MIGRATE_FAIL=1.4.0\n").unwrap();
    }
    let out = w.run("deploy", Some(v3), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let said = "h1: the release command `migrate` exited 4; no host was switched";
    assert!(err.contains(said), "{err}");
    for i in 1..=2 {
        assert_eq!(hosts.current(i).as_deref(), Some("1.2.0"));
        assert_eq!(get(ports[i - 1]), "1.2.0");
    }
    let failed = |e: &serde_json::Value| e["event"] == "release-command-failed" && e["code"] == 4;
    assert!(events(hosts, 1).iter().any(failed));
    assert_success(&w.run("deploy", Some(v3), &["--skip-release-command"]));
    let skipped = |e: &serde_json::Value| e["event"] == "release-command-skipped";
    assert!(events(hosts, 1).iter().any(skipped));
    assert_eq!(get(ports[1]), "1.4.0");
}

/// A failing pre-deploy hook: no host is contacted.
fn a_failing_pre_deploy_hook_contacts_no_host(w: &Whole, v2: &Path) {
    w.hooks_fail("stop", true);
    let before = events(&w.hosts, 1).len();
    let out = w.run("deploy", Some(v2), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("the pre-deploy hook") && err.contains("exited 7"),
        "{err}"
    );
    assert_eq!(events(&w.hosts, 1).len(), before, "a host was contacted");
    w.hooks_fail("stop", false);
}

/// Each hook ran with its name, the release, the hosts, the roles and (post hooks) the
/// outcome; none saw the secret.
fn the_hooks_heard_every_outcome_and_no_secret(w: &Whole) {
    let hooks = fs::read_to_string(&w.hook_log).unwrap();
    let lines: Vec<&str> = hooks.lines().collect();
    assert_eq!(lines[0], "pre-deploy webapp 1.2.0 [h1 h2] web ");
    assert_eq!(lines[1], "post-deploy webapp 1.2.0 [h1 h2] web success");
    for line in [
        "pre-rollback webapp  [h1 h2] web ",
        "post-rollback webapp  [h1 h2] web success",
        "post-deploy webapp 1.4.0 [h1 h2] web failed",
    ] {
        assert!(lines.contains(&line), "{line}: {hooks}");
    }
    let hook_env = fs::read_to_string(format!("{}.env", w.hook_log.display())).unwrap();
    assert!(
        !hook_env.contains("SECRET-FROM-COMMAND"),
        "a hook saw the secret"
    );
}

/// 1.2.0 again from other bytes (a config change, no version bump): installed beside the
/// first 1.2.0 as 1.2.0+<digest>, and rollback moves between them. --dry-run decides as the
/// deploy does: beside, under the new name, not refused.
fn other_bytes_go_beside_as_version_and_digest(w: &Whole, scratch: &Scratch) {
    let (hosts, ports) = (&w.hosts, &w.ports);
    let rebuilt = webapp_at(scratch, "1.2.0", "CONFIG_ONLY = \"changed\"\n");
    let digest = sha256_file(&rebuilt);
    let id = format!("1.2.0+{}", &digest[..12]);
    let plan = w.run("deploy", Some(&rebuilt), &["--dry-run"]);
    assert_success(&plan);
    let plan = json_lines(&plan);
    assert_eq!(plan[0]["version"], id.as_str(), "{plan:?}");
    assert_success(&w.run("deploy", Some(&rebuilt), &[]));
    for i in 1..=2 {
        assert_eq!(hosts.current(i).as_deref(), Some(id.as_str()));
        let first = hosts.root(i).join("releases/1.2.0");
        assert!(first.is_dir(), "the first 1.2.0 is kept");
        assert_eq!(get(ports[i - 1]), "1.2.0");
    }
    let config = |port| http_get(port, "/env/CONFIG_ONLY", Duration::from_secs(10));
    assert_eq!(config(ports[0]), "changed");
    assert_success(&w.run("rollback", None, &["--version", "1.2.0"]));
    assert_eq!(hosts.current(1).as_deref(), Some("1.2.0"));
    assert_eq!(config(ports[0]), "");
}

/// A failing post-deploy hook: the hosts moved (the report says so), the exit code is not 0.
fn a_failing_post_deploy_hook_fails_the_exit_code(w: &Whole, v2: &Path) {
    w.hooks_fail("post-fails", true);
    let out = w.run("deploy", Some(v2), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the post-deploy hook") && err.contains("exited 9"),
        "{err}"
    );
    assert_eq!(w.hosts.current(1).as_deref(), Some("1.3.0"));
}

fn get(port: u16) -> String {
    http_get(port, "/env/RELEASE_VSN", Duration::from_secs(10))
}
