//! SSH signatures: `sign` writes `BUNDLE.sig` (the SSHSIG format of `ssh-keygen -Y sign`) over
//! the bundle's `.sha256` line; `verify`/`unpack --allowed-signers` require a valid one. Both
//! ways interoperate with `ssh-keygen` itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::*;

const NS: &str = "release-bundle@cargo-release-bundle";
const NAME: &str = "webapp-1.2.0-x86_64-unknown-linux-gnu.tar.zst";

fn keygen(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    sh(
        dir,
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            name,
            "-f",
            key.to_str().unwrap(),
        ],
    );
    key
}

fn ssh_keygen_stdin(dir: &Path, args: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("ssh-keygen")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// verify of the bundle `NAME` in `dir` with `extra`: the exit code and the JSON it printed.
fn verify_text(dir: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = extra.to_vec();
    args.push(NAME);
    let (out, _) = verify_json(dir, &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap(), text)
}

/// A scratch directory holding a copy of the webapp bundle, the keys of alice and mallory,
/// and `allowed`, naming alice for our namespace.
struct Signing {
    scratch: Scratch,
    alice: PathBuf,
    mallory: PathBuf,
}

const ALLOWED: [&str; 2] = ["--allowed-signers", "allowed"];

impl Signing {
    /// `None` (the test returns) where ssh-keygen is missing outside CI.
    fn new() -> Option<Signing> {
        if !(have("ssh-keygen") && have("ssh-agent") && have("ssh-add")) {
            return None;
        }
        let scratch = Scratch::new();
        let dir = &scratch.path;
        fs::copy(webapp_bundle(), dir.join(NAME)).unwrap();
        let alice = keygen(dir, "alice");
        let mallory = keygen(dir, "mallory");
        let s = Signing {
            scratch,
            alice,
            mallory,
        };
        s.allow(&format!("namespaces=\"{NS}\""));
        Some(s)
    }

    fn dir(&self) -> &Path {
        &self.scratch.path
    }

    /// `allowed` names alice's key with these options.
    fn allow(&self, options: &str) {
        let key = fs::read_to_string(self.alice.with_extension("pub")).unwrap();
        let line = format!("alice@example.com {options} {key}").replace("  ", " ");
        fs::write(self.dir().join("allowed"), line).unwrap();
    }

    /// Ours signs the bundle with `key`.
    fn we_sign(&self, key: &Path) {
        let args = ["sign", NAME, "--key", key.to_str().unwrap()];
        assert_success(&run_tool(self.dir(), &args, &[]));
    }

    /// ssh-keygen signs `signed` as alice in `namespace`, in place of the bundle's signature.
    fn keygen_signs(&self, namespace: &str, signed: &[u8]) {
        let args = ["-Y", "sign", "-f", "alice", "-n", namespace, "-q"];
        let sig = ssh_keygen_stdin(self.dir(), &args, signed);
        let err = String::from_utf8_lossy(&sig.stderr);
        assert!(sig.status.success(), "{err}");
        fs::write(self.dir().join(format!("{NAME}.sig")), &sig.stdout).unwrap();
    }

    /// The message every signature covers: the bundle's `.sha256` line.
    fn message(&self) -> String {
        format!("{}  {NAME}\n", sha256_file(&self.dir().join(NAME)))
    }

    /// verify with `allowed` refuses the signature as invalid.
    fn refused(&self, what: &str) {
        let (code, text) = verify_text(self.dir(), &ALLOWED);
        assert_eq!(code, 1, "{what}: {text}");
        let invalid = text.contains("\"code\":\"signature-invalid\"");
        assert!(invalid, "{what}: {text}");
    }
}

/// Unsigned: a required signature is missing. Signed by alice with a key file: valid, origin
/// checked; without `--allowed-signers` it is reported unchecked.
#[test]
fn a_signature_is_required_when_signers_are_given() {
    let Some(s) = Signing::new() else { return };
    let (code, text) = verify_text(s.dir(), &ALLOWED);
    assert_eq!(code, 1);
    assert!(text.contains("\"code\":\"signature-missing\""), "{text}");
    s.we_sign(&s.alice);
    let (code, text) = verify_text(s.dir(), &ALLOWED);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("\"reference\":\"signature\"") && text.contains("\"origin_checked\":true"),
        "{text}"
    );
    assert!(text.contains("signed by alice@example.com"), "{text}");
    let (code, text) = verify_text(s.dir(), &[]);
    assert_eq!(code, 0);
    assert!(text.contains("\"code\":\"signature-unchecked\""), "{text}");
}

/// ssh-keygen checks ours (the message is the bundle's .sha256 line), and ours checks
/// ssh-keygen's, whether made by ssh-keygen itself or through ssh-agent with only the public
/// key named.
#[test]
fn signatures_interoperate_with_ssh_keygen_and_its_agent() {
    let Some(s) = Signing::new() else { return };
    s.we_sign(&s.alice);
    let sig = format!("{NAME}.sig");
    let args = [
        "-Y",
        "verify",
        "-f",
        "allowed",
        "-I",
        "alice@example.com",
        "-n",
        NS,
        "-s",
        &sig,
    ];
    let out = ssh_keygen_stdin(s.dir(), &args, s.message().as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");

    let agent = Command::new("ssh-agent").arg("-s").output().unwrap();
    let agent_env = String::from_utf8_lossy(&agent.stdout).into_owned();
    let var = |name: &str| {
        agent_env
            .split(';')
            .find_map(|p| p.trim().strip_prefix(&format!("{name}=")))
            .map(String::from)
            .unwrap()
    };
    let (sock, pid) = (var("SSH_AUTH_SOCK"), var("SSH_AGENT_PID"));
    let add = Command::new("ssh-add")
        .arg(&s.alice)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&add.stderr);
    assert!(add.status.success(), "{err}");
    let public = s.alice.with_extension("pub");
    let args = ["sign", NAME, "--key", public.to_str().unwrap()];
    let out = run_tool(s.dir(), &args, &[("SSH_AUTH_SOCK", &sock)]);
    let _ = Command::new("kill").arg(&pid).status();
    assert_success(&out);
    assert_eq!(verify_text(s.dir(), &ALLOWED).0, 0);
    s.keygen_signs(NS, s.message().as_bytes());
    assert_eq!(verify_text(s.dir(), &ALLOWED).0, 0);
}

/// Refused: another key, another namespace, an expired key, a signature of another bundle,
/// a changed bundle; each after a valid signature, so each refusal is its own.
#[test]
fn wrong_signatures_are_refused() {
    let Some(s) = Signing::new() else { return };
    s.we_sign(&s.mallory);
    s.refused("mallory's key");
    s.keygen_signs("file", s.message().as_bytes());
    s.refused("another namespace");
    s.we_sign(&s.alice);
    s.allow("valid-before=\"20000101\"");
    s.refused("an expired key");
    s.allow("");
    assert_eq!(verify_text(s.dir(), &ALLOWED).0, 0, "valid again");
    let line = format!(
        "{}  other-1.0.0-x86_64-unknown-linux-gnu.tar.zst\n",
        "0".repeat(64)
    );
    s.keygen_signs(NS, line.as_bytes());
    s.refused("a signature of another bundle");
    s.we_sign(&s.alice);
    assert_eq!(verify_text(s.dir(), &ALLOWED).0, 0, "valid again");
    let mut bytes = fs::read(s.dir().join(NAME)).unwrap();
    bytes.push(0);
    fs::write(s.dir().join(NAME), bytes).unwrap();
    let _ = fs::remove_file(s.dir().join(format!("{NAME}.sha256")));
    s.refused("a changed bundle");
}

/// unpack refuses an unsigned bundle when signers are given, and installs nothing; signed,
/// it installs.
#[test]
fn unpack_requires_a_signature_when_signers_are_given() {
    let Some(s) = Signing::new() else { return };
    let unpack = || {
        let args = [
            "unpack",
            NAME,
            "--to",
            "installed",
            "--allowed-signers",
            "allowed",
        ];
        run_tool(s.dir(), &args, &[])
    };
    let out = unpack();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!s.dir().join("installed").exists());
    s.we_sign(&s.alice);
    assert_success(&unpack());
}

/// `ssh-keygen -Y verify` of `sig` (in `dir`) over `message`, as alice, against `allowed`.
fn keygen_verifies(dir: &Path, allowed: &Path, sig: &str, message: &[u8]) {
    let allowed = allowed.to_str().unwrap();
    let args = [
        "-Y",
        "verify",
        "-f",
        allowed,
        "-I",
        "alice@example.com",
        "-n",
        NS,
        "-s",
        sig,
    ];
    let check = ssh_keygen_stdin(dir, &args, message);
    assert!(check.status.success(), "{}", stderr(&check));
}

/// `verify --allowed-signers <allowed>` of the bundle in `dir`: exit code and JSON text.
fn verify_signed(dir: &Path, allowed: &Path) -> (Option<i32>, String) {
    let (out, _) = verify_json(dir, &["--allowed-signers", allowed.to_str().unwrap(), NAME]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `--sign-key` (or `sign.key`) signs while bundling: the bundle and its provenance, both
/// checked by `verify --allowed-signers`; `merge --sign-key` signs the merged SHA256SUMS, and
/// plain `ssh-keygen` checks all of it.
#[test]
fn signing_at_bundle_time_covers_the_provenance_and_merge_signs_the_sums() {
    if !have("ssh-keygen") {
        return;
    }
    let fx = Fixture::new("webapp");
    let keys = fx.scratch.join("keys");
    fs::create_dir_all(&keys).unwrap();
    let alice = keygen(&keys, "alice");
    let public = fs::read_to_string(alice.with_extension("pub")).unwrap();
    let allowed = keys.join("allowed");
    let line = format!("alice@example.com namespaces=\"{NS}\" {public}");
    fs::write(&allowed, line).unwrap();
    // The key from the manifest, relative to it.
    let key = alice.display();
    fx.append(
        "Cargo.toml",
        &format!("\n[package.metadata.release.sign]\nkey = \"{key}\"\n"),
    );
    let out_dir = fx.scratch.join("out");
    let lines = fx.bundle(&["--out-dir", out_dir.to_str().unwrap()]);
    let bundle = PathBuf::from(lines[0]["path"].as_str().unwrap());
    let provenance = PathBuf::from(format!("{}.intoto.jsonl", bundle.display()));
    assert!(PathBuf::from(format!("{}.sig", bundle.display())).is_file());
    assert!(PathBuf::from(format!("{}.sig", provenance.display())).is_file());
    let (code, json) = verify_signed(&out_dir, &allowed);
    assert_eq!(code, Some(0), "{json}");
    assert!(
        json.contains("\"reference\":\"signature\"") && !json.contains("provenance-unsigned"),
        "{json}"
    );
    the_provenance_signature_checks_and_vouches_for_it(&out_dir, &allowed, &provenance);
    merge_signs_the_sums_with_ssh(&fx, &out_dir, &alice, &allowed);
    merge_signs_the_sums_with_minisign(&fx, &out_dir);
}

/// Plain ssh-keygen checks the provenance's signature over its sha256 line; a provenance
/// changed after signing is refused.
fn the_provenance_signature_checks_and_vouches_for_it(
    out_dir: &Path,
    allowed: &Path,
    provenance: &Path,
) {
    let line = format!("{}  {NAME}.intoto.jsonl\n", sha256_file(provenance));
    keygen_verifies(
        out_dir,
        allowed,
        &format!("{NAME}.intoto.jsonl.sig"),
        line.as_bytes(),
    );
    let original = fs::read(provenance).unwrap();
    let mut changed = original.clone();
    let at = changed.iter().position(|&b| b == b'"').unwrap();
    changed.insert(at, b' ');
    fs::write(provenance, &changed).unwrap();
    let (code, json) = verify_signed(out_dir, allowed);
    assert_eq!(code, Some(1), "{json}");
    assert!(json.contains("provenance-signature-invalid"), "{json}");
    fs::write(provenance, &original).unwrap();
}

/// `merge <out_dir> --out <scratch>/<name> --sign-key <key> <extra>`; the merged directory.
fn merge_signed(fx: &Fixture, out_dir: &Path, name: &str, key: &Path, extra: &[&str]) -> PathBuf {
    let merged = fx.scratch.join(name);
    let (from, to) = (out_dir.to_str().unwrap(), merged.to_str().unwrap());
    let mut args = vec![
        "merge",
        from,
        "--out",
        to,
        "--sign-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    assert_success(&run_tool(&fx.scratch.path, &args, &[]));
    merged
}

/// merge --sign-key: one signature over SHA256SUMS covers every archive; the bundles' own
/// signatures travel with them.
fn merge_signs_the_sums_with_ssh(fx: &Fixture, out_dir: &Path, alice: &Path, allowed: &Path) {
    let merged = merge_signed(fx, out_dir, "merged", alice, &[]);
    assert!(merged.join(format!("{NAME}.sig")).is_file());
    let sums = fs::read(merged.join("SHA256SUMS")).unwrap();
    keygen_verifies(&merged, allowed, "SHA256SUMS.sig", &sums);
    let (code, json) = verify_signed(&merged, allowed);
    assert_eq!(code, Some(0), "{json}");
}

/// merge --signer minisign: SHA256SUMS.minisig, checked by the minisign tool.
fn merge_signs_the_sums_with_minisign(fx: &Fixture, out_dir: &Path) {
    if !have("minisign") {
        return;
    }
    let (key, public) = minisign_keypair(&fx.scratch.path, "ci");
    let merged = merge_signed(
        fx,
        out_dir,
        "merged-minisign",
        &key,
        &["--signer", "minisign"],
    );
    let check = Command::new("minisign")
        .args(["-V", "-p"])
        .arg(&public)
        .arg("-m")
        .arg(merged.join("SHA256SUMS"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
}

/// The minisign tool with `args`, asserting it succeeds.
fn minisign_tool(args: &[&str]) {
    let out = Command::new("minisign")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "minisign {args:?}: {}", stderr(&out));
}

/// minisign both ways: our signature checks with the `minisign` tool and with ours; one the
/// tool makes checks with ours; a wrong key, a tampered bundle and a signature of another
/// file are refused.
#[test]
fn minisign_signatures_interoperate() {
    if !have("minisign") {
        return;
    }
    let scratch = Scratch::new();
    let dir = &scratch.path;
    let bundle = dir.join(NAME);
    fs::copy(webapp_bundle(), &bundle).unwrap();
    let (alice, alice_pub) = minisign_keypair(dir, "alice");
    let (mallory, mallory_pub) = minisign_keypair(dir, "mallory");
    let verify = |key: &Path| {
        let args = [
            "verify",
            "--message-format",
            "json",
            "--minisign-key",
            key.to_str().unwrap(),
            NAME,
        ];
        let out = run_tool(dir, &args, &[]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let sign_minisign = |key: &Path| {
        let args = [
            "sign",
            NAME,
            "--signer",
            "minisign",
            "--key",
            key.to_str().unwrap(),
        ];
        assert_success(&run_tool(dir, &args, &[]));
    };
    let (bundle_arg, sig) = (
        bundle.to_str().unwrap(),
        dir.join(format!("{NAME}.minisig")),
    );

    // Ours, checked by ours and by the minisign tool; the trusted comment names the release.
    sign_minisign(&alice);
    let text = fs::read_to_string(&sig).unwrap();
    let comment = format!("trusted comment: file:{NAME}\trelease:webapp 1.2.0\tcommit:");
    assert!(text.contains(&comment), "{text}");
    let (code, json) = verify(&alice_pub);
    assert_eq!(code, Some(0), "{json}");
    assert!(json.contains("\"reference\":\"signature\""), "{json}");
    minisign_tool(&["-V", "-p", alice_pub.to_str().unwrap(), "-m", bundle_arg]);

    // A key that did not sign it.
    let (code, json) = verify(&mallory_pub);
    assert_eq!(code, Some(1));
    assert!(json.contains("signature-invalid"), "{json}");

    // The minisign tool's own signature checks with ours; so does one with its own trusted
    // comment (`-t`), which names no file: the signature covers the bundle's bytes, and the
    // manifest names the release.
    minisign_tool(&["-S", "-s", mallory.to_str().unwrap(), "-m", bundle_arg]);
    assert_eq!(verify(&mallory_pub).0, Some(0));
    let comment = "billing release, signed by CI";
    minisign_tool(&[
        "-S",
        "-s",
        mallory.to_str().unwrap(),
        "-t",
        comment,
        "-m",
        bundle_arg,
    ]);
    let (code, json) = verify(&mallory_pub);
    assert_eq!(code, Some(0), "{json}");

    // A signature of another file (copied beside this bundle) is refused, and so is a
    // tampered bundle.
    let other = dir.join("other.txt");
    fs::write(&other, b"other").unwrap();
    minisign_tool(&[
        "-S",
        "-s",
        alice.to_str().unwrap(),
        "-m",
        other.to_str().unwrap(),
    ]);
    fs::copy(dir.join("other.txt.minisig"), &sig).unwrap();
    assert_eq!(verify(&alice_pub).0, Some(1));
    sign_minisign(&alice);
    let mut bytes = fs::read(&bundle).unwrap();
    let end = bytes.len() - 1;
    bytes[end] ^= 1;
    fs::write(&bundle, bytes).unwrap();
    assert_ne!(verify(&alice_pub).0, Some(0));
}

/// A plain (unencrypted) key file, with no agent, is signed with in-process: `sign` works with
/// neither `ssh-keygen` nor `minisign` on PATH, and both tools accept the result.
#[test]
fn plain_key_files_sign_without_external_tools() {
    if !(have("ssh-keygen") && have("minisign")) {
        return;
    }
    let fx = Fixture::new("webapp");
    let out_dir = fx.scratch.join("out");
    let lines = fx.bundle(&["--out-dir", out_dir.to_str().unwrap()]);
    let bundle = PathBuf::from(lines[0]["path"].as_str().unwrap());
    let keys = fx.scratch.join("keys");
    fs::create_dir_all(&keys).unwrap();
    let alice = keygen(&keys, "alice");
    // A minisign key pair without a password, as the Rust implementation (rsign) writes it.
    // (The C tool's `-G -W` keys carry no checksum the Rust code accepts; those are signed
    // through the tool, as `minisign_signatures_interoperate` shows.)
    let (mpub, msec) = (keys.join("m.pub"), keys.join("m.key"));
    let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    fs::write(&mpub, pair.pk.to_box().unwrap().to_string()).unwrap();
    fs::write(&msec, pair.sk.to_box(None).unwrap().to_string()).unwrap();
    // Nothing on PATH, no agent.
    let empty = fx.scratch.join("empty-bin");
    fs::create_dir_all(&empty).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = tool_command(&out_dir);
        cmd.args(args)
            .env("PATH", &empty)
            .env_remove("SSH_AUTH_SOCK");
        cmd.output().unwrap()
    };
    assert_success(&run(&["sign", NAME, "--key", alice.to_str().unwrap()]));
    assert_success(&run(&[
        "sign",
        NAME,
        "--signer",
        "minisign",
        "--key",
        msec.to_str().unwrap(),
    ]));

    let public = fs::read_to_string(alice.with_extension("pub")).unwrap();
    fs::write(
        keys.join("allowed"),
        format!("alice@example.com namespaces=\"{NS}\" {public}"),
    )
    .unwrap();
    let line = fs::read(out_dir.join(format!("{NAME}.sha256"))).unwrap();
    let check = ssh_keygen_stdin(
        &out_dir,
        &[
            "-Y",
            "verify",
            "-f",
            keys.join("allowed").to_str().unwrap(),
            "-I",
            "alice@example.com",
            "-n",
            NS,
            "-s",
            &format!("{NAME}.sig"),
        ],
        &line,
    );
    assert!(check.status.success(), "{}", stderr(&check));
    let check = Command::new("minisign")
        .args([
            "-V",
            "-p",
            mpub.to_str().unwrap(),
            "-m",
            bundle.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(String::from_utf8_lossy(&check.stdout).contains(&format!("file:{NAME}")));
}
