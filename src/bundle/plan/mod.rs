//! Planning: what the bundle will contain and where, decided before anything is built.
//!
//! Pure: no file system, no processes. Takes the validated config, the package's bin targets
//! and the scanned sources; returns a [`BundlePlan`] or an error naming the key or path at
//! fault. Binaries are *named* here and *located* after the build.
//!
//! Directory trees (priv, directory includes) are not held in the plan: [`BundlePlan::entries`]
//! merges them, listed by a walker in canonical order, with the entries known up front, and
//! checks every entry as it passes. Memory follows the widest directory, not the file count.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use camino::{Utf8Path, Utf8PathBuf};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::archive::{self, MODE_DIR, MODE_EXEC, MODE_FILE, MODE_SYMLINK, manifest::FileKind};
use crate::bundle::launcher;
use crate::bundle::sources::{Found, Match, Node, Sources};
use crate::config::{HookName, Origin, ReleaseConfig};

/// What the planner needs to know about the package.
#[derive(Debug, Clone)]
pub struct PackageFacts {
    pub name: String,
    pub version: String,
    /// The manifest as shown to the user.
    pub manifest: Utf8PathBuf,
    /// Names of the package's bin targets.
    pub bin_targets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Dir,
    /// A bin target, located after the build.
    Binary(String),
    /// A file copied from disk.
    File {
        source: Utf8PathBuf,
        size: u64,
    },
    Symlink {
        target: String,
        source: Utf8PathBuf,
    },
    /// Rendered at plan time (the launcher).
    Generated(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the top directory.
    pub path: String,
    pub content: Content,
    pub mode: u32,
    /// Manifest kind; `None` for directories.
    pub kind: Option<FileKind>,
}

/// Lists one directory tree in canonical order: `(root, skip, keep)`, where `keep(rel)` says
/// whether an entry (and, for a directory, what is below it) is wanted.
pub type Walker = dyn Fn(
    &Utf8Path,
    &[Utf8PathBuf],
    Box<dyn Fn(&str) -> bool>,
) -> Box<dyn Iterator<Item = Result<Found>>>;

/// A directory tree shipped below `base`, listed when the entries are.
#[derive(Debug, Clone)]
pub struct TreeRule {
    pub root: Utf8PathBuf,
    /// Bundle path of the root.
    pub base: String,
    kind: FileKind,
    mode: Option<u32>,
    by: Claimant,
}

/// An include rule, as far as messages and the "matches nothing" check need it.
#[derive(Debug, Clone)]
struct IncludeInfo {
    key: String,
    source: String,
    source_origin: Origin,
    dest_origin: Origin,
    /// How many matches the scan found.
    matches: usize,
    /// Entries shipped from single-file matches.
    shipped: usize,
}

#[derive(Debug, Clone)]
pub struct BundlePlan {
    pub name: String,
    pub version: String,
    pub target: String,
    pub top_dir: String,
    /// `<name>-<version>-<target>.<ext>`
    pub file_name: String,
    /// Bin targets cargo must build.
    pub binaries: Vec<String>,
    /// Whether the keeper ships (the release has `listen`).
    pub keeper: bool,
    /// The executable the release runs (the launcher's and the image's): decided here, once.
    /// `None` only without a launcher when several binaries ship and none is chosen.
    pub main: Option<String>,
    /// Entries known without walking a tree, sorted bytewise by path: binaries, the launcher,
    /// hooks, single-file includes, and the directories above them and above every tree.
    fixed: Vec<(Entry, Claimant)>,
    trees: Vec<TreeRule>,
    /// Directories no walk enters.
    skip: Vec<Utf8PathBuf>,
    excludes: Arc<GlobSet>,
    includes: Vec<IncludeInfo>,
}

/// Where an entry came from, for conflict messages (described only when one is needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Claimant {
    /// Generated after planning (the SBOM).
    Generated,
    Binary,
    Launcher,
    Hook(HookName),
    Priv,
    Include(usize),
}

fn describe_claim(entry: &Entry, by: Claimant, includes: &[IncludeInfo]) -> String {
    let source = match &entry.content {
        Content::File { source, .. } | Content::Symlink { source, .. } => Some(source),
        _ => None,
    };
    match (by, source) {
        (Claimant::Binary, _) => match &entry.content {
            Content::Binary(bin) => format!("binary `{bin}`"),
            _ => "the binaries".into(),
        },
        (Claimant::Launcher, _) => "the launcher".into(),
        (Claimant::Generated, _) => format!("the generated `{}`", entry.path),
        (Claimant::Hook(h), _) => format!("the {} hook", h.as_str()),
        (Claimant::Priv, Some(source)) => format!("the priv file `{source}`"),
        (Claimant::Priv, None) => "the priv directory".into(),
        (Claimant::Include(i), source) => {
            let key = includes.get(i).map_or("include", |r| r.key.as_str());
            match source {
                Some(source) => format!("{key} (`{source}`)"),
                None => key.to_string(),
            }
        }
    }
}

/// The `dest` of the include behind `by`, which errors about its entries name.
fn origin_of(by: Claimant, includes: &[IncludeInfo]) -> Option<&Origin> {
    match by {
        Claimant::Include(i) => includes.get(i).map(|r| &r.dest_origin),
        _ => None,
    }
}

/// The entries known at plan time, with the directories they imply.
struct KnownEntries<'i> {
    entries: BTreeMap<String, (Entry, Claimant)>,
    includes: &'i [IncludeInfo],
}

impl KnownEntries<'_> {
    fn fail(&self, by: Claimant, msg: String) -> anyhow::Error {
        match origin_of(by, self.includes) {
            Some(o) => anyhow!("{o}: {msg}"),
            None => anyhow!("{msg}"),
        }
    }

    /// Make every parent of `path` a directory.
    fn parents(&mut self, path: &str, by: Claimant) -> Result<()> {
        let mut parent = path;
        while let Some((p, _)) = parent.rsplit_once('/') {
            parent = p;
            match self.entries.get(p) {
                Some((e, other)) if e.content != Content::Dir => {
                    let other = describe_claim(e, *other, self.includes);
                    return Err(self.fail(
                        by,
                        format!(
                            "`{path}` needs `{p}` to be a directory, but {other} puts a file there"
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    let dir = Entry {
                        path: p.to_string(),
                        content: Content::Dir,
                        mode: MODE_DIR,
                        kind: None,
                    };
                    self.entries.insert(p.to_string(), (dir, by));
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, entry: Entry, by: Claimant) -> Result<()> {
        self.parents(&entry.path, by)?;
        if let Some((existing, other)) = self.entries.get(&entry.path) {
            if existing.content == Content::Dir && entry.content == Content::Dir {
                return Ok(());
            }
            let msg = format!(
                "two files land on `{}`: {} and {}",
                entry.path,
                describe_claim(existing, *other, self.includes),
                describe_claim(&entry, by, self.includes)
            );
            return Err(self.fail(by, msg));
        }
        self.entries.insert(entry.path.clone(), (entry, by));
        Ok(())
    }
}

/// `(kind, source)` of an entry, for `plan` output.
pub fn describe(e: &Entry) -> (&'static str, String) {
    let kind = match e.kind {
        None => "dir",
        Some(FileKind::Executable) => "executable",
        Some(FileKind::Launcher) => "launcher",
        Some(FileKind::Hook) => "hook",
        Some(FileKind::Priv) => "priv",
        Some(FileKind::Include) => "include",
        Some(FileKind::Symlink) => "symlink",
        Some(FileKind::Sbom) => "sbom",
    };
    let source = match &e.content {
        Content::Dir => String::new(),
        Content::Binary(bin) => format!("bin target `{bin}` (built)"),
        Content::File { source, .. } => source.to_string(),
        Content::Symlink { target, .. } => format!("-> {target}"),
        Content::Generated(_) => "generated".into(),
    };
    (kind, source)
}

/// Normalise an include `dest`: strip `./`, refuse absolute paths and escapes.
/// Returns the directory-or-file path and whether it names a directory.
fn normalize_dest(dest: &str, origin: &Origin) -> Result<(String, bool)> {
    if dest.starts_with('/') {
        bail!(
            "{origin}: {dest:?} is absolute; destinations are relative to the bundle's top directory"
        );
    }
    let is_dir = dest.is_empty() || dest.ends_with('/') || dest == "." || dest.ends_with("/.");
    let mut parts: Vec<&str> = Vec::new();
    for part in dest.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    bail!("{origin}: {dest:?} leaves the bundle");
                }
            }
            p => parts.push(p),
        }
    }
    Ok((parts.join("/"), is_dir || parts.is_empty()))
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

fn entry_for(found: Found, path: String, kind: FileKind, mode: Option<u32>) -> Entry {
    let source = found.source;
    let (content, mode, kind) = match found.node {
        Node::Dir => (Content::Dir, MODE_DIR, None),
        Node::File { size, exec } => (
            Content::File { source, size },
            mode.unwrap_or(if exec { MODE_EXEC } else { MODE_FILE }),
            Some(kind),
        ),
        Node::Symlink { target } => (
            Content::Symlink { target, source },
            MODE_SYMLINK,
            Some(FileKind::Symlink),
        ),
    };
    Entry {
        path,
        content,
        mode,
        kind,
    }
}

fn exclude_set(config: &ReleaseConfig) -> Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for g in &config.exclude {
        let glob = GlobBuilder::new(&g.value)
            .literal_separator(true)
            .build()
            .map_err(|e| {
                anyhow!(
                    "{}: {:?} is not a valid glob: {}",
                    g.origin,
                    g.value,
                    e.kind()
                )
            })?;
        set.add(glob);
    }
    Ok(set.build()?)
}

/// Whether `path` or one of its ancestors is excluded.
fn excluded(set: &GlobSet, path: &str) -> bool {
    !set.is_empty()
        && std::iter::successors(Some(path), |p| p.rsplit_once('/').map(|(a, _)| a))
            .any(|p| set.is_match(p))
}

/// The bundle plan of one package: its binaries, the launcher and hooks, priv and the
/// include rules, as sorted known entries and trees to walk. No I/O: `sources` were found
/// before.
pub fn plan(
    package: &PackageFacts,
    config: &ReleaseConfig,
    sources: Sources,
    target: &str,
) -> Result<BundlePlan> {
    let top_dir = format!("{}-{}", config.name, package.version);
    let binaries = binaries(package, config)?;
    let includes: Vec<IncludeInfo> = config
        .include
        .iter()
        .zip(&sources.includes)
        .map(|(rule, matches)| IncludeInfo {
            key: rule.origin.key.clone(),
            source: rule.value.source.clone(),
            source_origin: rule.origin.child("source"),
            dest_origin: rule.origin.child("dest"),
            matches: matches.matches.len(),
            shipped: 0,
        })
        .collect();
    let mut fixed = KnownEntries {
        entries: BTreeMap::new(),
        includes: &includes,
    };
    // The launcher is a POSIX sh script: Windows bundles ship their executables in bin/.
    let with_launcher = config.launcher.enabled && !target.contains("windows");
    add_binaries(&mut fixed, &binaries, target, with_launcher)?;
    let keeper = add_keeper(&mut fixed, config, &binaries, with_launcher)?;
    let main = main_binary(package, config, &binaries);
    if with_launcher {
        let main = main.as_ref().map_err(|e| anyhow!("{e}"))?.clone();
        add_launcher(&mut fixed, package, config, &binaries, main, sources.hooks)?;
    }
    let excludes = exclude_set(config)?;
    let mut trees = Vec::new();
    if let Some(root) = sources.priv_root.filter(|_| !excluded(&excludes, "priv")) {
        trees.push(TreeRule {
            root,
            base: "priv".into(),
            kind: FileKind::Priv,
            mode: None,
            by: Claimant::Priv,
        });
    }
    let shipped = add_includes(&mut fixed, &mut trees, config, sources.includes, &excludes)?;
    let fixed: Vec<(Entry, Claimant)> = fixed.entries.into_values().collect();
    let includes = includes
        .into_iter()
        .zip(shipped)
        .map(|(info, shipped)| IncludeInfo { shipped, ..info })
        .collect();
    Ok(BundlePlan {
        name: config.name.clone(),
        version: package.version.clone(),
        target: target.to_string(),
        file_name: format!("{top_dir}-{target}.{}", config.format.extension()),
        top_dir,
        binaries,
        keeper,
        main: main.ok(),
        fixed,
        trees,
        skip: sources.skip,
        excludes: Arc::new(excludes),
        includes,
    })
}

/// The bin targets to ship (`bins`, else all), each existing once; every binary the launcher
/// runs among them.
fn binaries(package: &PackageFacts, config: &ReleaseConfig) -> Result<Vec<String>> {
    let available = package.bin_targets.join(", ");
    let binaries: Vec<String> = match &config.bins {
        Some(bins) => {
            let mut seen = BTreeSet::new();
            for b in bins {
                if !package.bin_targets.contains(&b.value) {
                    bail!(
                        "{}: {:?} is not a bin target of package `{}` (it has: {available})",
                        b.origin,
                        b.value,
                        package.name
                    );
                }
                if !seen.insert(&b.value) {
                    bail!("{}: {:?} is listed twice", b.origin, b.value);
                }
            }
            bins.iter().map(|b| b.value.clone()).collect()
        }
        None => package.bin_targets.clone(),
    };
    if binaries.is_empty() {
        bail!(
            "{}: package `{}` has no bin targets to ship",
            package.manifest,
            package.name
        );
    }
    let launcher = &config.launcher;
    let launched = launcher
        .main
        .iter()
        .chain(launcher.commands.values().map(|c| &c.value.bin))
        .chain(launcher.processes.values().map(|p| &p.value.bin));
    for (name, p) in &launcher.processes {
        if launcher.commands.contains_key(name) {
            bail!(
                "{}: `{name}` is also a command; a process and a command may not share a name",
                p.origin
            );
        }
    }
    for bin in launched {
        if !binaries.contains(&bin.value) {
            bail!(
                "{}: {:?} is not one of the shipped binaries ({})",
                bin.origin,
                bin.value,
                binaries.join(", ")
            );
        }
    }
    Ok(binaries)
}

/// `bin/<name>` and the hook scripts.
fn add_launcher(
    fixed: &mut KnownEntries,
    package: &PackageFacts,
    config: &ReleaseConfig,
    binaries: &[String],
    main: String,
    hooks: Vec<(HookName, Found)>,
) -> Result<()> {
    let spec = launcher_spec(package, config, binaries, main)?;
    let entry = Entry {
        path: format!("bin/{}", config.name),
        content: Content::Generated(launcher::render(&spec).into_bytes()),
        mode: MODE_EXEC,
        kind: Some(FileKind::Launcher),
    };
    fixed.add(entry, Claimant::Launcher)?;
    for (hook, found) in hooks {
        let entry = entry_for(
            found,
            format!("hooks/{}.sh", hook.as_str()),
            FileKind::Hook,
            Some(MODE_EXEC),
        );
        fixed.add(entry, Claimant::Hook(hook)).map_err(|e| {
            match config.launcher.hooks.get(&hook) {
                Some(h) => anyhow!("{}: {e}", h.origin),
                None => e,
            }
        })?;
    }
    Ok(())
}

/// The include rules' matches: single files as known entries, directories as trees to walk.
/// How many entries each rule ships.
fn add_includes(
    fixed: &mut KnownEntries,
    trees: &mut Vec<TreeRule>,
    config: &ReleaseConfig,
    matches: Vec<crate::bundle::sources::IncludeMatches>,
    excludes: &GlobSet,
) -> Result<Vec<usize>> {
    let mut shipped = vec![0; matches.len()];
    for (index, (rule, matches)) in config.include.iter().zip(matches).enumerate() {
        let dest_origin = rule.origin.child("dest");
        let (dest, dest_is_dir) = normalize_dest(&rule.value.dest, &dest_origin)?;
        let files = matches.matches.len();
        if files > 1 && !dest_is_dir {
            bail!(
                "{dest_origin}: {:?} matches {files} files but dest {:?} names a single file\nhelp: end `dest` with `/` to copy them into a directory",
                rule.value.source,
                rule.value.dest
            );
        }
        for (matched, found) in matches.matches {
            let base = if dest_is_dir {
                let name = matched.rsplit('/').next().unwrap_or(&matched);
                join(&dest, name)
            } else {
                dest.clone()
            };
            if base.is_empty() {
                bail!(
                    "{dest_origin}: {:?} would replace the bundle's top directory",
                    rule.value.dest
                );
            }
            if excluded(excludes, &base) {
                continue;
            }
            if base == archive::MANIFEST || base == archive::SHA256SUMS {
                bail!("{dest_origin}: `{base}` is reserved for the bundle's own {base}");
            }
            let by = Claimant::Include(index);
            match found {
                Match::One(found) => {
                    fixed.add(
                        entry_for(found, base, FileKind::Include, rule.value.mode),
                        by,
                    )?;
                    shipped[index] += 1;
                }
                Match::Tree(root) => {
                    fixed.parents(&base, by)?;
                    trees.push(TreeRule {
                        root,
                        base,
                        kind: FileKind::Include,
                        mode: rule.value.mode,
                        by,
                    });
                }
            }
        }
    }
    Ok(shipped)
}

mod entries;
mod executables;
mod spec;
use executables::{add_binaries, add_keeper};
use spec::{launcher_spec, main_binary};

pub use entries::{Entries, Totals};

#[cfg(test)]
mod tests;
