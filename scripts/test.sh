#!/usr/bin/env bash
# The test command of the README: set up, build, run every test, then every fuzz target for 20 s
# on its seed corpus (AddressSanitizer + UndefinedBehaviorSanitizer, scripts/fuzz_smoke.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh release
(cd build/release && ctest -j "$(nproc)" --output-on-failure)
FUZZ_SECONDS=20 bash scripts/fuzz_smoke.sh
