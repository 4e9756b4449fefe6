//! The release a deploy sends: a bundle that verified (its digest, its signatures as the
//! trust policy asks, every entry), with its manifest kept from the same single read.

use anyhow::{Context, Result, bail};
use camino::Utf8Path;

use crate::archive::manifest::Manifest;
use crate::verify::{self, Limits, Severity, Trust};

/// The release being deployed: a bundle that verified.
pub struct Release<'a> {
    pub bundle: &'a Utf8Path,
    pub sha256: String,
    /// Without its file list (see `manifest_spool`).
    pub manifest: Manifest,
    /// The bundle's `MANIFEST.json`, for streaming its file list per host.
    pub manifest_spool: std::fs::File,
}

impl<'a> Release<'a> {
    /// The same release under another name on the hosts (`<version>+<id>`).
    pub fn named(&self, id: &str) -> std::io::Result<Release<'a>> {
        let mut manifest = self.manifest.clone();
        manifest.version = id.to_string();
        Ok(Release {
            bundle: self.bundle,
            sha256: self.sha256.clone(),
            manifest,
            manifest_spool: self.manifest_spool.try_clone()?,
        })
    }

    /// The bundle's compression, as its file name says (verify checked that the name and the
    /// bytes agree).
    pub fn format(&self) -> crate::archive::Format {
        crate::archive::format_of(self.bundle.as_str()).unwrap_or(crate::archive::Format::TarZst)
    }
}

/// A verify [`Sink`](crate::verify::Sink) that keeps only `MANIFEST.json`, copied into an
/// anonymous temporary file as verify streams it: the deploy reads the bundle once to verify
/// it and to learn its file list.
#[derive(Default)]
struct ManifestCatcher {
    manifest: Option<std::fs::File>,
}

impl crate::verify::Sink for ManifestCatcher {
    fn dir(&mut self, _: &str) {}
    fn symlink(&mut self, _: &str, _: &str) {}
    fn begin_file(&mut self, rel: &str) -> Option<std::fs::File> {
        (rel == crate::archive::MANIFEST)
            .then(|| tempfile::tempfile().ok())
            .flatten()
    }
    fn end_file(&mut self, _: &str, file: std::fs::File, _: u32) {
        self.manifest = Some(file);
    }
    fn fail(&mut self, _: &str, _: std::io::Error) {
        self.manifest = None;
    }
    fn mtime(&mut self, _: u64) {}
}

impl<'a> Release<'a> {
    /// Verify the bundle as `verify` does, with the same digest and signature checks; its
    /// manifest and digest when it passes.
    pub fn verified(bundle: &'a Utf8Path, trust: &Trust) -> Result<Release<'a>> {
        let mut catcher = ManifestCatcher::default();
        let mut report = verify::verify_file(
            bundle,
            trust.sha256.as_deref(),
            Limits::default(),
            &[],
            Some(&mut catcher),
        )?;
        trust.check_signatures(&mut report)?;
        if !report.passes(false) {
            let first = report
                .findings
                .iter()
                .find(|f| f.severity == Severity::Error)
                .map(|f| f.message.clone())
                .unwrap_or_default();
            bail!("`{bundle}` does not verify ({first}); nothing was deployed");
        }
        let manifest = report
            .manifest
            .with_context(|| format!("`{bundle}`: its manifest names no release"))?;
        let manifest_spool = catcher
            .manifest
            .with_context(|| format!("`{bundle}`: its MANIFEST.json could not be kept"))?;
        Ok(Release {
            bundle,
            sha256: report.sha256,
            manifest,
            manifest_spool,
        })
    }
}
