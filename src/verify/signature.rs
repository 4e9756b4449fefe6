//! `BUNDLE.sig` against `--allowed-signers`: a valid signature is what proves origin; a missing
//! or invalid one is an error when signers are given, and a present but unchecked one is said.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use super::sidecar::Reference;
use super::{Finding, Report};
use crate::attest::sign;

/// What a bundle must prove beyond its own consistency: a digest the user expects, and a
/// signature by one of the allowed SSH signers (as `identity`, when given) or by a minisign
/// key. `verify`, `unpack`, `install` and `deploy` all check it the same way.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub sha256: Option<String>,
    pub allowed_signers: Option<Utf8PathBuf>,
    pub identity: Option<String>,
    pub minisign_key: Option<Utf8PathBuf>,
}

impl Trust {
    /// The signatures this policy asks for, checked into `report`'s findings.
    pub fn check_signatures(&self, report: &mut Report) -> Result<()> {
        check_signature(
            report,
            self.allowed_signers.as_deref(),
            self.identity.as_deref(),
        )?;
        if let Some(public) = &self.minisign_key {
            check_minisign(report, public)?;
        }
        Ok(())
    }

    /// Whether a signer was named at all (`deploy.require-signature` needs one).
    pub fn names_a_signer(&self) -> bool {
        self.allowed_signers.is_some() || self.minisign_key.is_some()
    }
}

/// `BUNDLE.minisig` against `--minisign-key`.
pub fn check_minisign(report: &mut Report, public: &Utf8Path) -> Result<()> {
    let name = report.bundle.file_name().unwrap_or_default().to_string();
    match sign::check_minisign(public, &report.bundle, &name)? {
        Ok(comment) => {
            report.reference = Reference::Signature;
            report.findings.push(Finding::note(
                "signature",
                None,
                format!("minisign signature by `{public}` ({comment})"),
            ));
        }
        Err(why) => report
            .findings
            .push(Finding::error("signature-invalid", None, why)),
    }
    Ok(())
}

pub fn check_signature(
    report: &mut Report,
    allowed_signers: Option<&Utf8Path>,
    identity: Option<&str>,
) -> Result<()> {
    let sig = sign::signature_path(&report.bundle);
    let present = std::fs::symlink_metadata(&sig).is_ok_and(|m| m.file_type().is_file());
    let Some(allowed) = allowed_signers else {
        if present {
            report.findings.push(Finding::note(
                "signature-unchecked",
                None,
                format!(
                    "`{sig}` is present but not checked; pass --allowed-signers FILE to check it"
                ),
            ));
        }
        return Ok(());
    };
    if !present {
        report.findings.push(Finding::error(
            "signature-missing",
            None,
            format!("no signature `{sig}` (--allowed-signers asks for one)"),
        ));
        return Ok(());
    }
    let file_name = report.bundle.file_name().unwrap_or_default();
    let message = sign::message(&report.sha256, file_name);
    match sign::check(allowed, identity, &sig, &message)? {
        Ok(principal) => {
            report.reference = Reference::Signature;
            report.findings.push(Finding::note(
                "signature",
                None,
                format!("signed by {principal} (`{sig}`)"),
            ));
            check_provenance_signature(report, allowed, &principal)?;
        }
        Err(why) => report.findings.push(Finding::error(
            "signature-invalid",
            None,
            format!("`{sig}`: {why}"),
        )),
    }
    Ok(())
}

/// The provenance beside a signed bundle must be signed by the same principal: otherwise a
/// valid bundle signature would lend its trust to a statement anyone could have written.
fn check_provenance_signature(
    report: &mut Report,
    allowed: &Utf8Path,
    principal: &str,
) -> Result<()> {
    let provenance = crate::attest::provenance::path_of(&report.bundle);
    if !provenance.is_file() {
        return Ok(());
    }
    let sig = sign::signature_path(&provenance);
    if !sig.is_file() {
        report.findings.push(Finding::warning(
            "provenance-unsigned",
            None,
            format!("`{provenance}` is not signed (no `{sig}`): what it says about the build is not covered by the signature"),
        ));
        return Ok(());
    }
    let digest = crate::util::sha256_of(&provenance)?;
    let message = sign::message(&digest, provenance.file_name().unwrap_or_default());
    if let Err(why) = sign::check(allowed, Some(principal), &sig, &message)? {
        report.findings.push(Finding::error(
            "provenance-signature-invalid",
            None,
            format!("`{sig}`: {why}"),
        ));
    }
    Ok(())
}
