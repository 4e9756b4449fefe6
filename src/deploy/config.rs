//! `[package.metadata.release.deploy]` (workspace defaults in `[workspace.metadata.release
//! .deploy]`), its `destinations.NAME` tables, and the command-line flags over them, merged
//! into the [`Settings`] one deploy runs with. Pure: values in, settings or an error naming
//! the file and key out.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::roles::Role;
use super::whole::Whole;
pub use crate::config::value::parse_duration;
use crate::config::value::{self, ConfigError, Origin, duration};

/// How many hosts restart at once: a count, or a share of the hosts (rounded up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    Count(usize),
    Percent(u32),
}

impl Batch {
    pub fn parse(text: &str) -> Result<Batch, String> {
        let bad = || format!("{text:?} is not a batch size (e.g. 1, 2, 25%, 100%)");
        if let Some(p) = text.strip_suffix('%') {
            let p: u32 = p.parse().map_err(|_| bad())?;
            if p == 0 || p > 100 {
                return Err(format!("{text:?}: a percentage from 1% to 100%"));
            }
            return Ok(Batch::Percent(p));
        }
        match text.parse::<usize>() {
            Ok(0) | Err(_) => Err(bad()),
            Ok(n) => Ok(Batch::Count(n)),
        }
    }

    /// Hosts per batch out of `hosts`: at least one.
    pub fn size(self, hosts: usize) -> usize {
        let n = match self {
            Batch::Count(n) => n,
            Batch::Percent(p) => (hosts * p as usize).div_ceil(100),
        };
        n.clamp(1, hosts.max(1))
    }
}

/// What happens to batches already switched when a later one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Revert only the host that failed; batches already switched keep the new release.
    RevertHost,
    /// Revert every host switched so far.
    RevertAll,
}

/// How the service is stopped and started on each host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// `releases/<v>/bin/<name> stop|daemon|status`.
    Launcher,
    /// `systemctl stop|start|is-active UNIT` (the unit from `systemd-unit`).
    Systemd { unit: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Probed through the SSH connection; `${VAR}` from the service's environment.
    pub url: Option<String>,
    /// Run on the host in the release directory with `shared/env`; healthy when it exits 0.
    pub command: Option<String>,
    pub interval: Duration,
    /// Per try.
    pub timeout: Duration,
    /// For the whole wait.
    pub deadline: Duration,
    /// How long it must stay healthy.
    pub healthy_for: Duration,
    /// Bad answers in a row (an HTTP status outside 200–399) that fail the release at once,
    /// like Kubernetes' `failureThreshold`; no answer at all (still starting) does not count.
    pub unhealthy_after: u32,
}

/// Everything one deploy runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub hosts: Vec<String>,
    /// Relative paths are relative to the remote user's home.
    pub path: String,
    pub keep: usize,
    pub batch: Batch,
    pub on_failure: OnFailure,
    pub service: Service,
    pub ssh_config: Option<String>,
    pub health: Health,
    /// Refuse a bundle whose signature is not checked (`--allowed-signers`/`--minisign-key`).
    pub require_signature: bool,
    /// The release command, hooks and environment sources.
    pub whole: Whole,
    /// The roles this deploy acts on (`deploy.hosts` as `web`); `hosts` are theirs.
    pub roles: BTreeMap<String, Role>,
    /// Roles are configured: each host's launcher is told which processes are its.
    pub role_table: bool,
}

impl Settings {
    /// The processes `host` runs in this deploy.
    pub fn processes_of(&self, host: &str) -> Vec<String> {
        super::roles::processes_of(&self.roles, host)
    }

    /// How `host` is judged healthy: the deploy's health (its URL only where web runs: a
    /// worker has none), with what the first of its roles that has a `health` table sets
    /// over it.
    pub fn health_of(&self, host: &str) -> Health {
        let mut base = self.health.clone();
        if !self.processes_of(host).iter().any(|p| p == "web") {
            base.url = None;
        }
        let own = super::roles::first_with(&self.roles, host, |r| r.health.is_some());
        match own.and_then(|r| r.health.as_deref()) {
            Some(p) => base.with(p),
            None => base,
        }
    }
}

impl Health {
    /// These settings with what `p` sets over them.
    fn with(self, p: &Partial) -> Health {
        Health {
            url: p.url.clone().or(self.url),
            command: p.command.clone().or(self.command),
            interval: p.interval.unwrap_or(self.interval),
            timeout: p.timeout.unwrap_or(self.timeout),
            deadline: p.deadline.unwrap_or(self.deadline),
            healthy_for: p.healthy_for.unwrap_or(self.healthy_for),
            unhealthy_after: p.unhealthy_after.unwrap_or(self.unhealthy_after),
        }
    }
}

/// Settings as read from one table or the flags: what is not given is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    pub hosts: Option<Vec<String>>,
    pub path: Option<String>,
    pub keep: Option<usize>,
    pub batch: Option<Batch>,
    pub on_failure: Option<OnFailure>,
    pub service: Option<String>,
    pub unit: Option<String>,
    pub ssh_config: Option<String>,
    pub url: Option<String>,
    pub command: Option<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub deadline: Option<Duration>,
    pub healthy_for: Option<Duration>,
    pub unhealthy_after: Option<u32>,
    pub require_signature: Option<bool>,
    pub whole: Whole,
    pub roles: Option<BTreeMap<String, Role>>,
    /// `--role`: only these roles (flags only).
    pub only_roles: Vec<String>,
    /// `--primary`: only the primary host (flags only).
    pub primary_only: bool,
}

/// A deploy table: its own settings and its named destinations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployTable {
    pub settings: Partial,
    pub destinations: BTreeMap<String, Partial>,
}

const KEYS: &str = "hosts, path, keep, batch, on-failure, service, unit, ssh-config, health, require-signature, release-command, primary, hooks, env-file, env-command, shared-dirs, roles, destinations";
const HEALTH_KEYS: &str = "url, command, interval, timeout, deadline, healthy-for, unhealthy-after";

/// The `health` table into `p`.
/// A batch size: a count, or a percentage such as `"25%"`.
pub(super) fn parse_batch(item: &Value, ko: &Origin) -> Result<Batch, ConfigError> {
    let text = match item {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => {
            return Err(ko.error(format!(
                "expected a count or a percentage such as \"25%\", found {}",
                value::describe(other)
            )));
        }
    };
    Batch::parse(&text).map_err(|e| ko.error(e))
}

pub(super) fn parse_health(v: &Value, o: &Origin, p: &mut Partial) -> Result<(), ConfigError> {
    for (hk, hv) in value::table(v, o)? {
        let ho = o.child(hk);
        match hk.as_str() {
            "url" => {
                let url = value::string(hv, &ho)?.value;
                let vars = url_variables(&url).map_err(|e| ho.error(e))?;
                let sample: Vec<(String, String)> =
                    vars.into_iter().map(|v| (v, "1".into())).collect();
                parse_url(&expand_url(&url, &sample)).map_err(|e| ho.error(e))?;
                p.url = Some(url);
            }
            "command" => p.command = Some(value::string(hv, &ho)?.value),
            "interval" => p.interval = Some(duration(hv, &ho)?),
            "timeout" => p.timeout = Some(duration(hv, &ho)?),
            "deadline" => p.deadline = Some(duration(hv, &ho)?),
            "healthy-for" => p.healthy_for = Some(duration(hv, &ho)?),
            "unhealthy-after" => {
                p.unhealthy_after = Some(value::integer(hv, &ho, 1, 1000)?.value as u32)
            }
            _ => return Err(ho.error(format!("unknown key (known: {HEALTH_KEYS})"))),
        }
    }
    Ok(())
}

fn parse_partial(v: &Value, o: &Origin, top: bool) -> Result<DeployTable, ConfigError> {
    let mut table = DeployTable::default();
    let p = &mut table.settings;
    for (key, item) in value::table(v, o)? {
        let ko = o.child(key);
        match key.as_str() {
            "hosts" => {
                let hosts = value::string_list(item, &ko)?;
                for (i, h) in hosts.iter().enumerate() {
                    super::transport::check_destination(&h.value)
                        .map_err(|e| ko.index(i).error(e.to_string()))?;
                }
                p.hosts = Some(hosts.into_iter().map(|h| h.value).collect());
            }
            "path" => {
                let s = value::string(item, &ko)?.value;
                if s.is_empty() || s.contains('\0') || s.contains('\n') {
                    return Err(ko.error("expected a directory path"));
                }
                p.path = Some(s);
            }
            "keep" => p.keep = Some(value::integer(item, &ko, 1, 1000)?.value as usize),
            "batch" => p.batch = Some(parse_batch(item, &ko)?),
            "on-failure" => {
                p.on_failure = Some(match value::string(item, &ko)?.value.as_str() {
                    "revert-host" => OnFailure::RevertHost,
                    "revert-all" => OnFailure::RevertAll,
                    other => {
                        return Err(ko.error(format!(
                            "unknown policy {other:?} (revert-host or revert-all)"
                        )));
                    }
                })
            }
            "service" => {
                let s = value::string(item, &ko)?.value;
                if s != "launcher" && s != "systemd" {
                    return Err(ko.error(format!(
                        "unknown service manager {s:?} (launcher or systemd)"
                    )));
                }
                p.service = Some(s);
            }
            "unit" => p.unit = Some(value::string(item, &ko)?.value),
            "ssh-config" => p.ssh_config = Some(value::string(item, &ko)?.value),
            "require-signature" => p.require_signature = Some(value::boolean(item, &ko)?),
            "health" => parse_health(item, &ko, p)?,
            "roles" => p.roles = Some(super::roles::parse(item, &ko)?),
            "destinations" if top => {
                for (name, dv) in value::table(item, &ko)? {
                    let d = parse_partial(dv, &ko.child(name), false)?;
                    table.destinations.insert(name.clone(), d.settings);
                }
            }
            _ if super::whole::parse_key(key, item, &ko, &mut p.whole)? => {}
            _ => return Err(ko.error(format!("unknown key (known: {KEYS})"))),
        }
    }
    Ok(table)
}

/// Read a `deploy` table.
pub fn parse(v: &Value, o: &Origin) -> Result<DeployTable, ConfigError> {
    parse_partial(v, o, true)
}

impl Partial {
    /// `other` over `self`: what `other` gives wins.
    pub fn over(self, other: Partial) -> Partial {
        Partial {
            hosts: other.hosts.or(self.hosts),
            path: other.path.or(self.path),
            keep: other.keep.or(self.keep),
            batch: other.batch.or(self.batch),
            on_failure: other.on_failure.or(self.on_failure),
            service: other.service.or(self.service),
            unit: other.unit.or(self.unit),
            ssh_config: other.ssh_config.or(self.ssh_config),
            url: other.url.or(self.url),
            command: other.command.or(self.command),
            interval: other.interval.or(self.interval),
            timeout: other.timeout.or(self.timeout),
            deadline: other.deadline.or(self.deadline),
            healthy_for: other.healthy_for.or(self.healthy_for),
            unhealthy_after: other.unhealthy_after.or(self.unhealthy_after),
            require_signature: other.require_signature.or(self.require_signature),
            whole: self.whole.over(other.whole),
            roles: other.roles.or(self.roles),
            only_roles: [self.only_roles, other.only_roles].concat(),
            primary_only: self.primary_only || other.primary_only,
        }
    }

    /// The settings for release `name`, with the defaults for what is still unset.
    pub fn resolve(self, name: &str) -> Settings {
        let web_hosts = self.hosts.clone().unwrap_or_default();
        let table = self.roles.clone().unwrap_or_default();
        let roles = super::roles::effective(&table, &web_hosts, &self.only_roles);
        let mut hosts = super::roles::hosts_of(&roles);
        if self.primary_only {
            let primary = super::whole::primary(&self.whole, &hosts).cloned();
            hosts.retain(|h| Some(h) == primary.as_ref());
        }
        let service = match self.service.as_deref() {
            Some("systemd") => Service::Systemd {
                unit: self.unit.unwrap_or_else(|| format!("{name}.service")),
            },
            _ => Service::Launcher,
        };
        Settings {
            hosts,
            path: self.path.unwrap_or_else(|| format!("/srv/{name}")),
            keep: self.keep.unwrap_or(5),
            batch: self.batch.unwrap_or(Batch::Count(1)),
            on_failure: self.on_failure.unwrap_or(OnFailure::RevertHost),
            service,
            ssh_config: self.ssh_config,
            health: Health {
                url: self.url,
                command: self.command,
                interval: self.interval.unwrap_or(Duration::from_secs(1)),
                timeout: self.timeout.unwrap_or(Duration::from_secs(5)),
                deadline: self.deadline.unwrap_or(Duration::from_secs(30)),
                healthy_for: self.healthy_for.unwrap_or(Duration::from_secs(2)),
                unhealthy_after: self.unhealthy_after.unwrap_or(3),
            },
            require_signature: self.require_signature.unwrap_or(false),
            whole: self.whole,
            role_table: !table.is_empty(),
            roles,
        }
    }
}

/// An `http://HOST:PORT/PATH` URL (health probes speak plain HTTP through the tunnel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<Url, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: health URLs are http://HOST[:PORT]/PATH"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url:?}: {p:?} is not a port"))?,
        ),
        None => (authority, 80),
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err(format!("{url:?}: no host"));
    }
    if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{url:?}: the path has spaces or control characters"
        ));
    }
    Ok(Url {
        host: host.into(),
        port,
        path: path.into(),
    })
}

/// The `${VAR}` names in a health URL, in order, each once.
pub fn url_variables(url: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = url;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{url:?}: `${{` without a closing `}}`"))?;
        let name = &after[..end];
        if !crate::config::layer::is_env_name(name) {
            return Err(format!("{url:?}: `${{{name}}}` is not a variable name"));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.into());
        }
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// `url` with each `${VAR}` replaced by its value.
pub fn expand_url(url: &str, values: &[(String, String)]) -> String {
    let mut out = url.to_string();
    for (name, value) in values {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(toml_text: &str) -> Result<DeployTable, ConfigError> {
        let v: Value = toml::from_str::<toml::Value>(toml_text)
            .map(|t| serde_json::to_value(t).unwrap())
            .unwrap();
        parse(
            &v,
            &Origin::new("Cargo.toml", "package.metadata.release.deploy"),
        )
    }

    #[test]
    fn tables_flags_and_defaults_merge_in_order() {
        let t = table(
            r#"
            path = "/srv/billing"
            batch = "50%"
            [health]
            url = "http://127.0.0.1:${PORT}/health"
            deadline = "2m"
            healthy-for = 3
            unhealthy-after = 5
            [destinations.staging]
            hosts = ["deploy@staging-1"]
            path = "apps/billing"
            "#,
        )
        .unwrap();
        let staging = t.destinations["staging"].clone();
        let flags = Partial {
            keep: Some(3),
            ..Partial::default()
        };
        let s = t.settings.over(staging).over(flags).resolve("billing");
        assert_eq!(s.hosts, ["deploy@staging-1"]);
        assert_eq!(s.path, "apps/billing");
        assert_eq!(s.keep, 3);
        assert_eq!(s.batch.size(4), 2);
        assert_eq!(s.health.deadline, Duration::from_secs(120));
        assert_eq!(s.health.healthy_for, Duration::from_secs(3));
        assert_eq!(s.health.unhealthy_after, 5);
        assert_eq!(Partial::default().resolve("b").health.unhealthy_after, 3);
        assert_eq!(s.health.interval, Duration::from_secs(1));
        assert_eq!(s.service, Service::Launcher);
        assert_eq!(Partial::default().resolve("x").path, "/srv/x");
    }

    #[test]
    fn errors_name_the_key() {
        let e = table("batch = \"0%\"").unwrap_err().to_string();
        assert!(e.contains("package.metadata.release.deploy.batch"), "{e}");
        let e = table("[health]\ntimeout = \"5 parsecs\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("deploy.health.timeout"), "{e}");
        let e = table("hosts = [\"-oProxyCommand=x\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("deploy.hosts[0]"), "{e}");
        let e = table("[health]\nurl = \"https://x/\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("deploy.health.url"), "{e}");
        let e = table("pth = \"x\"").unwrap_err().to_string();
        assert!(e.contains("deploy.pth") && e.contains("known"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("2 minutes").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn batches_urls_and_variables() {
        assert_eq!(Batch::parse("100%").unwrap().size(4), 4);
        assert_eq!(Batch::parse("25%").unwrap().size(3), 1);
        assert_eq!(Batch::parse("10").unwrap().size(3), 3);
        assert!(Batch::parse("0").is_err());
        let u = parse_url("http://127.0.0.1:4000/health?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 4000, "/health?x=1")
        );
        assert_eq!(parse_url("http://localhost").unwrap().path, "/");
        let url = "http://127.0.0.1:${PORT}/${PATH_}x${PORT}";
        assert_eq!(url_variables(url).unwrap(), ["PORT", "PATH_"]);
        assert!(url_variables("http://x/${1A}").is_err());
        assert_eq!(
            expand_url(
                url,
                &[("PORT".into(), "80".into()), ("PATH_".into(), "h".into())]
            ),
            "http://127.0.0.1:80/hx80"
        );
    }
}
