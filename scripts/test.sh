#!/usr/bin/env bash
# The test command of the README: set up, build, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh release
cd build/release
ctest -j "$(nproc)" --output-on-failure
