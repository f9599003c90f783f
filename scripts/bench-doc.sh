#!/bin/sh
# Regenerate the benchmark section of docs/BENCHMARKS.md and docs/img/bench-*.svg from one full
# `faultline bench` run (about 5-6 minutes on an idle 2-CPU machine; LTTng-UST, Tracy and the
# lossless search included). Arguments go to `faultline bench` (e.g. --quick to try this script).
# The JSON of the run is kept in target/bench/bench.json (BENCH_OUT overrides the directory).
set -eu
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-target/bench}
mkdir -p "$out"
cargo build --release -p faultline-cli
target/release/faultline bench --json "$@" > "$out/bench.json.tmp"
mv "$out/bench.json.tmp" "$out/bench.json"
label="$(date -u '+%Y-%m-%d %H:%M') UTC, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
python3 scripts/plot-bench.py --bench "$out/bench.json" --out docs/img --update-doc docs/BENCHMARKS.md --label "$label"
echo "docs/BENCHMARKS.md and docs/img/bench-*.svg updated from $out/bench.json"
