//! The project around the bundle: `cargo metadata`, package selection, and the facts the
//! manifest records about the build machine's inputs (rustc, git, timestamp, Cargo.lock).
//!
//! Everything here reads the outside world; the decisions it feeds are made elsewhere.

use std::env;
use std::process::Command;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use cargo_metadata::{Metadata, MetadataCommand, Package, TargetKind};

use crate::archive::manifest::{Git, Rustc, Timestamp, TimestampSource};
use crate::archive::{self, MAX_MTIME};
use crate::config::{Origin, TableSource};
use crate::util::display_path;

/// Timestamp used when there is neither `SOURCE_DATE_EPOCH` nor a git commit:
/// 1980-01-01T00:00:00Z, the earliest time every archive format can represent.
pub const CONSTANT_EPOCH: u64 = 315_532_800;

/// `$CARGO` when cargo runs us, else `cargo` from `PATH`.
pub fn cargo() -> Utf8PathBuf {
    env::var("CARGO")
        .map(Utf8PathBuf::from)
        .unwrap_or_else(|_| "cargo".into())
}

pub struct Workspace {
    pub metadata: Metadata,
    /// The manifest cargo was pointed at (explicitly or found from the working directory).
    pub manifest: Utf8PathBuf,
    pub target_dir: Utf8PathBuf,
}

impl Workspace {
    pub fn root(&self) -> &Utf8Path {
        &self.metadata.workspace_root
    }

    pub fn root_manifest(&self) -> Utf8PathBuf {
        self.root().join("Cargo.toml")
    }

    pub fn workspace_table(&self) -> TableSource<'_> {
        TableSource {
            file: display_path(&self.root_manifest()),
            metadata: Some(&self.metadata.workspace_metadata).filter(|m| !m.is_null()),
            scope: "workspace",
        }
    }

    pub fn package_table<'a>(&self, package: &'a Package) -> TableSource<'a> {
        TableSource {
            file: display_path(&package.manifest_path),
            metadata: Some(&package.metadata).filter(|m| !m.is_null()),
            scope: "package",
        }
    }

    /// The section `key` (`image`, `sign`) of the release tables that apply to `package`,
    /// most specific first: the package's `profile.<profile>.<key>`, the package's `<key>`,
    /// then the same two of the workspace's; each with the directory relative paths in it are
    /// relative to. The one rule for where a section is read; callers take the first.
    pub fn sections<'a>(
        &'a self,
        package: &'a Package,
        key: &str,
        profile: &str,
    ) -> Vec<Section<'a>> {
        let package_dir = package.manifest_path.parent().unwrap_or(self.root());
        [
            (self.package_table(package), package_dir),
            (self.workspace_table(), self.root()),
        ]
        .into_iter()
        .flat_map(|(table, dir)| {
            let in_profile = table.profile_sub_table(profile, key);
            let base = table.sub_table(key);
            [in_profile, base]
                .into_iter()
                .flatten()
                .map(move |(value, origin)| Section {
                    value,
                    origin,
                    dir: dir.to_owned(),
                })
        })
        .collect()
    }

    pub fn members(&self) -> Vec<&Package> {
        self.metadata.workspace_packages()
    }
}

/// Where the project is and how cargo may reach the network: what `cargo metadata` needs.
#[derive(Debug, Clone, Default)]
pub struct Locate {
    pub manifest_path: Option<Utf8PathBuf>,
    pub target_dir: Option<Utf8PathBuf>,
    pub locked: bool,
    pub frozen: bool,
    pub offline: bool,
}

/// The feature flags of a build.
#[derive(Debug, Clone, Default)]
pub struct Features {
    pub features: Vec<String>,
    pub all_features: bool,
    pub no_default_features: bool,
}

/// Which packages the user asked for: `-p` specs, or `--workspace`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub packages: Vec<String>,
    pub workspace: bool,
}

pub fn find_manifest(opts: &Locate) -> Result<Utf8PathBuf> {
    if let Some(path) = &opts.manifest_path {
        if !path.is_file() {
            bail!("`{path}`: manifest path does not exist");
        }
        let path = path
            .canonicalize_utf8()
            .with_context(|| format!("`{path}`: cannot resolve the manifest path"))?;
        return Ok(path);
    }
    let cwd = Utf8PathBuf::from_path_buf(
        env::current_dir().context("cannot read the working directory")?,
    )
    .map_err(|p| anyhow::anyhow!("`{}`: working directory is not UTF-8", p.display()))?;
    cwd.ancestors()
        .map(|d| d.join("Cargo.toml"))
        .find(|m| m.is_file())
        .with_context(|| format!("could not find `Cargo.toml` in `{cwd}` or any parent directory"))
}

/// Run `cargo metadata --no-deps` for the manifest the user means.
pub fn load(opts: &Locate) -> Result<Workspace> {
    let manifest = find_manifest(opts)?;
    let mut cmd = MetadataCommand::new();
    cmd.cargo_path(cargo()).manifest_path(&manifest).no_deps();
    let mut other = Vec::new();
    for (flag, on) in [
        ("--locked", opts.locked),
        ("--frozen", opts.frozen),
        ("--offline", opts.offline),
    ] {
        if on {
            other.push(flag.to_string());
        }
    }
    cmd.other_options(other);
    let metadata = cmd
        .exec()
        .with_context(|| format!("`{}`: cargo metadata failed", display_path(&manifest)))?;
    let target_dir = match &opts.target_dir {
        Some(dir) => env::current_dir()
            .ok()
            .and_then(|c| Utf8PathBuf::from_path_buf(c).ok())
            .map(|c| c.join(dir))
            .unwrap_or_else(|| dir.clone()),
        None => metadata.target_directory.clone(),
    };
    Ok(Workspace {
        metadata,
        manifest,
        target_dir,
    })
}

/// The resolved dependency graph for `target` and the build's features (`cargo metadata`
/// with dependencies and `--filter-platform`), for the SBOM.
pub fn resolved_graph(
    manifest: &Utf8Path,
    target: &str,
    features: &Features,
    locate: &Locate,
) -> Result<Metadata> {
    let mut cmd = MetadataCommand::new();
    cmd.cargo_path(cargo()).manifest_path(manifest);
    let mut other = vec!["--filter-platform".to_string(), target.to_string()];
    for f in &features.features {
        other.extend(["--features".into(), f.clone()]);
    }
    for (flag, on) in [
        ("--all-features", features.all_features),
        ("--no-default-features", features.no_default_features),
        ("--locked", locate.locked),
        ("--frozen", locate.frozen),
        ("--offline", locate.offline),
    ] {
        if on {
            other.push(flag.to_string());
        }
    }
    cmd.other_options(other);
    cmd.exec().with_context(|| {
        format!(
            "`{}`: cargo metadata (the dependency graph, for the SBOM) failed",
            display_path(manifest)
        )
    })
}

/// Profiles cargo defines itself.
pub const BUILT_IN_PROFILES: &[&str] = &["dev", "release", "test", "bench"];

/// Fail before anything is planned when `profile` is defined nowhere cargo looks: built in,
/// `[profile.<name>]` in the workspace's `Cargo.toml`, in a `.cargo/config.toml` above the
/// working directory or the workspace, in `$CARGO_HOME/config.toml`, or through
/// `CARGO_PROFILE_<NAME>_*` variables.
pub fn check_profile(ws: &Workspace, profile: &str) -> Result<()> {
    if BUILT_IN_PROFILES.contains(&profile) {
        return Ok(());
    }
    let defines = |path: &Utf8Path| -> bool {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .is_some_and(|doc| doc.get("profile").and_then(|p| p.get(profile)).is_some())
    };
    let manifest = ws.root().join("Cargo.toml");
    if defines(&manifest) {
        return Ok(());
    }
    let env_prefix = format!(
        "CARGO_PROFILE_{}_",
        profile.to_ascii_uppercase().replace('-', "_")
    );
    if env::vars().any(|(k, _)| k.starts_with(&env_prefix)) {
        return Ok(());
    }
    let cwd = env::current_dir()
        .ok()
        .and_then(|c| Utf8PathBuf::from_path_buf(c).ok());
    let mut dirs: Vec<Utf8PathBuf> = Vec::new();
    for start in cwd.iter().map(|c| c.as_path()).chain([ws.root()]) {
        dirs.extend(start.ancestors().map(|d| d.join(".cargo")));
    }
    if let Some(home) = cargo_home() {
        dirs.push(home);
    }
    let in_config = dirs
        .iter()
        .flat_map(|d| [d.join("config.toml"), d.join("config")])
        .any(|f| defines(&f));
    if in_config {
        return Ok(());
    }
    bail!(
        "profile `{profile}` is not defined in `{}` or any cargo config\nhelp: add it, e.g.\n\n[profile.{profile}]\ninherits = \"release\"",
        display_path(&manifest)
    )
}

/// The root `Cargo.toml` of the workspace `manifest` belongs to (itself for a lone package).
pub fn workspace_root_of(manifest: &Utf8Path) -> Result<Utf8PathBuf> {
    let manifest = manifest
        .canonicalize_utf8()
        .with_context(|| format!("`{manifest}`: cannot resolve"))?;
    let metadata = MetadataCommand::new()
        .cargo_path(cargo())
        .manifest_path(&manifest)
        .no_deps()
        .exec()
        .with_context(|| format!("`{}`: cargo metadata failed", display_path(&manifest)))?;
    let root = metadata.workspace_root.join("Cargo.toml");
    Ok(root.canonicalize_utf8().unwrap_or(root))
}

pub fn bin_targets(package: &Package) -> Vec<String> {
    let mut bins: Vec<String> = package
        .targets
        .iter()
        .filter(|t| t.kind.contains(&TargetKind::Bin))
        .map(|t| t.name.clone())
        .collect();
    bins.sort();
    bins
}

/// Which packages to bundle: `-p`, `--workspace`, the current package, or at a virtual
/// workspace root every member with a release table.
pub fn select<'a>(ws: &'a Workspace, opts: &Selection) -> Result<Vec<&'a Package>> {
    let members = ws.members();
    let has_table = |p: &Package| ws.package_table(p).has_table();
    let names = |ps: &[&Package]| {
        ps.iter()
            .map(|p| format!("`{}`", p.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !opts.packages.is_empty() {
        let mut out: Vec<&Package> = Vec::new();
        for spec in &opts.packages {
            let name = spec.split('@').next().unwrap_or(spec);
            let Some(p) = members.iter().find(|p| p.name.as_str() == name) else {
                bail!(
                    "package `{spec}` is not a member of the workspace at `{}` (members: {})",
                    ws.root(),
                    names(&members)
                );
            };
            if !out.iter().any(|o| o.id == p.id) {
                out.push(p);
            }
        }
        return Ok(out);
    }
    let with_tables: Vec<&Package> = members.iter().copied().filter(|p| has_table(p)).collect();
    if opts.workspace {
        if with_tables.is_empty() {
            bail!(
                "no workspace member has a `[package.metadata.release]` table (members: {})\nhelp: add one, or pick packages with `-p`",
                names(&members)
            );
        }
        return Ok(with_tables);
    }
    if let Some(p) = members.iter().find(|p| p.manifest_path == ws.manifest) {
        return Ok(vec![p]);
    }
    if with_tables.is_empty() {
        bail!(
            "`{}` is a virtual workspace and no member has a `[package.metadata.release]` table\nhelp: pick packages with `-p` (candidates: {})",
            display_path(&ws.manifest),
            names(&members)
        );
    }
    Ok(with_tables)
}

fn run(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `rustc -vV`, run where cargo would run it (so toolchain overrides apply).
pub fn rustc(dir: &Utf8Path) -> Result<Rustc> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc)
        .arg("-vV")
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run `{rustc} -vV`"))?;
    if !out.status.success() {
        bail!(
            "`{rustc} -vV` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    let host = field("host:");
    if host.is_empty() {
        bail!("`{rustc} -vV` did not report a host triple");
    }
    Ok(Rustc {
        release: field("release:"),
        commit_hash: field("commit-hash:"),
        host,
    })
}

/// `rustc --print cfg --target <target>`: the cfg values `target.'cfg(..)'` tables match on.
pub fn rustc_cfgs(
    dir: &Utf8Path,
    target: &str,
) -> Result<Vec<cargo_metadata::cargo_platform::Cfg>> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "cfg", "--target", target])
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run `{rustc} --print cfg`"))?;
    if !out.status.success() {
        bail!(
            "`{rustc} --print cfg --target {target}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse_cfgs(&String::from_utf8_lossy(&out.stdout)))
}

/// `CARGO_HOME`, as cargo resolves it.
pub fn cargo_home() -> Option<Utf8PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Utf8PathBuf::from_path_buf(home.into()).ok();
    }
    let home = std::env::var_os("HOME")?;
    Utf8PathBuf::from_path_buf(std::path::PathBuf::from(home).join(".cargo")).ok()
}

/// Parse `rustc --print cfg` output.
pub fn parse_cfgs(text: &str) -> Vec<cargo_metadata::cargo_platform::Cfg> {
    text.lines().filter_map(|l| l.parse().ok()).collect()
}

/// One section of a release table, where it was found.
pub struct Section<'a> {
    pub value: &'a serde_json::Value,
    pub origin: Origin,
    /// Relative paths in it are relative to this directory (the manifest's).
    pub dir: Utf8PathBuf,
}

/// Parse `SOURCE_DATE_EPOCH`: a decimal Unix time; anything else is an error.
pub fn parse_source_date_epoch(value: &str) -> Result<u64> {
    let valid = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u64>() {
        Ok(n) if valid && n <= MAX_MTIME => Ok(n),
        Ok(n) if valid => {
            bail!("SOURCE_DATE_EPOCH: {n} is too large for a ustar archive (at most {MAX_MTIME})")
        }
        _ => bail!("SOURCE_DATE_EPOCH: {value:?} is not a decimal Unix time"),
    }
}

/// The git state of `dir`, if it is inside a git work tree and git is installed. Changes
/// below `outputs` (the tool's own target and out directories) never count as dirty: a
/// first run in a clone without `.gitignore` creates them, and a second run must not record
/// a different state.
pub fn git(dir: &Utf8Path, outputs: &[&Utf8Path]) -> Option<(Git, u64)> {
    let git = |args: &[&str]| run(Command::new("git").arg("-C").arg(dir).args(args));
    let mut status: Vec<String> = ["status", "--porcelain", "--", "."]
        .map(String::from)
        .to_vec();
    for output in outputs {
        if let Ok(rel) = output.strip_prefix(dir)
            && !rel.as_str().is_empty()
        {
            status.push(format!(":(exclude,literal){rel}"));
        }
    }
    let status: Vec<&str> = status.iter().map(String::as_str).collect();
    // `git status` walks the work tree; the other two questions run beside it.
    let (head, prefix, status) = std::thread::scope(|scope| {
        let status = scope.spawn(|| git(&status));
        let prefix = scope.spawn(|| git(&["rev-parse", "--show-prefix"]));
        let head = git(&["log", "-1", "--format=%H %ct", "HEAD"]);
        let join = |t: std::thread::ScopedJoinHandle<'_, Option<String>>| {
            t.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        (head, join(prefix), join(status))
    });
    let head = head?;
    let (commit, time) = head.split_once(' ')?;
    let time = time.parse().ok()?;
    let dirty = status.is_none_or(|s| !s.is_empty());
    let workspace = prefix?.trim_end_matches('/').to_string();
    Some((
        Git {
            commit: commit.to_string(),
            dirty,
            workspace,
        },
        time,
    ))
}

/// `SOURCE_DATE_EPOCH`, else the commit time of `HEAD`, else [`CONSTANT_EPOCH`].
pub fn timestamp(source_date_epoch: Option<&str>, git_time: Option<u64>) -> Result<Timestamp> {
    if let Some(value) = source_date_epoch {
        return Ok(Timestamp {
            epoch: parse_source_date_epoch(value)?,
            source: TimestampSource::SourceDateEpoch,
        });
    }
    Ok(match git_time {
        Some(t) if t <= MAX_MTIME => Timestamp {
            epoch: t,
            source: TimestampSource::GitCommit,
        },
        _ => Timestamp {
            epoch: CONSTANT_EPOCH,
            source: TimestampSource::Constant,
        },
    })
}

/// SHA-256 of the workspace's `Cargo.lock`, if it has one.
pub fn cargo_lock_sha256(root: &Utf8Path) -> Result<Option<String>> {
    use sha2::{Digest, Sha256};
    let path = root.join("Cargo.lock");
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{path}`")),
    };
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)
            .with_context(|| format!("cannot read `{path}`"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Some(archive::hex(&hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_date_epoch_parsing() {
        assert_eq!(
            parse_source_date_epoch("1700000000").unwrap(),
            1_700_000_000
        );
        assert_eq!(parse_source_date_epoch("0").unwrap(), 0);
        for bad in [
            "",
            " 1",
            "1.5",
            "-1",
            "+1",
            "abc",
            "1e9",
            "99999999999999999999",
        ] {
            let e = parse_source_date_epoch(bad).unwrap_err().to_string();
            assert!(e.starts_with("SOURCE_DATE_EPOCH: "), "{bad:?}: {e}");
        }
        assert!(
            parse_source_date_epoch("9999999999")
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
    }

    #[test]
    fn timestamp_precedence() {
        assert_eq!(
            timestamp(Some("5"), Some(7)).unwrap().source,
            TimestampSource::SourceDateEpoch
        );
        let t = timestamp(None, Some(7)).unwrap();
        assert_eq!((t.epoch, t.source), (7, TimestampSource::GitCommit));
        let t = timestamp(None, None).unwrap();
        assert_eq!(
            (t.epoch, t.source),
            (CONSTANT_EPOCH, TimestampSource::Constant)
        );
        assert!(timestamp(Some("x"), Some(7)).is_err());
    }
}
