#!/bin/sh
# Seed the fuzz corpora with real bundles: the webapp fixture's tar stream (prefixed with an odd
# byte, so the target wraps it in zstd itself) and its compressed bundle as is; and each of its
# 512-byte headers for the `header` target.
set -eu
cd "$(dirname "$0")/.."
out=fuzz/corpus/verify_archive
mkdir -p "$out" target/fuzz-seed
cargo run -q --release -- release-bundle --manifest-path fixtures/webapp/Cargo.toml --out-dir target/fuzz-seed -q
for b in target/fuzz-seed/*.tar.zst; do
  cp "$b" "$out/bundle-$(basename "$b")"
  { printf '\001'; zstd -dc "$b"; } > "$out/tar-$(basename "$b" .zst)"
done
headers=fuzz/corpus/header
mkdir -p "$headers"
for b in target/fuzz-seed/*.tar.zst; do
  python3 - "$b" "$headers" <<'PY'
import subprocess, sys, tarfile, io
data = subprocess.run(["zstd", "-dc", sys.argv[1]], capture_output=True, check=True).stdout
for i, m in enumerate(tarfile.open(fileobj=io.BytesIO(data))):
    open(f"{sys.argv[2]}/h{i:03d}", "wb").write(data[m.offset:m.offset + 512])
PY
done
ls -la "$out" "$headers"
