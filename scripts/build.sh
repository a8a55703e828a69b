#!/usr/bin/env bash
# Configures and builds BEDS: scripts/build.sh [BUILD_DIR] [extra cmake args…]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$root/build}
shift || true
cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBEDS_WERROR=ON "$@" >/dev/null
# Two cores: more parallel jobs than that only adds memory pressure.
cmake --build "$dir" -j "$(nproc)"
