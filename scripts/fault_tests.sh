#!/usr/bin/env bash
# The fault tests alone (ctest label "faults"): tiny LAVT killed with SIGKILL at 20 scripted
# moments and resumed (bit-identical to a straight run), and a full disk while checkpointing.
# Builds first if needed; about 2 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x build/release/tests/wico_tests ]; then
  bash scripts/setup.sh
  bash scripts/build.sh release
fi
cmake --build build/release
cd build/release
ctest -L faults --output-on-failure
