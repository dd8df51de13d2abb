#!/usr/bin/env bash
# Installs whatever crsync's build needs that is missing (Debian packages
# only), then configures and builds. Idempotent: when nothing is missing and
# nothing changed it takes a few seconds.
#
#   scripts/setup.sh [BUILD_DIR] [extra meson options...]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure_packages.sh g++ pkg-config meson ninja-build libsqlite3-dev sqlite3 \
  libuv1-dev capnproto libcapnp-dev libxxhash-dev libbenchmark-dev libgtest-dev libgmock-dev python3

build=${1:-build}
shift || true
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$@"
elif [ $# -gt 0 ]; then
  meson configure "$build" "$@"
fi
ninja -C "$build"
