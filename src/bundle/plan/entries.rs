//! The plan's entries in canonical order: the ones known up front merged with the directory
//! trees as they are walked (a k-way merge of sorted streams), each checked as it passes:
//! conflicts between sources, names the archive can hold, case clashes, symlink shapes.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow, bail};

use super::*;
use crate::archive;

/// What a full pass over the entries found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Directories, files and symlinks, the binaries included.
    pub entries: usize,
    /// Bytes of the files copied from disk (binaries are counted after the build).
    pub bytes: u64,
}

impl BundlePlan {
    /// Add a file generated after planning (the SBOM, which needs the build's resolved
    /// features) at `path` in the top directory. A file planned at the same path is an
    /// error, here or, for a tree's file, when the entries are merged.
    pub fn add_generated(&mut self, path: &str, bytes: Vec<u8>, kind: FileKind) -> Result<()> {
        if let Some((_, by)) = self.fixed.iter().find(|(e, _)| e.path == path) {
            let (entry, _) = self
                .fixed
                .iter()
                .find(|(e, _)| e.path == path)
                .ok_or_else(|| anyhow!("{path}"))?;
            bail!(
                "two files land on `{path}`: {} and the generated one",
                describe_claim(entry, *by, &self.includes)
            );
        }
        let at = self
            .fixed
            .partition_point(|(e, _)| e.path.as_bytes() < path.as_bytes());
        let entry = Entry {
            path: path.to_string(),
            content: Content::Generated(bytes),
            mode: archive::MODE_FILE,
            kind: Some(kind),
        };
        self.fixed.insert(at, (entry, Claimant::Generated));
        Ok(())
    }

    /// The content of a file added by [`BundlePlan::add_generated`].
    pub fn set_generated(&mut self, path: &str, bytes: Vec<u8>) -> Result<()> {
        match self
            .fixed
            .iter_mut()
            .find(|(e, by)| e.path == path && *by == Claimant::Generated)
        {
            Some((entry, _)) => {
                entry.content = Content::Generated(bytes);
                Ok(())
            }
            None => bail!("`{path}` was not planned"),
        }
    }

    /// Every entry of the bundle in canonical (bytewise) order, each checked as it passes:
    /// conflicts, names the archive can hold, case clashes, symlinks that stay inside. Stops
    /// after the first error. Whether symlinks point at entries that exist, and whether every
    /// include shipped something, is known only after a full pass: see [`BundlePlan::check`].
    pub fn entries<'p>(&'p self, walk: &Walker) -> Entries<'p> {
        let fixed = self.fixed.iter().map(|(e, by)| Ok((e.clone(), *by)));
        let mut streams: Vec<Stream<'p>> = vec![Stream::new(Box::new(fixed), None)];
        for tree in &self.trees {
            let excludes = Arc::clone(&self.excludes);
            let base = tree.base.clone();
            let keep = Box::new(move |rel: &str| {
                // The root was checked with its ancestors when planned; a refused directory is
                // never entered, so each path below only needs checking itself.
                rel.is_empty() || excludes.is_empty() || !excludes.is_match(join(&base, rel))
            });
            let found = walk(&tree.root, &self.skip, keep).map(move |found| {
                let found = found?;
                let path = join(&tree.base, &found.rel);
                Ok((entry_for(found, path, tree.kind, tree.mode), tree.by))
            });
            let include = match tree.by {
                Claimant::Include(i) => Some(i),
                _ => None,
            };
            streams.push(Stream::new(Box::new(found), include));
        }
        Entries {
            plan: self,
            streams,
            case_clashes: archive::CaseClashes::default(),
            shipped: vec![0; self.includes.len()],
            links: Vec::new(),
            totals: Totals::default(),
            failed: false,
        }
    }

    /// One full pass over the entries: every per-entry check, then that symlinks point at
    /// entries that exist and that every include shipped something. Symlink targets behind
    /// the link are looked up in a second pass, run only when the bundle has symlinks.
    pub fn check(&self, walk: &Walker) -> Result<Totals> {
        let mut entries = self.entries(walk);
        for entry in entries.by_ref() {
            entry?;
        }
        let (totals, links) = entries.finish()?;
        if links.is_empty() {
            return Ok(totals);
        }
        let targets: BTreeMap<&str, &str> = links
            .iter()
            .map(|l| (l.path.as_str(), l.target.as_str()))
            .collect();
        let mut resolved = Vec::with_capacity(links.len());
        for link in &links {
            match archive::resolve_link_through(&link.path, &link.target, |p| {
                targets.get(p).copied()
            }) {
                Ok(r) => resolved.push(r),
                Err(why) => bail!(
                    "symlink `{}` (from {}) points to `{}`, which {why}",
                    link.path,
                    link.from,
                    link.target
                ),
            }
        }
        let mut wanted: BTreeSet<&str> = resolved.iter().map(String::as_str).collect();
        wanted.remove("");
        for entry in self.entries(walk) {
            wanted.remove(entry?.path.as_str());
        }
        if let Some((link, _)) = links
            .iter()
            .zip(&resolved)
            .find(|(_, r)| wanted.contains(r.as_str()))
        {
            bail!(
                "symlink `{}` (from {}) points to `{}`, which is not in the bundle",
                link.path,
                link.from,
                link.target
            );
        }
        Ok(totals)
    }
}

type Claims<'p> = Box<dyn Iterator<Item = Result<(Entry, Claimant)>> + 'p>;

/// One source of entries in canonical order, with its next entry read ahead.
struct Stream<'p> {
    rest: Claims<'p>,
    head: Option<Result<(Entry, Claimant)>>,
    /// The include rule a tree stream ships for.
    include: Option<usize>,
}

impl<'p> Stream<'p> {
    fn new(mut rest: Claims<'p>, include: Option<usize>) -> Self {
        let head = rest.next();
        Stream {
            rest,
            head,
            include,
        }
    }

    fn path(&self) -> Option<&str> {
        match &self.head {
            Some(Ok((e, _))) => Some(&e.path),
            _ => None,
        }
    }
}

/// A symlink seen in a pass, for the check that its target exists.
struct PlannedLink {
    path: String,
    target: String,
    from: String,
}

/// The merged, checked entries of a plan: see [`BundlePlan::entries`].
pub struct Entries<'p> {
    plan: &'p BundlePlan,
    streams: Vec<Stream<'p>>,
    case_clashes: archive::CaseClashes,
    shipped: Vec<usize>,
    links: Vec<PlannedLink>,
    totals: Totals,
    failed: bool,
}

impl Entries<'_> {
    fn fail(&self, by: Claimant, msg: String) -> anyhow::Error {
        match origin_of(by, &self.plan.includes) {
            Some(o) => anyhow!("{o}: {msg}"),
            None => anyhow!("{msg}"),
        }
    }

    /// The next entry, with conflicts between sources resolved or refused.
    fn merged(&mut self) -> Option<Result<(Entry, Claimant)>> {
        if let Some(stream) = self
            .streams
            .iter_mut()
            .find(|s| matches!(s.head, Some(Err(_))))
        {
            return stream.head.take();
        }
        let least = self
            .streams
            .iter()
            .filter_map(Stream::path)
            .min()?
            .to_string();
        let mut claims: Vec<(Entry, Claimant)> = Vec::new();
        for stream in &mut self.streams {
            if stream.path() != Some(&least) {
                continue;
            }
            let next = stream.rest.next();
            if let Some(Ok(claim)) = std::mem::replace(&mut stream.head, next) {
                if let Some(i) = stream.include {
                    self.shipped[i] += 1;
                }
                claims.push(claim);
            }
        }
        claims.sort_by_key(|(_, by)| *by);
        let mut claims = claims.into_iter();
        let first = claims.next()?;
        for (entry, by) in claims {
            let (kept, other) = (&first.0, first.1);
            if kept.content == Content::Dir && entry.content == Content::Dir {
                continue;
            }
            let includes = &self.plan.includes;
            let (a, b) = (
                describe_claim(kept, other, includes),
                describe_claim(&entry, by, includes),
            );
            let msg = if kept.content == Content::Dir || entry.content == Content::Dir {
                let (dir, file) = if kept.content == Content::Dir {
                    (a, b)
                } else {
                    (b, a)
                };
                format!("`{least}` is a directory of {dir}, but {file} puts a file there")
            } else {
                format!("two files land on `{least}`: {a} and {b}")
            };
            return Some(Err(self.fail(by, msg)));
        }
        Some(Ok(first))
    }

    /// Checks on one entry that need no more than the entries around it.
    fn check(&mut self, entry: &Entry, by: Claimant) -> Result<()> {
        let path = entry.path.as_str();
        let from = || describe_claim(entry, by, &self.plan.includes);
        if path == archive::MANIFEST || path == archive::SHA256SUMS {
            return Err(self.fail(
                by,
                format!("`{path}` is reserved for the bundle's own metadata"),
            ));
        }
        let full = format!("{}/{path}", self.plan.top_dir);
        archive::check_entry_name(&full)
            .map_err(|why| anyhow!("`{path}` (from {}): bundle path {why}", from()))?;

        if let Some(other) = self.case_clashes.clash(path) {
            bail!(
                "`{other}` and `{path}` differ only in case, which breaks extraction on macOS and Windows (from {})",
                from()
            );
        }

        match &entry.content {
            Content::Symlink { target, .. } => {
                if target.starts_with('/') {
                    bail!(
                        "symlink `{path}` (from {}) points to the absolute path `{target}`; only relative links inside the bundle are allowed",
                        from()
                    );
                }
                archive::check_link_target(target)
                    .map_err(|why| anyhow!("`{path}` (from {}): symlink {why}", from()))?;
                if archive::resolve_link(path, target).is_none() {
                    bail!(
                        "symlink `{path}` (from {}) points to `{target}`, which leaves the bundle",
                        from()
                    );
                }
                self.links.push(PlannedLink {
                    path: path.to_string(),
                    target: target.clone(),
                    from: from(),
                });
            }
            Content::File { size, .. } => self.totals.bytes += size,
            _ => {}
        }
        self.totals.entries += 1;
        Ok(())
    }

    /// After a full pass: refuse includes that shipped nothing; hand back the totals and the
    /// symlinks seen.
    fn finish(self) -> Result<(Totals, Vec<PlannedLink>)> {
        for (info, shipped) in self.plan.includes.iter().zip(&self.shipped) {
            if info.shipped + shipped == 0 {
                let why = if info.matches == 0 {
                    ""
                } else {
                    " (everything it matches is excluded)"
                };
                bail!(
                    "{}: {:?} matches nothing{why}",
                    info.source_origin,
                    info.source
                );
            }
        }
        Ok((self.totals, self.links))
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if self.failed {
            return None;
        }
        let result = self
            .merged()?
            .and_then(|(entry, by)| self.check(&entry, by).map(|()| entry));
        self.failed = result.is_err();
        Some(result)
    }
}
