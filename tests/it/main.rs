//! Integration tests: the real tool, run through the real cargo on copies of `fixtures/`,
//! checked with real GNU tar, bsdtar, zstd and sha256sum.

mod architecture;
mod bundle;
mod cli;
mod config_errors;
mod deploy;
mod determinism;
mod gapless;
mod hosts;
mod image;
mod install;
mod launcher;
mod load;
mod memory;
mod reproducible;
mod roles;
mod sbom;
mod services;
mod sign;
mod support;
mod trust;
mod verify;
mod whole;
mod workflow;
mod workspace;
