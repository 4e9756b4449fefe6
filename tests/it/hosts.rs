//! Several hosts on this machine: one `sshd` on a loopback port with a throwaway host key,
//! and one local user per host (`rbhost1`, `rbhost2`, ...), each with its own home. The
//! client side is an `ssh_config` naming them `h1`, `h2`, ... with a pinned `known_hosts`
//! and strict host key checking. Each host's PATH holds only `sh`, coreutils, `tar` and
//! `gzip` (sshd's `SetEnv`), as on a stock server without this tool or `zstd`.

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

/// Create `rbhostN` once per machine: a login shell, a home, no password (and not locked,
/// which sshd would refuse without PAM).
fn ensure_user(name: &str) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
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
}

/// The commands a stock server has: sh, coreutils, tar, gzip; nothing else.
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

impl Hosts {
    /// `n` hosts for the test `name` (its deploy path on each host), or `None` (after saying
    /// why) where they cannot run and `CI` is unset.
    pub fn start(n: usize, name: &str) -> Option<Hosts> {
        if let Some(why) = missing() {
            assert!(std::env::var_os("CI").is_none(), "required in CI: {why}");
            eprintln!("skipped: {why}");
            return None;
        }
        let scratch = Scratch::new();
        // The host users read the authorized keys and run from their homes; the scratch
        // directory must be traversable by them.
        fs::set_permissions(&scratch.path, fs::Permissions::from_mode(0o755)).unwrap();
        let users: Vec<String> = (1..=n).map(|i| format!("rbhost{i}")).collect();
        for u in &users {
            ensure_user(u);
        }
        fs::create_dir_all("/run/sshd").unwrap();
        let bin = scratch.join("hostbin");
        host_bin(&bin);
        keygen(&scratch.join("host_key"));
        keygen(&scratch.join("client_key"));
        fs::copy(
            scratch.join("client_key.pub"),
            scratch.join("authorized_keys"),
        )
        .unwrap();
        fs::set_permissions(
            scratch.join("authorized_keys"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let port = free_port();
        let s = scratch.path.display();
        fs::write(
            scratch.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {s}/host_key\nPidFile {s}/sshd.pid\nAuthorizedKeysFile {s}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nAllowUsers {}\nSetEnv PATH={}\nMaxSessions 100\nMaxStartups 100\nLogLevel ERROR\n",
                users.join(" "),
                bin.display()
            ),
        )
        .unwrap();
        let host_pub = fs::read_to_string(scratch.join("host_key.pub")).unwrap();
        let key_only: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        fs::write(
            scratch.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", key_only.join(" ")),
        )
        .unwrap();
        let mut config = String::new();
        for (i, u) in users.iter().enumerate() {
            config.push_str(&format!(
                "Host h{}\n  HostName 127.0.0.1\n  Port {port}\n  User {u}\n",
                i + 1
            ));
        }
        config.push_str(&format!(
            "Host *\n  IdentityFile {s}/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile {s}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  ConnectTimeout 10\n"
        ));
        let ssh_config = scratch.join("ssh_config");
        fs::write(&ssh_config, config).unwrap();
        let sshd = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(scratch.join("sshd_config"))
            .stderr(fs::File::create(scratch.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sshd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let hosts = Hosts {
            scratch,
            ssh_config,
            users,
            path: format!("rb-tests/{name}/webapp"),
            sshd: Some(KillOnDrop(sshd)),
        };
        for u in &hosts.users {
            let _ = fs::remove_dir_all(hosts.home(u).join(format!("rb-tests/{name}")));
        }
        Some(hosts)
    }

    pub fn home(&self, user: &str) -> PathBuf {
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
        for i in 1..=self.users.len() {
            let launcher = self.root(i).join("current/bin/webapp");
            if launcher.exists() {
                let _ = Command::new("runuser")
                    .args(["-u", &self.users[i - 1], "--"])
                    .arg(&launcher)
                    .arg("stop")
                    .output();
            }
        }
        self.sshd.take();
    }
}
