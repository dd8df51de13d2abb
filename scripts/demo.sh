#!/usr/bin/env bash
# README command 1: installs what is missing, builds, and runs the main job
# on its embedded default (no configuration needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
exec ./build/tools/crsync-demo "$@"
