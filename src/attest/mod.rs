//! Attesting releases: who built what and from which sources, and who vouches for it. SSH
//! and minisign signatures (`sign`), the CycloneDX SBOM shipped inside a bundle (`sbom`), the
//! in-toto/SLSA provenance written beside it (`provenance`).

pub mod provenance;
pub mod sbom;
pub mod sign;
