#!/usr/bin/env bash
# Scale: time per 100k files and per GB, and peak memory, at two sizes each, for bundling and
# verifying. The trees are generated here (never committed):
#   - tiny files, 1,000 a directory in two levels: SMALL and LARGE files (default 200,000 and
#     998,000; with their directories, the larger one is just under verify's default limit of
#     1,000,000 entries);
#   - a few large random files: SMALL_GB and LARGE_GB in all (default 2 and 10).
# Time should grow with the input (per-100k and per-GB figures about equal at both sizes) and
# memory not at all. Not a test: the numbers depend on the machine; the README quotes a run.
#
# Usage: benches/scale.sh   (SMALL=, LARGE=, SMALL_GB=, LARGE_GB= override the sizes)
# Needs: python3, GNU time; about LARGE_GB x 2 GB of free disk.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-$REPO/target/bench-scale}
TOOL=$REPO/target/release/cargo-release-bundle
SMALL=${SMALL:-200000}
LARGE=${LARGE:-998000}
SMALL_GB=${SMALL_GB:-2}
LARGE_GB=${LARGE_GB:-10}
if ! command -v python3 >/dev/null || [ ! -x /usr/bin/time ]; then
  echo "needs python3 and GNU time" >&2; exit 2
fi
cargo build --release --quiet --manifest-path "$REPO/Cargo.toml"
mkdir -p "$WORK"

package() { # dir
  mkdir -p "$1/src"
  printf '[package]\nname = "scalesvc"\nversion = "1.0.0"\nedition = "2021"\npublish = false\n\n[workspace]\n\n[package.metadata.release]\ncompression-level = 3\n' > "$1/Cargo.toml"
  echo 'fn main() { println!("scale"); }' > "$1/src/main.rs"
}

tiny_tree() { # dir files
  [ -f "$1/.complete" ] && return
  rm -rf "$1"; package "$1"
  python3 - "$1/priv" "$2" <<'PY'
import os, sys
root, files = sys.argv[1], int(sys.argv[2])
for i in range(files):
    d = os.path.join(root, "a%03d" % (i // 1000 // 1000), "b%03d" % (i // 1000 % 1000))
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%03d.txt" % (i % 1000)), "w") as f:
        f.write("entry %d\n" % i)
PY
  touch "$1/.complete"
}

large_tree() { # dir gigabytes (five files)
  [ -f "$1/.complete" ] && return
  rm -rf "$1"; package "$1"; mkdir -p "$1/priv"
  local each=$(( $2 * 1000 / 5 ))
  for i in 1 2 3 4 5; do
    head -c "${each}M" /dev/urandom > "$1/priv/blob$i.bin"
  done
  touch "$1/.complete"
}

# Seconds and peak RSS (MiB) of bundling and of verifying the package in `dir`. Bundling's
# peak is the tool's own (its -v report; GNU time would report cargo's when larger).
measure() { # dir -> "bundle_s bundle_mib verify_s verify_mib"
  local dir=$1 out=$1/out
  rm -rf "$out"
  # A first run builds the executable; the measured run finds it built, as CI does.
  "$TOOL" release-bundle --manifest-path "$dir/Cargo.toml" --out-dir "$out" -q
  rm -rf "$out"
  local s e bs bm vs vm bundle
  s=$(date +%s.%N)
  bm=$("$TOOL" release-bundle --manifest-path "$dir/Cargo.toml" --out-dir "$out" -v 2>&1 >/dev/null |
    sed -n 's/.*Memory peak resident \([0-9.]*\) MiB.*/\1/p' | tail -n 1)
  e=$(date +%s.%N); bs=$(echo "$e - $s" | bc -l)
  bundle=$(ls "$out"/*.tar.zst)
  s=$(date +%s.%N)
  vm=$(/usr/bin/time -f %M "$TOOL" release-bundle verify -q "$bundle" 2>&1 >/dev/null | tail -n 1)
  e=$(date +%s.%N); vs=$(echo "$e - $s" | bc -l)
  rm -rf "$out"
  echo "$bs $bm $vs $((vm / 1024))"
}

report() { # label unit scale small_n large_n small_result large_result
  python3 - "$@" <<'PY'
import sys
label, unit, scale, n1, n2 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
r1, r2 = [list(map(float, a.split())) for a in sys.argv[6:8]]
for i, job in ((0, "bundle"), (2, "verify")):
    a, b = r1[i] / (n1 / scale), r2[i] / (n2 / scale)
    print("%-6s %-6s: %8g -> %8g: %6.2f s -> %6.2f s, %5.2f -> %5.2f s per %s (x%.2f), peak %s -> %s MiB"
          % (label, job, n1, n2, r1[i], r2[i], a, b, unit, b / a, r1[i + 1], r2[i + 1]))
PY
}

tiny_tree "$WORK/tiny-$SMALL" "$SMALL"
tiny_tree "$WORK/tiny-$LARGE" "$LARGE"
t1=$(measure "$WORK/tiny-$SMALL")
t2=$(measure "$WORK/tiny-$LARGE")
report files 100k 100000 "$SMALL" "$LARGE" "$t1" "$t2"

large_tree "$WORK/large-$SMALL_GB" "$SMALL_GB"
large_tree "$WORK/large-$LARGE_GB" "$LARGE_GB"
g1=$(measure "$WORK/large-$SMALL_GB")
g2=$(measure "$WORK/large-$LARGE_GB")
report bytes GB 1 "$SMALL_GB" "$LARGE_GB" "$g1" "$g2"
