//! The launcher, really started: daemon, HTTP over loopback, pid/status, stop (TERM and the
//! KILL path), stale pid files, foreground start, env files, hooks, symlinks, spaces, and
//! dash/bash/busybox.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// An extracted copy of the webapp bundle under a path with spaces, with its own port.
/// Dropping it stops the service (and kills it if it must), even when the test failed.
struct Release {
    scratch: Scratch,
    root: PathBuf,
    port: u16,
    /// Run the launcher through this shell (`["busybox", "sh"]`) instead of its shebang.
    shell: &'static [&'static str],
}

const VARS: &[&str] = &[
    "RELEASE_ENV_FILE",
    "RELEASE_TMP",
    "RELEASE_STOP_TIMEOUT",
    "RELEASE_START_GRACE",
    "PORT",
    "DATABASE_URL",
    "WEBAPP_CRASH",
    "WEBAPP_SPAM",
    "RELEASE_LOG_MAX_SIZE",
    "RELEASE_LOG_KEEP",
    "WEBAPP_IGNORE_SIGTERM",
    "FAIL_PRE_START",
    "GREETING",
    "RUST_LOG",
    "RELEASE_ROOT",
];

impl Release {
    fn new() -> Release {
        let scratch = Scratch::new();
        let opt = scratch.join("opt dir");
        extract(webapp_bundle(), &opt, "gnu");
        Release {
            root: opt.join("webapp-1.2.0"),
            scratch,
            port: free_port(),
            shell: &[],
        }
    }

    fn launcher(&self) -> PathBuf {
        self.root.join("bin/webapp")
    }

    fn command_via(&self, launcher: &Path, args: &[&str]) -> Command {
        let mut cmd = match self.shell {
            [program, args @ ..] => {
                let mut c = Command::new(program);
                c.args(args).arg(launcher);
                c
            }
            [] => Command::new(launcher),
        };
        cmd.args(args)
            .current_dir(&self.scratch.path)
            .stdin(Stdio::null());
        for v in VARS {
            cmd.env_remove(v);
        }
        cmd.env("PORT", self.port.to_string())
            .env("DATABASE_URL", "postgres://db/app");
        cmd
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command_via(&self.launcher(), args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, &[]);
        assert_success(&out);
        String::from_utf8(out.stdout).unwrap()
    }

    fn ok_with(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run(args, env);
        assert_success(&out);
        String::from_utf8(out.stdout).unwrap()
    }

    fn pid(&self) -> u32 {
        self.ok(&["pid"]).trim().parse().unwrap()
    }

    fn get(&self, path: &str) -> String {
        http_get(self.port, path, Duration::from_secs(10))
    }

    fn pid_file(&self) -> PathBuf {
        self.root.join("tmp/webapp.pid")
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = self.run(&["stop"], &[("RELEASE_STOP_TIMEOUT", "1")]);
        if let Ok(pid) = fs::read_to_string(self.pid_file()) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
    }
}

/// The process is gone (or a zombie waiting to be reaped by init).
fn gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.starts_with('Z'))
            .unwrap_or(false),
    }
}

fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(out),
    )
}

#[test]
fn shellcheck_is_clean() {
    if !have("shellcheck") {
        return;
    }
    let rel = Release::new();
    sh(&rel.root, "shellcheck", &["--shell=sh", "bin/webapp"]);
    // The deploy host script, exactly as it is sent to hosts.
    let host = rel.scratch.join("host.sh");
    fs::write(&host, cargo_release_bundle::deploy::transport::SCRIPT).unwrap();
    sh(
        &rel.scratch.path,
        "shellcheck",
        &["--shell=sh", host.to_str().unwrap()],
    );
}

#[test]
fn daemon_serves_and_stop_waits_for_exit() {
    let rel = Release::new();
    let out = rel.run(&["daemon"], &[]);
    assert_success(&out);
    let pid = rel.pid();
    assert!(
        text(&out)
            .0
            .contains(&format!("webapp 1.2.0 started (pid {pid})"))
    );
    assert_eq!(
        rel.get("/index.html"),
        fs::read_to_string(rel.root.join("priv/static/index.html")).unwrap()
    );
    assert_eq!(
        rel.get("/env/GREETING"),
        "hello from config",
        "env default reaches the service"
    );
    assert_eq!(
        rel.get("/env/RELEASE_PRIV"),
        rel.root.join("priv").display().to_string()
    );
    assert_eq!(
        rel.get("/pid"),
        pid.to_string(),
        "the pid file names the service itself"
    );

    // Detached: the service leads its own session.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    assert_eq!(
        fields[3],
        pid.to_string(),
        "session id (field 6) is the service's own pid"
    );
    // pid and status agree with the process table.
    assert!(
        cmdline(pid).starts_with(&rel.root.join("libexec/webapp").display().to_string()),
        "{}",
        cmdline(pid)
    );
    assert_eq!(
        rel.ok(&["status"]),
        format!("webapp 1.2.0 running (pid {pid})\n")
    );

    // A second daemon starts nothing.
    let again = rel.run(&["daemon"], &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains(&format!("already running (pid {pid})")),
        "{}",
        stderr(&again)
    );
    assert_eq!(rel.pid(), pid);

    // stop returns only once the process is gone.
    let out = rel.run(&["stop"], &[]);
    assert_success(&out);
    assert!(gone(pid), "stop returned while pid {pid} was alive");
    assert!(!rel.pid_file().exists());
    assert_eq!(text(&out).0, format!("webapp 1.2.0 stopped (pid {pid})\n"));
    // Stopping again is not an error.
    assert_eq!(rel.ok(&["stop"]), "webapp 1.2.0 not running\n");
    let status = rel.run(&["status"], &[]);
    assert_eq!(status.status.code(), Some(3));
    assert_eq!(text(&status).0, "webapp 1.2.0 not running\n");
    assert_eq!(rel.run(&["pid"], &[]).status.code(), Some(1));

    // Hooks ran in order with the release environment; logs went to RELEASE_TMP/log.
    let hooks = fs::read_to_string(rel.root.join("tmp/hooks.log")).unwrap();
    assert_eq!(
        hooks,
        "pre_start daemon webapp 1.2.0\npost_start daemon webapp 1.2.0\npre_stop stop webapp 1.2.0\npost_stop stop webapp 1.2.0\n"
    );
    assert!(
        fs::read_to_string(rel.root.join("tmp/log/webapp.log"))
            .unwrap()
            .contains("listening on 127.0.0.1")
    );
}

#[test]
fn stop_kills_after_the_timeout() {
    let rel = Release::new();
    assert_success(&rel.run(&["daemon"], &[("WEBAPP_IGNORE_SIGTERM", "1")]));
    let pid = rel.pid();
    let start = Instant::now();
    let out = rel.run(&["stop"], &[("RELEASE_STOP_TIMEOUT", "1")]);
    assert_success(&out);
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(gone(pid));
    assert!(
        stderr(&out).contains(&format!(
            "did not stop within 1s after SIGTERM; sending SIGKILL to pid {pid}"
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stale_pid_files_are_replaced() {
    let rel = Release::new();
    fs::create_dir_all(rel.root.join("tmp")).unwrap();
    // A pid that no longer exists.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    fs::write(rel.pid_file(), format!("{dead_pid}\n")).unwrap();
    let status = rel.run(&["status"], &[]);
    assert_eq!(status.status.code(), Some(3));
    assert!(
        stderr(&status).contains("removing stale pid file"),
        "{}",
        stderr(&status)
    );
    assert!(!rel.pid_file().exists());

    // A pid reused by an unrelated process.
    let other = KillOnDrop(Command::new("sleep").arg("60").spawn().unwrap());
    fs::write(rel.pid_file(), format!("{}\n", other.0.id())).unwrap();
    assert_eq!(rel.run(&["pid"], &[]).status.code(), Some(1));
    fs::write(rel.pid_file(), format!("{}\n", other.0.id())).unwrap();
    assert_success(&rel.run(&["daemon"], &[]));
    assert_ne!(rel.pid(), other.0.id());
    assert_eq!(rel.get("/env/GREETING"), "hello from config");
    assert!(!gone(other.0.id()), "the unrelated process was left alone");
}

#[test]
fn start_runs_in_the_foreground_as_the_service_pid() {
    let rel = Release::new();
    let child = rel
        .command_via(&rel.launcher(), &["start"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let launcher_pid = child.0.id();
    assert_eq!(
        rel.get("/pid"),
        launcher_pid.to_string(),
        "exec: the launcher's pid is the service's"
    );
    assert_eq!(rel.pid(), launcher_pid);
    Command::new("kill")
        .args(["-TERM", &launcher_pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "start did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15));
}

#[test]
fn missing_required_variables_are_all_listed() {
    let rel = Release::new();
    for command in [&["start"][..], &["daemon"], &["run", "webapp-migrate"]] {
        let mut cmd = rel.command_via(&rel.launcher(), command);
        cmd.env_remove("PORT").env_remove("DATABASE_URL");
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{command:?}");
        assert_eq!(
            stderr(&out),
            "webapp: expected the PORT environment variable to be set\nwebapp: expected the DATABASE_URL environment variable to be set\n"
        );
    }
    assert!(!rel.pid_file().exists(), "nothing started");
    // Custom commands do not need them.
    let mut cmd = rel.command_via(&rel.launcher(), &["migrate", "--dry-run"]);
    cmd.env_remove("PORT").env_remove("DATABASE_URL");
    let out = cmd.output().unwrap();
    assert_success(&out);
    assert_eq!(text(&out).0, "migrate up --dry-run (command: migrate)\n");
    assert_eq!(
        rel.ok(&["run", "webapp-migrate", "a b"]),
        "migrate a b (command: run)\n"
    );
    let bad = rel.run(&["run", "../../bin/sh"], &[]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("unknown binary '../../bin/sh' (shipped: webapp, webapp-migrate)")
    );
}

#[test]
fn env_file_values_reach_the_service_and_are_masked() {
    let rel = Release::new();
    let env_file = rel.scratch.join("secrets dir/app.env");
    fs::create_dir_all(env_file.parent().unwrap()).unwrap();
    fs::write(
        &env_file,
        "# secrets\nexport API_TOKEN=\"s3cr3t value\"\nRAW=$(touch pwned-envfile)\nQUOTED='single # not a comment'\nGREETING=from file\n\nDATABASE_URL=ignored-because-set\n",
    )
    .unwrap();
    fs::set_permissions(&env_file, fs::Permissions::from_mode(0o600)).unwrap();
    let file = env_file.to_str().unwrap();
    let out = rel.run(&["daemon"], &[("RELEASE_ENV_FILE", file)]);
    assert_success(&out);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(rel.get("/env/API_TOKEN"), "s3cr3t value");
    assert_eq!(rel.get("/env/RAW"), "$(touch pwned-envfile)");
    assert_eq!(rel.get("/env/QUOTED"), "single # not a comment");
    assert_eq!(
        rel.get("/env/GREETING"),
        "from file",
        "the env file overrides config defaults"
    );
    assert_eq!(
        rel.get("/env/DATABASE_URL"),
        "postgres://db/app",
        "the process environment wins"
    );
    assert!(
        !rel.scratch.join("pwned-envfile").exists() && !rel.root.join("pwned-envfile").exists()
    );
    // `ps` shows no secret.
    assert!(!cmdline(rel.pid()).contains("s3cr3t"));

    let env = rel.run(&["env"], &[("RELEASE_ENV_FILE", file)]);
    assert_success(&env);
    let (stdout, _) = text(&env);
    assert!(
        stdout.contains("API_TOKEN=******** (from env file)\n"),
        "{stdout}"
    );
    // Only secret-looking names are masked.
    assert!(
        stdout.contains("GREETING=from file (from env file)\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cr3t"), "{stdout}");
    assert!(
        stdout.contains(&format!("RELEASE_ROOT={}\n", rel.root.display())),
        "{stdout}"
    );
    assert!(stdout.contains("RUST_LOG=info\n"), "{stdout}");
    assert!(stdout.contains(&format!("PORT={}\n", rel.port)), "{stdout}");

    // World-readable secrets get a warning; a missing file is an error naming it.
    fs::set_permissions(&env_file, fs::Permissions::from_mode(0o644)).unwrap();
    let warned = rel.run(&["env"], &[("RELEASE_ENV_FILE", file)]);
    assert!(
        stderr(&warned).contains(&format!(
            "warning: env file {file} is readable by group or others"
        )),
        "{}",
        stderr(&warned)
    );
    assert_success(&rel.run(&["stop"], &[]));
    let missing = rel.run(&["start"], &[("RELEASE_ENV_FILE", "/nonexistent/app.env")]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        stderr(&missing),
        "webapp: env file /nonexistent/app.env does not exist\n"
    );
}

#[test]
fn failing_pre_start_hook_aborts() {
    let rel = Release::new();
    let out = rel.run(&["daemon"], &[("FAIL_PRE_START", "maintenance")]);
    assert_eq!(out.status.code(), Some(3), "the hook's exit code");
    let err = stderr(&out);
    assert!(
        err.contains("pre-start: refusing to start (maintenance)"),
        "{err}"
    );
    assert!(
        err.contains("webapp: pre-start hook failed (exit 3)"),
        "{err}"
    );
    assert!(!rel.pid_file().exists());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", rel.port)).is_err(),
        "nothing listens"
    );
}

#[test]
fn daemon_reports_a_crash_during_start_up() {
    let rel = Release::new();
    let out = rel.run(&["daemon"], &[("WEBAPP_CRASH", "1")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("webapp: exited during start-up; last lines written to"),
        "{err}"
    );
    assert!(
        err.contains("crash requested by WEBAPP_CRASH"),
        "the log's tail is shown:\n{err}"
    );
    assert!(!rel.pid_file().exists());
}

#[test]
fn works_through_symlinks_and_from_anywhere() {
    let rel = Release::new();
    // A symlink to the launcher, elsewhere.
    let link = rel.scratch.join("link dir/webapp");
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(rel.launcher(), &link).unwrap();
    // A symlink to the bundle directory ("current" release).
    let current = rel.scratch.join("current");
    std::os::unix::fs::symlink(&rel.root, &current).unwrap();

    let out = rel
        .command_via(&link, &["daemon"])
        .current_dir("/")
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(
        rel.get("/env/RELEASE_ROOT"),
        rel.root.canonicalize().unwrap().display().to_string()
    );
    let via_current = rel
        .command_via(&current.join("bin/webapp"), &["status"])
        .output()
        .unwrap();
    assert_success(&via_current);
    assert_eq!(
        text(&via_current).0,
        format!("webapp 1.2.0 running (pid {})\n", rel.pid())
    );
    assert_success(
        &rel.command_via(&current.join("bin/webapp"), &["stop"])
            .output()
            .unwrap(),
    );
}

#[test]
fn usage_version_and_unknown_commands() {
    let rel = Release::new();
    assert_eq!(rel.ok(&["version"]), "webapp 1.2.0\n");
    let help = rel.ok(&["help"]);
    assert!(
        help.contains("Usage: webapp COMMAND")
            && help.contains("  migrate     Run database migrations"),
        "{help}"
    );
    let none = rel.run(&[], &[]);
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("Usage: webapp COMMAND"));
    let bad = rel.run(&["frobnicate"], &[]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).ends_with("webapp: unknown command 'frobnicate'\n"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn restart_replaces_the_process() {
    let rel = Release::new();
    assert_success(&rel.run(&["daemon"], &[]));
    let first = rel.pid();
    assert_success(&rel.run(&["restart"], &[]));
    let second = rel.pid();
    assert_ne!(first, second);
    assert!(gone(first));
    assert_eq!(rel.get("/pid"), second.to_string());
}

#[test]
fn lifecycle_under_dash_bash_and_busybox() {
    let shells: [&'static [&'static str]; 3] = [&["dash"], &["bash"], &["busybox", "sh"]];
    for shell in shells {
        if !have(shell[0]) {
            continue;
        }
        let mut rel = Release::new();
        rel.shell = shell;
        assert_eq!(rel.ok(&["version"]), "webapp 1.2.0\n", "{shell:?}");
        assert_success(&rel.run(&["daemon"], &[]));
        let pid = rel.pid();
        assert_eq!(rel.get("/env/GREETING"), "hello from config", "{shell:?}");
        assert_eq!(
            rel.ok(&["status"]),
            format!("webapp 1.2.0 running (pid {pid})\n"),
            "{shell:?}"
        );
        assert_success(&rel.run(&["stop"], &[]));
        assert!(gone(pid), "{shell:?}");
    }
}

#[test]
fn hostile_values_stay_literal() {
    let fx = Fixture::new("hostile");
    let msgs = fx.bundle(&["--out-dir", fx.out().to_str().unwrap()]);
    let top = extract(
        Path::new(msgs[0]["path"].as_str().unwrap()),
        &fx.scratch.join("x"),
        "gnu",
    )
    .join("hostile-0.1.0");
    if have("shellcheck") {
        sh(&top, "shellcheck", &["--shell=sh", "bin/hostile"]);
    }
    let env_file = fx.scratch.join("e.env");
    fs::write(&env_file, "FROM_FILE=\"`touch pwned-file`\"\n").unwrap();
    fs::set_permissions(&env_file, fs::Permissions::from_mode(0o600)).unwrap();
    let work = fx.scratch.join("work");
    fs::create_dir_all(&work).unwrap();
    for shell in ["sh", "dash", "bash"] {
        if !have(shell) {
            continue;
        }
        let out = Command::new(shell)
            .arg(top.join("bin/hostile"))
            .args(["echo-args", "$(touch pwned-cli)"])
            .current_dir(&work)
            .env("RELEASE_ENV_FILE", &env_file)
            .env_remove("QUOTES")
            .output()
            .unwrap();
        assert_success(&out);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            concat!(
                "arg=\"it's\"\n",
                "arg=\"$(touch pwned-arg)\"\n",
                "arg=\"a b\"\n",
                "arg=\"`touch pwned-arg2`\"\n",
                "arg=\"$(touch pwned-cli)\"\n",
                "QUOTES=\"it's \\\"double\\\" and 'single'\"\n",
                "SUBST=\"$(touch pwned-subst)\"\n",
                "BACKTICK=\"`touch pwned-backtick`\"\n",
                "NEWLINE=\"line1\\nline2; touch pwned-newline\"\n",
                "DOLLAR=\"$HOME and ${PATH} and \\\\ backslash\"\n",
                "FROM_FILE=\"`touch pwned-file`\"\n",
            ),
            "{shell:?}"
        );
        let help = Command::new(shell)
            .arg(top.join("bin/hostile"))
            .arg("help")
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&help.stdout)
                .contains("Says `touch pwned-desc` and $(touch pwned-desc2) \\ done")
        );
        // The configured env file is missing: named in the error.
        let out = Command::new(shell)
            .arg(top.join("bin/hostile"))
            .arg("start")
            .current_dir(&work)
            .env("NEEDED", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr(&out),
            "hostile: env file /nonexistent/hostile's env does not exist\n"
        );
    }
    let pwned: Vec<_> = fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(pwned.is_empty(), "no value was executed: {pwned:?}");
}

/// Run the launcher in its own process group (so a `kill 0` could only hit itself).
fn run_alone(rel: &Release, args: &[&str], env: &[(&str, &str)]) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = rel.command_via(&rel.launcher(), args);
    cmd.process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn pid_files_are_trusted_only_as_canonical_pids_of_our_executable() {
    let rel = Release::new();
    fs::create_dir_all(rel.root.join("tmp")).unwrap();
    fs::set_permissions(rel.root.join("tmp"), fs::Permissions::from_mode(0o700)).unwrap();
    let other = KillOnDrop(Command::new("sleep").arg("60").spawn().unwrap());
    let pid = other.0.id();
    for (content, what) in [
        (format!("0{pid}\n"), "a leading zero"),
        ("0\n".to_string(), "pid 0 (the process group)"),
        ("-1\n".to_string(), "pid -1 (every process)"),
        ("1\n".to_string(), "pid 1 (init)"),
        (format!(" {pid}\n"), "a leading space"),
    ] {
        fs::write(rel.pid_file(), &content).unwrap();
        let status = run_alone(&rel, &["status"], &[]);
        assert_eq!(status.status.code(), Some(3), "{what}: {}", stderr(&status));
        fs::write(rel.pid_file(), &content).unwrap();
        let stop = run_alone(&rel, &["stop"], &[]);
        let (out, err) = text(&stop);
        assert_eq!(stop.status.code(), Some(0), "{what}: {out}{err}");
        assert!(out.contains("not running"), "{what}: {out}{err}");
        assert!(!gone(pid), "{what}: stop signalled an unrelated process");
        assert!(!rel.pid_file().exists(), "{what}: the bad pid file stays");
    }
    // A pid file that is a symlink to a secret: its content is never printed.
    let secret = rel.scratch.join("secret");
    fs::write(&secret, "TOP-SECRET-LINE\n").unwrap();
    std::os::unix::fs::symlink(&secret, rel.pid_file()).unwrap();
    let status = rel.run(&["status"], &[]);
    let (out, err) = text(&status);
    assert_eq!(status.status.code(), Some(3));
    assert!(
        !out.contains("TOP-SECRET") && !err.contains("TOP-SECRET"),
        "{out}{err}"
    );
    fs::write(rel.pid_file(), "TOP-SECRET-LINE\n").unwrap();
    let (out, err) = text(&rel.run(&["status"], &[]));
    assert!(
        !out.contains("TOP-SECRET") && !err.contains("TOP-SECRET"),
        "{out}{err}"
    );
    assert!(err.contains("does not hold a pid"), "{err}");
}

#[test]
fn release_tmp_must_belong_to_the_invoking_user() {
    let rel = Release::new();
    let tmp = rel.root.join("tmp");
    // Created private whatever the umask; pid 0644 and log 0600.
    let script = format!("umask 000 && exec '{}' daemon", rel.launcher().display());
    let mut cmd = rel.command_via(Path::new("sh"), &[]);
    cmd.args(["-c", &script]);
    assert_success(&cmd.output().unwrap());
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tmp), 0o700);
    assert_eq!(mode(&tmp.join("log")), 0o700);
    assert_eq!(mode(&rel.pid_file()), 0o644);
    assert_eq!(mode(&tmp.join("log/webapp.log")), 0o600);
    let pid = rel.pid();

    // Another user's RELEASE_TMP: root refuses to stop what it names, or to start there.
    sh(
        &rel.scratch.path,
        "chown",
        &["-R", "65534", tmp.to_str().unwrap()],
    );
    let stop = rel.run(&["stop"], &[]);
    let (out, err) = text(&stop);
    assert_eq!(stop.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("belongs to uid 65534") && err.contains("chown"),
        "{err}"
    );
    assert!(
        !gone(pid),
        "stop signalled a pid from another user's directory"
    );
    let daemon = rel.run(&["daemon"], &[]);
    assert_eq!(daemon.status.code(), Some(1), "{}", stderr(&daemon));
    sh(
        &rel.scratch.path,
        "chown",
        &["-R", "0", tmp.to_str().unwrap()],
    );

    // Writable by others, or a symlink: refused too.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o777)).unwrap();
    let err = stderr(&rel.run(&["status"], &[]));
    assert!(
        err.contains("writable by group or others") && err.contains("chmod 700"),
        "{err}"
    );
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700)).unwrap();
    assert_success(&rel.run(&["stop"], &[]));
    assert!(gone(pid));

    let elsewhere = rel.scratch.join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::remove_dir_all(tmp.join("log")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, tmp.join("log")).unwrap();
    let daemon = rel.run(&["daemon"], &[]);
    assert_eq!(daemon.status.code(), Some(1), "{}", stderr(&daemon));
    assert!(
        stderr(&daemon).contains("is a symlink"),
        "{}",
        stderr(&daemon)
    );
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "wrote through the symlink"
    );
    let linked = rel.scratch.join("linked-tmp");
    std::os::unix::fs::symlink(&elsewhere, &linked).unwrap();
    let out = rel.run(&["daemon"], &[("RELEASE_TMP", linked.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a symlink"), "{}", stderr(&out));
}

#[test]
fn two_daemons_started_at_once_leave_one_running_and_tracked() {
    let rel = Release::new();
    let spawn = || {
        rel.command_via(&rel.launcher(), &["daemon"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(1)),
        "{codes:?}\n{}\n{}",
        stderr(&a),
        stderr(&b)
    );
    let loser = if a.status.success() { &b } else { &a };
    assert!(
        stderr(loser).contains("already running"),
        "{}",
        stderr(loser)
    );
    let pid = rel.pid();
    assert_eq!(
        rel.get("/pid"),
        pid.to_string(),
        "the pid file names the running service"
    );
    assert!(
        rel.ok(&["status"])
            .contains(&format!("running (pid {pid})"))
    );
}

#[test]
fn env_files_writable_or_owned_by_others_are_flagged() {
    let rel = Release::new();
    let env = rel.scratch.join("webapp.env");
    fs::write(&env, "GREETING=from file\n").unwrap();
    let env_var = [("RELEASE_ENV_FILE", env.to_str().unwrap())];
    for (mode, refused, says) in [
        (0o602, true, "writable by others"),
        (0o622, true, "writable by others"),
        (0o620, false, "writable by its group"),
        (0o640, false, "readable by group or others"),
    ] {
        fs::set_permissions(&env, fs::Permissions::from_mode(mode)).unwrap();
        let out = rel.run(&["env"], &env_var);
        let (stdout, err) = text(&out);
        assert_eq!(out.status.success(), !refused, "{mode:o}: {stdout}{err}");
        assert!(err.contains(says), "{mode:o}: {err}");
    }
    fs::set_permissions(&env, fs::Permissions::from_mode(0o600)).unwrap();
    sh(
        &rel.scratch.path,
        "chown",
        &["65534", env.to_str().unwrap()],
    );
    let out = rel.run(&["env"], &env_var);
    assert_success(&out);
    assert!(
        stderr(&out).contains("belongs to uid 65534"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stop_timeout_is_a_bounded_number() {
    let rel = Release::new();
    assert_success(&rel.run(&["daemon"], &[]));
    let pid = rel.pid();
    for bad in ["922337203685477581", "0", "-5", "1e3", "10s", "0010"] {
        let out = rel.run(&["stop"], &[("RELEASE_STOP_TIMEOUT", bad)]);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("from 1 to 86400"),
            "{bad}: {}",
            stderr(&out)
        );
        assert!(!gone(pid), "{bad}: the service was signalled");
    }
    assert_success(&rel.run(&["stop"], &[("RELEASE_STOP_TIMEOUT", "86400")]));
    assert!(gone(pid));
}

/// Two unpacked releases sharing one RELEASE_TMP (an upgrade by hand, `current` moved on):
/// the new launcher's `stop` stops the service the old one started (same name, same
/// RELEASE_TMP); a process of the same program started with another RELEASE_TMP is not
/// touched, and `stop` says so with a non-zero exit, keeping the pid file.
#[test]
fn stop_after_an_upgrade_by_hand_stops_the_old_release() {
    let rel = Release::new();
    let other = rel.scratch.join("other");
    extract(webapp_bundle(), &other, "gnu");
    let other_launcher = other.join("webapp-1.2.0/bin/webapp");
    let shared = rel.scratch.join("shared-tmp");
    let tmp = shared.to_str().unwrap();
    assert_success(&rel.run(&["daemon"], &[("RELEASE_TMP", tmp)]));
    let old = rel.ok_with(&["pid"], &[("RELEASE_TMP", tmp)]);
    let mut stop = rel.command_via(&other_launcher, &["stop"]);
    stop.env("RELEASE_TMP", tmp);
    let out = stop.output().unwrap();
    assert_success(&out);
    assert!(gone(old.trim().parse().unwrap()), "{}", stderr(&out));

    // The same program under another RELEASE_TMP, its pid planted in ours: not ours to stop.
    let elsewhere = rel.scratch.join("elsewhere-tmp");
    let mut start = rel.command_via(&other_launcher, &["daemon"]);
    start.env("RELEASE_TMP", &elsewhere);
    assert_success(&start.output().unwrap());
    let stranger = fs::read_to_string(elsewhere.join("webapp.pid")).unwrap();
    fs::write(shared.join("webapp.pid"), &stranger).unwrap();
    let out = rel.run(&["stop"], &[("RELEASE_TMP", tmp)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot prove it started"),
        "{}",
        stderr(&out)
    );
    assert!(!gone(stranger.trim().parse().unwrap()));
    assert!(shared.join("webapp.pid").exists(), "the pid file is kept");
    fs::remove_file(shared.join("webapp.pid")).unwrap();
    let mut stop = rel.command_via(&other_launcher, &["stop"]);
    stop.env("RELEASE_TMP", &elsewhere);
    assert_success(&stop.output().unwrap());
}

/// The daemon's log is rotated at its size cap while the service writes, between lines: the
/// files together hold every line once, in order; only `log-keep` old files stay.
#[test]
fn the_log_is_rotated_without_losing_a_line() {
    let rel = Release::new();
    let n = 60_000;
    let spam = n.to_string();
    let env = [
        ("WEBAPP_SPAM", spam.as_str()),
        ("RELEASE_LOG_MAX_SIZE", "32768"),
        ("RELEASE_LOG_KEEP", "1000"),
    ];
    assert_success(&rel.run(&["daemon"], &env));
    let log = rel.root.join("tmp/log/webapp.log");
    let read_all = || {
        let mut files: Vec<PathBuf> = (1..=1000)
            .map(|i| log.with_extension(format!("log.{i}")))
            .filter(|p| p.exists())
            .collect();
        files.reverse();
        files.push(log.clone());
        let text: String = files
            .iter()
            .map(|p| fs::read_to_string(p).unwrap_or_default())
            .collect();
        (files.len(), text)
    };
    // Once the last line is there, the writing is over: read the files again at rest (a read
    // during a rotation can miss the file being moved).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !read_all().1.contains(&format!("line {n}\n")) {
        assert!(
            Instant::now() < deadline,
            "the last line never reached the log"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (count, text) = read_all();
    let numbered: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    assert_eq!(
        numbered.len() as u64,
        n,
        "lines lost or doubled ({count} files)"
    );
    assert!(
        numbered.iter().enumerate().all(|(i, v)| *v == i as u64 + 1),
        "out of order"
    );
    assert!(count > 10, "rotated into {count} files only");
    for i in 1..count {
        let size = fs::metadata(log.with_extension(format!("log.{i}")))
            .unwrap()
            .len();
        assert!((32768..32768 + 16).contains(&size), "log.{i}: {size} bytes");
    }
    assert_success(&rel.run(&["stop"], &[]));
    // Only the kept files stay: a second start with log-keep 2.
    let env = [
        ("RELEASE_LOG_MAX_SIZE", "32768"),
        ("RELEASE_LOG_KEEP", "2"),
        ("WEBAPP_SPAM", spam.as_str()),
    ];
    assert_success(&rel.run(&["daemon"], &env));
    std::thread::sleep(Duration::from_secs(2));
    assert_success(&rel.run(&["stop"], &[]));
    assert!(log.with_extension("log.2").exists() && !log.with_extension("log.3").exists());
    assert!(
        !rel.root.join("tmp/log/webapp.log.fifo").exists(),
        "the rotator left its FIFO"
    );
}
