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
    fixture_at("roles", &src, version);
    bundle_into(&src, &scratch.join("bundles"), &[])
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

/// Three hosts: web on h1 and h2, worker on h2 and h3; a migration as the release command,
/// a secret from env-command, an env-file for the worker role.
struct Roles {
    hosts: Hosts,
    fx: Fixture,
    /// The SSH config and deploy path, then the health flags.
    common: Vec<String>,
    /// Each host's `--env-file`, given with every deploy.
    env_args: Vec<String>,
    ports: Vec<u16>,
}

impl Roles {
    fn start() -> Option<Roles> {
        let hosts = Hosts::start(3, "roles")?;
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
        common.extend(crate::hosts::QUICK_HEALTH.map(String::from));
        let (ports, env_args) = hosts.env_files_with_migrations(&fx.scratch.path, 3);
        Some(Roles {
            hosts,
            fx,
            common,
            env_args,
            ports,
        })
    }

    /// With env-command configured, each deploy installs shared/env from its sources: the
    /// same --env-file flags go with every deploy (a host left out by --role is skipped).
    fn deploy(&self, bundle: &Path, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["deploy".to_string(), bundle.display().to_string()];
        args.extend(self.common.iter().cloned());
        args.extend(self.env_args.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        self.fx
            .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// A fleet command (`status`, `releases`, `logs`, ...) with `args`, on every host.
    fn fleet(&self, args: &[&str]) -> std::process::Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(self.common.iter().take(4).map(String::as_str));
        self.fx.run(&all)
    }

    /// How many times the migration ran, on every host together, and on each.
    fn migrations(&self) -> (usize, [usize; 3]) {
        let on = |i: usize| {
            fs::read_to_string(self.hosts.root(i).join("shared/migrations.log"))
                .unwrap_or_default()
                .lines()
                .count()
        };
        let each = [on(1), on(2), on(3)];
        (each.iter().sum(), each)
    }

    fn shared_env(&self, i: usize) -> String {
        fs::read_to_string(self.hosts.root(i).join("shared/env")).unwrap()
    }
}

#[test]
fn processes_run_on_their_roles() {
    let Some(r) = Roles::start() else {
        return;
    };
    let scratch = Scratch::new();
    let (v1, v2) = (
        roles_bundle(&scratch, "1.0.0"),
        roles_bundle(&scratch, "1.1.0"),
    );
    the_first_deploy_runs_each_role_on_its_hosts(&r, &v1);
    role_worker_moves_only_the_workers(&r, &v2);
    status_judges_each_host_by_its_roles(&r);
    primary_role_and_process_select_what_is_shown(&r);
    an_upgrade_migrates_once_and_a_rollback_never(&r, &v2);
    a_roles_own_health_sends_it_back(&r, &v2);
    start_worker_runs_one_process_in_the_foreground(&r);
}

/// The web role's batch is 100% (h2 switches before h1 is healthy; h3, a worker, after);
/// each role's processes, env-file and workdir on its hosts only; the secret on every host
/// and not in the report; the migration once, on the primary.
fn the_first_deploy_runs_each_role_on_its_hosts(r: &Roles, v1: &Path) {
    let (hosts, ports) = (&r.hosts, &r.ports);
    let out = r.deploy(v1, &["--message-format", "json"]);
    assert_success(&out);
    let events: Vec<String> = json_lines(&out)
        .iter()
        .filter(|e| e["reason"] == "deploy-event")
        .map(|e| {
            format!(
                "{} {}",
                e["host"].as_str().unwrap_or(""),
                e["event"].as_str().unwrap_or("")
            )
        })
        .collect();
    let at = |event: &str| {
        events
            .iter()
            .position(|e| e == event)
            .unwrap_or_else(|| panic!("no {event}: {events:?}"))
    };
    assert!(at("h2 switched") < at("h1 healthy"), "{events:?}");
    assert!(at("h1 healthy") < at("h3 switched"), "{events:?}");
    assert!((1..=3).all(|i| r.shared_env(i).contains("API_TOKEN=sekrit-roles-42")));
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!printed.contains("sekrit"), "{printed}");
    let worker_env: Vec<bool> = (1..=3)
        .map(|i| r.shared_env(i).contains("WORKER_MODE=fast"))
        .collect();
    assert_eq!(
        worker_env,
        [false, true, true],
        "the worker role's env-file on its hosts"
    );
    assert_eq!(version(ports[0]).as_deref(), Some("1.0.0"), "h1 runs web");
    assert_eq!(heartbeat(hosts, 1, "1.0.0"), None, "h1 runs no worker");
    assert_eq!(version(ports[1]).as_deref(), Some("1.0.0"), "h2 runs web");
    assert_eq!(
        heartbeat(hosts, 2, "1.0.0").as_deref(),
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
        heartbeat(hosts, 3, "1.0.0").as_deref(),
        Some("1.0.0"),
        "h3 runs the worker"
    );
    assert_eq!(
        r.migrations().1,
        [1, 0, 0],
        "the migration runs once, on the primary"
    );
}

/// --role worker: only the worker hosts switch, and on h2 only the worker restarts.
fn role_worker_moves_only_the_workers(r: &Roles, v2: &Path) {
    let (hosts, ports) = (&r.hosts, &r.ports);
    assert_success(&r.deploy(v2, &["--role", "worker"]));
    assert_eq!(hosts.current(1).as_deref(), Some("1.0.0"));
    assert_eq!(hosts.current(2).as_deref(), Some("1.1.0"));
    assert_eq!(hosts.current(3).as_deref(), Some("1.1.0"));
    assert_eq!(heartbeat(hosts, 2, "1.1.0").as_deref(), Some("1.1.0"));
    assert_eq!(heartbeat(hosts, 3, "1.1.0").as_deref(), Some("1.1.0"));
    let h2_web = version(ports[1]);
    assert_eq!(
        h2_web.as_deref(),
        Some("1.0.0"),
        "h2's web was not part of --role worker"
    );
    assert_eq!(version(ports[0]).as_deref(), Some("1.0.0"));
}

/// `status`: per host what its roles run; h2's web still runs 1.0.0 under current 1.1.0.
/// The launcher on a host with both lists each process with the release it runs.
fn status_judges_each_host_by_its_roles(r: &Roles) {
    let out = r.fleet(&["status", "--message-format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let reports = json_lines(&out);
    let of = |h: &str| reports.iter().find(|r| r["host"] == h).unwrap().clone();
    assert_eq!(of("h1")["problems"], serde_json::json!([]));
    let h3 = of("h3");
    assert_eq!(
        h3["problems"],
        serde_json::json!([]),
        "h3 runs no web, and none is expected"
    );
    assert_eq!(h3["processes"]["worker"]["release"], "1.1.0");
    let h2 = of("h2")["problems"].to_string();
    assert!(
        h2.contains("runs release 1.0.0, not the current 1.1.0"),
        "{h2}"
    );

    let launcher = format!("{}/current/bin/roles status", r.hosts.root(2).display());
    let status = r.hosts.ssh(2, &launcher);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("[web] running") && text.contains("[worker] running"),
        "{text}"
    );
    assert!(text.contains(", release 1.0.0, up "), "{text}");
    assert!(text.contains(", release 1.1.0, up "), "{text}");
}

/// --primary: the primary host only (the web role's first); `releases --role`: its hosts;
/// `logs --process worker` on the worker hosts.
fn primary_role_and_process_select_what_is_shown(r: &Roles) {
    let reports = json_lines(&r.fleet(&["status", "--primary", "--message-format", "json"]));
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["host"], "h1");
    let out = r.fleet(&["releases", "--role", "worker"]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("h2:") && text.contains("h3:") && !text.contains("h1:"),
        "{text}"
    );
    let out = r.fleet(&["logs", "--process", "worker", "--role", "worker"]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("h2: worker 1.1.0 started")
            && text.contains("h3: worker 1.1.0 started")
            && !text.contains("h1:"),
        "{text}"
    );
}

/// The whole release upgraded with one command, then rolled back with one: the migration
/// ran once more (the upgrade), not for the rollback.
fn an_upgrade_migrates_once_and_a_rollback_never(r: &Roles, v2: &Path) {
    let (hosts, ports) = (&r.hosts, &r.ports);
    let before = r.migrations().0;
    assert_success(&r.deploy(v2, &[]));
    assert_eq!(version(ports[0]).as_deref(), Some("1.1.0"));
    let mut rollback = vec!["rollback"];
    rollback.extend(r.common.iter().map(String::as_str));
    assert_success(&r.fx.run(&rollback));
    for i in 1..=3 {
        assert_eq!(hosts.current(i).as_deref(), Some("1.0.0"), "h{i}");
    }
    assert_eq!(version(ports[0]).as_deref(), Some("1.0.0"));
    assert_eq!(heartbeat(hosts, 3, "1.0.0").as_deref(), Some("1.0.0"));
    let after = r.migrations().0;
    assert_eq!(
        after,
        before + 1,
        "the upgrade migrates once, the rollback never"
    );
}

/// A role's own health: the workers' health command fails, so moving them fails and they go
/// back; the deploy's health (none) would have passed.
fn a_roles_own_health_sends_it_back(r: &Roles, v2: &Path) {
    r.fx.edit(
        "Cargo.toml",
        "env-file = \"worker.env\"\n",
        "env-file = \"worker.env\"\nhealth = { command = \"false\", deadline = \"2s\" }\n",
    );
    let out = r.deploy(v2, &["--role", "worker"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("the health command failed"), "{err}");
    assert_eq!(r.hosts.current(3).as_deref(), Some("1.0.0"), "h3 went back");
}

/// `start worker`: one process in the foreground (as the host's user), until SIGTERM.
fn start_worker_runs_one_process_in_the_foreground(r: &Roles) {
    let launcher = r.hosts.root(3).join("current/bin/roles");
    let user = &r.hosts.users[2];
    let as_user = |verb: &str| {
        let mut cmd = std::process::Command::new("runuser");
        cmd.args(["-u", user, "--"])
            .arg(&launcher)
            .args([verb, "worker"]);
        cmd
    };
    assert_success(&as_user("stop").output().unwrap());
    let mut fg = as_user("start").spawn().unwrap();
    let beat = r.hosts.root(3).join("shared/heartbeat");
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
