//! What a deploy reports: one [`Note`] per thing that happened on a host, sent as it
//! happens through a channel (the command prints them from its own thread), and the
//! [`Summary`] at the end.

use std::sync::mpsc;

/// Something that happened on a host, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Note {
    pub host: String,
    #[serde(flatten)]
    pub what: Happened,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Happened {
    Locked,
    /// `shared/env` was installed (its content is never reported).
    EnvInstalled,
    Swept {
        path: String,
    },
    BrokeLock {
        holder: String,
    },
    Staged {
        version: String,
        bytes_sent: u64,
        files_sent: usize,
        files_linked: usize,
    },
    AlreadyStaged {
        version: String,
    },
    Stopped {
        version: String,
    },
    Switched {
        from: Option<String>,
        to: String,
    },
    Started {
        version: String,
    },
    Healthy {
        version: String,
    },
    Failed {
        version: String,
        why: String,
        log_tail: String,
    },
    Reverted {
        from: String,
        to: String,
        healthy: bool,
    },
    MarkedBad {
        version: String,
    },
    Pruned {
        version: String,
    },
    /// The release command starts on this host (the primary), from `version`.
    ReleaseCommand {
        version: String,
        command: String,
    },
    /// A line the release command wrote (control characters escaped).
    Output {
        stderr: bool,
        line: String,
    },
    ReleaseCommandDone {
        version: String,
        code: i32,
    },
    ReleaseCommandSkipped {
        version: String,
    },
}

/// Where notes go as they happen: the command prints them on its own thread.
pub type Notes = mpsc::Sender<Note>;

/// The notes of one host.
pub struct HostNotes<'a> {
    pub tx: &'a Notes,
    pub host: &'a str,
}

impl HostNotes<'_> {
    pub fn push(&self, what: Happened) {
        // The receiver only goes away when the command is ending anyway.
        let _ = self.tx.send(Note {
            host: self.host.into(),
            what,
        });
    }
}

/// Where each host ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostOutcome {
    pub host: String,
    /// `deployed`, `staged` (`--stage-only`), `unchanged`, `started` (current already, but it
    /// was not running),
    /// `reverted`, `failed`, `untouched`, `rolled-back`.
    pub outcome: String,
    pub current: Option<String>,
    pub bytes_sent: u64,
}

/// What a deploy did: per host, and the error that stopped it (if any).
pub struct DeploySummary {
    pub hosts: Vec<HostOutcome>,
    pub error: Option<anyhow::Error>,
}

impl DeploySummary {
    /// How it ended, as `post-*` hooks hear it: `success`, `reverted` (a host went back) or
    /// `failed`.
    pub fn outcome(&self) -> &'static str {
        match &self.error {
            None => "success",
            Some(_) if self.hosts.iter().any(|h| h.outcome == "reverted") => "reverted",
            Some(_) => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_ends_in_success_reverted_or_failed() {
        let host = |outcome: &str| HostOutcome {
            host: "h1".into(),
            outcome: outcome.into(),
            current: None,
            bytes_sent: 0,
        };
        let cases = [
            (vec!["deployed"], false, "success"),
            (vec!["reverted", "untouched"], true, "reverted"),
            (vec!["failed", "untouched"], true, "failed"),
            (vec![], true, "failed"),
        ];
        for (hosts, failed, want) in cases {
            let summary = DeploySummary {
                hosts: hosts.into_iter().map(host).collect(),
                error: failed.then(|| anyhow::anyhow!("stopped")),
            };
            assert_eq!(summary.outcome(), want);
        }
    }
}
