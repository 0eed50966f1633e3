#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, AddressSanitizer + UndefinedBehaviorSanitizer) in
# build/fuzz and runs each on its seed corpus for FUZZ_SECONDS (default 20; CI's smoke run).
# A crash, leak, timeout or undefined behaviour fails the script; the input that caused it is
# left in build/fuzz/findings/. Longer runs: FUZZ_SECONDS=600 bash scripts/fuzz_smoke.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-20}"
CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DWICO_BUILD_FUZZERS=ON > build/fuzz.configure.log 2>&1 || { cat build/fuzz.configure.log; exit 1; }
targets=(pickle_fuzz zip_fuzz weights_fuzz rle_fuzz refer_fuzz config_fuzz text_fuzz)
cmake --build build/fuzz --target "${targets[@]}"
# Seeds: small real files of each format (tests/fuzz/corpus/README.md).
declare -A seeds=(
  [pickle_fuzz]="tests/data/pickle tests/data/refer/pickle-variants"
  [zip_fuzz]="tests/data/weights"
  [weights_fuzz]="tests/data/weights"
  [rle_fuzz]="tests/fuzz/corpus/rle"
  [refer_fuzz]="tests/fuzz/corpus/refer"
  [config_fuzz]="tests/fuzz/corpus/config"
  [text_fuzz]="tests/fuzz/corpus/text"
)
mkdir -p build/fuzz/findings
status=0
for t in "${targets[@]}"; do
  work="build/fuzz/corpus/$t"
  mkdir -p "$work"
  # shellcheck disable=SC2086
  if build/fuzz/tests/fuzz/$t -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="build/fuzz/findings/$t-" -print_final_stats=1 "$work" ${seeds[$t]} \
      > "build/fuzz/$t.log" 2>&1; then
    echo "$t: $(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "build/fuzz/$t.log" | grep -Eo '[0-9]+$') runs in ${seconds} s, no finding"
  else
    echo "$t: FINDING (build/fuzz/$t.log, build/fuzz/findings/)"
    tail -30 "build/fuzz/$t.log"
    status=1
  fi
done
exit $status
