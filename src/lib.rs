//! cargo-release-bundle: build a Rust service into a reproducible release bundle, check it,
//! and run it in production. One folder per capability; see ARCHITECTURE.md for the map and
//! the import rule. This file only declares modules.

pub mod archive;
pub mod attest;
pub mod bundle;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod deploy;
pub mod image;
pub mod output;
pub mod publish;
pub mod util;
pub mod verify;
