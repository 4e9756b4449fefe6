//! Planning: what the bundle will contain and where, decided before anything is built.
//!
//! Pure: no file system, no processes. Takes the validated config, the package's bin targets
//! and the scanned sources; returns a [`BundlePlan`] whose entries are already in canonical
//! (bytewise) order, or an error naming the key or path at fault. Binaries are *named* here
//! and *located* after the build.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow, bail};
use camino::Utf8PathBuf;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::archive::{self, MODE_DIR, MODE_EXEC, MODE_FILE, MODE_SYMLINK, manifest::FileKind};
use crate::config::{Format, HookName, Origin, ReleaseConfig};
use crate::launcher::{self, CustomCommand, LauncherSpec};
use crate::sources::{Found, Node, Sources};

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundlePlan {
    pub name: String,
    pub version: String,
    pub target: String,
    pub top_dir: String,
    /// `<name>-<version>-<target>.<ext>`
    pub file_name: String,
    pub format: Format,
    /// Bin targets cargo must build.
    pub binaries: Vec<String>,
    /// Canonical order: sorted bytewise by path (the top directory itself is implicit).
    pub entries: Vec<Entry>,
}

/// Where an entry came from, for conflict messages (described only when one is needed).
#[derive(Debug, Clone, Copy)]
enum By {
    Binary,
    Launcher,
    Hook(HookName),
    Priv,
    Include(usize),
}

#[derive(Debug, Clone)]
struct Claim {
    entry: Entry,
    by: By,
}

impl Claim {
    fn describe(&self, config: &ReleaseConfig) -> String {
        let source = match &self.entry.content {
            Content::File { source, .. } | Content::Symlink { source, .. } => Some(source),
            _ => None,
        };
        match (self.by, source) {
            (By::Binary, _) => match &self.entry.content {
                Content::Binary(bin) => format!("binary `{bin}`"),
                _ => "the binaries".into(),
            },
            (By::Launcher, _) => "the launcher".into(),
            (By::Hook(h), _) => format!("the {} hook", h.as_str()),
            (By::Priv, Some(source)) => format!("the priv file `{source}`"),
            (By::Priv, None) => "the priv directory".into(),
            (By::Include(i), source) => {
                let key = config
                    .include
                    .get(i)
                    .map_or("include", |r| r.origin.key.as_str());
                match source {
                    Some(source) => format!("{key} (`{source}`)"),
                    None => key.to_string(),
                }
            }
        }
    }
}

struct Tree<'c> {
    entries: BTreeMap<String, Claim>,
    config: &'c ReleaseConfig,
}

impl Tree<'_> {
    fn add(&mut self, entry: Entry, by: By, origin: Option<&Origin>) -> Result<()> {
        let config = self.config;
        let fail = |msg: String| match origin {
            Some(o) => anyhow!("{o}: {msg}"),
            None => anyhow!("{msg}"),
        };
        // Parents become directories.
        let mut parent = entry.path.as_str();
        while let Some((p, _)) = parent.rsplit_once('/') {
            parent = p;
            match self.entries.get(p) {
                Some(c) if c.entry.content != Content::Dir => {
                    return Err(fail(format!(
                        "`{}` needs `{p}` to be a directory, but {} puts a file there",
                        entry.path,
                        c.describe(config)
                    )));
                }
                Some(_) => {}
                None => {
                    let dir = Entry {
                        path: p.to_string(),
                        content: Content::Dir,
                        mode: MODE_DIR,
                        kind: None,
                    };
                    self.entries.insert(p.to_string(), Claim { entry: dir, by });
                }
            }
        }
        if let Some(existing) = self.entries.get(&entry.path) {
            if existing.entry.content == Content::Dir && entry.content == Content::Dir {
                return Ok(());
            }
            let new = Claim { entry, by };
            return Err(fail(format!(
                "two files land on `{}`: {} and {}",
                new.entry.path,
                existing.describe(config),
                new.describe(config)
            )));
        }
        let path = entry.path.clone();
        self.entries.insert(path, Claim { entry, by });
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

/// Resolve what the launcher runs: `main`, or the only binary, or the one named like the package.
fn launcher_spec(
    package: &PackageFacts,
    config: &ReleaseConfig,
    binaries: &[String],
) -> Result<LauncherSpec> {
    let l = &config.launcher;
    let main = match &l.main {
        Some(m) => m.value.clone(),
        None if binaries.len() == 1 => binaries[0].clone(),
        None if binaries.contains(&package.name) => package.name.clone(),
        None => bail!(
            "{}: package `{}` ships several binaries ({}) and none is named like the package\nhelp: set `main` in the release table to the one `start` should run",
            package.manifest,
            package.name,
            binaries.join(", ")
        ),
    };
    Ok(LauncherSpec {
        name: config.name.clone(),
        version: package.version.clone(),
        main,
        bins: binaries.to_vec(),
        env: l
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect(),
        required_env: l.required_env.iter().map(|v| v.value.clone()).collect(),
        env_file: l.env_file.as_ref().map(|f| f.value.clone()),
        stop_timeout: l.stop_timeout,
        commands: l
            .commands
            .iter()
            .map(|(name, c)| {
                let c = &c.value;
                let command = CustomCommand {
                    bin: c.bin.value.clone(),
                    args: c.args.clone(),
                    description: c.description.clone(),
                };
                (name.clone(), command)
            })
            .collect(),
    })
}

pub fn plan(
    package: &PackageFacts,
    config: &ReleaseConfig,
    sources: Sources,
    target: &str,
) -> Result<BundlePlan> {
    let top_dir = format!("{}-{}", config.name, package.version);
    let exe_suffix = if target.contains("windows") {
        ".exe"
    } else {
        ""
    };

    // Binaries.
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
    // Every binary the launcher will run must be shipped.
    let launcher = &config.launcher;
    let launched = launcher
        .main
        .iter()
        .chain(launcher.commands.values().map(|c| &c.value.bin));
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

    let mut tree = Tree {
        entries: BTreeMap::new(),
        config,
    };
    // The launcher is a POSIX sh script: Windows bundles ship their executables in bin/.
    let with_launcher = launcher.enabled && !target.contains("windows");
    let exe_dir = if with_launcher { "libexec" } else { "bin" };
    for bin in &binaries {
        let entry = Entry {
            path: format!("{exe_dir}/{bin}{exe_suffix}"),
            content: Content::Binary(bin.clone()),
            mode: MODE_EXEC,
            kind: Some(FileKind::Executable),
        };
        tree.add(entry, By::Binary, None)?;
    }
    if with_launcher {
        let spec = launcher_spec(package, config, &binaries)?;
        let entry = Entry {
            path: format!("bin/{}", config.name),
            content: Content::Generated(launcher::render(&spec).into_bytes()),
            mode: MODE_EXEC,
            kind: Some(FileKind::Launcher),
        };
        tree.add(entry, By::Launcher, None)?;
        for (hook, found) in sources.hooks {
            let entry = entry_for(
                found,
                format!("hooks/{}.sh", hook.as_str()),
                FileKind::Hook,
                Some(MODE_EXEC),
            );
            let origin = config.launcher.hooks.get(&hook).map(|h| h.origin.clone());
            tree.add(entry, By::Hook(hook), origin.as_ref())?;
        }
    }

    let excludes = exclude_set(config)?;
    if let Some(priv_tree) = sources.priv_tree {
        for found in priv_tree {
            let path = join("priv", &found.rel);
            if excluded(&excludes, &path) {
                continue;
            }
            let entry = entry_for(found, path, FileKind::Priv, None);
            tree.add(entry, By::Priv, None)?;
        }
    }

    for (index, (rule, matches)) in config.include.iter().zip(sources.includes).enumerate() {
        let (dest, dest_is_dir) = normalize_dest(&rule.value.dest, &rule.origin.child("dest"))?;
        let files = matches.matches.len();
        if files > 1 && !dest_is_dir {
            bail!(
                "{}: {:?} matches {files} files but dest {:?} names a single file\nhelp: end `dest` with `/` to copy them into a directory",
                rule.origin.child("dest"),
                rule.value.source,
                rule.value.dest
            );
        }
        let mut shipped = 0;
        for (matched, found_tree) in matches.matches {
            let base = if dest_is_dir {
                let name = matched.rsplit('/').next().unwrap_or(&matched);
                join(&dest, name)
            } else {
                dest.clone()
            };
            if base.is_empty() {
                bail!(
                    "{}: {:?} would replace the bundle's top directory",
                    rule.origin.child("dest"),
                    rule.value.dest
                );
            }
            for found in found_tree {
                let path = join(&base, &found.rel);
                if excluded(&excludes, &path) {
                    continue;
                }
                if path == archive::MANIFEST || path == archive::SHA256SUMS {
                    bail!(
                        "{}: `{path}` is reserved for the bundle's own {path}",
                        rule.origin.child("dest")
                    );
                }
                let entry = entry_for(found, path, FileKind::Include, rule.value.mode);
                tree.add(entry, By::Include(index), Some(&rule.origin.child("dest")))?;
                shipped += 1;
            }
        }
        if shipped == 0 {
            let why = if files == 0 {
                ""
            } else {
                " (everything it matches is excluded)"
            };
            bail!(
                "{}: {:?} matches nothing{why}",
                rule.origin.child("source"),
                rule.value.source
            );
        }
    }

    // Whole-tree checks: names that fit, no case-insensitive clashes, symlinks that stay inside.
    // Case clashes: sort by the lowercased path without allocating a copy per entry.
    let fold = |p: &str| {
        p.chars()
            .flat_map(char::to_lowercase)
            .collect::<Vec<char>>()
    };
    let mut by_case: Vec<(&String, &Claim)> = tree.entries.iter().collect();
    by_case.sort_by(|(a, _), (b, _)| {
        a.chars()
            .flat_map(char::to_lowercase)
            .cmp(b.chars().flat_map(char::to_lowercase))
    });
    for pair in by_case.windows(2) {
        let ((other, _), (path, claim)) = (pair[0], pair[1]);
        if fold(other) == fold(path) {
            bail!(
                "`{other}` and `{path}` differ only in case, which breaks extraction on macOS and Windows (from {})",
                claim.describe(config)
            );
        }
    }
    drop(by_case);
    for (path, claim) in &tree.entries {
        let by = || claim.describe(config);
        let full = format!("{top_dir}/{path}");
        archive::check_entry_name(&full)
            .map_err(|why| anyhow!("`{path}` (from {}): bundle path {why}", by()))?;
        if let Content::Symlink { target, .. } = &claim.entry.content {
            archive::check_link_target(target)
                .map_err(|why| anyhow!("`{path}` (from {}): symlink {why}", by()))?;
            if target.starts_with('/') {
                bail!(
                    "symlink `{path}` (from {}) points to the absolute path `{target}`; only relative links inside the bundle are allowed",
                    by()
                );
            }
            match archive::resolve_link(path, target) {
                None => bail!(
                    "symlink `{path}` (from {}) points to `{target}`, which leaves the bundle",
                    by()
                ),
                Some(resolved) if !resolved.is_empty() && !tree.entries.contains_key(&resolved) => {
                    bail!(
                        "symlink `{path}` (from {}) points to `{target}`, which is not in the bundle",
                        by()
                    )
                }
                Some(_) => {}
            }
        }
    }
    if tree.entries.contains_key(archive::MANIFEST)
        || tree.entries.contains_key(archive::SHA256SUMS)
    {
        bail!(
            "`{}` and `{}` are reserved for the bundle's own metadata",
            archive::MANIFEST,
            archive::SHA256SUMS
        );
    }

    Ok(BundlePlan {
        name: config.name.clone(),
        version: package.version.clone(),
        target: target.to_string(),
        file_name: format!("{top_dir}-{target}.{}", config.format.extension()),
        top_dir,
        format: config.format,
        binaries,
        entries: tree.entries.into_values().map(|c| c.entry).collect(),
    })
}

#[cfg(test)]
mod tests;
