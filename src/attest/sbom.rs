//! `SBOM.cdx.json`: a CycloneDX 1.5 bill of materials of every crate compiled into the
//! shipped executables, for the bundle's target and features, from `cargo metadata`'s
//! resolved graph (with `--filter-platform`) and `Cargo.lock`'s checksums.
//!
//! Written here from structs rather than through the `cyclonedx-bom` crate: the output must
//! be byte-for-byte reproducible (fixed field order, sorted components, no random serial
//! number, the bundle's timestamp), the document needs only a handful of its types, and the
//! crate would add a dependency tree larger than this file. `tests/schemas/cyclonedx-1.5`
//! holds the official schema the tests validate against.
//!
//! Pure: the graph and the lock file's text in, bytes out.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use anyhow::{Context, Result};
use camino::Utf8Path;
use cargo_metadata::{DependencyKind, Metadata, PackageId};
use serde::Serialize;

/// The bundle path of the SBOM.
pub const SBOM: &str = "SBOM.cdx.json";

#[derive(Serialize)]
struct Bom {
    #[serde(rename = "bomFormat")]
    bom_format: &'static str,
    #[serde(rename = "specVersion")]
    spec_version: &'static str,
    version: u32,
    metadata: BomMetadata,
    components: Vec<Component>,
    dependencies: Vec<Dependency>,
}

#[derive(Serialize)]
struct BomMetadata {
    timestamp: String,
    tools: Tools,
    component: Component,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    properties: Vec<Property>,
}

/// The SBOM property saying the executables carry their dependency list (`cargo auditable`).
pub const AUDITABLE: &str = "cdx:cargo-release-bundle:auditable";

#[derive(Serialize)]
struct Tools {
    components: Vec<Tool>,
}

#[derive(Serialize)]
struct Tool {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize, Clone)]
struct Component {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "bom-ref")]
    bom_ref: String,
    name: String,
    version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Hash>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    licenses: Vec<License>,
    purl: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    properties: Vec<Property>,
}

#[derive(Serialize, Clone)]
struct Hash {
    alg: &'static str,
    content: String,
}

#[derive(Serialize, Clone)]
struct License {
    expression: String,
}

#[derive(Serialize, Clone)]
struct Property {
    name: &'static str,
    value: String,
}

#[derive(Serialize)]
struct Dependency {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(rename = "dependsOn")]
    depends_on: Vec<String>,
}

/// `Cargo.lock`'s `checksum`s by (name, version).
pub fn lock_checksums(text: &str) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let Ok(lock) = toml::from_str::<toml::Value>(text) else {
        return out;
    };
    for p in lock
        .get("package")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        let field = |k: &str| p.get(k).and_then(|v| v.as_str()).map(String::from);
        if let (Some(n), Some(v), Some(c)) = (field("name"), field("version"), field("checksum")) {
            out.insert((n, v), c);
        }
    }
    out
}

/// `MIT/Apache-2.0` (the old cargo spelling) as an SPDX expression.
fn license_expression(license: &str) -> String {
    license
        .split('/')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// How a crate enters the build.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Use {
    /// Compiled into the executables.
    Runtime,
    /// Only into build scripts (and proc-macros): marked, not shipped.
    Build,
}

/// What the executables of one package are made of: each crate reached from it and how
/// (a crate reached at run time is run time; dev-dependencies are left out), and the edges.
struct Graph<'m> {
    uses: BTreeMap<&'m PackageId, Use>,
    edges: BTreeMap<&'m PackageId, BTreeSet<&'m PackageId>>,
}

/// Breadth first from the root over cargo's resolved nodes.
fn graph<'m>(metadata: &'m Metadata, root: &'m PackageId) -> Result<Graph<'m>> {
    let resolve = metadata
        .resolve
        .as_ref()
        .context("cargo metadata gave no dependency graph")?;
    let nodes: BTreeMap<&PackageId, &cargo_metadata::Node> =
        resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let mut uses: BTreeMap<&PackageId, Use> = BTreeMap::new();
    let mut edges: BTreeMap<&PackageId, BTreeSet<&PackageId>> = BTreeMap::new();
    let mut queue: VecDeque<(&PackageId, Use)> = VecDeque::from([(root, Use::Runtime)]);
    while let Some((id, how)) = queue.pop_front() {
        match uses.get(id) {
            Some(seen) if *seen <= how => continue,
            _ => {
                uses.insert(id, how);
            }
        }
        let Some(node) = nodes.get(id) else { continue };
        for dep in &node.deps {
            let kinds: Vec<DependencyKind> = dep.dep_kinds.iter().map(|k| k.kind).collect();
            let next = if kinds.contains(&DependencyKind::Normal) {
                how
            } else if kinds.contains(&DependencyKind::Build) {
                Use::Build
            } else {
                continue; // dev-dependencies
            };
            edges.entry(id).or_default().insert(&dep.pkg);
            queue.push_back((&dep.pkg, next));
        }
    }
    Ok(Graph { uses, edges })
}

/// Where a package comes from, as the SBOM says it: cargo's source, or a path relative to
/// the workspace (never a path of this machine).
fn source_of(p: &cargo_metadata::Package, workspace_root: &Utf8Path) -> String {
    match &p.source {
        Some(s) => s.repr.clone(),
        None => {
            let dir = p.manifest_path.parent().unwrap_or(&p.manifest_path);
            let rel = dir.strip_prefix(workspace_root).map_or_else(
                |_| format!("(outside the workspace: {})", p.name),
                |r| {
                    if r.as_str().is_empty() {
                        ".".into()
                    } else {
                        r.to_string()
                    }
                },
            );
            format!("path+{rel}")
        }
    }
}

/// One crate as a CycloneDX component.
fn component(
    p: &cargo_metadata::Package,
    how: Use,
    kind: &'static str,
    lock: &BTreeMap<(String, String), String>,
    workspace_root: &Utf8Path,
) -> Component {
    let (name, version) = (p.name.to_string(), p.version.to_string());
    let purl = format!("pkg:cargo/{name}@{version}");
    let mut properties = vec![Property {
        name: "cdx:cargo:source",
        value: source_of(p, workspace_root),
    }];
    if how == Use::Build {
        properties.push(Property {
            name: "cdx:cargo:dependency_kind",
            value: "build".into(),
        });
    }
    Component {
        kind,
        bom_ref: format!("{purl}#{}", properties[0].value),
        name: name.clone(),
        version: version.clone(),
        scope: Some(if how == Use::Build {
            "excluded"
        } else {
            "required"
        }),
        hashes: lock
            .get(&(name, version))
            .map(|c| {
                vec![Hash {
                    alg: "SHA-256",
                    content: c.clone(),
                }]
            })
            .unwrap_or_default(),
        licenses: p
            .license
            .as_deref()
            .map(|l| {
                vec![License {
                    expression: license_expression(l),
                }]
            })
            .unwrap_or_default(),
        purl,
        properties,
    }
}

/// Each component with what it depends on, by reference, sorted.
fn dependencies(
    uses: &BTreeMap<&PackageId, Use>,
    edges: &BTreeMap<&PackageId, BTreeSet<&PackageId>>,
    refs: &BTreeMap<&PackageId, String>,
) -> Vec<Dependency> {
    let mut dependencies: Vec<Dependency> = uses
        .keys()
        .map(|id| {
            let mut depends_on: Vec<String> = edges
                .get(id)
                .into_iter()
                .flatten()
                .filter_map(|to| refs.get(to).cloned())
                .collect();
            depends_on.sort();
            Dependency {
                reference: refs[id].clone(),
                depends_on,
            }
        })
        .collect();
    dependencies.sort_by(|a, b| a.reference.cmp(&b.reference));
    dependencies
}

/// The SBOM of `root`'s executables in `metadata` (resolved for one target and the build's
/// features). `workspace_root` turns path dependencies into relative paths (no machine path
/// enters the bundle).
pub fn document(
    metadata: &Metadata,
    root: &PackageId,
    lock: &BTreeMap<(String, String), String>,
    workspace_root: &Utf8Path,
    timestamp: u64,
    auditable: bool,
) -> Result<Vec<u8>> {
    let Graph { uses, edges } = graph(metadata, root)?;
    let packages: BTreeMap<&PackageId, &cargo_metadata::Package> =
        metadata.packages.iter().map(|p| (&p.id, p)).collect();
    let mut refs: BTreeMap<&PackageId, String> = BTreeMap::new();
    let mut components = Vec::new();
    let mut root_component = None;
    for (id, how) in &uses {
        let p = packages
            .get(id)
            .with_context(|| format!("{id} is not in cargo metadata's packages"))?;
        let kind = if *id == root {
            "application"
        } else {
            "library"
        };
        let c = component(p, *how, kind, lock, workspace_root);
        refs.insert(id, c.bom_ref.clone());
        if *id == root {
            root_component = Some(c);
        } else {
            components.push(c);
        }
    }
    components
        .sort_by(|a, b| (&a.name, &a.version, &a.bom_ref).cmp(&(&b.name, &b.version, &b.bom_ref)));
    let dependencies = dependencies(&uses, &edges, &refs);
    let mut root_component = root_component.context("the package itself is not in its graph")?;
    root_component.scope = None;
    let bom = Bom {
        bom_format: "CycloneDX",
        spec_version: "1.5",
        version: 1,
        metadata: BomMetadata {
            timestamp: crate::util::utc(timestamp),
            tools: Tools {
                components: vec![Tool {
                    kind: "application",
                    name: "cargo-release-bundle",
                    version: env!("CARGO_PKG_VERSION"),
                }],
            },
            component: root_component,
            properties: if auditable {
                vec![Property {
                    name: AUDITABLE,
                    value: "true".into(),
                }]
            } else {
                Vec::new()
            },
        },
        components,
        dependencies,
    };
    let mut bytes = serde_json::to_vec_pretty(&bom).context("the SBOM always serializes")?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Whether the SBOM says the executables carry their dependency list.
pub fn says_auditable(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| {
        v["metadata"]["properties"].as_array().is_some_and(|p| {
            p.iter()
                .any(|p| p["name"] == AUDITABLE && p["value"] == "true")
        })
    })
}

/// The (name, version) of every component, the application included.
pub fn components(bytes: &[u8]) -> Vec<(String, String)> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    std::iter::once(&v["metadata"]["component"])
        .chain(v["components"].as_array().into_iter().flatten())
        .filter_map(|c| {
            Some((
                c["name"].as_str()?.to_string(),
                c["version"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// What `verify` needs of an SBOM: the names of its components (the application first).
pub fn component_names(bytes: &[u8]) -> Result<Vec<String>, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if v["bomFormat"] != "CycloneDX" {
        return Err("not a CycloneDX document".into());
    }
    let mut names = Vec::new();
    if let Some(n) = v["metadata"]["component"]["name"].as_str() {
        names.push(n.to_string());
    }
    for c in v["components"].as_array().into_iter().flatten() {
        if let Some(n) = c["name"].as_str() {
            names.push(n.to_string());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_checksums_and_licenses() {
        let lock = "version = 4\n[[package]]\nname = \"memchr\"\nversion = \"2.7.4\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"abc\"\n[[package]]\nname = \"native\"\nversion = \"0.2.0\"\n";
        let sums = lock_checksums(lock);
        assert_eq!(sums.len(), 1);
        assert_eq!(sums[&("memchr".into(), "2.7.4".into())], "abc");
        assert_eq!(license_expression("MIT/Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(license_expression("MIT OR Unlicense"), "MIT OR Unlicense");
        assert!(component_names(b"{}").is_err());
    }
}
