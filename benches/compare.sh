#!/usr/bin/env bash
# Compare `cargo release-bundle` with the hand-written pipeline it replaces, on a generated
# service whose priv tree has many small text files plus a dozen 16 MiB files (half
# compressible, half random). Prints medians, peak RSS and ratios. Not a test: numbers depend
# on the machine; the README quotes a run.
#
# Usage: benches/compare.sh [--files N] [--runs N]   (BENCH_QUICK=1: bundle and verify only;
#        BENCH_CORES=1: --jobs 1..nproc only)
# Needs: hyperfine, GNU time (/usr/bin/time), GNU tar, zstd, gzip, sha256sum, python3, taskset.
set -euo pipefail

FILES=20000
RUNS=5
while [ $# -gt 0 ]; do
  case $1 in
    --files) FILES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) echo "usage: $0 [--files N] [--runs N]" >&2; exit 2 ;;
  esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-$REPO/target/bench}
TOOL=$REPO/target/release/cargo-release-bundle
for t in hyperfine /usr/bin/time tar zstd gzip sha256sum python3 taskset; do
  command -v "$t" >/dev/null || { echo "missing: $t" >&2; exit 2; }
done
cargo build --release --quiet --manifest-path "$REPO/Cargo.toml"

# A std-only service with a generated priv tree. Deterministic: same tree on every machine.
make_pkg() { # dir files
  local dir=$1 files=$2
  if [ -f "$dir/.complete-$files" ]; then return; fi
  rm -rf "$dir"; mkdir -p "$dir/src"
  cat > "$dir/Cargo.toml" <<TOML
[package]
name = "benchsvc"
version = "1.0.0"
edition = "2021"
publish = false

[workspace]

[profile.l19]
inherits = "release"

[package.metadata.release]
compression-level = 3

[package.metadata.release.profile.l19]
compression-level = 19
TOML
  echo 'fn main() { println!("bench"); }' > "$dir/src/main.rs"
  python3 - "$dir/priv" "$files" <<'PY'
import os, random, sys
root, files = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261126)
words = ["service", "template", "rule", "migration", "static", "asset", "billing", "invoice",
         "customer", "order", "payment", "ledger", "account", "report", "schema", "index"]
for i in range(files):
    d = os.path.join(root, "tree", "d%03d" % (i % 200), "e%02d" % (i % 17))
    os.makedirs(d, exist_ok=True)
    n = rng.randint(200, 12000)
    text = []
    size = 0
    while size < n:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + "\n"
        text.append(line)
        size += len(line)
    with open(os.path.join(d, "f%05d.txt" % i), "w") as f:
        f.write("".join(text))
big = os.path.join(root, "big")
os.makedirs(big, exist_ok=True)
scale = max(1, files // 20000)
for i in range(12 * scale):
    with open(os.path.join(big, "blob%02d.bin" % i), "wb") as f:
        if i % 2:
            f.write(rng.randbytes(16 << 20))
        else:
            chunk = "".join(" ".join(rng.choice(words) for _ in range(8)) + "\n" for _ in range(4096)).encode()
            left = 16 << 20
            while left > 0:
                f.write(chunk[:left]); left -= len(chunk)
PY
  cargo build --release --quiet --manifest-path "$dir/Cargo.toml"
  cargo build --profile l19 --quiet --manifest-path "$dir/Cargo.toml"
  touch "$dir/.complete-$files"
}

# The careful hand pipeline doing the same job: build (no-op), deterministic tar | zstd,
# sha256 of every file, sha256 of the archive.
mkdir -p "$WORK"
HAND=$WORK/hand.sh
cat > "$HAND" <<'SH'
#!/usr/bin/env bash
set -euo pipefail
dir=$1 out=$2 compress=$3
cargo build --release --quiet --manifest-path "$dir/Cargo.toml"
cd "$dir"
rm -rf "$out"; mkdir -p "$out"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@315532800 -cf - priv target/release/benchsvc \
  | $compress > "$out/hand.tar"
find priv target/release/benchsvc -type f -print0 | xargs -0 sha256sum > "$out/SHA256SUMS"
sha256sum "$out/hand.tar" > "$out/hand.tar.sha256"
SH
chmod +x "$HAND"

median() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("\n".join("%s %.3f" % (r["command"], r["median"]) for r in d["results"]))' "$1"; }
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1; }
# Peak resident memory of the tool itself, without the cargo it runs (its `-v` report), in MiB.
self_rss() { "${@/#-q/-v}" 2>&1 >/dev/null | sed -n 's/.*Memory peak resident \([0-9.]*\) MiB.*/\1/p' | tail -n 1; }
: > "$WORK/rss.txt"

run_size() { # files
  local files=$1 dir=$WORK/pkg-$1
  make_pkg "$dir" "$files"
  local mb; mb=$(du -sm "$dir/priv" | cut -f1)
  echo "== priv tree: $files small files + $((12 * (files > 20000 ? files / 20000 : 1))) x 16 MiB, ${mb} MiB =="
  local ours="$TOOL release-bundle --manifest-path $dir/Cargo.toml --out-dir $WORK/out-ours -q"
  local hand="$HAND $dir $WORK/out-hand 'zstd -3 -T0 -q'"
  # The floor: the same files through tar | zstd -3 -T0, nothing hashed, nothing checked.
  local floor="cd $dir && tar --sort=name -cf - priv target/release/benchsvc | zstd -3 -T0 -q > /dev/null"
  hyperfine --style none --runs "$RUNS" --warmup 1 --export-json "$WORK/bundle.json" "$ours" "bash $hand" "$floor" >/dev/null
  local t_ours t_hand t_floor
  t_ours=$(median "$WORK/bundle.json" | sed -n 1p | awk '{print $NF}')
  t_hand=$(median "$WORK/bundle.json" | sed -n 2p | awk '{print $NF}')
  t_floor=$(median "$WORK/bundle.json" | sed -n 3p | awk '{print $NF}')
  local r_ours r_hand
  r_ours=$(rss $ours)
  r_hand=$(rss bash -c "bash $hand")
  local s_ours; s_ours=$(self_rss $ours)
  printf 'bundle  (zstd -3): ours %6.3fs  hand %6.3fs  ratio %.2f (target <= 0.50)   peak RSS ours %d MiB (tool alone %s MiB), hand %d MiB (target <= 64 MiB)\n' \
    "$t_ours" "$t_hand" "$(echo "$t_ours / $t_hand" | bc -l)" $((r_ours / 1024)) "$s_ours" $((r_hand / 1024))
  printf 'bundle vs floor   : ours %6.3fs  tar|zstd -3 -T0 %6.3fs  ratio %.2f (target <= 1.20)\n' \
    "$t_ours" "$t_floor" "$(echo "$t_ours / $t_floor" | bc -l)"

  local bundle; bundle=$(ls "$WORK"/out-ours/*.tar.zst)
  local top; top=$(basename "$bundle" | sed 's/-x86_64.*//; s/-aarch64.*//')
  local vours="$TOOL release-bundle verify -q $bundle"
  local vhand="mkdir $WORK/x && zstd -dc $bundle | tar -xf - -C $WORK/x && cd $WORK/x/$top && sha256sum -c --quiet SHA256SUMS && cd $WORK/out-ours && sha256sum -c --quiet $(basename "$bundle").sha256"
  # Removing the previous extraction is set-up, not part of verifying.
  local vfloor="zstd -dc -q $bundle > /dev/null"
  hyperfine --style none --runs "$RUNS" --warmup 1 --prepare "rm -rf $WORK/x" --export-json "$WORK/verify.json" "$vours" "$vhand" "$vfloor" >/dev/null
  t_ours=$(median "$WORK/verify.json" | sed -n 1p | awk '{print $NF}')
  t_hand=$(median "$WORK/verify.json" | sed -n 2p | awk '{print $NF}')
  t_floor=$(median "$WORK/verify.json" | sed -n 3p | awk '{print $NF}')
  local v_rss; v_rss=$(( $(rss $vours) / 1024 ))
  printf 'verify            : ours %6.3fs  hand %6.3fs  ratio %.2f (target <= 0.40)   peak RSS ours %d MiB\n' \
    "$t_ours" "$t_hand" "$(echo "$t_ours / $t_hand" | bc -l)" "$v_rss"
  printf 'verify vs floor   : ours %6.3fs  zstd -dc %6.3fs  ratio %.2f (target <= 1.30)\n' \
    "$t_ours" "$t_floor" "$(echo "$t_ours / $t_floor" | bc -l)"
  echo "$files $s_ours $v_rss" >> "$WORK/rss.txt"
}

# Cores: `--jobs N` sets the zstd workers; the bytes must not change with it, the time should
# fall. `--jobs 1` also runs on one core (taskset), the others on all of them.
cores() { # label profile-args...
  local label=$1; shift
  local base="$TOOL release-bundle --manifest-path $dir/Cargo.toml -q $*"
  local t1 tn digests same
  t1=$( { /usr/bin/time -f %e taskset -c 0 $base --jobs 1 --out-dir "$WORK/out-cores-1"; } 2>&1 | tail -n 1)
  printf '%s: 1 core, --jobs 1: %6.2fs' "$label" "$t1"
  for n in $(seq 2 "$(nproc)"); do
    tn=$( { /usr/bin/time -f %e $base --jobs "$n" --out-dir "$WORK/out-cores-$n"; } 2>&1 | tail -n 1)
    printf ';  %d cores, --jobs %d: %6.2fs (speed-up %.2fx)' "$n" "$n" "$tn" "$(echo "$t1 / $tn" | bc -l)"
  done
  digests=$(sha256sum "$WORK"/out-cores-*/*.tar.zst | cut -d' ' -f1 | sort -u | wc -l)
  same=different; [ "$digests" = 1 ] && same=identical
  printf ';  bytes %s\n' "$same"
  rm -rf "$WORK"/out-cores-*
}
dir=$WORK/pkg-$FILES
if [ "${BENCH_CORES:-0}" = 1 ]; then
  # The cores comparison only.
  make_pkg "$dir" "$FILES"
  cores "bundle (zstd -3) "
  cores "bundle (zstd -19)" --profile l19
  exit 0
fi
run_size "$FILES"

# Peak memory must not follow the tree: compare the two sizes.
doubling() {
  awk 'NR == 1 { f = $1; b = $2; v = $3 }
       NR == 2 { printf "memory, tree doubled (%d -> %d files): bundle %s -> %s MiB (tool alone), verify %s -> %s MiB\n", f, $1, b, $2, v, $3 }' "$WORK/rss.txt"
}

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  # Bundle and verify only (skips the slow gzip and level-19 comparisons).
  run_size $((FILES * 2))
  doubling
  exit 0
fi

# gzip against tar | gzip -6 -n.
gours="$TOOL release-bundle --manifest-path $dir/Cargo.toml --out-dir $WORK/out-gz --format tar.gz -q"
ghand="bash $HAND $dir $WORK/out-hand-gz 'gzip -6 -n'"
# the workspace level (3) is within gzip's range; gzip -6 is its default, so compare with -6:
sed -i 's/^compression-level = 3$/compression-level = 6/' "$dir/Cargo.toml"
hyperfine --style none --runs "$RUNS" --warmup 1 --export-json "$WORK/gzip.json" "$gours" "$ghand" >/dev/null
sed -i 's/^compression-level = 6$/compression-level = 3/' "$dir/Cargo.toml"
t_ours=$(median "$WORK/gzip.json" | sed -n 1p | awk '{print $NF}')
t_hand=$(median "$WORK/gzip.json" | sed -n 2p | awk '{print $NF}')
printf 'bundle  (gzip -6) : ours %6.3fs  hand %6.3fs  ratio %.2f\n' "$t_ours" "$t_hand" "$(echo "$t_ours / $t_hand" | bc -l)"

cores "bundle (zstd -3) "
cores "bundle (zstd -19)" --profile l19

if [ "${BENCH_DOUBLE:-1}" = 1 ]; then
  # Twice the files and twice the bytes: peak memory must not follow.
  run_size $((FILES * 2))
  doubling
fi
