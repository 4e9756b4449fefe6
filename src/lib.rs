//! cargo-release-bundle: build a Rust service and write a reproducible release bundle.
//!
//! The pipeline, one module per stage, data flowing one way:
//! `cli::BundleOpts` → [`config`] → [`sources`] (scan) → [`plan`] → [`build`] → [`assemble`]
//! (through [`archive`], the one definition of the format), run by [`pipeline`]. Each
//! subcommand is a thin function in [`cmd`]; this file only declares modules.

pub mod archive;
pub mod assemble;
pub mod build;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod deploy;
pub mod fixed_root;
pub mod fsutil;
pub mod image;
pub mod init;
pub mod launcher;
pub mod machine_paths;
pub mod merge;
pub mod pipeline;
pub mod plan;
pub mod project;
pub mod provenance;
pub mod rebuild;
pub mod rustflags;
pub mod sbom;
pub mod shell;
pub mod sign;
pub mod sources;
pub mod unpack;
pub mod verify;
