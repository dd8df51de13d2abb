#!/usr/bin/env bash
# README command 1: installs what is missing, builds, and runs the main job
# on its embedded default (no configuration needed): `crsyncd demo`, several
# replicas on loopback with apps writing through the crsync VFS.
# Extra arguments go to crsyncd demo (see `build/tools/crsyncd --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
exec ./build/tools/crsyncd demo "$@"
