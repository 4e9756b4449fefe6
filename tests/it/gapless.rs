//! Gapless restarts: with `listen`, the keeper holds the socket and each restart, reload or
//! handover to another release loses no request, under load from `load`; the stop → start
//! baseline does lose requests (so the counting is proven to see them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use crate::load::{self, Tally};
use crate::support::*;

/// The gapless fixture bundled at 1.0.0 and 1.1.0 (built once, in cargo's test tmp dir).
pub fn gapless_bundles() -> &'static [PathBuf; 2] {
    static BUNDLES: OnceLock<[PathBuf; 2]> = OnceLock::new();
    BUNDLES.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gapless");
        ["1.0.0", "1.1.0"].map(|version| {
            let src = base.join(format!("src-{version}"));
            fixture_at("gapless", &src, version);
            bundle_into(&src, &base.join("out"), &[])
        })
    })
}

/// Two unpacked releases sharing one RELEASE_TMP, PORT and env file.
pub struct Releases {
    pub scratch: Scratch,
    pub dirs: [PathBuf; 2],
    pub port: u16,
    pub env_file: PathBuf,
}

impl Releases {
    pub fn new() -> Releases {
        let scratch = Scratch::new();
        let dirs = gapless_bundles().clone().map(|bundle| {
            let name = bundle.file_name().unwrap().to_str().unwrap().to_string();
            let to = scratch.join(name.split("-x86").next().unwrap_or(&name));
            assert_success(&unpack_to(&scratch.path, &bundle, &to));
            to
        });
        let env_file = scratch.join("env");
        std::fs::write(&env_file, "").unwrap();
        set_mode(&env_file, 0o600);
        let tmp = scratch.join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        set_mode(&tmp, 0o700);
        Releases {
            scratch,
            dirs,
            port: free_port(),
            env_file,
        }
    }

    /// `bin/gapless ARGS` of release `i` (0: 1.0.0, 1: 1.1.0).
    pub fn launcher(&self, i: usize, args: &[&str]) -> Output {
        self.command(i, args).output().unwrap()
    }

    pub fn command(&self, i: usize, args: &[&str]) -> Command {
        let mut c = Command::new(self.dirs[i].join("bin/gapless"));
        c.args(args)
            .env("RELEASE_TMP", self.scratch.join("tmp"))
            .env("PORT", self.port.to_string())
            .env("RELEASE_ENV_FILE", &self.env_file)
            .env_remove("NOTIFY_SOCKET");
        c
    }

    pub fn ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.launcher(i, args);
        assert_success(&out);
        String::from_utf8(out.stdout).unwrap()
    }

    /// The version serving now (`Connection: close`: the fixture keeps HTTP/1.1 alive).
    pub fn version(&self) -> String {
        load::get(self.port).unwrap_or_else(|e| panic!("GET / on port {}: {e:?}", self.port))
    }

    pub fn keeper_pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.scratch.join("tmp/gapless.pid")).unwrap();
        text.trim().parse().unwrap()
    }
}

impl Drop for Releases {
    fn drop(&mut self) {
        let _ = self.launcher(0, &["stop"]);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Run `act` under load from fresh and keep-alive connections; what the load saw.
pub fn under_load(port: u16, act: impl FnOnce()) -> Tally {
    let load = load::start(port, 2, 2, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(200));
    act();
    std::thread::sleep(Duration::from_millis(200));
    load.finish()
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty()
        && !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
}

#[test]
fn restarts_and_handovers_lose_no_request() {
    let r = Releases::new();
    assert!(r.ok(0, &["daemon"]).contains("started"), "daemon");
    assert_eq!(r.version(), "1.0.0");

    // The baseline, stop → start, refuses connections: the load sees failures.
    let baseline = under_load(r.port, || {
        for _ in 0..3 {
            r.ok(0, &["stop"]);
            r.ok(0, &["daemon"]);
        }
    });
    assert!(
        baseline.refused + baseline.reset > 0,
        "stop → start lost nothing? {baseline}"
    );

    let mut restarts = under_load(r.port, || {
        for _ in 0..20 {
            r.ok(0, &["restart"]);
        }
    });
    assert_eq!(restarts.failed(), 0, "20 restarts: {restarts}");
    assert!(restarts.ok > 100, "{restarts}");
    eprintln!(
        "20 restarts: {restarts}; p99 {:?}, max {:?}",
        restarts.percentile(99),
        restarts.percentile(100)
    );

    // Handing over to another release and back: the served version changes, nothing fails.
    let upgrade = under_load(r.port, || {
        let out = r.ok(1, &["reload"]);
        assert!(out.contains("gapless 1.1.0 serving"), "{out}");
        assert_eq!(r.version(), "1.1.0");
        r.ok(0, &["reload"]);
        assert_eq!(r.version(), "1.0.0");
    });
    assert_eq!(upgrade.failed(), 0, "upgrade and back: {upgrade}");
    assert!(
        upgrade.versions.contains_key("1.1.0") && upgrade.versions.contains_key("1.0.0"),
        "{upgrade}"
    );
    let status = r.ok(0, &["status"]);
    assert!(
        status.starts_with("gapless 1.0.0 running (pid "),
        "{status}"
    );
}

#[test]
fn a_release_that_crashes_or_never_gets_ready_leaves_the_old_one_serving() {
    let r = Releases::new();
    r.ok(0, &["daemon"]);
    for (variable, why) in [
        ("GAPLESS_CRASH_VERSION", "before it was ready"),
        ("GAPLESS_HANG_VERSION", "was not ready within 5s"),
    ] {
        std::fs::write(&r.env_file, format!("{variable}=1.1.0\n")).unwrap();
        let mut failed = None;
        let tally = under_load(r.port, || failed = Some(r.launcher(1, &["reload"])));
        let out = failed.unwrap();
        assert!(!out.status.success(), "{variable}: reload succeeded");
        let err = stderr(&out);
        assert!(
            err.contains("reload to 1.1.0 failed") && err.contains(why),
            "{variable}: {err}"
        );
        assert!(
            err.contains("(1.0.0, pid") && err.contains("keeps serving"),
            "{err}"
        );
        assert_eq!(tally.failed(), 0, "{variable}: {tally}");
        // (A generation that never says READY may still answer what it accepted.)
        assert_eq!(r.version(), "1.0.0", "{variable}");
        assert!(r.ok(0, &["status"]).starts_with("gapless 1.0.0 running"));
    }
    std::fs::write(&r.env_file, "").unwrap();
    r.ok(1, &["reload"]);
    assert_eq!(
        r.version(),
        "1.1.0",
        "the env file is read afresh by each generation"
    );
}

#[test]
fn stop_and_a_killed_keeper_are_handled_truthfully() {
    let r = Releases::new();
    r.ok(0, &["daemon"]);
    let keeper = r.keeper_pid();
    let service: u32 = r.ok(0, &["pid"]).trim().parse().unwrap();
    assert_ne!(keeper, service);

    // kill -9 of the keeper: the generation keeps serving, status says so and fails.
    assert!(
        Command::new("kill")
            .args(["-KILL", &keeper.to_string()])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(200));
    let out = r.launcher(0, &["status"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("the keeper is not running, but generation 1")
            && text.contains(&format!("pid {service}")),
        "{text}"
    );
    assert_eq!(r.version(), "1.0.0");

    // The next daemon takes over: the orphan stops, a new keeper serves.
    let out = r.launcher(0, &["daemon"]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("the keeper is gone"),
        "{}",
        stderr(&out)
    );
    assert!(!alive(service), "the orphan generation was stopped");
    assert!(r.ok(0, &["status"]).contains("running"));
    assert_eq!(r.version(), "1.0.0");

    // `start` in the foreground (systemd, containers): SIGTERM reaches the keeper, which
    // stops the generation; its exit code is the service's.
    r.ok(0, &["stop"]);
    let mut fg = r.command(0, &["start"]).spawn().unwrap();
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        load::get(r.port).is_ok()
    });
    assert!(up, "start did not serve");
    let service: u32 = r.ok(0, &["pid"]).trim().parse().unwrap();
    assert!(
        Command::new("kill")
            .args(["-TERM", &fg.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = fg.wait().unwrap();
    assert_eq!(status.code(), Some(0), "start's exit code is the service's");
    assert!(!alive(service), "the generation outlived start");
    r.ok(0, &["daemon"]);

    // stop: no keeper, no generation, the port closed.
    let (keeper, service): (u32, u32) = (r.keeper_pid(), r.ok(0, &["pid"]).trim().parse().unwrap());
    assert!(r.ok(0, &["stop"]).contains("stopped"));
    assert!(!alive(keeper) && !alive(service), "a process is left");
    let refused = std::net::TcpStream::connect(("127.0.0.1", r.port)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(r.launcher(0, &["status"]).status.code(), Some(3));
    let tmp: Vec<String> = std::fs::read_dir(r.scratch.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    assert_eq!(tmp, ["log"], "the keeper's files are gone");
}

/// `deploy` and `rollback` of a release with `listen` over real SSH, under load: each host
/// step is switch → reload → health, so no request fails, and a release that crashes at
/// start is reverted by a handover back, still without a failed request.
#[test]
fn deploys_and_rollbacks_hand_over_without_a_gap() {
    let Some(hosts) = crate::hosts::Hosts::start(1, "gapless") else {
        return;
    };
    let [v1, v2] = gapless_bundles();
    let port = free_port();
    let env = hosts.scratch.join("h1.env");
    std::fs::write(&env, format!("PORT={port}\n")).unwrap();
    let deploy = |command: &[&str], env_text: Option<&str>| {
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        args.extend(hosts.args(1));
        args.extend(crate::hosts::QUICK_HEALTH.map(String::from));
        if let Some(text) = env_text {
            std::fs::write(&env, text).unwrap();
            args.extend(["--env-file".to_string(), format!("h1={}", env.display())]);
        }
        hosts.tool(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let first = deploy(
        &["deploy", v1.to_str().unwrap()],
        Some(&format!("PORT={port}\n")),
    );
    assert_success(&first);
    assert_eq!(load::get(port).unwrap(), "1.0.0");

    let mut out = None;
    let upgrade = under_load(port, || {
        out = Some(deploy(&["deploy", v2.to_str().unwrap()], None))
    });
    assert_success(out.as_ref().unwrap());
    assert_eq!(upgrade.failed(), 0, "deploy: {upgrade}");
    assert_eq!(load::get(port).unwrap(), "1.1.0");

    let rollback = under_load(port, || out = Some(deploy(&["rollback"], None)));
    assert_success(out.as_ref().unwrap());
    assert_eq!(rollback.failed(), 0, "rollback: {rollback}");
    assert_eq!(load::get(port).unwrap(), "1.0.0");
    assert!(
        rollback.versions.contains_key("1.1.0") && rollback.versions.contains_key("1.0.0"),
        "{rollback}"
    );

    // `status` shows the keeper and the generation serving.
    let mut args = vec![
        "status".to_string(),
        "--message-format".into(),
        "json".into(),
    ];
    args.extend(hosts.args(1));
    let status = hosts.tool(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_success(&status);
    let report = &json_lines(&status)[0];
    assert_eq!(report["keeper"]["live"], true, "{report}");
    assert!(
        report["keeper"]["generation"].as_u64().unwrap() >= 3,
        "{report}"
    );
    assert_eq!(report["process"]["release"], "1.0.0", "{report}");

    // 1.1.0 again, now crashing at start: reverted by a handover back to 1.0.0.
    let crash = format!("PORT={port}\nGAPLESS_CRASH_VERSION=1.1.0\n");
    let crashed = under_load(port, || {
        out = Some(deploy(&["deploy", v2.to_str().unwrap()], Some(&crash)))
    });
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("before it was ready"),
        "{}",
        stderr(&out)
    );
    assert_eq!(crashed.failed(), 0, "crashing release: {crashed}");
    assert_eq!(load::get(port).unwrap(), "1.0.0");
    assert_eq!(hosts.current(1).as_deref(), Some("1.0.0"));

    // --cold: stop → start even with a keeper, which the load sees.
    let mut out = None;
    let cold = under_load(port, || {
        out = Some(deploy(
            &["deploy", v2.to_str().unwrap(), "--cold"],
            Some(&format!("PORT={port}\n")),
        ))
    });
    assert_success(out.as_ref().unwrap());
    assert!(
        cold.refused + cold.reset > 0,
        "--cold refused nothing: {cold}"
    );
    assert_eq!(load::get(port).unwrap(), "1.1.0");
}

/// The gapless fixture deployed to one host whose service runs under the test's systemd.
struct UnderSystemd<'a> {
    systemd: &'a crate::hosts::Systemd,
    hosts: crate::hosts::Hosts,
    fx: Fixture,
    scratch: &'a Scratch,
    env: PathBuf,
    port: u16,
}

impl UnderSystemd<'_> {
    /// Install the unit `file` printed by `out` in systemd's runtime unit directory.
    fn install(&self, file: &str, out: Output) {
        assert_success(&out);
        let path = self.scratch.join(file);
        std::fs::write(&path, &out.stdout).unwrap();
        let installed = format!(
            "cp {} /run/systemd/system/{file} && systemctl daemon-reload",
            path.display()
        );
        let done = self.systemd.run(&installed);
        assert!(done.status.success(), "{}", stderr(&done));
    }

    /// `systemctl`-side `command`, asserting it succeeds.
    fn run(&self, command: &str) {
        let done = self.systemd.run(command);
        assert!(done.status.success(), "{command}: {}", stderr(&done));
    }

    fn deploy(&self, bundle: &Path) -> Output {
        let mut args = vec!["deploy".to_string(), bundle.display().to_string()];
        args.extend(self.hosts.args(1));
        args.extend(crate::hosts::QUICK_HEALTH.map(String::from));
        args.extend([
            "--env-file".to_string(),
            format!("h1={}", self.env.display()),
        ]);
        self.fx
            .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn main_pid(&self) -> String {
        let out = self
            .systemd
            .run("systemctl show -P MainPID gapless.service");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Under a real systemd: the unit runs the keeper (`Type=notify`), a deploy hands over
/// through `systemctl reload` with the same main process, and with the `.socket` unit from
/// `systemd-unit --socket` even a restart of the keeper itself refuses no connection.
#[test]
fn systemd_reloads_and_holds_the_sockets() {
    let scratch = Scratch::new();
    let Some(systemd) = crate::hosts::Systemd::boot(&scratch.join("systemd.log")) else {
        return;
    };
    let setup = crate::hosts::Setup {
        users: Some(vec!["root".into()]),
        systemd: Some(&systemd),
        ..Default::default()
    };
    let Some(hosts) = crate::hosts::Hosts::start_with(1, "gapless-systemd", setup) else {
        return;
    };
    let fx = Fixture::new("gapless");
    let root = hosts.root(1).display().to_string();
    let section = "[package.metadata.release.deploy]\nservice = \"systemd\"";
    fx.append("Cargo.toml", &format!("\n{section}\npath = \"{root}\"\n"));
    let port = free_port();
    let env = scratch.join("h1.env");
    std::fs::write(&env, format!("PORT={port}\n")).unwrap();
    let s = UnderSystemd {
        systemd: &systemd,
        hosts,
        fx,
        scratch: &scratch,
        env,
        port,
    };
    let unit = s.fx.run(&["systemd-unit", "--user", "root"]);
    let text = stdout(&unit);
    assert!(
        text.contains("Type=notify") && text.contains("ExecReload="),
        "{text}"
    );
    s.install("gapless.service", unit);
    deploys_and_systemctl_reload_hand_over(&s);
    a_socket_unit_holds_the_port_while_the_keeper_restarts(&s);
    logs_read_the_journal(&s);
    let _ = systemd.run("systemctl stop gapless.service gapless.socket");
}

/// A deploy reloads through systemctl and a `systemctl reload` hands over: no request lost,
/// the keeper stays systemd's main process.
fn deploys_and_systemctl_reload_hand_over(s: &UnderSystemd) {
    let [v1, v2] = gapless_bundles();
    assert_success(&s.deploy(v1));
    assert_eq!(load::get(s.port).unwrap(), "1.0.0");
    let keeper = s.main_pid();
    let mut out = None;
    let upgrade = under_load(s.port, || out = Some(s.deploy(v2)));
    assert_success(out.as_ref().unwrap());
    assert_eq!(
        upgrade.failed(),
        0,
        "deploy through systemctl reload: {upgrade}"
    );
    assert_eq!(load::get(s.port).unwrap(), "1.1.0");
    assert_eq!(
        s.main_pid(),
        keeper,
        "the keeper stayed systemd's main process"
    );
    let reload = under_load(s.port, || s.run("systemctl reload gapless.service"));
    assert_eq!(reload.failed(), 0, "systemctl reload: {reload}");
}

/// systemd holds the socket: restarting the keeper itself queues connections, refuses none.
fn a_socket_unit_holds_the_port_while_the_keeper_restarts(s: &UnderSystemd) {
    s.install("gapless.socket", s.fx.run(&["systemd-unit", "--socket"]));
    s.run("systemctl stop gapless.service && systemctl start gapless.socket gapless.service");
    assert_eq!(load::get(s.port).unwrap(), "1.1.0");
    let restart = under_load(s.port, || s.run("systemctl restart gapless.service"));
    assert_eq!(
        restart.failed(),
        0,
        "systemctl restart with a .socket unit: {restart}"
    );
}

/// `logs` of a systemd service reads its journal (journald, masked at boot, started here
/// inside systemd's namespaces only, keeping its journal in their private /run).
fn logs_read_the_journal(s: &UnderSystemd) {
    s.run(
        "mkdir -p /run/systemd/journald.conf.d && printf '[Journal]\\nStorage=volatile\\n' > /run/systemd/journald.conf.d/volatile.conf && rm -f /run/systemd/system.control/systemd-journald.service /run/systemd/system.control/systemd-journald.socket && systemctl daemon-reload && systemctl start systemd-journald.socket systemd-journald.service && systemctl restart gapless.service",
    );
    std::thread::sleep(Duration::from_secs(1));
    let mut args = vec!["logs", "--since", "10m", "--grep", "serving", "-n", "3"];
    let host_args = s.hosts.args(1);
    args.extend(host_args.iter().map(String::as_str));
    let out = s.fx.run(&args);
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("h1: ") && text.contains("serving"),
        "{text}{}",
        stderr(&out)
    );
}

/// The figures `benches/gapless.sh` prints: N restarts under load (2 fresh-connection and 2
/// keep-alive workers), stop → start against handovers, side by side, and the keeper's
/// memory. Not run by default: `cargo test --release --test it -- --ignored bench_`.
#[test]
#[ignore]
fn bench_handover_against_stop_start() {
    let n: usize = std::env::var("BENCH_RESTARTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let r = Releases::new();
    r.ok(0, &["daemon"]);
    let mut cold = under_load(r.port, || {
        for _ in 0..n {
            r.ok(0, &["stop"]);
            r.ok(0, &["daemon"]);
        }
    });
    let mut warm = under_load(r.port, || {
        for _ in 0..n {
            r.ok(0, &["restart"]);
        }
    });
    let rss = std::fs::read_to_string(format!("/proc/{}/status", r.keeper_pid()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(|l| l.trim_start_matches("VmRSS:").trim().to_string())
        .unwrap_or_default();
    println!("{n} restarts under load (service start-up 300 ms):");
    println!(
        "{:<14} {:>9} {:>8} {:>8} {:>6} {:>9} {:>9} {:>9}",
        "", "answered", "refused", "reset", "t/o", "p50", "p99", "max"
    );
    for (what, t) in [("stop → start", &mut cold), ("handover", &mut warm)] {
        let (p50, p99, max) = (t.percentile(50), t.percentile(99), t.percentile(100));
        println!(
            "{what:<14} {:>9} {:>8} {:>8} {:>6} {:>9.1?} {:>9.1?} {:>9.1?}",
            t.ok, t.refused, t.reset, t.timed_out, p50, p99, max
        );
    }
    println!(
        "failed requests: stop → start {}, handover {} (target 0)",
        cold.failed(),
        warm.failed()
    );
    println!(
        "max latency: handover {:?} (target ≤ 100 ms), stop → start {:?}",
        warm.percentile(100),
        cold.percentile(100)
    );
    println!("keeper memory: VmRSS {rss} (target ≤ 4 MiB)");
}

/// The keeper is built like every shipped executable: two builds at other paths give the
/// same bundle bytes, and its launcher is shellcheck-clean; a reload works when the
/// launcher runs under dash and under busybox.
#[test]
fn the_keeper_is_reproducible_and_its_launcher_portable() {
    let digests: Vec<String> = ["a", "another-longer-path"]
        .iter()
        .map(|dir| {
            let scratch = Scratch::new();
            let root = scratch.join(dir).join("gapless");
            copy_tree(&repo().join("fixtures/gapless"), &root);
            let out = run_tool(&root, &["--message-format", "json", "-q"], &[]);
            assert_success(&out);
            let msg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            sha256_file(Path::new(msg["path"].as_str().unwrap()))
        })
        .collect();
    assert_eq!(
        digests[0], digests[1],
        "bundles with the keeper differ between paths"
    );

    let r = Releases::new();
    if have("shellcheck") {
        sh(&r.dirs[0], "shellcheck", &["--shell=sh", "bin/gapless"]);
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "shellcheck is required in CI"
        );
        eprintln!("skipped: shellcheck is not installed");
    }
    r.ok(0, &["daemon"]);
    for shell in [&["dash"][..], &["busybox", "sh"]] {
        if !have(shell[0]) {
            assert!(
                std::env::var_os("CI").is_none(),
                "{} is required in CI",
                shell[0]
            );
            eprintln!("skipped: {} is not installed", shell[0]);
            continue;
        }
        let c = r.command(0, &[]);
        let mut run = Command::new(shell[0]);
        run.args(&shell[1..])
            .arg(r.dirs[0].join("bin/gapless"))
            .arg("reload");
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => run.env(k, v),
                None => run.env_remove(k),
            };
        }
        let tally = under_load(r.port, || {
            let out = run.output().unwrap();
            assert_success(&out);
        });
        assert_eq!(tally.failed(), 0, "{}: {tally}", shell[0]);
    }
}

/// A Unix socket beside the TCP one: bound with its mode, passed in name order (the service
/// finds `http` through LISTEN_FDNAMES), held across a reload, removed by `stop`.
#[test]
fn a_unix_socket_is_held_with_its_mode_and_removed_at_stop() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let fx = Fixture::new("gapless");
    let sock = fx.scratch.join("admin.sock");
    let http = "http = \"127.0.0.1:${PORT}\"\n";
    let admin = format!(
        "admin = {{ address = \"unix:{}\", mode = \"0660\" }}\n",
        sock.display()
    );
    fx.edit("Cargo.toml", http, &format!("{http}{admin}"));
    let line = fx.bundle(&["-q"]).remove(0);
    let top = fx.scratch.join("release");
    let bundle = PathBuf::from(line["path"].as_str().unwrap());
    assert_success(&unpack_to(&fx.root, &bundle, &top));
    let tmp = fx.scratch.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    set_mode(&tmp, 0o700);
    let port = free_port();
    let run = |command: &str| {
        let out = Command::new(top.join("bin/gapless"))
            .arg(command)
            .env("RELEASE_TMP", &tmp)
            .env("PORT", port.to_string())
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap();
        assert_success(&out);
        String::from_utf8(out.stdout).unwrap()
    };
    run("daemon");
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let pid = run("pid");
    let environ = std::fs::read(format!("/proc/{}/environ", pid.trim())).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ
            .split('\0')
            .any(|v| v == "LISTEN_FDNAMES=admin:http"),
        "{environ}"
    );
    assert!(
        environ.split('\0').any(|v| v == "LISTEN_FDS=2"),
        "{environ}"
    );
    let tally = under_load(port, || {
        run("reload");
    });
    assert_eq!(tally.failed(), 0, "{tally}");
    std::os::unix::net::UnixStream::connect(&sock).expect("the Unix socket is still held");
    run("stop");
    assert!(!sock.exists(), "stop leaves the socket file");
}
