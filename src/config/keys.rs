//! What a release table may hold: the keys this tool reads (and cargo-release's, which share
//! its table), the launcher's built-in commands, and the small types that values parse into.

use super::value::Spanned;

/// An `include` rule: cargo-deb style `{ source = "glob", dest = "dir/", mode = "0644" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludeRule {
    pub source: String,
    pub dest: String,
    pub mode: Option<u32>,
}

/// A custom launcher command: `migrate = { bin = "billing-migrate", args = ["up"] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandEntry {
    pub bin: Spanned<String>,
    pub args: Vec<String>,
    pub description: Option<String>,
}

/// Launcher hook points, run in this order around start and stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookName {
    PreStart,
    PostStart,
    PreStop,
    PostStop,
}

impl HookName {
    pub fn as_str(self) -> &'static str {
        match self {
            HookName::PreStart => "pre-start",
            HookName::PostStart => "post-start",
            HookName::PreStop => "pre-stop",
            HookName::PostStop => "post-stop",
        }
    }

    pub const ALL: [(&'static str, HookName); 4] = [
        ("pre-start", HookName::PreStart),
        ("post-start", HookName::PostStart),
        ("pre-stop", HookName::PreStop),
        ("post-stop", HookName::PostStop),
    ];
}

/// Keys this tool reads.
pub const KNOWN_KEYS: &[&str] = &[
    "name",
    "bins",
    "priv",
    "exclude",
    "include",
    "format",
    "compression-level",
    "profile",
    "main",
    "env",
    "required-env",
    "env-file",
    "stop-timeout",
    "listen",
    "log-max-size",
    "log-keep",
    "ready",
    "ready-timeout",
    "launcher",
    "commands",
    "hooks",
    "processes",
    "reproducible",
    "args",
    "workdir",
    "verify",
    "deploy",
    "image",
    "sign",
    "auditable",
];

/// Keys owned by cargo-release in the shared `[package.metadata.release]` table.
pub const CARGO_RELEASE_KEYS: &[&str] = &[
    "allow-branch",
    "sign-commit",
    "sign-tag",
    "push-remote",
    "registry",
    "release",
    "publish",
    "verify",
    "owners",
    "push",
    "push-options",
    "shared-version",
    "consolidate-commits",
    "pre-release-commit-message",
    "tag-message",
    "tag-prefix",
    "tag-name",
    "tag",
    "enable-features",
    "enable-all-features",
    "dependent-version",
    "metadata",
    "target",
    "rate-limit",
    "pre-release-replacements",
    "pre-release-hook",
    "certs-source",
];

/// Launcher built-ins that custom commands may not shadow.
pub const BUILTIN_COMMANDS: &[&str] = &[
    "start",
    "foreground",
    "daemon",
    "stop",
    "restart",
    "pid",
    "status",
    "version",
    "env",
    "run",
    "reload",
    "help",
    // What the keeper runs to start a generation (not for people).
    "__generation",
    // The sockets' addresses with the host's values (for systemd-unit --socket).
    "__listen",
    // The daemon's log rotator (reads the service's output from a FIFO).
    "__rotate",
];

/// Where `start` and `daemon` run the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workdir {
    /// `workdir = false`: the directory the launcher was started from.
    Caller,
    /// A directory relative to the release root (`""` for the root itself, the default).
    Release(String),
}

/// The only `${...}` forms the launcher substitutes in `env` values and `args`.
pub const RELEASE_VARIABLES: &[&str] = &[
    "RELEASE_ROOT",
    "RELEASE_PRIV",
    "RELEASE_TMP",
    "RELEASE_NAME",
    "RELEASE_VSN",
    "RELEASE_SHARED",
];

/// One socket the keeper holds: `listen = { http = "0.0.0.0:${PORT}" }` or
/// `{ api = { address = "unix:/run/app.sock", mode = "0660" } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// `HOST:PORT` (an IP literal, IPv6 in brackets) or `unix:/absolute/path`; `${VAR}`
    /// forms are taken from the service's environment when the keeper starts.
    pub address: String,
    /// A Unix socket's permissions (default 0666, as systemd's `SocketMode=`).
    pub mode: Option<u32>,
}

/// When a new generation counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// It sends `READY=1` on `NOTIFY_SOCKET`.
    Notify,
    /// It is still running this many milliseconds after it started (default 1000).
    AfterMillis(u64),
}
