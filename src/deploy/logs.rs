//! `logs`: each host's service log (the launcher's file under `shared/tmp/log`, or the
//! journal of the systemd unit), its last lines, filtered on the host, and with `follow` new
//! lines from every host at once until this process ends, which ends every remote `tail`.

use std::sync::mpsc;

use super::Target;
use super::config::Service;
use super::exec::{Ended, Line, streamed};

/// What to read.
#[derive(Debug, Clone)]
pub struct Query {
    pub lines: u32,
    pub follow: bool,
    /// `journalctl --since` (the journal only: the launcher's lines carry no time).
    pub since: Option<String>,
    /// A fixed string each line must hold.
    pub grep: Option<String>,
}

/// Read every target's log at once; lines go to `lines` as they come.
pub fn logs(
    targets: &[Target],
    name: &str,
    service: &Service,
    query: &Query,
    lines: &mpsc::Sender<Line>,
) -> Vec<Ended> {
    let unit = match service {
        Service::Systemd { unit } => unit.as_str(),
        Service::Launcher => "",
    };
    let count = query.lines.to_string();
    let follow = if query.follow { "1" } else { "0" };
    let args = [
        name,
        unit,
        &count,
        follow,
        query.since.as_deref().unwrap_or(""),
        query.grep.as_deref().unwrap_or(""),
    ];
    super::parallel(targets.to_vec(), |t| Ended {
        host: t.label.clone(),
        code: streamed(&t, "logs", &args, lines, query.follow).map_err(|e| format!("{e:#}")),
    })
}
