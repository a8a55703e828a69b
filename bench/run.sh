#!/usr/bin/env bash
# Runs beds-bench against a fresh node: throwaway servers (ports 5696/3396, data under
# var/bench/), the Release build, one `beds` node from config/ (its rBroker pool serves the pings), then
# W=64 and W=1 with 256-byte bodies. Everything it started is stopped at the end.
#   bench/run.sh [--duration-s N] [--rounds N]   (extra flags go to beds-bench)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/install-deps.sh >/dev/null
scripts/build.sh "$root/build" >/dev/null

source "$root/scripts/lib/local-node.sh"
local_node_servers bench 5696 3396 4396
export BEDS__LOGGING__LEVEL=warn
local_node_start

for w in 64 1; do
  echo
  build/beds-bench --config-dir config --inflight "$w" --body-bytes 256 "$@"
done
