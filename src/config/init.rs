//! `cargo release-bundle init`: add a commented, valid release table to a package's
//! `Cargo.toml` (appending, so the file's formatting and comments stay as they are),
//! suggest a `priv/` directory, add `[profile.<name>]` when asked, and say what to run next.

use std::fs;

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::config::keys::{CARGO_RELEASE_KEYS, KNOWN_KEYS};
use crate::config::project::{self, BUILT_IN_PROFILES};
use crate::output::Output;
use crate::util::write_atomically;

fn table_text(table: &str, name: &str, profile: Option<&str>) -> String {
    let mut text = format!(
        r#"
# Release bundle settings for `cargo release-bundle` (every key: docs/configuration.md in its repository).
[{table}]
# Release name: the launcher `bin/{name}` and the archive prefix.
name = "{name}"
# Bin targets to ship (default: every bin target of the package).
# bins = ["{name}"]
# Runtime data shipped as priv/ (templates, migrations, static assets): the package's priv/
# directory when it exists; set a path to use another, or false to ship none.
# priv = "priv"
# Globs never shipped, matched against paths inside the bundle.
exclude = ["**/*.swp", "**/.DS_Store"]
# Extra files: {{ source = glob, dest = "dir/" or "file", mode = "0644" or "0755" }}.
# include = [{{ source = "README.md", dest = "./" }}]
# Environment defaults baked into the launcher; the server's environment wins. No secrets here.
# ${{RELEASE_PRIV}}, ${{RELEASE_ROOT}}, ${{RELEASE_TMP}} are replaced by the release's paths.
# env = {{ RUST_LOG = "info" }}
# Variables that must be set before `bin/{name} start` runs the service.
# required-env = ["PORT"]
# Secrets stay on the server, in a KEY=VALUE file read at start.
# env-file = "/etc/{name}/env"
# Seconds between SIGTERM and SIGKILL on `bin/{name} stop`.
stop-timeout = 30
format = "tar.zst"
compression-level = 3
"#
    );
    if let Some(p) = profile {
        text.push_str(&format!("\n# Overrides applied with `--profile {p}`.\n[{table}.profile.{p}]\ncompression-level = 19\n"));
    }
    text
}

/// What `init` is asked to do.
pub struct Request {
    /// `Cargo.toml` of the package [default: the one in the working directory].
    pub manifest_path: Option<Utf8PathBuf>,
    /// Also add `[profile.<name>]` (inheriting from release).
    pub profile: Option<String>,
}

/// The package being initialised, as read: its manifest's text, the name, and which table
/// our settings go in.
struct Target {
    manifest: Utf8PathBuf,
    shown: Utf8PathBuf,
    text: String,
    doc: toml::Table,
    name: String,
    /// `package.metadata.release-bundle` in a cargo-release project, else `…release`.
    table: &'static str,
    cargo_release: bool,
}

/// 0 written; an existing table is an error.
pub fn init(opts: &Request, shell: &Output) -> Result<u8> {
    let manifest = match &opts.manifest_path {
        Some(p) => p.clone(),
        None => Utf8PathBuf::from_path_buf(std::env::current_dir()?.join("Cargo.toml"))
            .map_err(|p| anyhow::anyhow!("`{}`: path is not UTF-8", p.display()))?,
    };
    let t = read_target(manifest)?;
    let profile = opts
        .profile
        .as_deref()
        .filter(|p| !BUILT_IN_PROFILES.contains(p));
    let mut new_text = t.text.clone();
    if !new_text.ends_with('\n') {
        new_text.push('\n');
    }
    new_text.push_str(&table_text(t.table, &t.name, profile));
    // Profiles belong to the workspace root: add it there when this package is not the root.
    let root = project::workspace_root_of(&t.manifest)?;
    let mut root_edit = None;
    if let Some(p) = profile {
        if root == t.manifest {
            if !has_profile(&t.doc, p) {
                new_text.push_str(&format!("\n[profile.{p}]\ninherits = \"release\"\n"));
            }
        } else {
            root_edit = root_profile_edit(&root, p)?;
        }
    }
    // What we write must still be valid TOML.
    let shown = &t.shown;
    new_text
        .parse::<toml::Table>()
        .with_context(|| format!("`{shown}`: the new table does not parse (please report this)"))?;
    write_atomically(&t.manifest, new_text.as_bytes())?;
    let root_profile = root_edit.is_some();
    if let Some(root_text) = root_edit {
        write_atomically(&root, root_text.as_bytes())?;
    }
    report(
        &t,
        &root,
        profile,
        root_profile,
        opts.profile.as_deref(),
        shell,
    );
    Ok(0)
}

fn has_profile(doc: &toml::Table, p: &str) -> bool {
    doc.get("profile").and_then(|t| t.get(p)).is_some()
}

/// Read the package's manifest and decide where our table goes; refuse when one exists.
fn read_target(manifest: Utf8PathBuf) -> Result<Target> {
    let shown = crate::util::display_path(&manifest);
    let text = fs::read_to_string(&manifest).with_context(|| format!("`{shown}`: cannot read"))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("`{shown}`: not valid TOML"))?;
    let Some(package) = doc.get("package").and_then(|p| p.as_table()) else {
        bail!(
            "`{shown}`: has no [package] (a virtual workspace?); run init in the member to bundle"
        );
    };
    let name = package
        .get("name")
        .and_then(|n| n.as_str())
        .with_context(|| format!("`{shown}`: package.name is missing or not a string"))?
        .to_string();
    let metadata = package.get("metadata").and_then(|m| m.as_table());
    if metadata.is_some_and(|m| m.contains_key("release-bundle")) {
        bail!("`{shown}`: package.metadata.release-bundle already exists; not changing it");
    }
    let release = metadata
        .and_then(|m| m.get("release"))
        .and_then(|r| r.as_table());
    if release.is_some_and(|r| r.keys().any(|k| KNOWN_KEYS.contains(&k.as_str()))) {
        bail!(
            "`{shown}`: package.metadata.release already configures release bundles; not changing it"
        );
    }
    let dir = manifest.parent().unwrap_or(Utf8Path::new(".")).to_owned();
    let cargo_release = release
        .is_some_and(|r| r.keys().any(|k| CARGO_RELEASE_KEYS.contains(&k.as_str())))
        || dir.join("release.toml").is_file()
        || metadata.is_some_and(|m| m.contains_key("release"));
    let table = if cargo_release {
        "package.metadata.release-bundle"
    } else {
        "package.metadata.release"
    };
    Ok(Target {
        manifest,
        shown,
        text,
        name,
        table,
        cargo_release,
        doc,
    })
}

/// The workspace root's manifest with `[profile.<p>]` added, unless it has one.
fn root_profile_edit(root: &Utf8Path, p: &str) -> Result<Option<String>> {
    let root_text = fs::read_to_string(root).with_context(|| format!("`{root}`: cannot read"))?;
    let root_doc: toml::Table = root_text
        .parse()
        .with_context(|| format!("`{root}`: not valid TOML"))?;
    if has_profile(&root_doc, p) {
        return Ok(None);
    }
    Ok(Some(format!(
        "{}\n\n[profile.{p}]\ninherits = \"release\"\n",
        root_text.trim_end_matches('\n')
    )))
}

/// Say what was written and what to run next.
fn report(
    t: &Target,
    root: &Utf8Path,
    profile: Option<&str>,
    root_profile: bool,
    asked: Option<&str>,
    shell: &Output,
) {
    let (shown, table) = (&t.shown, t.table);
    if t.cargo_release {
        shell.warn(format!(
            "`{shown}` is a cargo-release project, which rejects unknown keys in [package.metadata.release]; wrote [{table}] instead"
        ));
    }
    shell.status("Added", format!("[{table}] to {shown}"));
    if let Some(p) = profile {
        let into = if root_profile {
            Some(crate::util::display_path(root).to_string())
        } else if !has_profile(&t.doc, p) && root == t.manifest {
            Some(shown.to_string())
        } else {
            None
        };
        if let Some(into) = into {
            shell.status(
                "Added",
                format!("[profile.{p}] (inherits release) to {into}"),
            );
        }
    }
    let profile_flag = asked.map(|p| format!(" --profile {p}")).unwrap_or_default();
    shell.out(format!(
        "Next steps:\n  mkdir priv                             # runtime data shipped as priv/ (optional)\n  cargo release-bundle plan{profile_flag}      # see what goes in\n  cargo release-bundle{profile_flag}           # build and bundle\n  cargo release-bundle verify <bundle>   # check it before publishing"
    ));
}
