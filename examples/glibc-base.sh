#!/bin/sh
# An offline base image for glibc executables: an OCI image layout holding exactly the
# dynamic loader and the shared libraries EXECUTABLE needs on this machine (from `ldd`), in
# one layer, tagged `base`. Use it as `image.base = "oci-layout:DIR:base"`; nothing is fetched
# from a registry. Run it on the machine (or in the container) that builds the bundle, so the
# libraries match what the executable was linked against.
#
# Usage: examples/glibc-base.sh EXECUTABLE DIR
# Needs: sh, coreutils, GNU tar, ldd, awk.
set -eu

[ "$#" -eq 2 ] || { echo "usage: $0 EXECUTABLE DIR" >&2; exit 2; }
exe=$1
out=$2
[ -x "$exe" ] || { echo "$0: $exe is not an executable" >&2; exit 1; }
[ ! -e "$out" ] || { echo "$0: $out exists; give a new directory" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The loader and libraries, at their paths on this machine.
ldd "$exe" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u > "$work/libs"
[ -s "$work/libs" ] || { echo "$0: ldd lists no libraries for $exe (a static executable needs no base)" >&2; exit 1; }
mkdir -p "$work/root"
while IFS= read -r lib; do
  mkdir -p "$work/root$(dirname -- "$lib")"
  cp -L -- "$lib" "$work/root$lib"
done < "$work/libs"

# One reproducible layer: sorted, one mtime, owned by root.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=ustar \
  -C "$work/root" -cf "$work/layer.tar" .

sha() { sha256sum -- "$1" | cut -d' ' -f1; }
size() { wc -c < "$1" | tr -d ' '; }
mkdir -p "$out/blobs/sha256"
layer=$(sha "$work/layer.tar")
cp -- "$work/layer.tar" "$out/blobs/sha256/$layer"

printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/bin:/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')" "$layer" > "$work/config.json"
config=$(sha "$work/config.json")
cp -- "$work/config.json" "$out/blobs/sha256/$config"

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$config" "$(size "$work/config.json")" "$layer" "$(size "$work/layer.tar")" > "$work/manifest.json"
manifest=$(sha "$work/manifest.json")
cp -- "$work/manifest.json" "$out/blobs/sha256/$manifest"

printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"base"}}]}' \
  "$manifest" "$(size "$work/manifest.json")" > "$out/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
echo "$out: a base with $(wc -l < "$work/libs" | tr -d ' ') files for $exe (image.base = \"oci-layout:$out:base\")"
