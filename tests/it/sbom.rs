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

/// `auditable = true` builds through `cargo auditable`: each executable carries its
/// dependency list, which verify reads back and holds to the SBOM. Without the tool, the
/// error says how to install it.
#[test]
fn auditable_executables_carry_a_list_within_the_sbom() {
    let has = Command::new("cargo")
        .args(["auditable", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        assert!(
            std::env::var_os("CI").is_none(),
            "cargo-auditable is required in CI (.ci/run installs it)"
        );
        eprintln!("skipped: cargo-auditable is not installed");
        return;
    }
    let fx = Fixture::new("native");
    let manifest = fx.root.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace(
            "[package.metadata.release]\n",
            "[package.metadata.release]\nauditable = true\n",
        ),
    )
    .unwrap();
    let lines = fx.bundle(&["--out-dir", fx.scratch.join("out").to_str().unwrap()]);
    let bundle = std::path::PathBuf::from(lines[0]["path"].as_str().unwrap());
    let out = run_tool(
        &fx.root,
        &[
            "verify",
            "--message-format",
            "json",
            bundle.to_str().unwrap(),
        ],
        &[],
    );
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert!(json.contains("\"code\":\"auditable\""), "{json}");
    let (_, doc) = sbom_of(&bundle, &fx.scratch.join("x"));
    assert!(
        doc["metadata"]["properties"]
            .to_string()
            .contains("auditable"),
        "{doc}"
    );

    // An SBOM that leaves out a crate the executable embeds is caught.
    let mut entries = crate::verify::entries_of(&bundle);
    let i = crate::verify::find(&mut entries, "native-0.2.0/SBOM.cdx.json");
    let mut sbom: serde_json::Value = serde_json::from_slice(&entries[i].data).unwrap();
    sbom["components"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["name"] != "memchr");
    entries[i].set_data(serde_json::to_vec_pretty(&sbom).unwrap());
    entries[i].fix_checksum();
    crate::verify::reseal_in(&mut entries, "native-0.2.0");
    let tampered = fx.scratch.join("t").join(bundle.file_name().unwrap());
    std::fs::create_dir_all(tampered.parent().unwrap()).unwrap();
    crate::verify::write_entries(&entries, &tampered);
    let out = run_tool(
        &fx.root,
        &[
            "verify",
            "--message-format",
            "json",
            tampered.to_str().unwrap(),
        ],
        &[],
    );
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert!(
        json.contains("auditable-not-in-sbom") && json.contains("memchr"),
        "{json}"
    );

    // Without cargo-auditable anywhere cargo looks, the error says how to install it.
    let which = Command::new("rustup")
        .args(["which", "cargo"])
        .output()
        .unwrap();
    let real_cargo = String::from_utf8_lossy(&which.stdout).trim().to_string();
    let bin = std::path::Path::new(&real_cargo)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let empty_home = fx.scratch.join("empty-cargo-home");
    std::fs::create_dir_all(&empty_home).unwrap();
    let out = fx.run_env(
        &["--out-dir", fx.scratch.join("out2").to_str().unwrap()],
        &[
            ("PATH", &format!("{bin}:/usr/bin:/bin")),
            ("CARGO", &real_cargo),
            ("CARGO_HOME", empty_home.to_str().unwrap()),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cargo install cargo-auditable --locked"),
        "{}",
        stderr(&out)
    );
}
