#!/usr/bin/env bash
# Builds crsync's libFuzzer targets (tests/fuzz) with clang, replays their
# committed corpora and regressions (meson test --suite fuzz), then fuzzes
# each target for SECONDS_PER_TARGET seconds on a temporary copy of its
# corpus. Ends with one line per target (runs, exec/s, coverage) and exits
# non-zero, naming the crashing input, if any target crashed.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]        (default 30)
#
# Environment:
#   FUZZ_BUILD    build directory (default build-fuzz)
#   FUZZ_JOBS     ninja -j value (default: ninja's own)
#   FUZZ_TARGETS  space-separated subset of the targets
#   FUZZ_TIMEOUT  seconds one input may take before it counts as a hang (20)
#   FUZZ_SEED     libFuzzer's -seed (default 0: a new random seed each run).
#                 With a fixed seed runs start down the same path (coverage
#                 feedback still varies a little), so a longer local run with
#                 CI's seed covers most of what CI's shorter one tries.
#   CRSYNC_FUZZ_STRICT=1  tolerate none of the known open bugs (KnownBug in
#                 tests/fuzz/fuzz_util.h): their regressions then fail
# A crashing input is kept (its path is printed): to make it a regression
# test, copy it to tests/fuzz/regressions/<target>/.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
build=${FUZZ_BUILD:-build-fuzz}
timeout=${FUZZ_TIMEOUT:-20}
seed=${FUZZ_SEED:-0}
targets=(packed_fuzz changes_insert_fuzz frame_fuzz frame_payload_fuzz handshake_fuzz)
if [ -n "${FUZZ_TARGETS:-}" ]; then read -r -a targets <<<"$FUZZ_TARGETS"; fi
case $seconds in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2; exit 2 ;;
esac
case $seed in
  '' | *[!0-9]*) echo "scripts/fuzz.sh: FUZZ_SEED must be a number, got '$seed'" >&2; exit 2 ;;
esac

# The base packages, plus clang and its libFuzzer runtime.
bash scripts/ensure_packages.sh g++ pkg-config meson ninja-build libsqlite3-dev libuv1-dev \
  capnproto libcapnp-dev libxxhash-dev libgtest-dev libgmock-dev clang libclang-rt-14-dev || exit 1
if [ ! -f "$build/build.ninja" ]; then
  CC=clang CXX=clang++ meson setup "$build" -Dfuzz=true -Dbenchmarks=false \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized || exit 1
elif ! grep -q '"name": "fuzz", "value": true' "$build/meson-info/intro-buildoptions.json" 2>/dev/null; then
  meson configure "$build" -Dfuzz=true || exit 1
fi
# The sidecar daemon too: the only build of the shipped code with clang,
# which rejects some constructs GCC accepts.
ninja -C "$build" ${FUZZ_JOBS:+-j "$FUZZ_JOBS"} "${targets[@]/#/tests/fuzz/}" tools/crsyncd vfs/libcrsync.so \
  || exit 1

echo "fuzz: replaying the corpora and regressions"
failed=0
summary=()
if ! meson test -C "$build" --no-rebuild --print-errorlogs --suite fuzz "${targets[@]}"; then
  failed=1
  summary+=("replay of tests/fuzz/corpus and tests/fuzz/regressions: FAILED (see above)")
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/crsync-fuzz.XXXXXX")
for t in "${targets[@]}"; do
  dir="$work/$t"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  find "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t" -type f -size +0 \
    -exec cp {} "$dir/corpus/" \; 2>/dev/null
  echo "fuzz: $t for ${seconds}s (seed $seed)"
  "$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout="$timeout" -len_control=20 -seed="$seed" \
    -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/" "$dir/corpus" >"$dir/log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log")
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$dir/log" | tail -n 1)
  summary+=("$(printf '%-20s %10s runs %7s exec/s   %s' "$t" "${runs:-?}" "${speed:-?}" "${cov:-cov: ?}")")
  artifacts=$(find "$dir/artifacts" -type f)
  if [ $rc -ne 0 ] || [ -n "$artifacts" ]; then
    failed=1
    echo "fuzz: $t FAILED (exit $rc); log: $dir/log"
    grep -E 'ERROR|invariant failed|SUMMARY' "$dir/log" | head -n 5
    for a in $artifacts; do echo "fuzz: crashing input: $a"; done
    summary[-1]+="   FAILED"
  fi
done

echo
printf '%s\n' "${summary[@]}"
if [ $failed -ne 0 ]; then
  echo "fuzz: failures found; inputs and logs kept in $work"
  exit 1
fi
rm -rf "$work"
echo "fuzz: no failures"
