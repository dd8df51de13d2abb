#!/usr/bin/env bash
# Runs the engine's unit test binaries (tests/engine_test,
# tests/engine_property_test with few seeds, tests/common_test) under
# valgrind's memcheck and ends with one verdict line. Exits non-zero if any
# binary has a memcheck error, a definite leak or a failing test.
#
#   scripts/valgrind.sh [--seeds N] [--origins] [-- GTEST_ARGS...]
#
#   --seeds N    CRSYNC_PROPERTY_SEEDS for the property test (default 20)
#   --origins    also --track-origins=yes (slower; says where an
#                uninitialised value came from)
#   GTEST_ARGS   passed to every binary, e.g. -- --gtest_filter='Merge*'
#
# Builds in $BUILD_DIR (default build-soak; set up with -Dbenchmarks=false
# if missing) with JOBS parallel jobs (default 1: the machine is shared).
# Full valgrind logs: $BUILD_DIR/valgrind/<binary>.log.
set -uo pipefail
cd "$(dirname "$0")/.."
seeds=20
extra=()
gtest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --origins) extra+=(--track-origins=yes); shift ;;
    --) shift; gtest_args=("$@"); break ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "valgrind.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }

build=${BUILD_DIR:-build-soak}
binaries=(tests/common_test tests/engine_test tests/engine_property_test)
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" -Dbenchmarks=false >/dev/null || exit 2
fi
ninja -C "$build" -j "${JOBS:-1}" "${binaries[@]}" >/dev/null || { echo "valgrind.sh: build failed" >&2; exit 2; }

supp=()
[ -f scripts/valgrind.supp ] && supp=(--suppressions=scripts/valgrind.supp)
logs="$build/valgrind"
mkdir -p "$logs"
export CRSYNC_PROPERTY_SEEDS=$seeds
start=$SECONDS
failed=()
total_tests=0
total_errors=0
for b in "${binaries[@]}"; do
  name=$(basename "$b")
  log="$logs/$name.log"
  t0=$SECONDS
  valgrind --tool=memcheck --error-exitcode=1 --leak-check=full \
           --errors-for-leak-kinds=definite --show-leak-kinds=definite \
           --num-callers=40 "${supp[@]}" "${extra[@]}" --log-file="$log" \
           "$build/$b" --gtest_brief=1 "${gtest_args[@]}" >"$logs/$name.out" 2>&1
  rc=$?
  errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$log" | tail -1)
  tests=$(sed -n 's/.*PASSED.* \([0-9]*\) tests\?\..*/\1/p' "$logs/$name.out" | tail -1)
  lost=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -1)
  printf '%-26s %4ss  tests passed %-5s memcheck errors %-3s definitely lost %s bytes  exit %d\n' \
         "$name" "$((SECONDS - t0))" "${tests:-?}" "${errors:-?}" "${lost:-0}" "$rc"
  total_tests=$((total_tests + ${tests:-0}))
  total_errors=$((total_errors + ${errors:-0}))
  if [ "$rc" -ne 0 ] || [ "${errors:-1}" != 0 ]; then
    failed+=("$name")
    # The first error reports, for the console; the whole log stays in $log.
    grep -v '^==[0-9]*== *$' "$log" | grep -A25 -m3 -E '== (Invalid|Conditional|Use of|Syscall|Mismatched|[0-9,]+ bytes in .* definitely)' | head -80
    grep -E '^\[  FAILED  \]' "$logs/$name.out" | head -20
  fi
done
elapsed=$((SECONDS - start))
if [ ${#failed[@]} -eq 0 ]; then
  echo "valgrind: clean — ${#binaries[@]} binaries, $total_tests tests, 0 memcheck errors, no definite leaks (${elapsed}s, CRSYNC_PROPERTY_SEEDS=$seeds)"
  exit 0
fi
echo "valgrind: FAILED — ${failed[*]} ($total_errors memcheck errors, ${elapsed}s; logs in $logs/)"
exit 1
