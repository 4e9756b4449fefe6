//! Scanning the package's files: the priv directory and `include` globs.
//!
//! This is the file-system edge that feeds the pure planner: it reports what exists (paths,
//! kinds, sizes, exec bits, link targets) and refuses what can never be bundled (non-UTF-8
//! names, sockets, devices). What goes where is decided by [`crate::plan`].

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

/// What one `include` rule matched: each match with its tree (a single entry for a file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncludeMatches {
    /// `(path of the match relative to the package root, the match and everything below it)`.
    pub matches: Vec<(String, Vec<Found>)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// The priv tree (root entry has `rel == ""`), if the package ships one.
    pub priv_tree: Option<Vec<Found>>,
    /// One entry per `include` rule, in config order.
    pub includes: Vec<IncludeMatches>,
    /// Launcher hook scripts.
    pub hooks: Vec<(HookName, Found)>,
}

fn stat(path: &Utf8Path, rel: String) -> Result<Found> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("cannot read `{path}`"))?;
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

/// Every object below `root` (not following symlinks), the root first.
fn walk(root: &Utf8Path, skip: &[&Utf8Path]) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    let walker = WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !skip.iter().any(|s| e.path() == s.as_std_path()));
    for entry in walker {
        let entry = entry.with_context(|| format!("cannot walk `{root}`"))?;
        let path = Utf8Path::from_path(entry.path()).ok_or_else(|| {
            anyhow::anyhow!(
                "`{}`: file name is not UTF-8; bundles hold UTF-8 names only",
                entry.path().display()
            )
        })?;
        let rel = path
            .strip_prefix(root)
            .map(|r| r.as_str().to_string())
            .unwrap_or_default();
        // The root of a walk is followed if it is a symlink (like `cp -r dir/`).
        let found = if rel.is_empty() && entry.file_type().is_dir() {
            Found {
                source: path.to_owned(),
                rel,
                node: Node::Dir,
            }
        } else {
            stat(path, rel)?
        };
        out.push(found);
    }
    Ok(out)
}

fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{', '\\'])
}

/// Find what an include `source` names: a literal path (a file, symlink, or a directory tree),
/// or a glob matching files and symlinks (never directories).
fn resolve_include(root: &Utf8Path, source: &str, skip: &[&Utf8Path]) -> Result<IncludeMatches> {
    let source = source.trim_start_matches("./");
    if !has_glob_meta(source) {
        let path = root.join(source);
        if fs::symlink_metadata(&path).is_err() {
            return Ok(IncludeMatches::default());
        }
        let tree = if path.is_dir() && !path.is_symlink() {
            walk(&path, skip)?
        } else {
            vec![stat(&path, String::new())?]
        };
        return Ok(IncludeMatches {
            matches: vec![(source.to_string(), tree)],
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
    if !base.is_dir() {
        return Ok(IncludeMatches::default());
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
            matches.push((rel, vec![stat(path, String::new())?]));
        }
    }
    Ok(IncludeMatches { matches })
}

/// Scan the package root for the priv directory and include rules.
/// `target_dir` and `.git` are never looked into.
pub fn scan(
    package_root: &Utf8Path,
    target_dir: &Utf8Path,
    config: &ReleaseConfig,
) -> Result<Sources> {
    let git = package_root.join(".git");
    let skip = [target_dir, git.as_path()];
    let priv_root = match &config.priv_dir {
        PrivDir::Disabled => None,
        PrivDir::Default => Some(package_root.join("priv")).filter(|p| p.is_dir()),
        PrivDir::Dir(dir) => {
            let path = package_root.join(&dir.value);
            if !path.exists() {
                return Err(dir
                    .origin
                    .error(format!(
                        "{:?} does not exist (looked for `{path}`)",
                        dir.value
                    ))
                    .into());
            }
            if !path.is_dir() {
                return Err(dir
                    .origin
                    .error(format!("{:?} is not a directory", dir.value))
                    .into());
            }
            Some(path)
        }
    };
    let priv_tree = priv_root.map(|p| walk(&p, &skip)).transpose()?;
    let includes = config
        .include
        .iter()
        .map(|rule| {
            resolve_include(package_root, &rule.value.source, &skip).with_context(|| {
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
            let file = package_root.join(&path.value);
            let found = match stat(&file, String::new()) {
                Ok(
                    found @ Found {
                        node: Node::File { .. },
                        ..
                    },
                ) => found,
                Ok(_) => {
                    let why = format!("{:?} is not a regular file", path.value);
                    return Err(path.origin.error(why).into());
                }
                Err(_) => {
                    let why = format!("{:?} does not exist (looked for `{file}`)", path.value);
                    return Err(path.origin.error(why).into());
                }
            };
            hooks.push((*hook, found));
        }
    }
    Ok(Sources {
        priv_tree,
        includes,
        hooks,
    })
}
