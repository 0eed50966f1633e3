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
data=data/synthetic

echo "== 1. the synthetic data set ($data)"
if [ -f "$data/refcoco/refs(unc).p" ]; then
  echo "reusing $data (delete it to generate it again)"
else
  "$wico" synth --config "$config" --out "$data" --images 2000 --seed 0
fi

echo "== 2. what it holds (contact sheet: runs/demo/contact_sheet.png)"
mkdir -p runs/demo
"$wico" data stats --config "$config" --set "data.root=$data" --sheet runs/demo/contact_sheet.png

echo "== 3. this machine's GEMM rate (the reference for FLOP-utilisation figures)"
"$wico" bench gemm --config "$config" --quick --repeats 3

echo "== 4. train tiny LAVT on it (runs/demo_lavt; a few minutes on 2 cores)"
run=runs/demo_lavt
if compgen -G "$run/checkpoints/iter_*.pt" > /dev/null; then
  # An earlier demo's run: --resume finishes it if it was interrupted (a finished one only
  # validates again).
  "$wico" train --resume "$run"
elif [ -e "$run" ]; then
  echo "$run holds an earlier run without checkpoints; move or delete it" >&2
  exit 1
else
  "$wico" train --config configs/tiny/lavt.yaml --set run.name=demo_lavt --set "data.root=$data"
fi

echo "== 5. evaluate it on val, testA and testB ($run/eval/<split>/: report.md, plots, panels)"
"$wico" eval --checkpoint "$run/checkpoints/best.pt" --splits val,testA,testB

echo "== 6. one image, one expression ($run/predict/)"
images=("$data"/images/train2014/*.jpg)
"$wico" predict --checkpoint "$run/checkpoints/best.pt" --image "${images[0]}" \
  --text "the red square" --out "$run/predict"

echo
echo "The top-down branch, WiCo's CFI + GSI and the paper's tables join this demo as they land (README, Status)."
