#!/usr/bin/env bash
# Builds crsync in release mode and runs every benchmark, writing Google
# Benchmark JSON to bench-results/, a table (median, spread, ratio to the
# baseline measured in the same run) to bench-results/results.md, and plots
# (gnuplot) to bench-results/*.png.
#
#   scripts/bench.sh [REPETITIONS] [--ext PATH]
#
# REPETITIONS defaults to 5; CRSYNC_BENCH_ROWS scales every case. With
# --ext PATH the SQL-level cases run against another SQLite extension with
# cr-sqlite's SQL API (cases that use crsync's C++ API are skipped), so two
# implementations can be compared side by side; results go to
# bench-results/ext/.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=5
out=bench-results
while [ $# -gt 0 ]; do
  case "$1" in
    --ext) export CRSYNC_BENCH_EXT="$(realpath "$2")"; out=bench-results/ext; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) reps=$1; shift ;;
  esac
done
bash scripts/setup.sh build-release -Dbuildtype=release -Dtests=false -Dbenchmarks=true >/dev/null
if ! command -v gnuplot >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq gnuplot-nox >/dev/null || true
fi
mkdir -p "$out"
for b in build-release/bench/*_bench; do
  name=$(basename "$b")
  [ -n "${CRSYNC_BENCH_EXT:-}" ] && [ "$name" = vfs_bench ] && continue
  echo "running $name ($reps repetitions)..." >&2
  "$b" --benchmark_repetitions="$reps" --benchmark_min_time=0.01 \
       --benchmark_out="$out/$name.json" --benchmark_out_format=json >/dev/null
done
python3 bench/report.py "$out"/*_bench.json | tee "$out/results.md"
if command -v gnuplot >/dev/null; then
  python3 bench/plot.py "$out/engine_bench.json" "$out" && echo "plots: $out/*.png" >&2
fi
