//! Roles: which hosts run which of the release's processes. `[deploy.roles.<role>]` has
//! `hosts` and `processes` (default: the process named like the role); `deploy.hosts` is the
//! role `web`. A host may hold several roles. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::config::{Batch, Partial, parse_batch, parse_health};
use crate::config::value::{self, ConfigError, Origin};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub hosts: Vec<String>,
    pub processes: Vec<String>,
    /// Its own `health` table (over the deploy's).
    pub health: Option<Box<Partial>>,
    /// Its own batch size (its hosts switch in batches of this many).
    pub batch: Option<Batch>,
    /// A `KEY=VALUE` file for its hosts' `shared/env` (relative to the manifest).
    pub env_file: Option<String>,
}

/// `roles = { worker = { hosts = [...], processes = [...] } }`.
pub fn parse(v: &Value, o: &Origin) -> Result<BTreeMap<String, Role>, ConfigError> {
    let mut roles = BTreeMap::new();
    for (name, item) in value::table(v, o)? {
        let ro = o.child(name);
        if !crate::config::layer::is_command_name(name) {
            return Err(ro.error("not a role name (lowercase letters, digits, `-`, `_`)"));
        }
        let table = value::table(item, &ro)?;
        let mut role = Role {
            hosts: Vec::new(),
            processes: vec![name.clone()],
            health: None,
            batch: None,
            env_file: None,
        };
        for (key, val) in table {
            let ko = ro.child(key);
            match key.as_str() {
                "hosts" => role.hosts = hosts(val, &ko)?,
                "processes" => role.processes = processes(val, &ko)?,
                "health" => {
                    let mut p = Partial::default();
                    parse_health(val, &ko, &mut p)?;
                    role.health = Some(Box::new(p));
                }
                "batch" => role.batch = Some(parse_batch(val, &ko)?),
                "env-file" => role.env_file = Some(value::string(val, &ko)?.value),
                _ => {
                    return Err(ko.error(
                        "unknown key in a role (hosts, processes, health, batch, env-file)",
                    ));
                }
            }
        }
        if role.hosts.is_empty() {
            return Err(ro.error("names no hosts"));
        }
        roles.insert(name.clone(), role);
    }
    Ok(roles)
}

fn hosts(v: &Value, o: &Origin) -> Result<Vec<String>, ConfigError> {
    let hosts = value::string_list(v, o)?;
    for (i, h) in hosts.iter().enumerate() {
        super::transport::check_destination(&h.value)
            .map_err(|e| o.index(i).error(e.to_string()))?;
    }
    Ok(hosts.into_iter().map(|h| h.value).collect())
}

fn processes(v: &Value, o: &Origin) -> Result<Vec<String>, ConfigError> {
    let list = value::string_list(v, o)?;
    for (i, p) in list.iter().enumerate() {
        if !crate::config::layer::is_command_name(&p.value) {
            return Err(o
                .index(i)
                .error(format!("{:?} is not a process name", p.value)));
        }
    }
    if list.is_empty() {
        return Err(o.error("names no process"));
    }
    Ok(list.into_iter().map(|p| p.value).collect())
}

/// The roles a deploy acts on: the table's, with `deploy.hosts` as the role `web` (unless
/// the table has one), limited to `only` when given.
pub fn effective(
    table: &BTreeMap<String, Role>,
    web_hosts: &[String],
    only: &[String],
) -> BTreeMap<String, Role> {
    let mut roles = table.clone();
    if !web_hosts.is_empty() && !roles.contains_key("web") {
        let web = Role {
            hosts: web_hosts.to_vec(),
            processes: vec!["web".into()],
            health: None,
            batch: None,
            env_file: None,
        };
        roles.insert("web".into(), web);
    }
    if !only.is_empty() {
        roles.retain(|name, _| only.contains(name));
    }
    roles
}

/// Every host of `roles`, once: the web role's first, then the others' by role name.
pub fn hosts_of(roles: &BTreeMap<String, Role>) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for (_, role) in in_order(roles) {
        for h in &role.hosts {
            if !all.contains(h) {
                all.push(h.clone());
            }
        }
    }
    all
}

/// The roles in the order a deploy takes them: web first, then the others by name.
fn in_order(roles: &BTreeMap<String, Role>) -> impl Iterator<Item = (&String, &Role)> {
    let web = roles.get_key_value("web").into_iter();
    web.chain(roles.iter().filter(|(n, _)| *n != "web"))
}

/// The first role (in deploy order) holding `host` for which `pick` holds.
pub fn first_with<'a>(
    roles: &'a BTreeMap<String, Role>,
    host: &str,
    pick: impl Fn(&Role) -> bool,
) -> Option<&'a Role> {
    in_order(roles)
        .map(|(_, r)| r)
        .find(|r| r.hosts.iter().any(|h| h == host) && pick(r))
}

/// The batches hosts switch in: consecutive hosts of the same first role together, in
/// batches of that role's size (else `default`), a percentage of that role's hosts.
pub fn batch_ranges(
    labels: &[&str],
    roles: &BTreeMap<String, Role>,
    default: Batch,
) -> Vec<std::ops::Range<usize>> {
    let first = |h: &str| in_order(roles).find(|(_, r)| r.hosts.iter().any(|x| x == h));
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < labels.len() {
        let role = first(labels[start]);
        let name = role.map(|(n, _)| n);
        let end = (start..labels.len())
            .find(|&i| first(labels[i]).map(|(n, _)| n) != name)
            .unwrap_or(labels.len());
        let batch = role.and_then(|(_, r)| r.batch).unwrap_or(default);
        let size = batch.size(end - start);
        let mut s = start;
        while s < end {
            ranges.push(s..(s + size).min(end));
            s += size;
        }
        start = end;
    }
    ranges
}

/// The processes `host` runs: those of every role it holds (web when it holds none).
pub fn processes_of(roles: &BTreeMap<String, Role>, host: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for role in roles.values().filter(|r| r.hosts.iter().any(|h| h == host)) {
        for p in &role.processes {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
    }
    if out.is_empty() {
        out.push("web".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_hosts_and_processes() {
        let o = Origin::new("app/Cargo.toml", "package.metadata.release.deploy.roles");
        let table = parse(
            &json!({"worker": {"hosts": ["h2", "h3"]}, "cron": {"hosts": ["h3"], "processes": ["scheduler"]}}),
            &o,
        )
        .unwrap();
        let roles = effective(&table, &["h1".into(), "h2".into()], &[]);
        assert_eq!(hosts_of(&roles), ["h1", "h2", "h3"]);
        assert_eq!(processes_of(&roles, "h1"), ["web"]);
        assert_eq!(processes_of(&roles, "h2"), ["web", "worker"]);
        assert_eq!(processes_of(&roles, "h3"), ["scheduler", "worker"]);
        let ranges = batch_ranges(&["h1", "h2", "h3"], &roles, Batch::Count(1));
        assert_eq!(ranges, [0..1, 1..2, 2..3]);
        let mut batched = roles.clone();
        batched.get_mut("web").unwrap().batch = Some(Batch::Percent(100));
        assert_eq!(
            batch_ranges(&["h1", "h2", "h3"], &batched, Batch::Count(1)),
            [0..2, 2..3]
        );
        let only = effective(&table, &["h1".into()], &["worker".into()]);
        assert_eq!(hosts_of(&only), ["h2", "h3"]);
        assert_eq!(processes_of(&only, "h2"), ["worker"]);
        for (v, e) in [
            (json!({"worker": {}}), "roles.worker: names no hosts"),
            (
                json!({"worker": {"hosts": ["h"], "procs": []}}),
                "roles.worker.procs: unknown key",
            ),
            (json!({"Worker": {"hosts": ["h"]}}), "not a role name"),
            (
                json!({"worker": {"hosts": ["h"], "processes": ["A"]}}),
                "processes[0]: \"A\" is not a process name",
            ),
        ] {
            let err = parse(&v, &o).unwrap_err().to_string();
            assert!(err.contains(e), "{v}: {err}");
        }
    }
}
