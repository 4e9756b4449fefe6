//! `verify --rebuild`: rebuild a bundle from the commit its manifest records, in a fresh
//! checkout at another path with another umask, time zone and locale, and compare the bytes.
//! On a mismatch, a tar-aware summary says which entries differ and how.

use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::archive::manifest::{Git, Manifest, TimestampSource};
use crate::archive::read::{differences, summarize};
use crate::config::project;
use crate::verify::Finding;

fn refuse(message: String) -> Vec<Finding> {
    vec![Finding::error("rebuild-refused", None, message)]
}

fn git(dir: &Utf8Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run git")
}

/// Rebuild `bundle` (whose verified manifest is `m` and digest `original_sha`, both from the
/// verification pass) from the git repository around `repo`.
/// `Err` only for local I/O failures; every reason not to trust the bundle is a finding.
pub fn rebuild(
    bundle: &Utf8Path,
    original_sha: &str,
    m: &Manifest,
    repo: &Utf8Path,
    shell: &crate::output::Output,
) -> Result<Vec<Finding>> {
    let (g, toplevel, host) = match preconditions(m, repo)? {
        Ok(found) => found,
        Err(why) => return Ok(refuse(why)),
    };
    // A fresh checkout somewhere else, with a space in its path for good measure.
    let tmp = tempfile::Builder::new()
        .prefix("crb-rebuild-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let root = Utf8PathBuf::from_path_buf(tmp.path().join("re build"))
        .map_err(|p| anyhow::anyhow!("`{}`: temporary path is not UTF-8", p.display()))?;
    let checkout = match check_out(&toplevel, &g.commit, &root.join("src"), shell)? {
        Ok(dir) => dir,
        Err(why) => return Ok(refuse(why)),
    };
    let workspace = if g.workspace.is_empty() {
        checkout
    } else {
        checkout.join(&g.workspace)
    };
    // The image beside the bundle is rebuilt and compared too.
    let image =
        bundle
            .parent()
            .unwrap_or(Utf8Path::new("."))
            .join(crate::archive::companions::image_file(
                &m.name, &m.version, &m.target,
            ));
    let with_image = image.is_file();
    let mut cmd = command(m, &workspace, &root.join("out"), &host, with_image)?;
    // The nested build's own progress (cargo's) shows on stderr unless asked to be quiet.
    if shell.quiet() {
        cmd.arg("--quiet");
    }
    shell.status(
        "Rebuilding",
        format!(
            "{} {} with another path, umask, TZ and locale (a full build)",
            m.name, m.version
        ),
    );
    let result = cmd.output().context("cannot run the rebuild")?;
    shell.status("Comparing", format!("the rebuilt bundle with `{bundle}`"));
    let outside = outside_note(m);
    if !result.status.success() {
        return Ok(vec![Finding::error(
            "rebuild-failed",
            None,
            format!(
                "rebuilding commit {} failed ({}){outside}",
                g.commit, result.status
            ),
        )]);
    }
    let message: serde_json::Value =
        serde_json::from_slice(&result.stdout).context("the rebuild printed no bundle message")?;
    let rebuilt = Utf8PathBuf::from(message["path"].as_str().unwrap_or_default());
    let mut findings = rebuilt_findings(
        bundle,
        original_sha,
        &message,
        &rebuilt,
        &g.commit,
        &outside,
    )?;
    if with_image {
        findings.push(compare_image(&image, &message)?);
    }
    Ok(findings)
}

/// What a rebuild needs: a clean recorded commit, the same toolchain, the commit in the
/// repository around `repo`. `Ok(Err(why))` when one is missing.
fn preconditions(
    m: &Manifest,
    repo: &Utf8Path,
) -> Result<std::result::Result<(Git, String, String), String>> {
    let Some(g) = &m.git else {
        return Ok(Err("the manifest records no git commit (the bundle was built outside git), so there is nothing to rebuild from".into()));
    };
    if g.dirty {
        return Ok(Err(format!(
            "the bundle was built from a work tree with uncommitted changes; commit {} alone does not reproduce it",
            g.commit
        )));
    }
    let here = project::rustc(repo)?;
    if here.release != m.rustc.release || here.commit_hash != m.rustc.commit_hash {
        return Ok(Err(format!(
            "the bundle was built with rustc {} ({}), this machine has rustc {} ({}); install the same toolchain to rebuild",
            m.rustc.release, m.rustc.commit_hash, here.release, here.commit_hash
        )));
    }
    let top = git(repo, &["rev-parse", "--show-toplevel"])?;
    if !top.status.success() {
        return Ok(Err(format!(
            "`{repo}` is not inside a git repository; run from a clone of the project or pass --repo"
        )));
    }
    let toplevel = String::from_utf8_lossy(&top.stdout).trim().to_string();
    let exists = git(
        repo,
        &["cat-file", "-e", &format!("{}^{{commit}}", g.commit)],
    )?;
    if !exists.status.success() {
        return Ok(Err(format!(
            "commit {} is not available in the repository at `{toplevel}` (fetch it first)",
            g.commit
        )));
    }
    Ok(Ok((g.clone(), toplevel, here.host)))
}

/// A shared clone of `toplevel` at `dest`, checked out at `commit`.
fn check_out(
    toplevel: &str,
    commit: &str,
    dest: &Utf8Path,
    shell: &crate::output::Output,
) -> Result<std::result::Result<Utf8PathBuf, String>> {
    shell.status(
        "Checking out",
        format!("commit {commit} into a fresh directory"),
    );
    let clone = Command::new("git")
        .args(["clone", "--quiet", "--shared", "--no-checkout", toplevel])
        .arg(dest)
        .output()
        .context("cannot run git clone")?;
    if !clone.status.success()
        || !git(dest, &["checkout", "--quiet", "--detach", commit])?
            .status
            .success()
    {
        return Ok(Err(format!(
            "cannot check out commit {commit} into a temporary directory: {}",
            String::from_utf8_lossy(&clone.stderr).trim()
        )));
    }
    Ok(Ok(dest.to_owned()))
}

/// This tool bundling the checkout again as the manifest records it, with another umask, time
/// zone and locale.
fn command(
    m: &Manifest,
    workspace: &Utf8Path,
    out: &Utf8Path,
    host: &str,
    with_image: bool,
) -> Result<Command> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut args: Vec<String> = vec![
        "release-bundle".into(),
        "--manifest-path".into(),
        workspace.join("Cargo.toml").into_string(),
        "--package".into(),
        m.package.clone(),
        "--profile".into(),
        m.profile.clone(),
        "--format".into(),
        m.compression.format.clone(),
        "--out-dir".into(),
        out.to_string(),
        "--locked".into(),
        "--message-format".into(),
        "json".into(),
        "--no-default-features".into(),
    ];
    if !m.features.is_empty() {
        args.extend(["--features".into(), m.features.join(",")]);
    }
    if m.target != host {
        args.extend(["--target".into(), m.target.clone()]);
    }
    if with_image {
        args.push("--image".into());
    }
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 0027 && exec \"$0\" \"$@\"")
        .arg(&exe)
        .args(&args)
        .env("TZ", "Pacific/Kiritimati")
        .env("LC_ALL", "C")
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    match m.timestamp.source {
        TimestampSource::SourceDateEpoch => {
            cmd.env("SOURCE_DATE_EPOCH", m.timestamp.epoch.to_string())
        }
        TimestampSource::GitCommit | TimestampSource::Constant => {
            cmd.env_remove("SOURCE_DATE_EPOCH")
        }
    };
    Ok(cmd)
}

/// The likely cause of a failed rebuild the manifest already knows of.
fn outside_note(m: &Manifest) -> String {
    match m.outside_path_dependencies.as_slice() {
        [] => String::new(),
        deps => format!(
            "; likely cause: the path dependencies {} lie outside the workspace's repository (bundling warned about this)",
            deps.iter()
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The image beside the bundle against the rebuilt one.
fn compare_image(image: &Utf8Path, message: &serde_json::Value) -> Result<Finding> {
    let again = Utf8PathBuf::from(message["image"]["path"].as_str().unwrap_or_default());
    let (ours, theirs) = (
        crate::util::sha256_of(image)?,
        crate::util::sha256_of(&again)?,
    );
    Ok(if ours == theirs {
        Finding::note(
            "rebuild-image-identical",
            None,
            format!("the image was rebuilt too: identical bytes (sha256 {ours})"),
        )
    } else {
        Finding::error(
            "rebuild-image-differs",
            None,
            format!("`{image}` differs from the rebuilt image (sha256 {ours}, rebuilt {theirs})"),
        )
    })
}

/// What comparing the rebuilt bundle with the original found.
fn rebuilt_findings(
    bundle: &Utf8Path,
    original_sha: &str,
    message: &serde_json::Value,
    rebuilt: &Utf8Path,
    commit: &str,
    outside: &str,
) -> Result<Vec<Finding>> {
    let g_commit = commit;
    if message["sha256"].as_str() == Some(original_sha) {
        return Ok(vec![Finding::note(
            "rebuild-identical",
            None,
            format!(
                "rebuilt from commit {} in a fresh checkout: identical bytes (sha256 {original_sha})",
                &g_commit[..g_commit.len().min(12)]
            ),
        )]);
    }
    let diffs = differences(&summarize(bundle)?, &summarize(rebuilt)?);
    let mut findings: Vec<Finding> = diffs
        .iter()
        .take(20)
        .map(|(path, what)| Finding::error("rebuild-differs", Some(path), what.clone()))
        .collect();
    let summary = if diffs.is_empty() {
        "the rebuilt archive has the same entries but different bytes (compression settings or library differ)".to_string()
    } else {
        format!(
            "{} entries differ from a rebuild of commit {g_commit}",
            diffs.len()
        )
    };
    let summary = format!("{summary}{outside}");
    findings.push(Finding::error("rebuild-differs", None, summary));
    Ok(findings)
}
