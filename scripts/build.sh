#!/usr/bin/env bash
# Configures and builds one CMake preset (default: release) into build/<preset>.
# Usage: scripts/build.sh [preset] [target...]
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
shift || true
cmake --preset "$preset" >"build-$preset.configure.log" 2>&1 || {
  cat "build-$preset.configure.log" >&2; exit 1; }
rm -f "build-$preset.configure.log"
if [ $# -gt 0 ]; then
  cmake --build --preset "$preset" --target "$@"
else
  cmake --build --preset "$preset"
fi
