//! Scanning the package's files: the priv directory and `include` globs.
//!
//! This is the file-system edge that feeds the pure planner: it reports what exists (paths,
//! kinds, sizes, exec bits, link targets) and refuses what can never be bundled (non-UTF-8
//! names, sockets, devices). What goes where is decided by [`crate::bundle::plan`].

use std::fs;
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use globset::GlobBuilder;
use walkdir::WalkDir;

use crate::config::{HookName, PrivDir, ReleaseConfig};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File { size: u64, exec: bool },
    Symlink { target: String },
}

/// One file-system object found below a walk root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Absolute path on disk.
    pub source: Utf8PathBuf,
    /// `/`-separated path relative to the walk root; empty for the root itself.
    pub rel: String,
    pub node: Node,
}

/// What an include match is: a directory tree (walked when the bundle is written) or one
/// file or symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Tree(Utf8PathBuf),
    One(Found),
}

/// What one `include` rule matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncludeMatches {
    /// `(path of the match relative to the package root, the match)`.
    pub matches: Vec<(String, Match)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// The priv directory, if the package ships one.
    pub priv_root: Option<Utf8PathBuf>,
    /// One entry per `include` rule, in config order.
    pub includes: Vec<IncludeMatches>,
    /// Launcher hook scripts.
    pub hooks: Vec<(HookName, Found)>,
    /// Directories no walk enters (the target directory, `.git`).
    pub skip: Vec<Utf8PathBuf>,
}

/// The file-system walker the planner's entry stream uses: [`SortedWalk`].
pub fn walk(
    root: &Utf8Path,
    skip: &[Utf8PathBuf],
    keep: Box<dyn Fn(&str) -> bool>,
) -> Box<dyn Iterator<Item = Result<Found>>> {
    Box::new(SortedWalk::new(root, skip.to_vec(), keep))
}

fn stat(path: &Utf8Path, rel: String) -> Result<Found> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("cannot read `{path}`"))?;
    found(path, rel, &meta)
}

/// The `Found` for `path`, whose (not followed) metadata is `meta`.
fn found(path: &Utf8Path, rel: String, meta: &fs::Metadata) -> Result<Found> {
    let ft = meta.file_type();
    let node = if ft.is_symlink() {
        let target =
            fs::read_link(path).with_context(|| format!("cannot read symlink `{path}`"))?;
        let target = Utf8PathBuf::try_from(target).map_err(|t| {
            anyhow::anyhow!(
                "`{path}`: symlink target `{}` is not UTF-8",
                t.into_path_buf().display()
            )
        })?;
        Node::Symlink {
            target: target.into_string(),
        }
    } else if ft.is_dir() {
        Node::Dir
    } else if ft.is_file() {
        Node::File {
            size: meta.len(),
            exec: meta.permissions().mode() & 0o111 != 0,
        }
    } else {
        bail!("`{path}` is not a regular file, directory or symlink; bundles cannot hold it");
    };
    Ok(Found {
        source: path.to_owned(),
        rel,
        node,
    })
}

/// One pending step of a [`SortedWalk`]: an object to report, or a directory to list.
enum Step {
    Report(Found),
    List { dir: Utf8PathBuf, rel: String },
}

/// Every object below a root, the root first, in bytewise order of `rel` — the bundle's
/// canonical order — without holding more than the listings of the directories on the
/// current path. A directory `d` sorts as `d` for its own entry and as `d/` for what is
/// below it, so `a`, `a.txt`, `a/b` come out in that order.
pub struct SortedWalk {
    /// Steps per directory level, each level reversed (the next step is last).
    stack: Vec<Vec<Step>>,
    skip: Vec<Utf8PathBuf>,
    /// Whether a `rel` is wanted; a refused directory is not listed.
    keep: Box<dyn Fn(&str) -> bool>,
}

impl SortedWalk {
    /// Walk `root` (followed if it is a symlink, like `cp -r dir/`), never entering `skip`.
    pub fn new(root: &Utf8Path, skip: Vec<Utf8PathBuf>, keep: Box<dyn Fn(&str) -> bool>) -> Self {
        let mut steps = Vec::new();
        if keep("") {
            steps.push(Step::List {
                dir: root.to_owned(),
                rel: String::new(),
            });
            steps.push(Step::Report(Found {
                source: root.to_owned(),
                rel: String::new(),
                node: Node::Dir,
            }));
        }
        SortedWalk {
            stack: vec![steps],
            skip,
            keep,
        }
    }

    fn list(&self, dir: &Utf8Path, rel: &str) -> Result<Vec<Step>> {
        let read = fs::read_dir(dir).with_context(|| format!("cannot read `{dir}`"))?;
        let mut steps: Vec<(String, Step)> = Vec::new();
        for child in read {
            let child = child.with_context(|| format!("cannot read `{dir}`"))?;
            let name = child.file_name().into_string().map_err(|name| {
                anyhow::anyhow!(
                    "`{}`: file name is not UTF-8; bundles hold UTF-8 names only",
                    dir.as_std_path().join(name).display()
                )
            })?;
            let path = dir.join(&name);
            if self.skip.contains(&path) {
                continue;
            }
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if !(self.keep)(&child_rel) {
                continue;
            }
            // Stat relative to the open directory (fstatat): no lookup of the whole path.
            let meta = child
                .metadata()
                .with_context(|| format!("cannot read `{path}`"))?;
            let found = found(&path, child_rel.clone(), &meta)?;
            if found.node == Node::Dir {
                steps.push((
                    format!("{name}/"),
                    Step::List {
                        dir: path,
                        rel: child_rel,
                    },
                ));
            }
            steps.push((name, Step::Report(found)));
        }
        steps.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        Ok(steps.into_iter().rev().map(|(_, step)| step).collect())
    }
}

impl Iterator for SortedWalk {
    type Item = Result<Found>;

    fn next(&mut self) -> Option<Result<Found>> {
        loop {
            let level = self.stack.last_mut()?;
            match level.pop() {
                None => {
                    self.stack.pop();
                }
                Some(Step::Report(found)) => return Some(Ok(found)),
                Some(Step::List { dir, rel }) => match self.list(&dir, &rel) {
                    Ok(steps) => self.stack.push(steps),
                    Err(e) => {
                        self.stack.clear();
                        return Some(Err(e));
                    }
                },
            }
        }
    }
}

/// Containment of an include source: a literal path where it really is (a directory that is
/// walked, followed), or the literal directory a glob walks.
fn contained_include(contain: &Containment, root: &Utf8Path, source: &str) -> Result<(), String> {
    let source = source.trim_start_matches("./");
    if !has_glob_meta(source) {
        let path = root.join(source);
        let walked = path.is_dir() && !path.is_symlink();
        return contain.check(&path, walked);
    }
    let literal: Vec<&str> = source
        .split('/')
        .take_while(|p| !has_glob_meta(p))
        .collect();
    let base = literal.iter().fold(root.to_owned(), |p, c| p.join(c));
    contain.check(&base, true)
}

fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{', '\\'])
}

/// Find what an include `source` names: a literal path (a file, symlink, or a directory tree),
/// or a glob matching files and symlinks (never directories).
fn resolve_include(root: &Utf8Path, source: &str, skip: &[Utf8PathBuf]) -> Result<IncludeMatches> {
    let source = source.trim_start_matches("./");
    if !has_glob_meta(source) {
        let path = root.join(source);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(IncludeMatches::default());
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read `{path}`")),
            Ok(_) => {}
        }
        let found = if path.is_dir() && !path.is_symlink() {
            Match::Tree(path)
        } else {
            Match::One(stat(&path, String::new())?)
        };
        return Ok(IncludeMatches {
            matches: vec![(source.to_string(), found)],
        });
    }
    let glob = GlobBuilder::new(source)
        .literal_separator(true)
        .build()
        .with_context(|| format!("invalid glob {source:?}"))?
        .compile_matcher();
    let parts: Vec<&str> = source.split('/').collect();
    let literal = parts.iter().take_while(|p| !has_glob_meta(p)).count();
    let base = parts[..literal]
        .iter()
        .fold(root.to_owned(), |p, c| p.join(c));
    match fs::metadata(&base) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Ok(IncludeMatches::default()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(IncludeMatches::default());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read `{base}`")),
    }
    let mut walker = WalkDir::new(&base).follow_links(false).sort_by_file_name();
    if !source.contains("**") {
        walker = walker.max_depth(parts.len() - literal);
    }
    let mut matches = Vec::new();
    for entry in walker
        .into_iter()
        .filter_entry(|e| !skip.iter().any(|s| e.path() == s.as_std_path()))
    {
        let entry = entry.with_context(|| format!("cannot walk `{base}`"))?;
        if entry.file_type().is_dir() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root.as_std_path()) else {
            continue;
        };
        if glob.is_match(rel) {
            let path = Utf8Path::from_path(entry.path()).ok_or_else(|| {
                anyhow::anyhow!("`{}`: file name is not UTF-8", entry.path().display())
            })?;
            let rel = path
                .strip_prefix(root)
                .map(|r| r.to_string())
                .unwrap_or_default();
            matches.push((rel, Match::One(stat(path, String::new())?)));
        }
    }
    Ok(IncludeMatches { matches })
}

/// Where sources may come from: the package directory and the workspace root, with symlinks
/// resolved. Nothing outside (the builder's `~/.ssh`, `~/.cargo/credentials.toml`, a
/// sibling checkout) can be bundled, whether reached by `..` or by a symlink.
struct Containment {
    /// Canonical roots, the package directory first.
    roots: Vec<Utf8PathBuf>,
}

impl Containment {
    fn new(package_root: &Utf8Path, workspace_root: &Utf8Path) -> Result<Self> {
        let roots = [package_root, workspace_root]
            .iter()
            .map(|r| {
                let real = r
                    .canonicalize_utf8()
                    .with_context(|| format!("cannot resolve `{r}`"))?;
                Ok(real)
            })
            .collect::<Result<_>>()?;
        Ok(Containment { roots })
    }

    /// Where `path` really is: its directory with symlinks resolved, and the final component
    /// resolved too when `follow` (a directory that is walked, not shipped as a link).
    fn real(path: &Utf8Path, follow: bool) -> std::io::Result<Utf8PathBuf> {
        let to_utf8 = |p: std::path::PathBuf| {
            Utf8PathBuf::try_from(p).map_err(|e| std::io::Error::other(e.to_string()))
        };
        if follow {
            return to_utf8(fs::canonicalize(path)?);
        }
        let parent = path
            .parent()
            .filter(|p| !p.as_str().is_empty())
            .unwrap_or(Utf8Path::new("."));
        let name = path.file_name().unwrap_or_default();
        Ok(to_utf8(fs::canonicalize(parent)?)?.join(name))
    }

    /// Why `path` may not be bundled, if it may not: the message names the resolved path.
    fn check(&self, path: &Utf8Path, follow: bool) -> Result<(), String> {
        let Ok(real) = Self::real(path, follow) else {
            return Ok(()); // missing paths are reported by the caller, which knows the key
        };
        if self.roots.iter().any(|r| real.starts_with(r)) {
            return Ok(());
        }
        let within = if self.roots[0] == self.roots[1] {
            format!("the package directory `{}`", self.roots[0])
        } else {
            format!(
                "the package directory `{}` and the workspace root `{}`",
                self.roots[0], self.roots[1]
            )
        };
        Err(format!(
            "resolves to `{real}`, outside {within}; sources must stay inside once symlinks and `..` are resolved, so nothing else on the build machine can be shipped"
        ))
    }
}

/// Scan the package root for the priv directory and include rules.
/// `target_dir` and `.git` are never looked into; nothing outside the package directory or
/// the workspace root is read.
pub fn scan(
    package_root: &Utf8Path,
    workspace_root: &Utf8Path,
    target_dir: &Utf8Path,
    config: &ReleaseConfig,
) -> Result<Sources> {
    let contain = Containment::new(package_root, workspace_root)?;
    let skip = vec![target_dir.to_owned(), package_root.join(".git")];
    let priv_root = priv_root(&contain, package_root, &config.priv_dir)?;
    let includes = config
        .include
        .iter()
        .map(|rule| {
            let source = &rule.value.source;
            if let Err(why) = contained_include(&contain, package_root, source) {
                let key = rule.origin.child("source");
                return Err(key.error(format!("{source:?} {why}")).into());
            }
            resolve_include(package_root, source, &skip).with_context(|| {
                format!(
                    "{}: {:?} cannot be read",
                    rule.origin.child("source"),
                    rule.value.source
                )
            })
        })
        .collect::<Result<_>>()?;
    let mut hooks = Vec::new();
    if config.launcher.enabled {
        for (hook, path) in &config.launcher.hooks {
            hooks.push((*hook, hook_file(&contain, package_root, path)?));
        }
    }
    Ok(Sources {
        priv_root,
        includes,
        hooks,
        skip,
    })
}

/// The priv directory: `priv/` when it exists (default), the configured one (which must),
/// or none; inside the package once resolved.
fn priv_root(
    contain: &Containment,
    package_root: &Utf8Path,
    priv_dir: &PrivDir,
) -> Result<Option<Utf8PathBuf>> {
    Ok(match priv_dir {
        PrivDir::Disabled => None,
        PrivDir::Default => {
            let path = package_root.join("priv");
            if path.is_dir()
                && let Err(why) = contain.check(&path, true)
            {
                bail!("the package's `priv` directory {why}");
            }
            Some(path).filter(|p| p.is_dir())
        }
        PrivDir::Dir(dir) => {
            let path = package_root.join(&dir.value);
            match fs::metadata(&path) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let why = format!("{:?} does not exist (looked for `{path}`)", dir.value);
                    return Err(dir.origin.error(why).into());
                }
                Err(e) => {
                    let why = format!("{:?}: cannot read `{path}`: {e}", dir.value);
                    return Err(dir.origin.error(why).into());
                }
            }
            if !path.is_dir() {
                return Err(dir
                    .origin
                    .error(format!("{:?} is not a directory", dir.value))
                    .into());
            }
            if let Err(why) = contain.check(&path, true) {
                return Err(dir.origin.error(format!("{:?} {why}", dir.value)).into());
            }
            Some(path)
        }
    })
}

/// A hook script: a regular file inside the package.
fn hook_file(
    contain: &Containment,
    package_root: &Utf8Path,
    path: &crate::config::Spanned<String>,
) -> Result<Found> {
    let file = package_root.join(&path.value);
    if let Err(why) = contain.check(&file, false) {
        return Err(path.origin.error(format!("{:?} {why}", path.value)).into());
    }
    match stat(&file, String::new()) {
        Ok(
            found @ Found {
                node: Node::File { .. },
                ..
            },
        ) => Ok(found),
        Ok(_) => {
            let why = format!("{:?} is not a regular file", path.value);
            Err(path.origin.error(why).into())
        }
        Err(e) => {
            let missing = fs::symlink_metadata(&file)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
            let why = if missing {
                format!("{:?} does not exist (looked for `{file}`)", path.value)
            } else {
                format!("{:?}: {e:#}", path.value)
            };
            Err(path.origin.error(why).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    fn rels(walk: SortedWalk) -> Vec<String> {
        walk.map(|f| f.unwrap().rel).collect()
    }

    #[test]
    fn sorted_walk_is_bytewise_and_prunes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        for d in ["a/b", "a-b", "ab/c", "skip/x", "drop/y"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in [
            "a.txt", "a/b/f", "a/c", "a-b/f", "ab/c/g", "b", "skip/x/f", "drop/y/f", "A",
        ] {
            fs::write(root.join(f), f).unwrap();
        }
        std::os::unix::fs::symlink("a.txt", root.join("a0")).unwrap();
        let all = rels(SortedWalk::new(root, vec![], Box::new(|_| true)));
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted, "a walk comes out in bytewise order");
        assert_eq!(all.len(), 20);
        assert_eq!(&all[..5], ["", "A", "a", "a-b", "a-b/f"]);

        // `skip` and a refused directory are never entered.
        let walk = SortedWalk::new(root, vec![root.join("skip")], Box::new(|rel| rel != "drop"));
        let some = rels(walk);
        assert!(
            !some
                .iter()
                .any(|r| r.starts_with("skip") || r.starts_with("drop"))
        );
        assert_eq!(some.len(), 14);
    }

    #[test]
    fn sorted_walk_reports_what_cannot_be_bundled() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        fs::create_dir(root.join("d")).unwrap();
        let bad = std::ffi::OsStr::from_bytes(b"n\xffme");
        fs::write(tmp.path().join("d").join(bad), "").unwrap();
        let mut walk = SortedWalk::new(root, vec![], Box::new(|_| true));
        let results: Vec<_> = walk.by_ref().collect();
        let err = results.last().unwrap().as_ref().unwrap_err().to_string();
        assert!(err.contains("file name is not UTF-8"), "{err}");
        assert!(err.contains("/d/n"), "{err}");
        assert!(walk.next().is_none(), "the walk stops after an error");
    }
}
