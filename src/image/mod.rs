//! The release as an OCI image: the bundle's own files under `/opt/<name>/` in two layers
//! (priv first, as it changes least; then executables, launcher, manifest and sums), on
//! `scratch` or a base read from an OCI layout on disk, written as an OCI image layout in a
//! tar (`<name>-<version>-<triple>.oci.tar`).
//!
//! This file is pure: the `image` configuration, what the image runs ([`Spec`]), and the
//! OCI JSON documents, serialized from structs in a fixed field order with sorted maps (no
//! `HashMap` anywhere, so the digests are a function of the inputs). `build.rs` writes the
//! layout; `verify.rs` checks one.

pub mod build;
mod layers;
pub mod merge;
pub mod verify;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::value::{self, ConfigError, Origin};
use crate::config::{LauncherConfig, Workdir};

/// Every layer entry's mtime (as jib does): a constant, so that an unchanged layer keeps its
/// digest from release to release whatever the bundle's timestamp.
pub const LAYER_MTIME: u64 = 1;

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `[package.metadata.release.image]` (or `image = true`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    /// `oci-layout:DIR[:REF]` or `oci-archive:FILE[:REF]`; `None` is `scratch`.
    pub base: Option<String>,
    /// `User` (default `65532:65532`).
    pub user: Option<String>,
    /// Where the release goes (default `/opt/<name>`).
    pub path: Option<String>,
    /// `ExposedPorts`: `8080/tcp`, `53/udp` (a bare number is tcp).
    pub ports: Vec<String>,
    /// `org.opencontainers.image.source`.
    pub source: Option<String>,
}

const KEYS: &str = "base, user, path, ports, source";

/// Read the `image` key: `true`/`false`, or a table. `None` when off.
pub fn parse_config(v: &Value, o: &Origin) -> Result<Option<ImageConfig>, ConfigError> {
    if let Value::Bool(on) = v {
        return Ok(on.then(ImageConfig::default));
    }
    let mut c = ImageConfig::default();
    for (key, item) in value::table(v, o)? {
        let ko = o.child(key);
        match key.as_str() {
            "base" => {
                let base = value::string(item, &ko)?.value;
                parse_base(&base).map_err(|e| ko.error(e))?;
                c.base = Some(base);
            }
            "user" => {
                let user = value::string(item, &ko)?.value;
                let ok = !user.is_empty()
                    && user
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "_-.:".contains(ch));
                if !ok {
                    return Err(ko.error("expected a user such as \"65532:65532\" or \"app\""));
                }
                c.user = Some(user);
            }
            "path" => {
                let path = value::string(item, &ko)?.value;
                let ok = path.starts_with('/')
                    && path.len() > 1
                    && crate::archive::check_entry_name(path.trim_matches('/')).is_ok();
                if !ok {
                    return Err(ko.error("expected an absolute directory such as \"/opt/billing\""));
                }
                c.path = Some(path.trim_end_matches('/').to_string());
            }
            "ports" => {
                for (i, p) in value::string_list(item, &ko)?.into_iter().enumerate() {
                    c.ports
                        .push(parse_port(&p.value).map_err(|e| ko.index(i).error(e))?);
                }
            }
            "source" => c.source = Some(value::string(item, &ko)?.value),
            _ => return Err(ko.error(format!("unknown key (known: {KEYS})"))),
        }
    }
    Ok(Some(c))
}

/// `8080` → `8080/tcp`; `53/udp` stays.
pub fn parse_port(text: &str) -> Result<String, String> {
    let (port, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    match (port.parse::<u16>(), proto) {
        (Ok(p), "tcp" | "udp" | "sctp") if p > 0 => Ok(format!("{p}/{proto}")),
        _ => Err(format!(
            "{text:?} is not a port (e.g. 8080, 8080/tcp, 53/udp)"
        )),
    }
}

/// Where a base image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Layout {
        dir: String,
        reference: Option<String>,
    },
    Archive {
        file: String,
        reference: Option<String>,
    },
}

pub fn parse_base(text: &str) -> Result<Base, String> {
    let split = |rest: &str| -> (String, Option<String>) {
        match rest.rsplit_once(':') {
            Some((path, r)) if !r.contains('/') && !r.is_empty() => (path.into(), Some(r.into())),
            _ => (rest.into(), None),
        }
    };
    if let Some(rest) = text.strip_prefix("oci-layout:") {
        let (dir, reference) = split(rest);
        return Ok(Base::Layout { dir, reference });
    }
    if let Some(rest) = text.strip_prefix("oci-archive:") {
        let (file, reference) = split(rest);
        return Ok(Base::Archive { file, reference });
    }
    Err(format!(
        "{text:?}: a base is read from disk, never fetched: `oci-layout:DIR[:REF]` or `oci-archive:FILE[:REF]` (fill one with `skopeo copy docker://IMAGE oci:DIR:REF`)"
    ))
}

/// `scratch` has no libc: only static executables run on it.
pub fn check_scratch(spec: &Spec) -> Result<(), String> {
    if spec.base.is_none() && !spec.target.contains("musl") {
        return Err(format!(
            "{}: an image without a base runs on `scratch`, which has no libc, and this target's executables need one; build for a static target (`--target x86_64-unknown-linux-musl`) or set `image.base = \"oci-layout:DIR[:REF]\"` (a glibc base such as distroless/cc: `skopeo copy docker://gcr.io/distroless/cc-debian12 oci:DIR:base`)",
            spec.target
        ));
    }
    if platform(&spec.target).is_none() {
        return Err(format!(
            "{}: no OCI platform is known for this target",
            spec.target
        ));
    }
    Ok(())
}

/// The release an image is made of, as the bundle plan decided it.
pub struct Release<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub target: &'a str,
    /// The executable the release runs (`None`: several, none chosen).
    pub main: Option<&'a str>,
}

/// The image a package asks for: its `image` key (else the workspace's), or `--image`.
pub fn spec_for(
    ws: &crate::config::project::Workspace,
    package: &cargo_metadata::Package,
    config: &crate::config::ReleaseConfig,
    release: &Release,
    profile: &str,
    flag: bool,
) -> anyhow::Result<Option<Spec>> {
    let wanted = match ws.sections(package, "image", profile).first() {
        Some(section) => {
            parse_config(section.value, &section.origin).map_err(|e| anyhow::anyhow!("{e}"))?
        }
        None => None,
    };
    let Some(image_config) = wanted.or_else(|| flag.then(ImageConfig::default)) else {
        return Ok(None);
    };
    let Some(main) = release.main else {
        anyhow::bail!(
            "{}: the image runs one executable and package `{}` ships several; set `main`",
            crate::util::display_path(&package.manifest_path),
            package.name
        );
    };
    let mut spec = Spec::new(
        &image_config,
        &config.launcher,
        release.name,
        release.version,
        release.target,
        main,
    );
    // A relative base is relative to the package's directory, wherever cargo runs from.
    if let (Some(base), Some(dir)) = (&spec.base, package.manifest_path.parent()) {
        spec.base = Some(anchor_base(base, dir.as_str()));
    }
    check_scratch(&spec).map_err(anyhow::Error::msg)?;
    Ok(Some(spec))
}

/// `base` with a relative directory or file made relative to `dir`.
pub fn anchor_base(base: &str, dir: &str) -> String {
    for prefix in ["oci-layout:", "oci-archive:"] {
        if let Some(rest) = base.strip_prefix(prefix)
            && !rest.starts_with('/')
        {
            return format!("{prefix}{dir}/{rest}");
        }
    }
    base.to_string()
}

/// The OCI platform of a Rust target triple.
pub fn platform(triple: &str) -> Option<(&'static str, Option<&'static str>)> {
    let arch = triple.split('-').next()?;
    Some(match arch {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", None),
        "armv7" | "armv7a" => ("arm", Some("v7")),
        "arm" => ("arm", Some("v6")),
        "i686" | "i586" => ("386", None),
        "riscv64gc" | "riscv64" => ("riscv64", None),
        "powerpc64le" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        _ => return None,
    })
}

/// What the image runs and where: everything of the config and release that enters the
/// image's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub version: String,
    pub target: String,
    /// Absolute, no trailing slash (`/opt/webapp`).
    pub root: String,
    pub user: String,
    pub ports: Vec<String>,
    pub base: Option<String>,
    pub source: Option<String>,
    pub revision: Option<String>,
    /// The bundle's timestamp (Unix seconds): `created`.
    pub created: u64,
    /// The main executable under `libexec/`, its configured args, and the env defaults.
    pub main: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: Workdir,
    /// Whether the base has a POSIX shell (then the launcher is the entrypoint); known once
    /// the base is read.
    pub shell: bool,
}

impl Spec {
    pub fn new(
        image: &ImageConfig,
        launcher: &LauncherConfig,
        name: &str,
        version: &str,
        target: &str,
        main: &str,
    ) -> Spec {
        Spec {
            name: name.into(),
            version: version.into(),
            target: target.into(),
            root: image.path.clone().unwrap_or_else(|| format!("/opt/{name}")),
            user: image.user.clone().unwrap_or_else(|| "65532:65532".into()),
            ports: image.ports.clone(),
            base: image.base.clone(),
            source: image.source.clone(),
            revision: None,
            created: 0,
            main: main.into(),
            args: launcher.args.clone(),
            env: launcher
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
            workdir: launcher.workdir.clone(),
            shell: false,
        }
    }

    /// The `RELEASE_*` variables the launcher would set.
    fn release_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("RELEASE_ROOT", self.root.clone()),
            ("RELEASE_NAME", self.name.clone()),
            ("RELEASE_VSN", self.version.clone()),
            ("RELEASE_PRIV", format!("{}/priv", self.root)),
            // On a shell base the launcher runs and makes RELEASE_TMP its own (0700, the
            // image's user); on scratch the service gets /tmp itself (1777 in the layer).
            (
                "RELEASE_TMP",
                if self.shell {
                    format!("/tmp/{}", self.name)
                } else {
                    "/tmp".into()
                },
            ),
            ("RELEASE_PROG", self.name.clone()),
            // Data that outlives the container is a volume mounted here.
            ("RELEASE_SHARED", format!("{}/shared", self.root)),
        ]
    }

    /// `${RELEASE_*}` in a configured value, filled in.
    fn fill(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (k, v) in self.release_vars() {
            out = out.replace(&format!("${{{k}}}"), &v);
        }
        out
    }

    /// `Env`: what the launcher would give the service (the base's first, ours over them).
    pub fn env(&self, base: &[String]) -> Vec<String> {
        let mut vars: BTreeMap<String, String> = base
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in self.release_vars() {
            vars.insert(k.into(), v);
        }
        for (k, v) in &self.env {
            vars.insert(k.clone(), self.fill(v));
        }
        vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// `Entrypoint`: the launcher's foreground command where there is a shell, else the main
    /// executable with the launcher's arguments.
    pub fn entrypoint(&self, has_shell: bool) -> Vec<String> {
        if has_shell {
            return vec![format!("{}/bin/{}", self.root, self.name), "start".into()];
        }
        let mut e = vec![format!("{}/libexec/{}", self.root, self.main)];
        e.extend(self.args.iter().map(|a| self.fill(a)));
        e
    }

    /// `WorkingDir`: the configured one inside the release (the launcher's caller directory,
    /// for `workdir = false`, is the release root here).
    pub fn working_dir(&self) -> String {
        match &self.workdir {
            Workdir::Release(rel) if rel.starts_with("${RELEASE_SHARED}") => self.fill(rel),
            Workdir::Release(rel) if !rel.is_empty() => format!("{}/{rel}", self.root),
            _ => self.root.clone(),
        }
    }

    pub fn ref_name(&self) -> String {
        format!("localhost/{}:{}", self.name, self.version)
    }
}

// ---------------------------------------------------------------------------------------
// OCI documents, in the field order the specification lists them.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub exposed_ports: Option<BTreeMap<String, BTreeMap<String, Value>>>,
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfigDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub os: String,
    #[serde(default)]
    pub config: RunConfig,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

/// The image configuration: the base's (if any) with our layers, environment, entrypoint
/// and user over it.
pub fn config_doc(
    spec: &Spec,
    base: Option<&ImageConfigDoc>,
    our_diff_ids: &[String],
    has_shell: bool,
) -> Result<ImageConfigDoc, String> {
    let (arch, variant) = platform(&spec.target)
        .ok_or_else(|| format!("{}: no OCI platform for this target", spec.target))?;
    let created = crate::util::utc(spec.created);
    let mut diff_ids = base.map(|b| b.rootfs.diff_ids.clone()).unwrap_or_default();
    diff_ids.extend(our_diff_ids.iter().cloned());
    let mut history = base.map(|b| b.history.clone()).unwrap_or_default();
    for what in ["priv", "executables, launcher, manifest"] {
        history.push(HistoryEntry {
            created: Some(created.clone()),
            created_by: Some(format!(
                "cargo-release-bundle {} ({what})",
                env!("CARGO_PKG_VERSION")
            )),
            comment: None,
            empty_layer: None,
        });
    }
    let base_env = base.and_then(|b| b.config.env.clone()).unwrap_or_default();
    let mut labels = base
        .and_then(|b| b.config.labels.clone())
        .unwrap_or_default();
    labels.extend(annotations(spec));
    let ports = (!spec.ports.is_empty()).then(|| {
        spec.ports
            .iter()
            .map(|p| (p.clone(), BTreeMap::new()))
            .collect()
    });
    Ok(ImageConfigDoc {
        created: Some(created),
        architecture: arch.into(),
        variant: variant.map(String::from),
        os: "linux".into(),
        config: RunConfig {
            user: Some(spec.user.clone()),
            exposed_ports: ports,
            env: Some(spec.env(&base_env)),
            entrypoint: Some(spec.entrypoint(has_shell)),
            cmd: None,
            working_dir: Some(spec.working_dir()),
            labels: Some(labels),
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids,
        },
        history,
    })
}

/// The OCI annotations for the image: version, revision, source, title, created.
pub fn annotations(spec: &Spec) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert("org.opencontainers.image.title".into(), spec.name.clone());
    a.insert(
        "org.opencontainers.image.version".into(),
        spec.version.clone(),
    );
    a.insert(
        "org.opencontainers.image.created".into(),
        crate::util::utc(spec.created),
    );
    if let Some(r) = &spec.revision {
        a.insert("org.opencontainers.image.revision".into(), r.clone());
    }
    if let Some(s) = &spec.source {
        a.insert("org.opencontainers.image.source".into(), s.clone());
    }
    a
}

/// `<name>-<version>-<triple>.oci.tar`.
pub fn file_name(name: &str, version: &str, target: &str) -> String {
    crate::archive::companions::image_file(name, version, target)
}

/// JSON bytes of a document (its digest is over exactly these bytes).
pub fn json<T: Serialize>(doc: &T) -> Vec<u8> {
    // Invariant: the documents hold only strings, numbers, bools, sequences and string-keyed
    // maps; they always serialize.
    serde_json::to_vec(doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        let launcher = LauncherConfig {
            enabled: true,
            main: None,
            env: [(
                "DATA".to_string(),
                crate::config::Spanned {
                    value: "${RELEASE_PRIV}/data".to_string(),
                    origin: Origin::new("Cargo.toml", "x"),
                },
            )]
            .into_iter()
            .collect(),
            required_env: Vec::new(),
            env_file: None,
            stop_timeout: 10,
            listen: BTreeMap::new(),
            ready: crate::config::Ready::AfterMillis(1000),
            ready_timeout: 60,
            log_max_size: 0,
            log_keep: 5,
            args: vec!["--root".into(), "${RELEASE_ROOT}".into()],
            workdir: Workdir::Release("priv".into()),
            commands: BTreeMap::new(),
            hooks: BTreeMap::new(),
            processes: BTreeMap::new(),
        };
        let mut s = Spec::new(
            &ImageConfig {
                ports: vec!["8080/tcp".into()],
                ..ImageConfig::default()
            },
            &launcher,
            "webapp",
            "1.2.0",
            "x86_64-unknown-linux-musl",
            "webapp",
        );
        s.created = 1_700_000_000;
        s.revision = Some("abc".into());
        s
    }

    #[test]
    fn scratch_images_run_the_executable_with_what_the_launcher_would_give_it() {
        let s = spec();
        assert_eq!(
            s.entrypoint(false),
            ["/opt/webapp/libexec/webapp", "--root", "/opt/webapp"]
        );
        assert_eq!(s.entrypoint(true), ["/opt/webapp/bin/webapp", "start"]);
        let env = s.env(&["PATH=/usr/bin".into(), "DATA=base".into()]);
        assert!(
            env.contains(&"DATA=/opt/webapp/priv/data".to_string()),
            "{env:?}"
        );
        assert!(env.contains(&"PATH=/usr/bin".to_string()));
        assert!(env.contains(&"RELEASE_TMP=/tmp".to_string()));
        assert_eq!(s.working_dir(), "/opt/webapp/priv");
        let doc = config_doc(&s, None, &["sha256:aa".into()], false).unwrap();
        assert_eq!(doc.architecture, "amd64");
        assert_eq!(doc.config.user.as_deref(), Some("65532:65532"));
        assert_eq!(doc.created.as_deref(), Some("2023-11-14T22:13:20Z"));
        let text = String::from_utf8(json(&doc)).unwrap();
        assert!(text.starts_with("{\"created\":"), "{text}");
        assert!(
            text.contains("\"ExposedPorts\":{\"8080/tcp\":{}}"),
            "{text}"
        );
        assert_eq!(
            json(&doc),
            json(&config_doc(&s, None, &["sha256:aa".into()], false).unwrap())
        );
    }

    #[test]
    fn config_values_are_checked() {
        let o = Origin::new("Cargo.toml", "package.metadata.release.image");
        let parse = |text: &str| {
            let v: toml::Value = toml::from_str(text).unwrap();
            parse_config(&serde_json::to_value(v).unwrap(), &o)
        };
        let c = parse(
            "base = \"oci-layout:/srv/base:latest\"\nports = [8080]"
                .replace("8080]", "\"8080\"]")
                .as_str(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.ports, ["8080/tcp"]);
        assert_eq!(
            parse_base(c.base.as_deref().unwrap()).unwrap(),
            Base::Layout {
                dir: "/srv/base".into(),
                reference: Some("latest".into())
            }
        );
        let e = parse("base = \"docker.io/library/debian\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("image.base") && e.contains("never fetched"),
            "{e}"
        );
        let e = parse("path = \"opt\"").unwrap_err().to_string();
        assert!(e.contains("image.path"), "{e}");
        let e = parse("usr = \"x\"").unwrap_err().to_string();
        assert!(e.contains("image.usr") && e.contains("known"), "{e}");
        assert_eq!(parse_port("53/udp").unwrap(), "53/udp");
        assert!(parse_port("0").is_err());
        assert_eq!(platform("aarch64-unknown-linux-gnu"), Some(("arm64", None)));
        assert_eq!(
            anchor_base("oci-layout:base:cc", "/p"),
            "oci-layout:/p/base:cc"
        );
        assert_eq!(
            anchor_base("oci-archive:/x.tar", "/p"),
            "oci-archive:/x.tar"
        );
    }
}
