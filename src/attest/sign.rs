//! Signatures over a bundle: SSH signatures (the `SSHSIG` format of `ssh-keygen -Y sign`),
//! made and checked by the system `ssh-keygen`, so private keys in files, in `ssh-agent` and
//! on hardware tokens all work as the user's OpenSSH does.
//!
//! What is signed is the bundle's `.sha256` line, `<hex>  <file name>\n`: the digest ties the
//! signature to the bytes, the name to the release. The namespace is fixed,
//! [`NAMESPACE`], so a signature made for anything else (a git commit, a file) never passes.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

/// The SSH signature namespace of release bundles.
pub const NAMESPACE: &str = "release-bundle@cargo-release-bundle";

/// The signed message for a bundle: its `.sha256` line.
pub fn message(sha256: &str, file_name: &str) -> String {
    format!("{sha256}  {file_name}\n")
}

/// Where a bundle's signature lives.
pub fn signature_path(bundle: &Utf8Path) -> Utf8PathBuf {
    crate::archive::companions::Companion::Signature.path(bundle)
}

fn ssh_keygen(args: &[&str], stdin: &[u8]) -> Result<std::process::Output> {
    let mut child = Command::new("ssh-keygen")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `ssh-keygen` (install OpenSSH's client)")?;
    let written = child
        .stdin
        .take()
        .context("ssh-keygen's stdin was not captured")?
        .write_all(stdin);
    // ssh-keygen may exit before reading (a key it cannot load): its exit status and stderr,
    // read below, say why; a broken pipe alone would hide that.
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(e).context("cannot write to ssh-keygen");
        }
        _ => {}
    }
    child
        .wait_with_output()
        .context("cannot wait for ssh-keygen")
}

/// Sign `message` with `key`: an OpenSSH private key file, or a public key whose private half
/// is in `ssh-agent`. Returns the armored signature. An unencrypted private key file, with no
/// agent running, is signed with in-process (the `ssh-key` crate; no `ssh-keygen` needed);
/// agents, passphrases and hardware keys go through `ssh-keygen`, as the user's OpenSSH has
/// them.
pub fn sign(key: &Utf8Path, message: &str) -> Result<Vec<u8>> {
    if !key.exists() {
        bail!("`{key}`: no such signing key");
    }
    if std::env::var_os("SSH_AUTH_SOCK").is_none()
        && let Ok(private) = ssh_key::PrivateKey::read_openssh_file(key.as_std_path())
        && !private.is_encrypted()
    {
        let signature = private
            .sign(NAMESPACE, ssh_key::HashAlg::Sha512, message.as_bytes())
            .map_err(|e| anyhow::anyhow!("`{key}`: cannot sign: {e}"))?;
        let pem = signature
            .to_pem(ssh_key::LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("`{key}`: cannot encode the signature: {e}"))?;
        return Ok(pem.into_bytes());
    }
    let out = ssh_keygen(
        &["-Y", "sign", "-f", key.as_str(), "-n", NAMESPACE, "-q"],
        message.as_bytes(),
    )?;
    if !out.status.success() {
        bail!(
            "`{key}`: ssh-keygen could not sign: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// How release files are signed: SSH signatures (`.sig`) or minisign (`.minisig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Signer {
    Ssh,
    Minisign,
}

/// The release a file belongs to, named in a minisign signature's trusted comment.
pub struct Signed<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub commit: Option<&'a str>,
}

/// Sign one release file (a bundle or an image) with `signer`: the one signing path for
/// bundling with `--sign-key` and for `sign`. Returns the signatures written.
pub fn sign_file(
    signer: Signer,
    key: &Utf8Path,
    file: &Utf8Path,
    release: &Signed,
) -> Result<Vec<Utf8PathBuf>> {
    match signer {
        Signer::Ssh => sign_release(key, file),
        Signer::Minisign => {
            let name = file.file_name().unwrap_or_default();
            let comment = trusted_comment(name, release.name, release.version, release.commit);
            Ok(vec![sign_minisign(key, file, &comment)?])
        }
    }
}

/// Sign a release file: `<file>.sig` over its `.sha256` line, and when its provenance
/// (`<file>.intoto.jsonl`) is beside it, `<file>.intoto.jsonl.sig` over the provenance's line
/// too, so the signature covers how it was built. Returns the signatures written.
pub fn sign_release(key: &Utf8Path, file: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
    let mut written = Vec::new();
    let provenance = crate::archive::companions::Companion::Provenance.path(file);
    let mut targets = vec![file.to_owned()];
    if provenance.is_file() {
        targets.push(provenance);
    }
    for target in targets {
        let digest =
            crate::util::sha256_of(&target).with_context(|| format!("`{target}`: cannot sign"))?;
        let name = target.file_name().unwrap_or_default();
        let signature = sign(key, &message(&digest, name))?;
        let path = signature_path(&target);
        crate::util::write_atomically(&path, &signature)?;
        written.push(path);
    }
    Ok(written)
}

/// `[package.metadata.release.sign] key = "PATH"` (relative to the manifest's directory; a
/// `profile.<name>.sign` first), else the workspace's; with where it was set (file: key).
pub fn configured_key(
    ws: &crate::config::project::Workspace,
    package: &cargo_metadata::Package,
    profile: &str,
) -> Result<Option<(Utf8PathBuf, String)>> {
    let Some(section) = ws.sections(package, "sign", profile).into_iter().next() else {
        return Ok(None);
    };
    let key = section
        .value
        .get("key")
        .and_then(|k| k.as_str())
        .ok_or_else(|| {
            anyhow::anyhow!("{}: expected a table with `key = \"PATH\"`", section.origin)
        })?;
    let origin = format!("{}.key", section.origin);
    Ok(Some((section.dir.join(key), origin)))
}

/// Where a bundle's minisign signature lives.
pub fn minisig_path(file: &Utf8Path) -> Utf8PathBuf {
    crate::archive::companions::Companion::Minisign.path(file)
}

/// What a minisign signature's trusted comment says of a release file (signed, so it cannot
/// be changed): the file, the release and version, and the commit.
pub fn trusted_comment(file_name: &str, name: &str, version: &str, commit: Option<&str>) -> String {
    format!(
        "file:{file_name}\trelease:{name} {version}\tcommit:{}",
        commit.unwrap_or("none")
    )
}

/// Sign `file` with minisign, writing `<file>.minisig` (a BLAKE2b pre-hashed signature, so
/// files of any size stream). A passwordless secret key the `minisign` crate reads (as
/// `rsign generate -W` writes them) is signed with in-process; any other key goes through
/// the `minisign` tool: encrypted keys (it asks for the password on the terminal) and the C
/// tool's own `-G -W` keys, whose empty checksum the crate refuses.
pub fn sign_minisign(key: &Utf8Path, file: &Utf8Path, comment: &str) -> Result<Utf8PathBuf> {
    let path = minisig_path(file);
    let text = std::fs::read_to_string(key).with_context(|| format!("`{key}`: cannot read"))?;
    let unencrypted = minisign::SecretKeyBox::from_string(&text)
        .and_then(|b| b.into_unencrypted_secret_key())
        .ok();
    if let Some(secret) = unencrypted {
        let data =
            crate::util::open_regular(file).with_context(|| format!("`{file}`: cannot open"))?;
        let signature = minisign::sign(
            None,
            &secret,
            std::io::BufReader::new(data),
            Some(comment),
            Some("signature from cargo-release-bundle"),
        )
        .map_err(|e| anyhow::anyhow!("`{key}`: cannot sign `{file}`: {e}"))?;
        crate::util::write_atomically(&path, signature.into_string().as_bytes())?;
        return Ok(path);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_str().is_empty())
        .unwrap_or(Utf8Path::new("."));
    let tmp = tempfile::Builder::new()
        .suffix(".minisig")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in `{dir}`"))?;
    let out = Command::new("minisign")
        .args(["-S", "-s", key.as_str(), "-m", file.as_str(), "-t", comment, "-x"])
        .arg(tmp.path())
        .stdin(Stdio::null())
        .output()
        .context("cannot run `minisign` (install it: Debian's `minisign` package, or https://jedisct1.github.io/minisign/)")?;
    if !out.status.success() {
        bail!(
            "`{key}`: minisign could not sign `{file}` (a key with a password needs a terminal; CI keys are made with `minisign -G -W`): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    tmp.persist(&path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write `{path}`"))?;
    Ok(path)
}

/// Check `<file>.minisig` against the minisign public key file `public`: the signature over
/// the file's bytes (streamed), and its trusted comment naming `file_name` when it names any
/// file. `Ok(comment)`.
pub fn check_minisign(
    public: &Utf8Path,
    file: &Utf8Path,
    file_name: &str,
) -> Result<std::result::Result<String, String>> {
    let key = minisign_verify::PublicKey::from_file(public)
        .map_err(|e| anyhow::anyhow!("`{public}`: not a minisign public key ({e})"))?;
    let sig_path = minisig_path(file);
    if !sig_path.is_file() {
        return Ok(Err(format!(
            "no signature `{sig_path}` (--minisign-key asks for one)"
        )));
    }
    let signature = match minisign_verify::Signature::from_file(&sig_path) {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("`{sig_path}`: not a minisign signature ({e})"))),
    };
    let mut verifier = match key.verify_stream(&signature) {
        Ok(v) => v,
        Err(e) => {
            return Ok(Err(format!(
                "`{sig_path}`: {e} (legacy, non-prehashed signatures are not accepted)"
            )));
        }
    };
    let mut input =
        crate::util::open_regular(file).with_context(|| format!("`{file}`: cannot open"))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = std::io::Read::read(&mut input, &mut buf)
            .with_context(|| format!("`{file}`: cannot read"))?;
        if n == 0 {
            break;
        }
        verifier.update(&buf[..n]);
    }
    if let Err(e) = verifier.finalize() {
        return Ok(Err(format!(
            "`{sig_path}`: not a valid signature of this file by `{public}` ({e})"
        )));
    }
    // A comment naming files must name this one; a comment of the signer's own that names
    // none (`minisign -t …`) is fine: the signature covers the bytes, and the manifest is
    // checked for the release's name and version anyway.
    let comment = signature.trusted_comment().to_string();
    let named: Vec<&str> = comment
        .split('\t')
        .filter_map(|f| f.strip_prefix("file:"))
        .collect();
    if !named.is_empty() && !named.contains(&file_name) {
        return Ok(Err(format!(
            "`{sig_path}`: a valid signature, but its trusted comment names another file ({comment:?})"
        )));
    }
    Ok(Ok(comment))
}

/// Check `signature` over `message` against an OpenSSH `allowed_signers` file, for `identity`
/// or else for the principals the file gives the signing key. `Ok(principal)` when valid.
pub fn check(
    allowed_signers: &Utf8Path,
    identity: Option<&str>,
    signature: &Utf8Path,
    message: &str,
) -> Result<std::result::Result<String, String>> {
    let principal = match identity {
        Some(id) => id.to_string(),
        None => {
            let out = ssh_keygen(
                &[
                    "-Y",
                    "find-principals",
                    "-s",
                    signature.as_str(),
                    "-f",
                    allowed_signers.as_str(),
                ],
                b"",
            )?;
            let found = String::from_utf8_lossy(&out.stdout);
            match found.lines().next() {
                Some(p) if out.status.success() => p.to_string(),
                _ => {
                    return Ok(Err(format!(
                        "no principal in `{allowed_signers}` holds the key that made it"
                    )));
                }
            }
        }
    };
    let out = ssh_keygen(
        &[
            "-Y",
            "verify",
            "-f",
            allowed_signers.as_str(),
            "-I",
            &principal,
            "-n",
            NAMESPACE,
            "-s",
            signature.as_str(),
        ],
        message.as_bytes(),
    )?;
    if out.status.success() {
        Ok(Ok(principal))
    } else {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Ok(Err(format!(
            "not a valid {NAMESPACE} signature by {principal} for this bundle ({why})"
        )))
    }
}
