//! `SBOM.cdx.json` in every bundle: valid CycloneDX 1.5 (against the vendored schema), the
//! crates compiled in with their versions, sources, licenses and Cargo.lock checksums, the
//! build-only ones marked, and the same bytes from another checkout.

use std::path::Path;
use std::process::Command;

use crate::support::*;

fn sbom_of(bundle: &Path, into: &Path) -> (Vec<u8>, serde_json::Value) {
    let top = extract(bundle, into, "gnu");
    let dir = std::fs::read_dir(&top)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(dir.join("SBOM.cdx.json")).unwrap();
    let doc = serde_json::from_slice(&bytes).unwrap();
    (bytes, doc)
}

fn validate(file: &Path) {
    if !have("python3") {
        return;
    }
    let check = Command::new("python3")
        .arg(repo().join("tests/schemas/cyclonedx-1.5/validate.py"))
        .arg(file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}: {}{}",
        file.display(),
        String::from_utf8_lossy(&check.stdout),
        stderr(&check)
    );
}

#[test]
fn the_sbom_lists_what_is_compiled_in_and_is_reproducible() {
    let a = Fixture::new("native");
    let b = Fixture::new("native");
    let one = a.bundle(&["--out-dir", a.scratch.join("out").to_str().unwrap()]);
    let two = b.bundle(&["--out-dir", b.scratch.join("out").to_str().unwrap()]);
    let (bytes, doc) = sbom_of(
        Path::new(one[0]["path"].as_str().unwrap()),
        &a.scratch.join("x"),
    );
    let (again, _) = sbom_of(
        Path::new(two[0]["path"].as_str().unwrap()),
        &b.scratch.join("x"),
    );
    assert!(bytes == again, "two checkouts give the same SBOM");
    let file = a.scratch.join("native.cdx.json");
    std::fs::write(&file, &bytes).unwrap();
    validate(&file);

    assert_eq!(doc["specVersion"], "1.5");
    assert!(doc.get("serialNumber").is_none(), "no random serial number");
    assert_eq!(doc["metadata"]["component"]["name"], "native");
    let lock = std::fs::read_to_string(a.root.join("Cargo.lock")).unwrap();
    let locked = |name: &str| -> (String, String) {
        let at = lock.find(&format!("name = \"{name}\"\n")).unwrap();
        let block = &lock[at..lock[at..].find("\n\n").map_or(lock.len(), |e| at + e)];
        let field = |k: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
                .unwrap()
                .trim_end_matches('"')
                .to_string()
        };
        (field("version"), field("checksum"))
    };
    let component = |name: &str| -> serde_json::Value {
        doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not in the SBOM"))
            .clone()
    };
    // The C-building crate (a build dependency): named with its locked version, marked.
    let (version, checksum) = locked("cc");
    let cc = component("cc");
    assert_eq!(cc["version"], version.as_str());
    assert_eq!(cc["hashes"][0]["content"], checksum.as_str());
    assert_eq!(cc["scope"], "excluded");
    assert_eq!(cc["purl"], format!("pkg:cargo/cc@{version}").as_str());
    // A runtime dependency, with its license and source.
    let (version, _) = locked("memchr");
    let memchr = component("memchr");
    assert_eq!(memchr["version"], version.as_str());
    assert_eq!(memchr["scope"], "required");
    assert!(
        memchr["licenses"][0]["expression"]
            .as_str()
            .unwrap()
            .contains("MIT")
    );
    assert!(
        memchr["properties"][0]["value"]
            .as_str()
            .unwrap()
            .starts_with("registry+")
    );
    let names: Vec<&str> = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "components sorted");

    // The webapp's (no dependencies) validates too.
    let w = Fixture::new("webapp");
    let lines = w.bundle(&["--out-dir", w.scratch.join("out").to_str().unwrap()]);
    let (bytes, doc) = sbom_of(
        Path::new(lines[0]["path"].as_str().unwrap()),
        &w.scratch.join("x"),
    );
    assert_eq!(
        doc["metadata"]["component"]["properties"][0]["value"],
        "path+."
    );
    let file = w.scratch.join("webapp.cdx.json");
    std::fs::write(&file, &bytes).unwrap();
    validate(&file);
}
