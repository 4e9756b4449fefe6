#!/usr/bin/env bash
# Bundle the `native` fixture (registry dependency + C build script) under reprotest's
# variations and fail if the bundles differ. `time` is left out: libfaketime hangs rustc.
set -euo pipefail
cd "$(dirname "$0")/.."
# The debug build `cargo test` already made: the tool's own profile does not change a
# bundle's bytes (the bundled crate is built by cargo with its profile), and a release build
# of the tool here cost CI a minute.
cargo build --quiet
tool=$PWD/target/debug/cargo-release-bundle
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r fixtures/native "$work/native"
rm -rf "$work/native/target"
cargo fetch --quiet --locked --manifest-path "$work/native/Cargo.toml"
# The toolchain's own cargo, not rustup's proxy (reprotest varies HOME and PATH).
cargo_bin=$(rustup which cargo 2>/dev/null || command -v cargo)
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
cd "$work/native"
reprotest --variations=+all,-user_group,-time -s . \
  "export CARGO_HOME='$cargo_home' RUSTUP_HOME='$rustup_home' CARGO='$cargo_bin'; '$tool' release-bundle --offline --locked --out-dir out -q" \
  'out/*.tar.zst'
