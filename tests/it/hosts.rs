//! Several hosts on this machine: one `sshd` on a loopback port with a throwaway host key,
//! and one local user per host (`rbhost1`, `rbhost2`, ...), each with its own home. The
//! client side is an `ssh_config` naming them `h1`, `h2`, ... with a pinned `known_hosts`
//! and strict host key checking. Each host's PATH holds only `sh`, coreutils, `tar` and
//! `gzip` (sshd's `SetEnv`), as on a stock server without this tool; the first host also has
//! `zstd`, so both kinds of transfer are exercised.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::*;

pub struct Hosts {
    pub scratch: Scratch,
    /// `ssh -F` file naming `h1`..`hN`.
    pub ssh_config: PathBuf,
    pub users: Vec<String>,
    /// The deploy path on every host, relative to the user's home.
    pub path: String,
    sshd: Option<KillOnDrop>,
    /// The services run under a systemd, which stops them itself.
    under_systemd: bool,
    /// The users are this suite's `rbhostN` (released when dropped), not ones it was given.
    own_users: bool,
}

/// Health flags for a service that answers `/` on `$PORT` at once: healthy after 300 ms of
/// answers, asked every 100 ms.
pub const QUICK_HEALTH: [&str; 6] = [
    "--health-url",
    "http://127.0.0.1:${PORT}/",
    "--healthy-for",
    "300ms",
    "--health-interval",
    "100ms",
];

/// How the hosts are set up: who logs in, and what runs beside them.
#[derive(Default)]
pub struct Setup<'a> {
    /// Log in as these users instead of `rbhost1..N`.
    pub users: Option<Vec<String>>,
    /// Run sshd (and so every session) inside this systemd's namespaces.
    pub systemd: Option<&'a Systemd>,
    /// The hosts' PATH holds busybox's applets only: its sh, coreutils, tar and gzip.
    pub busybox: bool,
}

/// A real systemd as PID 1 of its own PID and mount namespaces (as a container runs it),
/// sharing this machine's files and network: what a server with `deploy.service =
/// "systemd"` has. Killed, with everything it started, when dropped.
pub struct Systemd {
    /// systemd's pid as seen from here.
    pub pid: u32,
    _unshare: KillOnDrop,
}

/// Run inside the new namespaces, then exec systemd (see `Systemd::boot`).
const BOOT: &str = r#"
mount -t tmpfs -o mode=755 tmpfs /run
masks=/run/systemd/system.control
mkdir -p "$masks" /run/systemd/system
for dir in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
  for unit in "$dir"/*.wants/* "$dir"/*.requires/*; do
    [ -e "$unit" ] || [ -L "$unit" ] || continue
    ln -sf /dev/null "$masks/${unit##*/}"
  done
done
for unit in systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service \
  systemd-tmpfiles-clean.service systemd-tmpfiles-clean.timer tmp.mount \
  systemd-sysctl.service systemd-sysusers.service systemd-timesyncd.service \
  systemd-journald.service systemd-journald.socket systemd-journald-dev-log.socket; do
  ln -sf /dev/null "$masks/$unit"
done
printf '[Unit]\nDescription=cargo-release-bundle tests\nDefaultDependencies=no\n' > "$masks/rbtest.target"
exec env container=rbtest /lib/systemd/systemd --system --unit=rbtest.target --log-target=console
"#;

impl Systemd {
    /// Boot systemd, or `None` (after saying why) where it cannot run and `CI` is unset.
    pub fn boot(log: &Path) -> Option<Systemd> {
        let why = if missing().is_some() {
            missing()
        } else if !Path::new("/lib/systemd/systemd").exists() {
            Some("systemd is not installed (Debian: systemd)".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            assert!(std::env::var_os("CI").is_none(), "required in CI: {why}");
            eprintln!("skipped: {why}");
            return None;
        }
        // A canary in /tmp: it must outlive systemd's boot.
        // One canary per boot: tests boot systemds side by side.
        static BOOTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let boot = BOOTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let canary = PathBuf::from(format!("/tmp/rbtest-canary-{}-{boot}", std::process::id()));
        fs::write(&canary, "").unwrap();
        // systemd shares this machine's files, so nothing it starts at boot may touch them:
        // it gets its own /run, in which every unit some target wants (and the tmpfiles
        // cleaners, which would empty /tmp) is masked at the highest precedence, and it
        // boots into an empty target. Its own UTS and IPC namespaces keep the hostname.
        let unshare = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--uts",
                "--ipc",
                "--propagation",
                "private",
                "--mount-proc",
                "sh",
                "-ec",
                BOOT,
            ])
            .stdout(fs::File::create(log).unwrap())
            .stderr(fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        let unshare_pid = unshare.id();
        let unshare = KillOnDrop(unshare);
        let pid = wait_for("systemd to start", Duration::from_secs(10), || {
            let children =
                fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
                    .unwrap_or_default();
            children.split_whitespace().next()?.parse::<u32>().ok()
        });
        let systemd = Systemd {
            pid,
            _unshare: unshare,
        };
        let up = format!("systemd to come up (its console: {})", log.display());
        wait_for(&up, Duration::from_secs(60), || {
            let state = systemd.run("systemctl is-system-running");
            let state = String::from_utf8_lossy(&state.stdout);
            matches!(state.trim(), "running" | "degraded").then_some(())
        });
        assert!(canary.exists(), "systemd's boot removed files in /tmp");
        let _ = fs::remove_file(&canary);
        Some(systemd)
    }

    /// `nsenter` into systemd's namespaces: this command, as root there.
    pub fn enter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid.to_string(), "-m", "-p", "--"]);
        c
    }

    /// A shell command inside systemd's namespaces.
    pub fn run(&self, command: &str) -> Output {
        self.enter().args(["sh", "-c", command]).output().unwrap()
    }
}

/// Why these tests cannot run here, or `None` when they can. In CI they must run.
fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the sshd tests create local users and need root".into());
    }
    for tool in ["/usr/sbin/sshd", "/usr/sbin/useradd", "/usr/bin/ssh"] {
        if !Path::new(tool).exists() {
            return Some(format!(
                "{tool} is not installed (Debian: openssh-server, passwd, openssh-client)"
            ));
        }
    }
    None
}

/// The host users this test process created, and how many `Hosts` use them now: the last
/// one to go removes them (the suite leaves no system users behind unless
/// `RELEASE_BUNDLE_KEEP_USERS` is set, which saves recreating them between runs).
static USERS: Mutex<(usize, Vec<String>)> = Mutex::new((0, Vec::new()));

/// Make sure the users exist, and count this `Hosts` among their users.
fn take_users(names: &[String]) {
    let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
    for name in names {
        if ensure_user(name) && !users.1.contains(name) {
            users.1.push(name.clone());
        }
    }
    users.0 += 1;
}

/// This `Hosts` no longer uses the users; the last one removes those this process made.
fn release_users() {
    let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
    users.0 = users.0.saturating_sub(1);
    if users.0 > 0 || std::env::var_os("RELEASE_BUNDLE_KEEP_USERS").is_some() {
        return;
    }
    for name in users.1.drain(..) {
        let _ = Command::new("pkill").args(["-KILL", "-u", &name]).output();
        let out = Command::new("userdel").args(["-r", &name]).output();
        if !out.is_ok_and(|o| o.status.success()) {
            eprintln!("could not remove the test user {name}");
        }
    }
}

/// Create `rbhostN` when missing: a login shell, a home, no password (and not locked, which
/// sshd would refuse without PAM). Whether it was created now.
fn ensure_user(name: &str) -> bool {
    let exists = Command::new("id")
        .arg(name)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        let out = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", "-p", "*", name])
            .output()
            .unwrap();
        let again = Command::new("id")
            .arg(name)
            .output()
            .unwrap()
            .status
            .success();
        assert!(
            again,
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new("usermod")
        .args(["-p", "*", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "usermod {name}");
    !exists
}

/// The commands a stock server has: sh, coreutils, tar, gzip; nothing else.
/// A directory of busybox's applets, each a link to busybox.
fn busybox_bin(dir: &Path) {
    assert!(have("busybox"), "a busybox host needs busybox");
    fs::create_dir_all(dir).unwrap();
    let found = Command::new("sh")
        .args(["-c", "command -v busybox"])
        .output()
        .unwrap();
    let busybox = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
    let list = Command::new(&busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        std::os::unix::fs::symlink(&busybox, dir.join(applet)).unwrap();
    }
}

fn host_bin(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let listed = Command::new("dpkg").args(["-L", "coreutils"]).output();
    let mut programs: Vec<PathBuf> = match listed {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("/bin/") || l.starts_with("/usr/bin/"))
            .map(PathBuf::from)
            .collect(),
        _ => Vec::new(),
    };
    for extra in ["sh", "tar", "gzip"] {
        let out = Command::new("sh")
            .args(["-c", &format!("command -v {extra}")])
            .output()
            .unwrap();
        programs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    assert!(programs.len() > 20, "coreutils is listed by dpkg");
    for p in programs {
        let name = p.file_name().unwrap();
        let link = dir.join(name);
        if p.exists() && !link.exists() {
            std::os::unix::fs::symlink(&p, link).unwrap();
        }
    }
}

/// Poll `ready` until it gives a value; fail the test naming `what` after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The hosts' PATHs: the first host's (with zstd: transfers to it are zstd, or the bundle's
/// own bytes), then the others' (only what a stock server has: gzip transfers). A systemd
/// server has its service manager's clients too. With `busybox`, both are busybox alone.
fn host_paths(scratch: &Scratch, systemd: bool, busybox: bool) -> [PathBuf; 2] {
    if busybox {
        let dir = scratch.join("hostbin-busybox");
        busybox_bin(&dir);
        return [dir.clone(), dir];
    }
    let (zbin, bin) = (scratch.join("hostbin-zstd"), scratch.join("hostbin"));
    host_bin(&bin);
    host_bin(&zbin);
    let zstd = Command::new("sh")
        .args(["-c", "command -v zstd"])
        .output()
        .unwrap();
    let zstd = String::from_utf8_lossy(&zstd.stdout).trim().to_string();
    if !zstd.is_empty() {
        std::os::unix::fs::symlink(&zstd, zbin.join("zstd")).unwrap();
    }
    for dir in [&bin, &zbin].into_iter().filter(|_| systemd) {
        for tool in ["systemctl", "journalctl"] {
            std::os::unix::fs::symlink(format!("/usr/bin/{tool}"), dir.join(tool)).unwrap();
        }
    }
    [zbin, bin]
}

/// sshd on `port` of loopback, for `users` only, with keys from the scratch directory; the
/// first user gets the first PATH, the others the second.
fn sshd_config(scratch: &Scratch, port: u16, users: &[String], paths: &[PathBuf; 2]) -> String {
    let s = scratch.path.display();
    format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {s}/host_key\nPidFile {s}/sshd.pid\nAuthorizedKeysFile {s}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\nAllowUsers {}\nMaxSessions 100\nMaxStartups 100\nLogLevel ERROR\nMatch User {}\n  SetEnv PATH={}\nMatch all\n  SetEnv PATH={}\n",
        users.join(" "),
        users[0],
        paths[0].display(),
        paths[1].display()
    )
}

/// The client side: `known_hosts` pinning the host key, and an `ssh -F` file naming
/// `h1`..`hN`; returns the latter's path.
fn client_config(scratch: &Scratch, port: u16, users: &[String]) -> PathBuf {
    let host_pub = fs::read_to_string(scratch.join("host_key.pub")).unwrap();
    let key_only: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    let known = format!("[127.0.0.1]:{port} {}\n", key_only.join(" "));
    fs::write(scratch.join("known_hosts"), known).unwrap();
    let mut config = String::new();
    for (i, u) in users.iter().enumerate() {
        let h = i + 1;
        config.push_str(&format!(
            "Host h{h}\n  HostName 127.0.0.1\n  Port {port}\n  User {u}\n"
        ));
    }
    let s = scratch.path.display();
    config.push_str(&format!(
        "Host *\n  IdentityFile {s}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile {s}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  ConnectTimeout 10\n"
    ));
    let ssh_config = scratch.join("ssh_config");
    fs::write(&ssh_config, config).unwrap();
    ssh_config
}

/// sshd in the foreground (inside the systemd's namespaces when given), once it listens.
fn start_sshd(scratch: &Scratch, port: u16, systemd: Option<&Systemd>) -> KillOnDrop {
    let mut sshd = match systemd {
        Some(systemd) => {
            let mut c = systemd.enter();
            c.arg("/usr/sbin/sshd");
            c
        }
        None => Command::new("/usr/sbin/sshd"),
    };
    let sshd = sshd
        .args(["-D", "-e", "-f"])
        .arg(scratch.join("sshd_config"))
        .stderr(fs::File::create(scratch.join("sshd.log")).unwrap())
        .spawn()
        .unwrap();
    let sshd = KillOnDrop(sshd);
    wait_for("sshd to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    sshd
}

impl Hosts {
    /// `n` hosts for the test `name` (its deploy path on each host), or `None` (after saying
    /// why) where they cannot run and `CI` is unset.
    pub fn start(n: usize, name: &str) -> Option<Hosts> {
        Hosts::start_with(n, name, Setup::default())
    }

    /// `n` hosts set up as `setup` says.
    pub fn start_with(n: usize, name: &str, setup: Setup) -> Option<Hosts> {
        if let Some(why) = missing() {
            assert!(std::env::var_os("CI").is_none(), "required in CI: {why}");
            eprintln!("skipped: {why}");
            return None;
        }
        let scratch = Scratch::new();
        // The host users read the authorized keys and run from their homes; the scratch
        // directory must be traversable by them.
        fs::set_permissions(&scratch.path, fs::Permissions::from_mode(0o755)).unwrap();
        let own_users = setup.users.is_none();
        let users: Vec<String> = match setup.users {
            Some(users) => users,
            None => {
                let users: Vec<String> = (1..=n).map(|i| format!("rbhost{i}")).collect();
                take_users(&users);
                users
            }
        };
        fs::create_dir_all("/run/sshd").unwrap();
        if let Some(systemd) = setup.systemd {
            // systemd mounts its own /run.
            assert!(systemd.run("mkdir -p /run/sshd").status.success());
        }
        let paths = host_paths(&scratch, setup.systemd.is_some(), setup.busybox);
        keygen(&scratch.join("host_key"));
        keygen(&scratch.join("client_key"));
        let authorized = scratch.join("authorized_keys");
        fs::copy(scratch.join("client_key.pub"), &authorized).unwrap();
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644)).unwrap();
        let port = free_port();
        let config = sshd_config(&scratch, port, &users, &paths);
        fs::write(scratch.join("sshd_config"), config).unwrap();
        let ssh_config = client_config(&scratch, port, &users);
        let sshd = start_sshd(&scratch, port, setup.systemd);
        let hosts = Hosts {
            scratch,
            ssh_config,
            users,
            path: format!("rb-tests/{name}/webapp"),
            sshd: Some(sshd),
            under_systemd: setup.systemd.is_some(),
            own_users,
        };
        for u in &hosts.users {
            let _ = fs::remove_dir_all(hosts.home(u).join(format!("rb-tests/{name}")));
        }
        Some(hosts)
    }

    pub fn home(&self, user: &str) -> PathBuf {
        if user == "root" {
            return PathBuf::from("/root");
        }
        PathBuf::from(format!("/home/{user}"))
    }

    /// The deploy path of host `i` (1-based), as seen from here.
    pub fn root(&self, i: usize) -> PathBuf {
        self.home(&self.users[i - 1]).join(&self.path)
    }

    /// `--host h1 --host h2 ...` for the first `n` hosts, with the SSH config and the path.
    pub fn args(&self, n: usize) -> Vec<String> {
        let mut args = vec![
            "--ssh-config".to_string(),
            self.ssh_config.display().to_string(),
            "--path".into(),
            self.path.clone(),
        ];
        for i in 1..=n {
            args.push("--host".into());
            args.push(format!("h{i}"));
        }
        args
    }

    /// A shell command on host `i` over SSH (as the deploy sees it).
    pub fn ssh(&self, i: usize, command: &str) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg(&self.ssh_config)
            .args(["-o", "BatchMode=yes", &format!("h{i}"), command])
            .output()
            .unwrap()
    }

    /// The version `current` points at on host `i`.
    pub fn current(&self, i: usize) -> Option<String> {
        fs::read_link(self.root(i).join("current"))
            .ok()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
    }

    /// Run the tool here with `args`.
    pub fn tool(&self, args: &[&str]) -> Output {
        run_tool(&self.scratch.path, args, &[])
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Stop every service a test started, then sshd.
        for i in (1..=self.users.len()).filter(|_| !self.under_systemd) {
            let launchers = fs::read_dir(self.root(i).join("current/bin"))
                .into_iter()
                .flatten();
            for launcher in launchers.flatten().map(|e| e.path()) {
                let _ = Command::new("runuser")
                    .args(["-u", &self.users[i - 1], "--"])
                    .arg(&launcher)
                    .arg("stop")
                    .output();
            }
        }
        self.sshd.take();
        if self.own_users {
            release_users();
        }
    }
}

impl Hosts {
    /// Per-host env files for the first `n` hosts under `dir`: each its own PORT and a
    /// MIGRATE_LOG in its shared/; the ports and the `--env-file hN=FILE` flags.
    pub fn env_files_with_migrations(&self, dir: &Path, n: usize) -> (Vec<u16>, Vec<String>) {
        let mut ports = Vec::new();
        let mut args = Vec::new();
        for i in 1..=n {
            let port = free_port();
            let file = dir.join(format!("h{i}.env"));
            let log = self.root(i).join("shared/migrations.log");
            fs::write(
                &file,
                format!("PORT={port}\nMIGRATE_LOG={}\n", log.display()),
            )
            .unwrap();
            args.extend(["--env-file".to_string(), format!("h{i}={}", file.display())]);
            ports.push(port);
        }
        (ports, args)
    }
}
