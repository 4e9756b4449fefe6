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

fn verify_json(dir: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["verify", "--message-format", "json"];
    args.extend_from_slice(extra);
    args.push(NAME);
    let out = run_tool(dir, &args, &[]);
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn signatures_are_made_and_checked_and_interoperate_with_ssh_keygen() {
    if !(have("ssh-keygen") && have("ssh-agent") && have("ssh-add")) {
        return;
    }
    let scratch = Scratch::new();
    let dir = &scratch.path;
    fs::copy(webapp_bundle(), dir.join(NAME)).unwrap();
    let alice = keygen(dir, "alice");
    let mallory = keygen(dir, "mallory");
    let pubkey = |k: &Path| fs::read_to_string(k.with_extension("pub")).unwrap();
    fs::write(
        dir.join("allowed"),
        format!("alice@example.com namespaces=\"{NS}\" {}", pubkey(&alice)),
    )
    .unwrap();
    let allowed = ["--allowed-signers", "allowed"];

    // Unsigned: required signature missing; without the flag nothing is said.
    let (code, text) = verify_json(dir, &allowed);
    assert_eq!(code, 1);
    assert!(text.contains("\"code\":\"signature-missing\""), "{text}");

    // Signed by alice with a key file: valid, and origin is checked.
    assert_success(&run_tool(
        dir,
        &["sign", NAME, "--key", alice.to_str().unwrap()],
        &[],
    ));
    let (code, text) = verify_json(dir, &allowed);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("\"reference\":\"signature\"") && text.contains("\"origin_checked\":true"),
        "{text}"
    );
    assert!(text.contains("signed by alice@example.com"), "{text}");
    let (code, text) = verify_json(dir, &[]);
    assert_eq!(code, 0);
    assert!(text.contains("\"code\":\"signature-unchecked\""), "{text}");

    // ssh-keygen checks ours: the message is the bundle's .sha256 line.
    let message = format!("{}  {NAME}\n", sha256_file(&dir.join(NAME)));
    let out = ssh_keygen_stdin(
        dir,
        &[
            "-Y",
            "verify",
            "-f",
            "allowed",
            "-I",
            "alice@example.com",
            "-n",
            NS,
            "-s",
            &format!("{NAME}.sig"),
        ],
        message.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Ours checks ssh-keygen's, made through ssh-agent with only the public key named.
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
        .arg(&alice)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let out = run_tool(
        dir,
        &[
            "sign",
            NAME,
            "--key",
            alice.with_extension("pub").to_str().unwrap(),
        ],
        &[("SSH_AUTH_SOCK", &sock)],
    );
    let _ = Command::new("kill").arg(&pid).status();
    assert_success(&out);
    assert_eq!(verify_json(dir, &allowed).0, 0);
    // ssh-keygen signs `signed` as alice in `namespace`, in place of the bundle's signature.
    let keygen_signs = |namespace: &str, signed: &[u8]| {
        let sig = ssh_keygen_stdin(
            dir,
            &["-Y", "sign", "-f", "alice", "-n", namespace, "-q"],
            signed,
        );
        assert!(
            sig.status.success(),
            "{}",
            String::from_utf8_lossy(&sig.stderr)
        );
        fs::write(dir.join(format!("{NAME}.sig")), &sig.stdout).unwrap();
    };
    // Ours signs the bundle with `key`.
    let we_sign = |key: &Path| {
        assert_success(&run_tool(
            dir,
            &["sign", NAME, "--key", key.to_str().unwrap()],
            &[],
        ));
    };
    keygen_signs(NS, message.as_bytes());
    assert_eq!(verify_json(dir, &allowed).0, 0);

    // Refused: another key, another namespace, an expired key, a changed bundle.
    let refused = |what: &str, setup: &dyn Fn()| {
        setup();
        let (code, text) = verify_json(dir, &allowed);
        assert_eq!(code, 1, "{what}: {text}");
        assert!(
            text.contains("\"code\":\"signature-invalid\""),
            "{what}: {text}"
        );
    };
    refused("mallory's key", &|| we_sign(&mallory));
    refused("another namespace", &|| {
        keygen_signs("file", message.as_bytes())
    });
    refused("an expired key", &|| {
        we_sign(&alice);
        fs::write(
            dir.join("allowed"),
            format!(
                "alice@example.com valid-before=\"20000101\" {}",
                pubkey(&alice)
            ),
        )
        .unwrap();
    });
    fs::write(
        dir.join("allowed"),
        format!("alice@example.com {}", pubkey(&alice)),
    )
    .unwrap();
    assert_eq!(verify_json(dir, &allowed).0, 0, "valid again");
    refused("a signature of another bundle", &|| {
        let line = format!(
            "{}  other-1.0.0-x86_64-unknown-linux-gnu.tar.zst\n",
            "0".repeat(64)
        );
        keygen_signs(NS, line.as_bytes());
    });
    // Signed again, valid again: the next refusal is the changed bundle's alone.
    we_sign(&alice);
    assert_eq!(verify_json(dir, &allowed).0, 0, "valid again");
    refused("a changed bundle", &|| {
        let mut bytes = fs::read(dir.join(NAME)).unwrap();
        bytes.push(0);
        fs::write(dir.join(NAME), bytes).unwrap();
        let _ = fs::remove_file(dir.join(format!("{NAME}.sha256")));
    });

    // unpack refuses an unsigned bundle when signers are given, and installs nothing.
    fs::copy(webapp_bundle(), dir.join(NAME)).unwrap();
    let _ = fs::remove_file(dir.join(format!("{NAME}.sig")));
    let unpack = || {
        let args = [
            "unpack",
            NAME,
            "--to",
            "installed",
            "--allowed-signers",
            "allowed",
        ];
        run_tool(dir, &args, &[])
    };
    let out = unpack();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!dir.join("installed").exists());
    assert_success(&run_tool(
        dir,
        &["sign", NAME, "--key", alice.to_str().unwrap()],
        &[],
    ));
    assert_success(&unpack());
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
    fs::write(
        keys.join("allowed"),
        format!("alice@example.com namespaces=\"{NS}\" {public}"),
    )
    .unwrap();
    let allowed = keys.join("allowed");
    // The key from the manifest, relative to it.
    fx.append(
        "Cargo.toml",
        &format!(
            "\n[package.metadata.release.sign]\nkey = \"{}\"\n",
            alice.display()
        ),
    );
    let out_dir = fx.scratch.join("out");
    let lines = fx.bundle(&["--out-dir", out_dir.to_str().unwrap()]);
    let bundle = PathBuf::from(lines[0]["path"].as_str().unwrap());
    let provenance = PathBuf::from(format!("{}.intoto.jsonl", bundle.display()));
    assert!(PathBuf::from(format!("{}.sig", bundle.display())).is_file());
    assert!(PathBuf::from(format!("{}.sig", provenance.display())).is_file());
    let (code, json) = {
        let out = run_tool(
            &out_dir,
            &[
                "verify",
                "--message-format",
                "json",
                "--allowed-signers",
                allowed.to_str().unwrap(),
                NAME,
            ],
            &[],
        );
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(code, 0, "{json}");
    assert!(
        json.contains("\"reference\":\"signature\"") && !json.contains("provenance-unsigned"),
        "{json}"
    );

    // Plain ssh-keygen checks the provenance's signature over its sha256 line.
    let line = format!("{}  {NAME}.intoto.jsonl\n", sha256_file(&provenance));
    let check = ssh_keygen_stdin(
        &out_dir,
        &[
            "-Y",
            "verify",
            "-f",
            allowed.to_str().unwrap(),
            "-I",
            "alice@example.com",
            "-n",
            NS,
            "-s",
            &format!("{NAME}.intoto.jsonl.sig"),
        ],
        line.as_bytes(),
    );
    assert!(check.status.success(), "{}", stderr(&check));

    // A provenance changed after signing: the bundle's signature no longer vouches for it.
    let original = fs::read(&provenance).unwrap();
    let mut changed = original.clone();
    let at = changed.iter().position(|&b| b == b'"').unwrap();
    changed.insert(at, b' ');
    fs::write(&provenance, &changed).unwrap();
    let out = run_tool(
        &out_dir,
        &[
            "verify",
            "--message-format",
            "json",
            "--allowed-signers",
            allowed.to_str().unwrap(),
            NAME,
        ],
        &[],
    );
    let json = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert!(json.contains("provenance-signature-invalid"), "{json}");
    fs::write(&provenance, &original).unwrap();

    // merge --sign-key: one signature over SHA256SUMS covers every archive; the bundles'
    // own signatures travel with them.
    let merged = fx.scratch.join("merged");
    let out = run_tool(
        &fx.scratch.path,
        &[
            "merge",
            out_dir.to_str().unwrap(),
            "--out",
            merged.to_str().unwrap(),
            "--sign-key",
            alice.to_str().unwrap(),
        ],
        &[],
    );
    assert_success(&out);
    assert!(merged.join(format!("{NAME}.sig")).is_file());
    let sums = fs::read(merged.join("SHA256SUMS")).unwrap();
    let check = ssh_keygen_stdin(
        &merged,
        &[
            "-Y",
            "verify",
            "-f",
            allowed.to_str().unwrap(),
            "-I",
            "alice@example.com",
            "-n",
            NS,
            "-s",
            "SHA256SUMS.sig",
        ],
        &sums,
    );
    assert!(check.status.success(), "{}", stderr(&check));
    let out = run_tool(
        &merged,
        &[
            "verify",
            "--allowed-signers",
            allowed.to_str().unwrap(),
            NAME,
        ],
        &[],
    );
    assert_success(&out);

    // merge --signer minisign: SHA256SUMS.minisig, checked by the minisign tool.
    if !have("minisign") {
        return;
    }
    let (key, public) = minisign_keypair(&fx.scratch.path);
    let merged = fx.scratch.join("merged-minisign");
    let out = run_tool(
        &fx.scratch.path,
        &[
            "merge",
            out_dir.to_str().unwrap(),
            "--out",
            merged.to_str().unwrap(),
            "--sign-key",
            key.to_str().unwrap(),
            "--signer",
            "minisign",
        ],
        &[],
    );
    assert_success(&out);
    let check = Command::new("minisign")
        .args(["-V", "-p"])
        .arg(&public)
        .arg("-m")
        .arg(merged.join("SHA256SUMS"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
}

/// minisign both ways: our signature checks with the `minisign` tool and with ours; one the
/// tool makes checks with ours; a wrong key, a tampered bundle and a signature of another
/// file are refused.
#[test]
fn minisign_signatures_interoperate() {
    if !have("minisign") {
        return;
    }
    let fx = Fixture::new("webapp");
    let out_dir = fx.scratch.join("out");
    let lines = fx.bundle(&["--out-dir", out_dir.to_str().unwrap()]);
    let bundle = PathBuf::from(lines[0]["path"].as_str().unwrap());
    let keys = fx.scratch.join("keys");
    fs::create_dir_all(&keys).unwrap();
    let keypair = |name: &str| {
        let (p, s) = (
            keys.join(format!("{name}.pub")),
            keys.join(format!("{name}.key")),
        );
        let out = Command::new("minisign")
            .args([
                "-G",
                "-W",
                "-p",
                p.to_str().unwrap(),
                "-s",
                s.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        (p, s)
    };
    let (alice_pub, alice) = keypair("alice");
    let (mallory_pub, mallory) = keypair("mallory");
    let verify = |key: &Path| {
        run_tool(
            &out_dir,
            &[
                "verify",
                "--message-format",
                "json",
                "--minisign-key",
                key.to_str().unwrap(),
                NAME,
            ],
            &[],
        )
    };

    let sign_minisign = |key: &Path| {
        run_tool(
            &out_dir,
            &[
                "sign",
                NAME,
                "--signer",
                "minisign",
                "--key",
                key.to_str().unwrap(),
            ],
            &[],
        )
    };

    // Ours, checked by ours and by the minisign tool; the trusted comment names the release.
    assert_success(&sign_minisign(&alice));
    let sig = out_dir.join(format!("{NAME}.minisig"));
    let text = fs::read_to_string(&sig).unwrap();
    assert!(
        text.contains(&format!(
            "trusted comment: file:{NAME}\trelease:webapp 1.2.0\tcommit:"
        )),
        "{text}"
    );
    let out = verify(&alice_pub);
    let json = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{json}");
    assert!(json.contains("\"reference\":\"signature\""), "{json}");
    let out = Command::new("minisign")
        .args([
            "-V",
            "-p",
            alice_pub.to_str().unwrap(),
            "-m",
            bundle.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // A key that did not sign it.
    let out = verify(&mallory_pub);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("signature-invalid"));

    // The minisign tool's own signature checks with ours.
    let out = Command::new("minisign")
        .args([
            "-S",
            "-s",
            mallory.to_str().unwrap(),
            "-m",
            bundle.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(verify(&mallory_pub).status.code(), Some(0));
    // ... and so does one with its own trusted comment (`-t`), which names no file: the
    // signature covers the bundle's bytes, and the manifest names the release.
    let out = Command::new("minisign")
        .args([
            "-S",
            "-s",
            mallory.to_str().unwrap(),
            "-t",
            "billing release, signed by CI",
            "-m",
            bundle.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = verify(&mallory_pub);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A signature of another file (copied beside this bundle) is refused, and so is a
    // tampered bundle.
    let other = out_dir.join("other.txt");
    fs::write(&other, b"other").unwrap();
    let out = Command::new("minisign")
        .args([
            "-S",
            "-s",
            alice.to_str().unwrap(),
            "-m",
            other.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    fs::copy(out_dir.join("other.txt.minisig"), &sig).unwrap();
    assert_eq!(verify(&alice_pub).status.code(), Some(1));
    assert_success(&sign_minisign(&alice));
    let mut bytes = fs::read(&bundle).unwrap();
    let end = bytes.len() - 1;
    bytes[end] ^= 1;
    fs::write(&bundle, bytes).unwrap();
    let out = verify(&alice_pub);
    assert_ne!(out.status.code(), Some(0));
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
