#!/usr/bin/env bash
# The demo command of the README: set up, build, then run every stage of the WiCo pipeline that
# this build contains, on the bundled synthetic data set. Stages are added as their parts land;
# the demo runs only real work and prints only measured numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh release wico_tool
wico=build/release/bin/wico
config=configs/tiny/demo.yaml

echo "== the resolved demo configuration"
"$wico" config --config "$config"

echo "== this machine's GEMM rate (the reference for later FLOP-utilisation figures)"
"$wico" bench gemm --config "$config" --quick --repeats 3
