#!/usr/bin/env bash
# Regenerates the paper's Tables 1-3 with `wico tables` (trains or reuses every run they need).
# Usage: scripts/reproduce_tables.sh [DATA_ROOT] [RUNS] [CONFIGS] [SEEDS]
#   defaults: data/synthetic runs/tables configs/tiny 0,1,2
# For the real data sets and paper sizes: scripts/reproduce_tables.sh data/refer runs/paper
# configs/paper (a folder with topdown.yaml, lavt.yaml, cris.yaml, wico_lavt_mattnet.yaml and
# wico_cris_mattnet.yaml at paper size). Every backend with a config there takes part (Table 2:
# VLT, else LAVT, else CRIS).
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:-data/synthetic}"
runs="${2:-runs/tables}"
configs="${3:-configs/tiny}"
seeds="${4:-0,1,2}"
wico=build/release/bin/wico
[ -x "$wico" ] || bash scripts/build.sh release wico_tool
for table in 1 2 3; do
  "$wico" tables --table "$table" --root "$root" --runs "$runs" --configs "$configs" --seeds "$seeds"
done
echo "tables written to $runs/table{1,2,3}.md"
