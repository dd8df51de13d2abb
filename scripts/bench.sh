#!/usr/bin/env bash
# Builds crsync in release mode and runs every benchmark, writing Google
# Benchmark JSON to bench-results/ and a table (median, spread, ratio to the
# baseline measured in the same run) to bench-results/results.md.
#
#   scripts/bench.sh [REPETITIONS]      (default 5; CRSYNC_BENCH_ROWS scales sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
bash scripts/setup.sh build-release -Dbuildtype=release -Dtests=false -Dbenchmarks=true >/dev/null
mkdir -p bench-results
for b in build-release/bench/*_bench; do
  name=$(basename "$b")
  echo "running $name ($reps repetitions)..." >&2
  "$b" --benchmark_repetitions="$reps" --benchmark_min_time=0.01 \
       --benchmark_out="bench-results/$name.json" --benchmark_out_format=json >/dev/null
done
python3 bench/report.py bench-results/*_bench.json | tee bench-results/results.md
