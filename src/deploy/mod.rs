//! Releases side by side on hosts and switching between them: the event log that records what
//! happened under a deploy path and the decisions made from it (which release to roll back
//! to, which to prune), the unit for systemd (`unit.rs`). This file, `config.rs` and `state.rs` are pure;
//! `host.sh` carries the steps out on a host, `transport.rs` reaches it (local `sh` or the
//! system `ssh`), and `fleet.rs` runs the sequence over every host.
//!
//! ```text
//! <path>/releases/<version>/   one verified release, never modified after install
//! <path>/current -> releases/<version>   switched atomically (temp link, then rename)
//! <path>/shared/env            the host's environment (0600), the launcher's env file
//! <path>/shared/tmp/           RELEASE_TMP: pid file and logs survive a switch
//! <path>/.deploy/lock/         held during a deploy (atomic rename; holder inside)
//! <path>/.deploy/log.jsonl     one event a line
//! ```

pub mod checks;
pub mod config;
pub mod dry_run;
pub mod exec;
pub mod fleet;
mod gzip;
pub mod hooks;
pub mod keeper;
pub mod logs;
pub mod notes;
mod release;
mod release_command;
pub mod render;
pub mod resolve;
mod restart;
pub mod roles;
mod session;
mod stage;
pub mod state;
pub mod status;
pub mod transport;
pub mod unit;
pub mod whole;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use config::Settings;
pub use release::Release;
use transport::Transport;

/// One host: how to reach it and where the layout lives there.
#[derive(Debug, Clone)]
pub struct Target {
    /// As the user named it (`deploy@web-1`, `local`).
    pub label: String,
    pub transport: Transport,
    pub path: String,
}

/// How a deploy, install or rollback runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub settings: Settings,
    /// Stop the running release and start the new one (`install` without `--restart` only
    /// switches).
    pub restart: bool,
    pub break_lock: bool,
    /// How long to wait for a lock another deploy holds.
    pub lock_wait: Duration,
    /// Written into each lock: who deploys, from where.
    pub who: String,
    /// Env files to install as `shared/env`, by host label (sent through stdin).
    pub env: BTreeMap<String, Vec<u8>>,
    /// Verify and send the release everywhere, and switch nothing (`--stage-only`).
    pub stage_only: bool,
    /// Stop → start even for releases with a keeper (`--cold`).
    pub cold: bool,
    /// Switch without running the release command (`--skip-release-command`).
    pub skip_release_command: bool,
}

/// `f` over every item at once, one thread each; the results in the items' order. A panic
/// in one is resumed here.
fn parallel<A: Send, T: Send>(items: Vec<A>, f: impl Fn(A) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| scope.spawn(move || f(item)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One line of `.deploy/log.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A release was installed under `releases/<version>`, from a bundle with this digest.
    Staged {
        version: String,
        sha256: String,
        time: u64,
    },
    /// `current` now points at `to`.
    Switched {
        from: Option<String>,
        to: String,
        time: u64,
    },
    Healthy {
        version: String,
        time: u64,
    },
    Failed {
        version: String,
        why: String,
        time: u64,
    },
    /// `current` was switched back after a failure.
    Reverted {
        from: String,
        to: String,
        time: u64,
    },
    /// `rollback` switched from `from` back to `to`.
    RolledBack {
        from: String,
        to: String,
        time: u64,
    },
    MarkedBad {
        version: String,
        time: u64,
    },
    Pruned {
        version: String,
        time: u64,
    },
    /// The release command ran on this host (the primary), from `version`, and exited 0.
    ReleaseCommandRan {
        version: String,
        command: String,
        time: u64,
    },
    /// The release command exited `code`: no host was switched.
    ReleaseCommandFailed {
        version: String,
        command: String,
        code: i32,
        time: u64,
    },
    /// `--skip-release-command`: the deploy switched without running it.
    ReleaseCommandSkipped {
        version: String,
        time: u64,
    },
    /// An event a newer version of this tool wrote.
    #[serde(other)]
    Other,
}

/// What the log says about the releases under one deploy path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Digest each version was staged from (the last staging wins).
    pub staged: Vec<(String, String, u64)>,
    /// Versions that were current, oldest first (a version can appear more than once).
    pub switched: Vec<String>,
    pub bad: Vec<String>,
    pub pruned: Vec<String>,
}

impl History {
    pub fn from_events(events: &[Event]) -> History {
        let mut h = History::default();
        for e in events {
            match e {
                Event::Staged {
                    version,
                    sha256,
                    time,
                } => {
                    h.staged.retain(|(v, _, _)| v != version);
                    h.staged.push((version.clone(), sha256.clone(), *time));
                    h.pruned.retain(|v| v != version);
                }
                Event::Switched { to, .. } | Event::Reverted { to, .. } => {
                    h.switched.push(to.clone())
                }
                // A release rolled back from is no longer a place to roll back to: the next
                // rollback goes further back, not forward again.
                Event::RolledBack { from, to, .. } => {
                    h.switched.retain(|v| v != from);
                    h.switched.push(to.clone());
                }
                Event::MarkedBad { version, .. } => {
                    if !h.bad.contains(version) {
                        h.bad.push(version.clone());
                    }
                }
                Event::Pruned { version, .. } => h.pruned.push(version.clone()),
                // A release that passes its health checks later is good again.
                Event::Healthy { version, .. } => h.bad.retain(|v| v != version),
                Event::Failed { .. }
                | Event::ReleaseCommandRan { .. }
                | Event::ReleaseCommandFailed { .. }
                | Event::ReleaseCommandSkipped { .. }
                | Event::Other => {}
            }
        }
        h
    }

    /// The digest `version` was staged from, if the log knows it.
    pub fn digest_of(&self, version: &str) -> Option<&str> {
        self.staged
            .iter()
            .find(|(v, _, _)| v == version)
            .map(|(_, d, _)| d.as_str())
    }

    /// Where a rollback from `current` goes: the most recent earlier current that is still
    /// installed and not marked bad.
    pub fn rollback_target(&self, current: &str, installed: &[String]) -> Option<String> {
        self.switched
            .iter()
            .rev()
            .find(|v| v.as_str() != current && installed.contains(v) && !self.bad.contains(v))
            .cloned()
    }

    /// Releases to remove so that at most `keep` of those this tool installed stay: never
    /// `current`, never the rollback target, never a directory the log does not say was
    /// installed here; bad releases first, then the oldest staged.
    pub fn to_prune(
        &self,
        current: Option<&str>,
        installed: &[String],
        keep: usize,
    ) -> Vec<String> {
        let protect: Vec<String> = current
            .into_iter()
            .map(String::from)
            .chain(current.and_then(|c| self.rollback_target(c, installed)))
            .collect();
        let ours: Vec<&String> = installed
            .iter()
            .filter(|v| self.digest_of(v).is_some())
            .collect();
        let mut candidates: Vec<&String> = ours
            .iter()
            .copied()
            .filter(|v| !protect.contains(v))
            .collect();
        let staged_at = |v: &str| {
            self.staged
                .iter()
                .find(|(s, _, _)| s == v)
                .map_or(0, |(_, _, t)| *t)
        };
        // Bad first, then oldest first.
        candidates.sort_by_key(|v| (!self.bad.contains(v), staged_at(v), (*v).clone()));
        let excess = ours.len().saturating_sub(keep);
        candidates.into_iter().take(excess).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        History::from_events(&events())
    }

    fn events() -> Vec<Event> {
        let staged = |v: &str, t| Event::Staged {
            version: v.into(),
            sha256: format!("d{v}"),
            time: t,
        };
        let switched = |to: &str| Event::Switched {
            from: None,
            to: to.into(),
            time: 0,
        };
        vec![
            staged("1.0.0", 1),
            switched("1.0.0"),
            staged("1.1.0", 2),
            switched("1.1.0"),
            staged("1.2.0", 3),
            switched("1.2.0"),
            Event::Reverted {
                from: "1.2.0".into(),
                to: "1.1.0".into(),
                time: 4,
            },
            Event::MarkedBad {
                version: "1.2.0".into(),
                time: 4,
            },
            staged("1.3.0", 5),
            switched("1.3.0"),
        ]
    }

    #[test]
    fn rollback_skips_bad_and_missing_releases() {
        let h = history();
        let all: Vec<String> = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
            .map(String::from)
            .to_vec();
        assert_eq!(h.rollback_target("1.3.0", &all).as_deref(), Some("1.1.0"));
        let without: Vec<String> = ["1.0.0", "1.2.0", "1.3.0"].map(String::from).to_vec();
        assert_eq!(
            h.rollback_target("1.3.0", &without).as_deref(),
            Some("1.0.0")
        );
        assert_eq!(h.digest_of("1.2.0"), Some("d1.2.0"));
        let mut events = events();
        events.push(Event::RolledBack {
            from: "1.3.0".into(),
            to: "1.1.0".into(),
            time: 6,
        });
        let h = History::from_events(&events);
        // A second rollback goes further back, not forward to what was rolled back from.
        assert_eq!(h.rollback_target("1.1.0", &all).as_deref(), Some("1.0.0"));
    }

    #[test]
    fn a_release_healthy_after_its_mark_is_good_again() {
        let mut events = events();
        assert_eq!(History::from_events(&events).bad, ["1.2.0"]);
        events.push(Event::Healthy {
            version: "1.2.0".into(),
            time: 7,
        });
        assert!(History::from_events(&events).bad.is_empty());
        events.push(Event::MarkedBad {
            version: "1.2.0".into(),
            time: 8,
        });
        assert_eq!(History::from_events(&events).bad, ["1.2.0"]);
    }

    #[test]
    fn pruning_keeps_current_and_the_rollback_target_and_drops_bad_first() {
        let h = history();
        let all: Vec<String> = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
            .map(String::from)
            .to_vec();
        assert_eq!(h.to_prune(Some("1.3.0"), &all, 3), ["1.2.0"]);
        assert_eq!(h.to_prune(Some("1.3.0"), &all, 2), ["1.2.0", "1.0.0"]);
        assert_eq!(h.to_prune(Some("1.3.0"), &all, 1), ["1.2.0", "1.0.0"]);
        assert!(h.to_prune(Some("1.3.0"), &all, 5).is_empty());
        // A directory the log never staged is neither counted nor removed.
        let mut with_foreign = all.clone();
        with_foreign.insert(0, "0.9.0".into());
        assert_eq!(h.to_prune(Some("1.3.0"), &with_foreign, 3), ["1.2.0"]);
        assert_eq!(
            h.to_prune(Some("1.3.0"), &with_foreign, 1),
            ["1.2.0", "1.0.0"]
        );
    }
}
