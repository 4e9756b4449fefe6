//! What a host reports and the pure decisions made from it: its state (`host.sh state`),
//! which files of a new release it already holds ([`Held`], [`plan_transfer`]), batches,
//! and reading an HTTP status line.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use super::{Event, History, Release};
use crate::archive::Format;
use crate::archive::manifest::{FileKind, FileRecord};

/// What `host.sh state` reports about one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// The deploy path, absolute, as the host resolves it.
    pub root: Option<String>,
    /// The user the host's steps run as (the deploy user).
    pub user: Option<String>,
    /// Whether the host has `zstd` (then transfers are zstd, or the bundle's own bytes).
    pub zstd: bool,
    pub current: Option<String>,
    /// Installed versions with their `SHA256SUMS` lines (digest, path).
    pub releases: BTreeMap<String, Vec<(String, String)>>,
    /// `MANIFEST.json` of the current release.
    pub manifest: Option<String>,
    pub events: Vec<Event>,
}

impl HostState {
    pub fn installed(&self) -> Vec<String> {
        self.releases.keys().cloned().collect()
    }
    pub fn history(&self) -> History {
        History::from_events(&self.events)
    }
}

pub fn parse_state(text: &str) -> Result<HostState> {
    let mut state = HostState::default();
    let mut section = "";
    let mut version = String::new();
    let mut manifest = String::new();
    let mut ended = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("@@rb ") {
            let (word, arg) = rest.split_once(' ').unwrap_or((rest, ""));
            match word {
                "root" => state.root = Some(arg.to_string()),
                "user" => state.user = Some(arg.to_string()).filter(|u| !u.is_empty()),
                "zstd" => state.zstd = arg == "yes",
                "current" => state.current = Some(arg.to_string()).filter(|v| !v.is_empty()),
                "release" => {
                    version = arg.to_string();
                    state.releases.insert(version.clone(), Vec::new());
                }
                "manifest" | "log" => {}
                "end" => ended = true,
                _ => bail!("unexpected line from the host: {line:?}"),
            }
            section = word;
            continue;
        }
        match section {
            "release" => {
                if let Some((digest, path)) = line.split_once("  ")
                    && let Some(list) = state.releases.get_mut(&version)
                {
                    list.push((digest.to_string(), path.to_string()));
                }
            }
            "manifest" => {
                manifest.push_str(line);
                manifest.push('\n');
            }
            "log" if !line.trim().is_empty() => state.events.push(
                serde_json::from_str(line)
                    .with_context(|| format!(".deploy/log.jsonl: not an event: {line:?}"))?,
            ),
            _ => {}
        }
    }
    if !ended {
        bail!("the host's report ended early");
    }
    state.manifest = Some(manifest).filter(|m| !m.trim().is_empty());
    Ok(state)
}

/// One file of the new release that the host already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldFile {
    /// Under `releases/`: `<version>/<path>`.
    pub from: String,
    pub to: String,
    /// As `stat -c %a` prints it (`755`).
    pub mode: String,
}

/// The files an installed release on a host holds, by digest (the current release's copies
/// first), so that a new release's files with those digests are hard-linked, not sent.
pub struct Held<'s> {
    by_digest: BTreeMap<&'s str, String>,
}

impl<'s> Held<'s> {
    pub fn new(state: &'s HostState) -> Held<'s> {
        let mut by_digest = BTreeMap::new();
        let mut order: Vec<&String> = state.releases.keys().collect();
        // The current release last, so that its copies win.
        order.sort_by_key(|v| Some(v.as_str()) == state.current.as_deref());
        for version in order {
            for (digest, path) in &state.releases[version] {
                by_digest.insert(digest.as_str(), format!("{version}/{path}"));
            }
        }
        Held { by_digest }
    }

    /// The link for one file of the new release, when the host holds its content.
    pub fn link(&self, file: &FileRecord) -> Option<HeldFile> {
        if file.kind == FileKind::Symlink {
            return None;
        }
        let from = self.by_digest.get(file.sha256.as_deref()?)?;
        let mode = u32::from_str_radix(&file.mode, 8).ok()?;
        Some(HeldFile {
            from: from.clone(),
            to: file.path.clone(),
            mode: format!("{mode:o}"),
        })
    }
}

/// What goes to one host: the links, and what is sent (files and their size before
/// compression).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferPlan {
    pub links: Vec<HeldFile>,
    pub files_sent: usize,
    pub bytes_sent_uncompressed: u64,
}

/// How a transfer travels to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// A plain tar (this machine: nothing to save).
    Tar,
    /// The changed files as a gzip tar (any host has gzip).
    Gzip,
    /// The changed files as a zstd tar (the host has zstd).
    Zstd,
    /// The bundle's own compressed bytes, nothing recompressed: a first deploy to a host that
    /// can decompress the bundle's format.
    Bundle,
}

impl Wire {
    /// The cheapest way to send `plan` to a host in `state`: the bundle as it is when nothing
    /// is held there and the host reads its format (gzip always, zstd when installed); else
    /// the changed files, as zstd when the host has it, gzip otherwise.
    pub fn choose(local: bool, state: &HostState, plan: &TransferPlan, bundle: Format) -> Wire {
        let readable = bundle == Format::TarGz || state.zstd;
        match () {
            _ if local => Wire::Tar,
            _ if plan.links.is_empty() && readable => Wire::Bundle,
            _ if state.zstd => Wire::Zstd,
            _ => Wire::Gzip,
        }
    }

    /// How `host.sh receive` is told what arrives.
    pub fn step_arg(self, bundle: Format) -> &'static str {
        match (self, bundle) {
            (Wire::Tar, _) => "tar",
            (Wire::Gzip, _) => "gz",
            (Wire::Zstd, _) => "zst",
            (Wire::Bundle, Format::TarGz) => "bundle-gz",
            (Wire::Bundle, Format::TarZst) => "bundle-zst",
        }
    }
}

/// Plan the transfer to a host from the release's spooled `MANIFEST.json`, streamed (the
/// file list is never held whole).
pub fn plan_transfer(release: &Release, state: &HostState) -> Result<TransferPlan> {
    let held = Held::new(state);
    let mut plan = TransferPlan::default();
    let parsed =
        crate::archive::manifest::parse_streaming(&release.manifest_spool, &mut |f| match held
            .link(&f)
        {
            Some(link) => plan.links.push(link),
            None if f.kind != FileKind::Symlink => {
                plan.files_sent += 1;
                plan.bytes_sent_uncompressed += f.size;
            }
            None => {}
        })
        .context("cannot read the spooled manifest")?;
    parsed.context("the bundle's MANIFEST.json does not parse")?;
    Ok(plan)
}

/// Hosts in batches of `size`, in order.
pub fn batches(hosts: usize, size: usize) -> Vec<std::ops::Range<usize>> {
    (0..hosts)
        .step_by(size.max(1))
        .map(|s| s..(s + size.max(1)).min(hosts))
        .collect()
}

/// The status of an HTTP reply, from its first line.
pub fn http_status(reply: &[u8]) -> Option<u16> {
    let line = reply.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_is_the_cheapest_the_host_reads() {
        let link = HeldFile {
            from: "1.0.0/a".into(),
            to: "a".into(),
            mode: "644".into(),
        };
        let first = TransferPlan::default();
        let upgrade = TransferPlan {
            links: vec![link],
            ..TransferPlan::default()
        };
        let host = |zstd| HostState {
            zstd,
            ..HostState::default()
        };
        let cases = [
            (true, true, &first, Format::TarZst, Wire::Tar),
            (false, true, &first, Format::TarZst, Wire::Bundle),
            (false, false, &first, Format::TarZst, Wire::Gzip),
            (false, false, &first, Format::TarGz, Wire::Bundle),
            (false, true, &upgrade, Format::TarZst, Wire::Zstd),
            (false, false, &upgrade, Format::TarGz, Wire::Gzip),
        ];
        for (local, zstd, plan, format, want) in cases {
            assert_eq!(
                Wire::choose(local, &host(zstd), plan, format),
                want,
                "{local} {zstd} {format:?}"
            );
        }
        assert_eq!(Wire::Bundle.step_arg(Format::TarZst), "bundle-zst");
    }

    #[test]
    fn state_reports_parse() {
        let text = "@@rb current 1.1.0\n@@rb release 1.0.0\naaa  bin/x\n@@rb release 1.1.0\nbbb  bin/x\nccc  priv/a b\n@@rb manifest 1.1.0\n{\"name\": \"x\"}\n@@rb log\n{\"event\":\"marked-bad\",\"version\":\"1.0.0\",\"time\":1}\n@@rb end\n";
        let s = parse_state(text).unwrap();
        assert_eq!(s.current.as_deref(), Some("1.1.0"));
        assert_eq!(s.installed(), ["1.0.0", "1.1.0"]);
        assert_eq!(s.releases["1.1.0"][1], ("ccc".into(), "priv/a b".into()));
        assert_eq!(s.history().bad, ["1.0.0"]);
        assert!(s.manifest.unwrap().contains("name"));
        assert!(
            parse_state("@@rb current \n").is_err(),
            "a cut-off report is an error"
        );
        let empty = parse_state("@@rb current \n@@rb log\n@@rb end\n").unwrap();
        assert_eq!(empty.current, None);
    }

    #[test]
    fn held_files_are_linked_from_the_current_release_first() {
        let text = "@@rb current 1.1.0\n@@rb release 1.0.0\naaa  bin/x\nbbb  priv/old\n@@rb release 1.1.0\naaa  libexec/x\n@@rb log\n@@rb end\n";
        let state = parse_state(text).unwrap();
        let held = Held::new(&state);
        let file = |path: &str, sha: &str, mode: &str, kind| FileRecord {
            path: path.into(),
            kind,
            mode: mode.into(),
            size: 1,
            sha256: Some(sha.into()),
            target: None,
        };
        let l = held
            .link(&file("libexec/x", "aaa", "0755", FileKind::Executable))
            .unwrap();
        assert_eq!(
            (l.from.as_str(), l.to.as_str(), l.mode.as_str()),
            ("1.1.0/libexec/x", "libexec/x", "755")
        );
        let l = held
            .link(&file("priv/new", "bbb", "0644", FileKind::Priv))
            .unwrap();
        assert_eq!(l.from, "1.0.0/priv/old");
        assert!(
            held.link(&file("priv/c", "ccc", "0644", FileKind::Priv))
                .is_none()
        );
        assert!(
            held.link(&file("bin/l", "aaa", "0777", FileKind::Symlink))
                .is_none()
        );
    }

    #[test]
    fn batches_cover_every_host_once() {
        assert_eq!(batches(5, 2), [0..2, 2..4, 4..5]);
        assert_eq!(batches(3, 3).len(), 1);
        assert_eq!(batches(3, 3)[0], 0..3);
        assert_eq!(batches(0, 1), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn http_statuses() {
        assert_eq!(http_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(http_status(b"HTTP/1.0 503 x\r\n\r\n"), Some(503));
        assert_eq!(http_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(http_status(b""), None);
    }
}
