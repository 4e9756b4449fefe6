#!/usr/bin/env bash
# Gapless restarts: N restarts under loopback load, stop → start against the keeper's
# handover (failed requests, p50/p99/max latency) and the keeper's memory, from the ignored
# test `gapless::bench_handover_against_stop_start`; then what the keeper costs a bundle:
# the gapless fixture bundled cold and warm, with `listen` and without (median of 3).
# Prints each figure beside the issue's target. Not a test: the numbers depend on the
# machine; docs/performance.md quotes a run.
#
# Usage: benches/gapless.sh [N]    (N restarts, default 20)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-$REPO/target/bench-gapless}
TOOL=$REPO/target/release/cargo-release-bundle
cargo build --release --quiet --manifest-path "$REPO/Cargo.toml"
BENCH_RESTARTS=${1:-20} cargo test --release --quiet --manifest-path "$REPO/Cargo.toml" \
  --test it -- --ignored --exact gapless::bench_handover_against_stop_start --nocapture 2>/dev/null |
  grep -v '^running\|^test \|^$\|test result'

rm -rf "$WORK"; mkdir -p "$WORK"
cp -r "$REPO/fixtures/gapless" "$WORK/with"; rm -rf "$WORK/with/target"
cp -r "$WORK/with" "$WORK/without"
# Without listen: the same service, no keeper to build.
sed -i '/^\[package.metadata.release.listen\]/,+1d; /^ready/d' "$WORK/without/Cargo.toml"

seconds() { # DIR CLEAN: one bundle's wall time
  [ "$2" = clean ] && rm -rf "$1/target"
  local start end
  start=$(date +%s.%N)
  (cd "$1" && "$TOOL" release-bundle -q >/dev/null 2>&1)
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
for kind in with without; do
  cold=(); warm=()
  for _ in 1 2 3; do
    cold+=("$(seconds "$WORK/$kind" clean)")
    warm+=("$(seconds "$WORK/$kind" warm)")
  done
  eval "${kind}_cold=$(median "${cold[@]}") ${kind}_warm=$(median "${warm[@]}")"
done
# shellcheck disable=SC2154 # set by the eval above
{
  printf 'bundle, cold: with the keeper %.2fs, without %.2fs: the keeper adds %.2fs (target ≤ 2 s)\n' \
    "$with_cold" "$without_cold" "$(echo "$with_cold - $without_cold" | bc)"
  printf 'bundle, warm: with the keeper %.2fs, without %.2fs: the keeper adds %.2fs (target 0)\n' \
    "$with_warm" "$without_warm" "$(echo "$with_warm - $without_warm" | bc)"
}
