//! The release command (`deploy.release-command`, a migration usually): run exactly once per
//! deploy, on the primary host, from the new release's directory with that host's
//! `shared/env`, after every host has staged and before any host switches. Its output
//! streams into the report; a failure stops the deploy with nothing switched.

use std::sync::mpsc;

use anyhow::{Result, bail};

use super::exec::{Line, streamed};
use super::notes::{Happened, HostNotes, Notes};
use super::session::Session;
use super::{Event, Options, Release, now};

/// The session of the primary host: `deploy.primary`, else the first configured host, else
/// the only one (`install`).
fn primary<'a>(sessions: &'a [Session], opts: &Options) -> Option<&'a Session> {
    let s = &opts.settings;
    match super::whole::primary(&s.whole, &s.hosts) {
        Some(label) => sessions.iter().find(|x| &x.target.label == label),
        None => sessions.first(),
    }
}

/// Run it when it is configured and some host will switch to `release`.
pub fn run(sessions: &[Session], release: &Release, opts: &Options, tx: &Notes) -> Result<()> {
    let Some(command) = &opts.settings.whole.release_command else {
        return Ok(());
    };
    let (name, version) = (&release.manifest.name, &release.manifest.version);
    if sessions
        .iter()
        .all(|s| s.state.current.as_ref() == Some(version))
    {
        return Ok(());
    }
    let Some(session) = primary(sessions, opts) else {
        bail!("deploy.primary names no host of this deploy; nothing was switched");
    };
    let label = &session.target.label;
    let notes = HostNotes { tx, host: label };
    let text = command.join(" ");
    if opts.skip_release_command {
        let time = now();
        session.log(&Event::ReleaseCommandSkipped {
            version: version.clone(),
            time,
        })?;
        notes.push(Happened::ReleaseCommandSkipped {
            version: version.clone(),
        });
        return Ok(());
    }
    notes.push(Happened::ReleaseCommand {
        version: version.clone(),
        command: text.clone(),
    });
    let mut args: Vec<&str> = vec![version, name];
    args.extend(command.iter().map(String::as_str));
    let (lines_tx, lines) = mpsc::channel::<Line>();
    let code = std::thread::scope(|scope| {
        scope.spawn(|| {
            for line in lines {
                let line = crate::output::printable(&line.text, 1)
                    .trim_end()
                    .to_string();
                notes.push(Happened::Output {
                    stderr: false,
                    line,
                });
            }
        });
        let code = streamed(&session.target, "release-command", &args, &lines_tx, false);
        drop(lines_tx);
        code
    })?;
    notes.push(Happened::ReleaseCommandDone {
        version: version.clone(),
        code,
    });
    let time = now();
    if code != 0 {
        let (version, command) = (version.clone(), text.clone());
        session.log(&Event::ReleaseCommandFailed {
            version,
            command,
            code,
            time,
        })?;
        bail!("{label}: the release command `{text}` exited {code}; no host was switched");
    }
    session.log(&Event::ReleaseCommandRan {
        version: version.clone(),
        command: text,
        time,
    })?;
    Ok(())
}
