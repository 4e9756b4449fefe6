//! Provenance beside each bundle: `<bundle>.intoto.jsonl`, one in-toto Statement v1 with a
//! SLSA v1 provenance predicate saying how the bundle was built. Made from the manifest and
//! the bundle's digest only (no clock, no host), so two builds of a commit give the same file.
//! Generated locally it is SLSA Build L1: it says what happened, nothing vouches for it
//! unless it is signed or attested by the CI platform.

use serde::{Deserialize, Serialize};

use crate::archive::manifest::Manifest;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The build type: what the parameters mean (documented in docs/supply-chain.md).
pub const BUILD_TYPE: &str =
    "https://github.com/cargo-release-bundle/cargo-release-bundle/buildtypes/bundle/v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub sha256: String,
}

/// Where provenance lives: beside the bundle.
pub fn path_of(bundle: &camino::Utf8Path) -> camino::Utf8PathBuf {
    crate::archive::companions::Companion::Provenance.path(bundle)
}

/// The builder: `local`, or the CI run that built it (GitHub Actions' run URL).
pub fn builder_id(env: &dyn Fn(&str) -> Option<String>) -> String {
    match (
        env("GITHUB_SERVER_URL"),
        env("GITHUB_REPOSITORY"),
        env("GITHUB_RUN_ID"),
    ) {
        (Some(server), Some(repo), Some(run)) => format!("{server}/{repo}/actions/runs/{run}"),
        _ => "local".to_string(),
    }
}

/// The source repository, where CI says it (GitHub Actions); `None` on a workstation (a
/// local remote's URL could name a path of this machine).
pub fn repository(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    match (env("GITHUB_SERVER_URL"), env("GITHUB_REPOSITORY")) {
        (Some(server), Some(repo)) => Some(format!("{server}/{repo}")),
        _ => None,
    }
}

/// The statement for a bundle `file_name` with digest `sha256`, built as `m` records.
pub fn statement(
    m: &Manifest,
    file_name: &str,
    sha256: &str,
    builder: &str,
    repository: Option<&str>,
) -> Statement {
    let mut resolved = vec![serde_json::json!({
        "name": "rustc",
        "annotations": {"release": m.rustc.release, "commitHash": m.rustc.commit_hash, "host": m.rustc.host},
    })];
    if let Some(g) = &m.git {
        resolved.push(serde_json::json!({
            "name": "source",
            "digest": {"gitCommit": g.commit},
            "annotations": {"dirty": g.dirty, "workspace": g.workspace},
        }));
    }
    if let Some(lock) = &m.cargo_lock_sha256 {
        resolved.push(serde_json::json!({"name": "Cargo.lock", "digest": {"sha256": lock}}));
    }
    let predicate = serde_json::json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "repository": repository,
                "commit": m.git.as_ref().map(|g| g.commit.clone()),
                "package": m.package,
                "profile": m.profile,
                "target": m.target,
                "features": m.features,
            },
            "internalParameters": {
                "generator": m.generator,
                "formatVersion": m.format_version,
                "compression": m.compression,
                "timestamp": m.timestamp,
                "pathRemap": m.path_remap,
            },
            "resolvedDependencies": resolved,
        },
        "runDetails": {"builder": {"id": builder}},
    });
    Statement {
        kind: STATEMENT_TYPE.into(),
        subject: vec![Subject {
            name: file_name.into(),
            digest: Digest {
                sha256: sha256.into(),
            },
        }],
        predicate_type: PREDICATE_TYPE.into(),
        predicate,
    }
}

/// The image built beside the bundle, as a second subject (`name`, the sha256 of the
/// `.oci.tar`, its manifest digest) and its base as a resolved dependency.
pub fn add_image(
    st: &mut Statement,
    name: &str,
    sha256: &str,
    manifest_digest: &str,
    base_digest: Option<&str>,
) {
    st.subject.push(Subject {
        name: name.into(),
        digest: Digest {
            sha256: sha256.into(),
        },
    });
    let resolved = &mut st.predicate["buildDefinition"]["resolvedDependencies"];
    if let Some(list) = resolved.as_array_mut() {
        list.push(serde_json::json!({
            "name": "oci-image",
            "digest": {"sha256": manifest_digest.trim_start_matches("sha256:")},
            "annotations": {"file": name},
        }));
        if let Some(base) = base_digest {
            list.push(serde_json::json!({
                "name": "base-image",
                "digest": {"sha256": base.trim_start_matches("sha256:")},
            }));
        }
    }
}

/// The image built beside a bundle, as provenance and signing need it.
pub struct ImageFile<'a> {
    pub path: &'a camino::Utf8Path,
    pub digest: &'a str,
    pub base_digest: Option<&'a str>,
}

/// Provenance beside the bundle (after it and its image, so a bundle never has stale
/// provenance), then signatures of the bundle and its image when a key is given.
pub fn attest(
    bundle: (&camino::Utf8Path, &str),
    image: Option<ImageFile>,
    recorded: &crate::archive::manifest::Manifest,
    sign_key: Option<&camino::Utf8Path>,
    signer: crate::attest::sign::Signer,
    shell: &crate::output::Output,
) -> anyhow::Result<()> {
    let (path, sha256) = bundle;
    let file_name = path.file_name().unwrap_or_default();
    let mut statement = statement(
        recorded,
        file_name,
        sha256,
        &builder_id(&|k| std::env::var(k).ok()),
        repository(&|k| std::env::var(k).ok()).as_deref(),
    );
    if let Some(i) = &image {
        let name = i.path.file_name().unwrap_or_default();
        let image_sha = crate::util::sha256_of(i.path)?;
        add_image(&mut statement, name, &image_sha, i.digest, i.base_digest);
    }
    let mut line = serde_json::to_vec(&statement)?;
    line.push(b'\n');
    crate::util::write_atomically(&path_of(path), &line)?;
    let Some(key) = sign_key else {
        return Ok(());
    };
    let release = crate::attest::sign::Signed {
        name: &recorded.name,
        version: &recorded.version,
        commit: recorded.git.as_ref().map(|g| g.commit.as_str()),
    };
    let files = std::iter::once(path).chain(image.as_ref().map(|i| i.path));
    for file in files {
        for sig in crate::attest::sign::sign_file(signer, key, file, &release)? {
            shell.status("Signed", crate::util::display_path(&sig));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_is_local_unless_ci_says_where() {
        assert_eq!(builder_id(&|_| None), "local");
        let gh = |k: &str| match k {
            "GITHUB_SERVER_URL" => Some("https://github.com".to_string()),
            "GITHUB_REPOSITORY" => Some("o/r".to_string()),
            "GITHUB_RUN_ID" => Some("42".to_string()),
            _ => None,
        };
        assert_eq!(builder_id(&gh), "https://github.com/o/r/actions/runs/42");
        assert_eq!(repository(&gh).as_deref(), Some("https://github.com/o/r"));
        assert_eq!(repository(&|_| None), None);
    }
}
