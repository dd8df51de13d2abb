#!/usr/bin/env bash
# Builds crsync and runs the whole test suite, ending with one line
# "N passed, N failed" (test cases, from meson's test log).
#
#   scripts/test.sh [BUILD_DIR] [extra meson options...]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bash scripts/setup.sh "$@" || { echo "0 passed, 1 failed"; exit 1; }
meson test -C "$build" --num-processes 2 --print-errorlogs
rc=$?
python3 scripts/test_summary.py "$build" || rc=1
exit $rc
