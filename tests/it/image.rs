//! `--image`: the release as an OCI image layout tar, checked with the real skopeo, umoci
//! and podman, rebuilt for identical bytes, and refused by `verify` when tampered with.
//!
//! The toolchain here cannot add a musl target offline, so the webapp is a glibc build on a
//! base this test makes itself (see [`base_with`]): a single layer with the host's dynamic
//! loader and the libraries the executable links, and no shell (one test adds busybox), so the entrypoint
//! is the executable itself. It is a test base only, named `rb-test-base`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::Digest;

use crate::support::*;

fn sha(bytes: &[u8]) -> String {
    let hex: String = sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// An OCI layout at `dir` holding one image, ref `base`: the loader and libraries `exe`
/// needs (from `ldd`), in one uncompressed layer; with `shell`, also busybox as `/bin/sh` and
/// every applet (a base with a POSIX shell).
fn base_with(dir: &Path, exe: &Path, shell: bool) -> PathBuf {
    let found = Command::new("sh")
        .args(["-c", "command -v busybox"])
        .output()
        .unwrap();
    let busybox = String::from_utf8_lossy(&found.stdout).trim().to_string();
    let mut needs = vec![exe.to_path_buf()];
    if shell {
        needs.push(PathBuf::from(&busybox));
    }
    let mut layer = tar::Builder::new(Vec::new());
    {
        // The root itself, named `.`, as umoci writes it: runtimes accept it, so build and
        // verify do.
        let mut h = base_header(tar::EntryType::Directory, 0o755, 0);
        h.as_old_mut().name[..1].copy_from_slice(b".");
        h.set_cksum();
        layer.append(&h, &[][..]).unwrap();
    }
    let mut dirs = std::collections::BTreeSet::new();
    if shell {
        let mut h = base_header(tar::EntryType::Directory, 0o755, 0);
        layer.append_data(&mut h, "bin", &[][..]).unwrap();
        dirs.insert(PathBuf::from("bin"));
    }
    for lib in &shared_libraries(&needs) {
        let rel = lib.trim_start_matches('/');
        let mut at = PathBuf::new();
        for part in Path::new(rel).parent().unwrap().components() {
            at.push(part);
            if dirs.insert(at.clone()) {
                let mut h = base_header(tar::EntryType::Directory, 0o755, 0);
                layer.append_data(&mut h, &at, &[][..]).unwrap();
            }
        }
        let data = fs::read(fs::canonicalize(lib).unwrap()).unwrap();
        let mut h = base_header(tar::EntryType::Regular, 0o755, data.len());
        layer.append_data(&mut h, rel, &data[..]).unwrap();
    }
    if shell {
        add_busybox(&mut layer, &busybox);
    }
    write_base_layout(dir, &layer.into_inner().unwrap());
    dir.to_path_buf()
}

/// A header of the base layer: this kind, mode and size, mtime 0.
fn base_header(kind: tar::EntryType, mode: u32, size: usize) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size as u64);
    h.set_mtime(0);
    h
}

/// The shared libraries `programs` load, as `ldd` lists them: sorted, each once.
fn shared_libraries(programs: &[PathBuf]) -> Vec<String> {
    let mut libs: Vec<String> = Vec::new();
    for program in programs {
        let out = Command::new("ldd").arg(program).output().unwrap();
        assert!(out.status.success(), "ldd {}", program.display());
        let text = String::from_utf8_lossy(&out.stdout);
        let paths = text
            .lines()
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')));
        libs.extend(paths.map(String::from));
    }
    libs.sort();
    libs.dedup();
    libs
}

/// busybox as `/bin/busybox`, and a link to it for each of its applets.
fn add_busybox(layer: &mut tar::Builder<Vec<u8>>, busybox: &str) {
    let data = fs::read(busybox).unwrap();
    let mut h = base_header(tar::EntryType::Regular, 0o755, data.len());
    layer.append_data(&mut h, "bin/busybox", &data[..]).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet == "busybox" {
            continue;
        }
        let mut h = base_header(tar::EntryType::Symlink, 0o777, 0);
        layer
            .append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
}

/// An OCI layout in `dir` of one image, ref `base`, whose one layer is `layer`.
fn write_base_layout(dir: &Path, layer: &[u8]) {
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer), "size": layer.len()}],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&manifest), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "base"}}],
    });
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for blob in [layer, &config, &manifest] {
        fs::write(dir.join("blobs/sha256").join(&sha(blob)[7..]), blob).unwrap();
    }
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// A test base for the webapp fixture `fx` (with busybox as its shell when `shell`): the
/// libraries come from the executable a first bundle of it holds.
fn base_for(fx: &Fixture, shell: bool) -> PathBuf {
    let first = fx.bundle(&["--out-dir", fx.scratch.join("probe").to_str().unwrap()]);
    let probe = extract(
        Path::new(first[0]["path"].as_str().unwrap()),
        &fx.scratch.join("probe-x"),
        "gnu",
    );
    let exe = probe.join("webapp-1.2.0/libexec/webapp");
    if shell {
        return base_with(&fx.scratch.join("base"), &exe, shell);
    }
    // Without a shell: the README's offline recipe, exactly as a user runs it.
    let base = fx.scratch.join("base");
    let out = Command::new(repo().join("examples/glibc-base.sh"))
        .arg(&exe)
        .arg(&base)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    base
}

/// The webapp fixture with an image table on the test base; its bundle's JSON line.
fn webapp_image(fx: &Fixture, base: &Path, out: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let manifest = fx.root.join("Cargo.toml");
    let mut text = fs::read_to_string(&manifest).unwrap();
    if !text.contains("[package.metadata.release.image]") {
        text.push_str(&format!(
            "\n[package.metadata.release.image]\nbase = \"oci-layout:{}:base\"\nports = [\"8080\"]\nsource = \"https://example.com/webapp\"\n",
            base.display()
        ));
        fs::write(&manifest, text).unwrap();
    }
    let lines = fx.bundle_env(&["--out-dir", out], env);
    lines.into_iter().next().unwrap()
}

fn podman(args: &[&str]) -> std::process::Output {
    // What rootful podman needs on this kind of machine (see CONTRIBUTING.md).
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    cmd.args(args);
    cmd.output().unwrap()
}

/// A container of `image` (loaded from the layout tar first) serving on `port`, removed when
/// dropped. The flags rootful podman needs on this kind of machine are in [`podman`] and here.
struct Container(String);

impl Container {
    fn start(layout_tar: &Path, image: &str, port: u16) -> Container {
        let out = podman(&["load", "-i", layout_tar.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let name = format!("rb-test-{}-{port}", std::process::id());
        let out = podman(&[
            "run",
            "-d",
            "--rm",
            "--name",
            &name,
            "--network",
            "host",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "-e",
            &format!("PORT={port}"),
            "-e",
            "DATABASE_URL=postgres://db/x",
            image,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        Container(name)
    }

    /// What it printed, for a failure message.
    fn logs(&self) -> String {
        let out = podman(&["logs", &self.0]);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", &self.0]);
    }
}

#[test]
fn an_image_that_podman_runs_skopeo_reads_and_umoci_unpacks() {
    for tool in ["skopeo", "umoci", "podman", "ldd"] {
        if !have(tool) {
            return;
        }
    }
    let fx = Fixture::new("webapp");
    // The base needs the libraries of the executable it will run: build it once first.
    let base = base_for(&fx, false);
    let line = webapp_image(&fx, &base, fx.scratch.join("out").to_str().unwrap(), &[]);
    let image = PathBuf::from(line["image"]["path"].as_str().unwrap());
    let digest = line["image"]["digest"].as_str().unwrap().to_string();
    let file_name = image.file_name().unwrap().to_str().unwrap();
    assert!(file_name.ends_with("-x86_64-unknown-linux-gnu.oci.tar"));
    // verify passes it.
    assert_success(&run_tool(
        &fx.root,
        &["verify", image.to_str().unwrap()],
        &[],
    ));
    the_provenance_names_the_image_and_its_base(&line, &image, &digest);
    skopeo_reads_our_digest_and_config(&image, &digest);
    umoci_unpacks_the_release_with_its_sums(&fx, &image);
    merge_makes_a_multi_platform_image(&fx, &image, &digest);
    // podman loads and runs it; it serves on loopback.
    let port = free_port();
    let _container = Container::start(&image, "localhost/webapp:1.2.0", port);
    let served = http_get(port, "/env/RELEASE_VSN", Duration::from_secs(20));
    assert_eq!(served, "1.2.0");
    let index = http_get(port, "/index.html", Duration::from_secs(5));
    assert!(index.contains("<"), "priv is served");
}

/// `skopeo <args>`, asserting it succeeds; its standard output.
fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(out.status.success(), "skopeo {args:?}: {}", stderr(&out));
    out.stdout
}

/// The provenance names the image beside the bundle, and its base.
fn the_provenance_names_the_image_and_its_base(
    line: &serde_json::Value,
    image: &Path,
    digest: &str,
) {
    let bundle = PathBuf::from(line["path"].as_str().unwrap());
    let provenance = fs::read(format!("{}.intoto.jsonl", bundle.display())).unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&provenance).unwrap();
    let subjects = statement["subject"].as_array().unwrap();
    assert_eq!(subjects.len(), 2, "{statement}");
    assert_eq!(
        subjects[1]["name"],
        image.file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(subjects[1]["digest"]["sha256"], sha256_file(image).as_str());
    let resolved = statement["predicate"]["buildDefinition"]["resolvedDependencies"].to_string();
    assert!(
        resolved.contains("base-image") && resolved.contains(&digest[7..]),
        "{resolved}"
    );
}

/// skopeo reports our manifest digest and config: user, entrypoint, port, environment, and
/// three layers (base, priv, the rest).
fn skopeo_reads_our_digest_and_config(image: &Path, digest: &str) {
    let archive = format!("oci-archive:{}", image.display());
    let inspected: serde_json::Value =
        serde_json::from_slice(&skopeo(&["inspect", &archive])).unwrap();
    assert_eq!(inspected["Digest"], digest);
    let config = skopeo(&["inspect", "--config", &archive]);
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"][0],
        "/opt/webapp/libexec/webapp"
    );
    assert!(config["config"]["ExposedPorts"]["8080/tcp"].is_object());
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"GREETING=hello from config")
            && env.contains(&"RELEASE_PRIV=/opt/webapp/priv"),
        "{env:?}"
    );
    let layers = config["rootfs"]["diff_ids"].as_array().unwrap().len();
    assert_eq!(layers, 3, "base + priv + the rest");
}

/// umoci unpacks a root filesystem whose release matches its SHA256SUMS.
fn umoci_unpacks_the_release_with_its_sums(fx: &Fixture, image: &Path) {
    let layout = fx.scratch.join("layout");
    let archive = format!("oci-archive:{}", image.display());
    skopeo(&[
        "copy",
        &archive,
        &format!("oci:{}:webapp", layout.display()),
    ]);
    let bundle_dir = fx.scratch.join("bundle");
    let out = Command::new("umoci")
        .args([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:webapp", layout.display()),
        ])
        .arg(&bundle_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new("sha256sum")
        .args(["--quiet", "--strict", "-c", "SHA256SUMS"])
        .current_dir(bundle_dir.join("rootfs/opt/webapp"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
}

/// merge turns the per-target images of a CI matrix into one multi-platform image that
/// skopeo copies with --all (here one target: this toolchain has no other).
fn merge_makes_a_multi_platform_image(fx: &Fixture, image: &Path, digest: &str) {
    let merged = fx.scratch.join("merged");
    let job = image.parent().unwrap().to_str().unwrap();
    assert_success(&run_tool(
        &fx.root,
        &["merge", job, "--out", merged.to_str().unwrap()],
        &[],
    ));
    let multi = merged.join("webapp-1.2.0.oci.tar");
    assert_success(&run_tool(
        &fx.root,
        &["verify", multi.to_str().unwrap()],
        &[],
    ));
    let sums = fs::read_to_string(merged.join("SHA256SUMS")).unwrap();
    assert!(sums.contains("  webapp-1.2.0.oci.tar\n"), "{sums}");
    let multi = format!("oci-archive:{}", multi.display());
    let raw: serde_json::Value =
        serde_json::from_slice(&skopeo(&["inspect", "--raw", &multi])).unwrap();
    assert_eq!(raw["manifests"][0]["digest"], digest, "{raw}");
    assert_eq!(raw["manifests"][0]["platform"]["architecture"], "amd64");
    let copied = format!("oci:{}:webapp", fx.scratch.join("copied").display());
    skopeo(&["copy", "--all", &multi, &copied]);
}

/// Same source, same image bytes: another checkout, CARGO_HOME, umask and TZ.
#[test]
fn two_builds_give_the_same_image() {
    if !have("ldd") {
        return;
    }
    let a = Fixture::new("webapp");
    let b = Fixture::new("webapp");
    let base = base_for(&a, false);
    let one = webapp_image(
        &a,
        &base,
        a.scratch.join("one").to_str().unwrap(),
        &[("TZ", "UTC")],
    );
    let other_home = b.scratch.join("cargo-home");
    let two = webapp_image(
        &b,
        &base,
        b.scratch.join("two").to_str().unwrap(),
        &[
            ("TZ", "Asia/Tokyo"),
            ("CARGO_HOME", other_home.to_str().unwrap()),
            ("LC_ALL", "C"),
        ],
    );
    let (p1, p2) = (
        one["image"]["path"].as_str().unwrap(),
        two["image"]["path"].as_str().unwrap(),
    );
    assert_eq!(one["image"]["digest"], two["image"]["digest"]);
    assert!(
        fs::read(p1).unwrap() == fs::read(p2).unwrap(),
        "{p1} and {p2} differ"
    );
    // `sign BUNDLE` signs the image built beside it too (as bundling with --sign-key does).
    if !have("ssh-keygen") {
        return;
    }
    let key = a.scratch.join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let bundle = one["path"].as_str().unwrap();
    let out = run_tool(
        &a.root,
        &["sign", bundle, "--key", key.to_str().unwrap()],
        &[],
    );
    assert_success(&out);
    assert!(Path::new(&format!("{bundle}.sig")).is_file());
    assert!(
        Path::new(&format!("{p1}.sig")).is_file(),
        "{}",
        stderr(&out)
    );
}

/// The entries of an image layout tar, by name.
fn entries(image: &Path) -> Layout {
    let mut out = std::collections::BTreeMap::new();
    let mut a = tar::Archive::new(fs::File::open(image).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut b).unwrap();
            out.insert(name, b);
        }
    }
    out
}

fn write_entries(entries: &Layout, to: &Path) {
    let mut b = tar::Builder::new(fs::File::create(to).unwrap());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.finish().unwrap();
}

fn blob_name(digest: &str) -> String {
    format!("blobs/sha256/{}", &digest[7..])
}

/// Put a new layer in place of layer `i` (one past the last: on top; or only change the config
/// with `edit`), and
/// re-seal config, manifest and index so that only the intended flaw remains.
fn reseal(
    e: &mut Layout,
    layer: Option<(usize, Vec<u8>, String)>,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let mut index: serde_json::Value = serde_json::from_slice(&e["index.json"]).unwrap();
    let mdigest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: serde_json::Value = serde_json::from_slice(&e[&blob_name(&mdigest)]).unwrap();
    let cdigest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: serde_json::Value = serde_json::from_slice(&e[&blob_name(&cdigest)]).unwrap();
    if let Some((i, gz, diff_id)) = layer {
        let d = sha(&gz);
        // One past the last: a new top layer.
        let layers = manifest["layers"].as_array_mut().unwrap();
        if i == layers.len() {
            layers.push(layers[i - 1].clone());
            let ids = config["rootfs"]["diff_ids"].as_array_mut().unwrap();
            ids.push(diff_id.clone().into());
        }
        manifest["layers"][i]["digest"] = d.clone().into();
        manifest["layers"][i]["size"] = gz.len().into();
        config["rootfs"]["diff_ids"][i] = diff_id.into();
        e.insert(blob_name(&d), gz);
    }
    edit(&mut config);
    let c = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = sha(&c).into();
    manifest["config"]["size"] = c.len().into();
    e.insert(blob_name(&sha(&c)), c);
    let m = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][0]["digest"] = sha(&m).into();
    index["manifests"][0]["size"] = m.len().into();
    e.insert(blob_name(&sha(&m)), m);
    e.insert("index.json".into(), serde_json::to_vec(&index).unwrap());
}

/// verify refuses a changed blob, a wrong diff_id, an index naming a missing blob, and a
/// layer with a `../` path.
#[test]
fn verify_catches_tampered_images() {
    if !have("ldd") {
        return;
    }
    let fx = Fixture::new("webapp");
    let base = base_for(&fx, false);
    let line = webapp_image(&fx, &base, fx.scratch.join("out").to_str().unwrap(), &[]);
    let image = PathBuf::from(line["image"]["path"].as_str().unwrap());
    let original = entries(&image);
    let mut i = 0;
    let mut refused = |e: &Layout, code: &str| {
        i += 1;
        let path = fx.scratch.join(format!("tampered-{i}.oci.tar"));
        write_entries(e, &path);
        let out = run_tool(&fx.root, &["verify", path.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(1), "{code}: {}", stderr(&out));
        let text = format!("{}{}", stderr(&out), stdout(&out));
        assert!(text.contains(&format!("[{code}]")), "{code}: {text}");
    };

    // A byte changed in the last layer (the executables).
    let mut e = original.clone();
    let last = manifest_of(&e)["layers"][2]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = e.get_mut(&blob_name(&last)).unwrap();
    let at = blob.len() / 2;
    blob[at] ^= 1;
    refused(&e, "blob-digest");

    // A config whose diff_id is not what the layer decompresses to.
    let mut e = original.clone();
    reseal(&mut e, None, |c| {
        c["rootfs"]["diff_ids"][1] = sha(b"something else").into()
    });
    refused(&e, "diff-id");

    // An index that names a blob the layout does not hold.
    let mut e = original.clone();
    let mut index: serde_json::Value = serde_json::from_slice(&e["index.json"]).unwrap();
    index["manifests"][0]["digest"] = sha(b"nothing").into();
    e.insert("index.json".into(), serde_json::to_vec(&index).unwrap());
    refused(&e, "missing-blob");

    // A layer with a `../` path, with every digest made consistent around it.
    let mut raw = Vec::new();
    {
        let data = b"escaped\n";
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        let name = b"opt/webapp/../../etc/evil";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        let mut b = tar::Builder::new(&mut raw);
        b.append(&h, &data[..]).unwrap();
        b.finish().unwrap();
    }
    let mut e = original.clone();
    reseal(&mut e, Some((1, gzip(&raw), sha(&raw))), |_| {});
    refused(&e, "bad-name");

    an_extra_top_layer_counts_in_the_manifests_order(&fx, &original);
}

/// An OCI layout's files by name.
type Layout = std::collections::BTreeMap<String, Vec<u8>>;

/// The image manifest the layout's index names first.
fn manifest_of(e: &Layout) -> serde_json::Value {
    let index: serde_json::Value = serde_json::from_slice(&e["index.json"]).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    serde_json::from_slice(&e[&blob_name(digest)]).unwrap()
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, raw).unwrap();
    gz.finish().unwrap()
}

/// An extra top layer replacing the entrypoint, its blob first in the tar: runtimes apply
/// layers in the manifest's order, so verify does too.
fn an_extra_top_layer_counts_in_the_manifests_order(fx: &Fixture, original: &Layout) {
    let mut e = original.clone();
    let manifest = manifest_of(&e);
    let cdigest = manifest["config"]["digest"].as_str().unwrap();
    let config: serde_json::Value = serde_json::from_slice(&e[&blob_name(cdigest)]).unwrap();
    let entrypoint = config["config"]["Entrypoint"][0].as_str().unwrap();
    let entrypoint = entrypoint.trim_start_matches('/').to_string();
    let mut raw = Vec::new();
    {
        let data = b"#!/bin/sh\necho replaced\n";
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_mtime(1);
        h.set_uid(0);
        h.set_gid(0);
        let mut b = tar::Builder::new(&mut raw);
        b.append_data(&mut h, &entrypoint, &data[..]).unwrap();
        b.finish().unwrap();
    }
    let gz = gzip(&raw);
    let n = manifest["layers"].as_array().unwrap().len();
    reseal(&mut e, Some((n, gz.clone(), sha(&raw))), |_| {});
    // The new layer's blob first, then everything else.
    let first = blob_name(&sha(&gz));
    let path = fx.scratch.join("reordered.oci.tar");
    let mut b = tar::Builder::new(fs::File::create(&path).unwrap());
    let mut names: Vec<&String> = e.keys().collect();
    names.sort_by_key(|n| **n != first);
    for name in names {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(e[name].len() as u64);
        b.append_data(&mut h, name, &e[name][..]).unwrap();
    }
    b.finish().unwrap();
    drop(b);
    let out = run_tool(&fx.root, &["verify", path.to_str().unwrap()], &[]);
    let text = format!("{}{}", stderr(&out), stdout(&out));
    assert_eq!(out.status.code(), Some(1), "{text}");
    let named = text.contains("[content-mismatch]") && text.contains(&entrypoint);
    assert!(named, "{text}");
}

/// A glibc executable on `scratch` would not run: `--image` without a base says what to do,
/// and a base that would be fetched from a registry is refused, naming the key.
#[test]
fn images_without_a_usable_base_are_refused() {
    let fx = Fixture::new("webapp");
    let out = fx.run(&[
        "--image",
        "--out-dir",
        fx.scratch.join("out").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("x86_64-unknown-linux-gnu")
            && err.contains("image.base")
            && err.contains("musl"),
        "{err}"
    );
    assert!(
        !fx.scratch.join("out").exists(),
        "refused before anything is built"
    );
    fx.append(
        "Cargo.toml",
        "\n[package.metadata.release.image]\nbase = \"docker.io/library/debian:12\"\n",
    );
    let out = fx.run(&["--out-dir", fx.scratch.join("out").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("package.metadata.release.image.base") && err.contains("never fetched"),
        "{err}"
    );
    assert!(
        !fx.scratch
            .join("out")
            .join("webapp-1.2.0-x86_64-unknown-linux-gnu.tar.zst")
            .exists(),
        "nothing is built on a bad image key"
    );
}

/// `verify --rebuild` rebuilds the image beside the bundle too, in a fresh checkout with
/// another umask, time zone and locale, and finds the same bytes.
#[test]
fn verify_rebuild_compares_the_image() {
    if !(have("git") && have("ldd")) {
        return;
    }
    let fx = Fixture::new("webapp");
    let base = base_for(&fx, false);
    fx.append(
        "Cargo.toml",
        &format!(
            "\n[package.metadata.release.image]\nbase = \"oci-layout:{}:base\"\n",
            base.display()
        ),
    );
    fs::write(fx.root.join(".gitignore"), "target/\n").unwrap();
    git(&fx.root, &["init", "-q"]);
    git(&fx.root, &["add", "-A"]);
    git(&fx.root, &["commit", "-q", "-m", "release"]);
    let lines = fx.bundle(&["--out-dir", fx.scratch.join("out").to_str().unwrap()]);
    let bundle = lines[0]["path"].as_str().unwrap();
    let out = run_tool(
        &fx.root,
        &["verify", "--rebuild", "--message-format", "json", bundle],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("rebuild-identical") && text.contains("rebuild-image-identical"),
        "{text}"
    );
}

/// On a base with a POSIX shell the image runs the launcher's foreground command, which
/// serves under podman as it does on a host.
#[test]
fn on_a_base_with_a_shell_the_launcher_runs_the_service() {
    for tool in ["podman", "busybox", "ldd"] {
        if !have(tool) {
            return;
        }
    }
    let fx = Fixture::new("webapp");
    let base = base_for(&fx, true);
    fx.edit("Cargo.toml", "version = \"1.2.0\"", "version = \"1.2.1\"");
    let line = webapp_image(&fx, &base, fx.scratch.join("out").to_str().unwrap(), &[]);
    let image = PathBuf::from(line["image"]["path"].as_str().unwrap());
    assert_success(&run_tool(
        &fx.root,
        &["verify", image.to_str().unwrap()],
        &[],
    ));
    let port = free_port();
    let container = Container::start(&image, "localhost/webapp:1.2.1", port);
    let config = podman(&[
        "image",
        "inspect",
        "localhost/webapp:1.2.1",
        "--format",
        "{{json .Config.Entrypoint}}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&config.stdout).trim(),
        r#"["/opt/webapp/bin/webapp","start"]"#
    );
    let served =
        std::panic::catch_unwind(|| http_get(port, "/env/RELEASE_VSN", Duration::from_secs(20)));
    assert_eq!(
        served.ok().as_deref(),
        Some("1.2.1"),
        "{}",
        container.logs()
    );
}

/// With `listen`, the image's entrypoint (the launcher's `start`) runs the keeper in the
/// foreground: `reload` inside the container hands over without a failed request.
#[test]
fn in_a_container_the_keeper_hands_over_without_a_gap() {
    for tool in ["podman", "busybox", "ldd"] {
        if !have(tool) {
            assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI");
            eprintln!("skipped: {tool} is not installed");
            return;
        }
    }
    let fx = Fixture::new("gapless");
    let first = fx.bundle(&["--out-dir", fx.scratch.join("probe").to_str().unwrap()]);
    let probe = extract(
        Path::new(first[0]["path"].as_str().unwrap()),
        &fx.scratch.join("probe-x"),
        "gnu",
    );
    let base = base_with(
        &fx.scratch.join("base"),
        &probe.join("gapless-1.0.0/libexec/gapless"),
        true,
    );
    fx.append(
        "Cargo.toml",
        &format!(
            "\n[package.metadata.release.image]\nbase = \"oci-layout:{}:base\"\n",
            base.display()
        ),
    );
    let line = fx
        .bundle(&["--out-dir", fx.scratch.join("out").to_str().unwrap()])
        .remove(0);
    let image = PathBuf::from(line["image"]["path"].as_str().unwrap());
    let port = free_port();
    let container = Container::start(&image, "localhost/gapless:1.0.0", port);
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        crate::load::get(port).is_ok()
    });
    assert!(up, "{}", container.logs());
    let mut reload = None;
    let tally = crate::gapless::under_load(port, || {
        reload = Some(podman(&[
            "exec",
            &container.0,
            "/opt/gapless/bin/gapless",
            "reload",
        ]));
    });
    let reload = reload.unwrap();
    assert!(
        reload.status.success(),
        "{}{}",
        stderr(&reload),
        container.logs()
    );
    assert!(
        String::from_utf8_lossy(&reload.stdout).contains("generation 2"),
        "{}",
        String::from_utf8_lossy(&reload.stdout)
    );
    assert_eq!(tally.failed(), 0, "reload in a container: {tally}");
    let status = podman(&["exec", &container.0, "/opt/gapless/bin/gapless", "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("generation 2"),
        "{}",
        container.logs()
    );
}
