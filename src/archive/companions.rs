//! The files that travel beside a release file (a bundle or an image): its digest line,
//! provenance and signatures; and the image file beside a bundle. One list, so that `merge`, `sign` and `verify` agree on what a
//! release file's companions are.

use camino::{Utf8Path, Utf8PathBuf};

/// One kind of companion file, named `<release file><suffix>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Companion {
    /// `<file>.sha256`: one `sha256sum` line.
    Sha256,
    /// `<file>.intoto.jsonl`: the in-toto/SLSA provenance statement.
    Provenance,
    /// `<file>.sig`: an SSH signature over the `.sha256` line.
    Signature,
    /// `<file>.intoto.jsonl.sig`: an SSH signature over the provenance's line.
    ProvenanceSignature,
    /// `<file>.minisig`: a minisign signature over the file's bytes.
    Minisign,
}

impl Companion {
    pub const ALL: [Companion; 5] = [
        Companion::Sha256,
        Companion::Provenance,
        Companion::Signature,
        Companion::ProvenanceSignature,
        Companion::Minisign,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            Companion::Sha256 => ".sha256",
            Companion::Provenance => ".intoto.jsonl",
            Companion::Signature => ".sig",
            Companion::ProvenanceSignature => ".intoto.jsonl.sig",
            Companion::Minisign => ".minisig",
        }
    }

    /// Where this companion of `file` lives.
    pub fn path(self, file: &Utf8Path) -> Utf8PathBuf {
        Utf8PathBuf::from(format!("{file}{}", self.suffix()))
    }
}

/// The image built beside a bundle: `<name>-<version>-<triple>.oci.tar`, found by the
/// release it belongs to (for `sign` and `verify --rebuild`).
pub fn image_file(name: &str, version: &str, target: &str) -> String {
    format!("{name}-{version}-{target}{IMAGE_EXTENSION}")
}

/// How an image layout tar's name ends.
pub const IMAGE_EXTENSION: &str = ".oci.tar";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_companion_has_its_own_name() {
        let file = Utf8Path::new("out/app-1.0.0.tar.zst");
        let names: Vec<String> = Companion::ALL
            .iter()
            .map(|c| c.path(file).to_string())
            .collect();
        assert_eq!(
            names,
            [
                "out/app-1.0.0.tar.zst.sha256",
                "out/app-1.0.0.tar.zst.intoto.jsonl",
                "out/app-1.0.0.tar.zst.sig",
                "out/app-1.0.0.tar.zst.intoto.jsonl.sig",
                "out/app-1.0.0.tar.zst.minisig",
            ]
        );
    }
}
