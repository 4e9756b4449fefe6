//! Deploy notes and plans as people read them: one status line per event (a verb and its
//! text), one line per host of a dry run's plan. Pure: the command prints what these return.

use super::notes::{Happened, Note};

/// A note as a status line: its verb (`Failed` is a warning) and its text.
pub fn note(note: &Note) -> (&'static str, String) {
    let h = &note.host;
    match &note.what {
        Happened::Locked => ("Locked", h.to_string()),
        Happened::EnvInstalled => ("Installed", format!("{h}: shared/env (0600)")),
        Happened::Swept { path } => (
            "Removed",
            format!("{h}: {path}, left by a deploy that was killed"),
        ),
        Happened::BrokeLock { holder } => ("Broke", format!("{h}: stale lock ({holder})")),
        Happened::Staged {
            version,
            bytes_sent,
            files_sent,
            files_linked,
        } => (
            "Staged",
            format!(
                "{h}: {version} ({} sent: {files_sent} files; {files_linked} linked from installed releases)",
                crate::bundle::human_size(*bytes_sent)
            ),
        ),
        Happened::AlreadyStaged { version } => {
            ("Staged", format!("{h}: {version} was already installed"))
        }
        Happened::Stopped { version } => ("Stopped", format!("{h}: {version}")),
        Happened::Switched { from, to } => (
            "Switched",
            format!(
                "{h}: current -> releases/{to}{}",
                from.as_ref()
                    .map(|f| format!(" (was {f})"))
                    .unwrap_or_default()
            ),
        ),
        Happened::Started { version } => ("Started", format!("{h}: {version}")),
        Happened::Healthy { version } => ("Healthy", format!("{h}: {version}")),
        Happened::Failed {
            version,
            why,
            log_tail,
        } => (
            "Failed",
            format!(
                "{h}: {version}: {why}{}",
                if log_tail.trim().is_empty() {
                    String::new()
                } else {
                    format!("\nlast lines of its log on {h}:\n{}", log_tail.trim_end())
                }
            ),
        ),
        Happened::Reverted { from, to, healthy } => (
            "Reverted",
            format!(
                "{h}: {from} -> {to}, {}",
                if *healthy {
                    "which is serving"
                } else {
                    "which also did not come up"
                }
            ),
        ),
        Happened::MarkedBad { version } => ("Marked bad", format!("{h}: {version}")),
        Happened::Pruned { version } => ("Pruned", format!("{h}: {version}")),
        other => release_command(h, other),
    }
}

/// The release command's notes, in human form.
fn release_command(h: &str, what: &Happened) -> (&'static str, String) {
    match what {
        Happened::ReleaseCommand { version, command } => (
            "Running",
            format!("{h}: release command `{command}` from {version}"),
        ),
        Happened::Output { line, .. } => ("", format!("{h}: {line}")),
        Happened::ReleaseCommandDone { code: 0, .. } => {
            ("Ran", format!("{h}: the release command"))
        }
        Happened::ReleaseCommandDone { code, .. } => {
            ("Failed", format!("{h}: the release command exited {code}"))
        }
        Happened::ReleaseCommandSkipped { version } => (
            "Skipped",
            format!("{h}: the release command of {version} (--skip-release-command)"),
        ),
        _ => ("", String::new()),
    }
}

/// One host's line of the human `--dry-run` plan.
pub fn plan_line(p: &serde_json::Value) -> String {
    let host = p["host"].as_str().unwrap_or_default();
    let mut line = format!("  {host} ({}):", p["path"].as_str().unwrap_or_default());
    if p["stage"].as_bool() == Some(true) {
        line.push_str(&format!(
            " send {} files ({} before compression), link {} from installed releases;",
            p["files_to_send"],
            crate::bundle::human_size(p["bytes_to_send_uncompressed"].as_u64().unwrap_or(0)),
            p["files_to_link"]
        ));
    } else {
        line.push_str(" already staged;");
    }
    match (p["stop"].as_str(), p["start"].as_str()) {
        (Some(old), Some(new)) => line.push_str(&format!(" stop {old}, switch, start {new}")),
        (None, Some(new)) => line.push_str(&format!(" switch, start {new}")),
        _ => line.push_str(" already current; nothing to restart"),
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(what: Happened) -> Note {
        Note {
            host: "h1".into(),
            what,
        }
    }

    #[test]
    fn notes_read_as_status_lines() {
        let cases: Vec<(Happened, &str, &str)> = vec![
            (Happened::Locked, "Locked", "h1"),
            (
                Happened::Switched {
                    from: Some("1.2.0".into()),
                    to: "1.3.0".into(),
                },
                "Switched",
                "h1: current -> releases/1.3.0 (was 1.2.0)",
            ),
            (
                Happened::Switched {
                    from: None,
                    to: "1.3.0".into(),
                },
                "Switched",
                "h1: current -> releases/1.3.0",
            ),
            (
                Happened::Failed {
                    version: "1.4.0".into(),
                    why: "exited".into(),
                    log_tail: " \n".into(),
                },
                "Failed",
                "h1: 1.4.0: exited",
            ),
            (
                Happened::Failed {
                    version: "1.4.0".into(),
                    why: "exited".into(),
                    log_tail: "boom\n".into(),
                },
                "Failed",
                "h1: 1.4.0: exited\nlast lines of its log on h1:\nboom",
            ),
            (
                Happened::Reverted {
                    from: "1.4.0".into(),
                    to: "1.3.0".into(),
                    healthy: false,
                },
                "Reverted",
                "h1: 1.4.0 -> 1.3.0, which also did not come up",
            ),
            (
                Happened::ReleaseCommandSkipped {
                    version: "1.3.0".into(),
                },
                "Skipped",
                "h1: the release command of 1.3.0 (--skip-release-command)",
            ),
        ];
        for (what, verb, text) in cases {
            assert_eq!(note(&on(what)), (verb, text.to_string()));
        }
    }

    #[test]
    fn plan_lines_say_what_moves() {
        let staged = serde_json::json!({
            "host": "h1", "path": "/srv/app", "stage": true, "files_to_send": 3,
            "bytes_to_send_uncompressed": 2048, "files_to_link": 5, "stop": "1.2.0", "start": "1.3.0",
        });
        assert_eq!(
            plan_line(&staged),
            "  h1 (/srv/app): send 3 files (2.0 KiB before compression), link 5 from installed releases; stop 1.2.0, switch, start 1.3.0"
        );
        let current = serde_json::json!({"host": "h2", "path": "p", "stage": false, "stop": null, "start": null});
        assert_eq!(
            plan_line(&current),
            "  h2 (p): already staged; already current; nothing to restart"
        );
    }
}
