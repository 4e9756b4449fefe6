#!/bin/sh
# Seed the fuzz corpus with real bundles: the webapp fixture's tar stream (prefixed with an odd
# byte, so the target wraps it in zstd itself) and its compressed bundle as is.
set -eu
cd "$(dirname "$0")/.."
out=fuzz/corpus/verify_archive
mkdir -p "$out" target/fuzz-seed
cargo run -q --release -- release-bundle --manifest-path fixtures/webapp/Cargo.toml --out-dir target/fuzz-seed -q
for b in target/fuzz-seed/*.tar.zst; do
  cp "$b" "$out/bundle-$(basename "$b")"
  { printf '\001'; zstd -dc "$b"; } > "$out/tar-$(basename "$b" .zst)"
done
ls -la "$out"
