#!/usr/bin/env bash
# The gateway's benchmark (docs/operations.md "Benchmark"): the same REC fetch by key (Sessions,
# 1000 documents) over HTTP through the gateway with wrk, and over AMQP straight from beds-bench,
# in one run against one node, at 64 connections (throughput ratio) and at 1 (p50 difference).
# Throwaway servers on 5695/3395 like bench/run.sh (not at the same time as it), the Release
# build, the gateway on 127.0.0.1:8695.
# Each figure is the median of `rounds` rounds that alternate AMQP and HTTP, so a noisy moment of
# the machine does not fall on one side only.
#   bench/gateway.sh [--duration-s N] [--rounds N]
#   BEDS_BENCH_NO_BUILD=1 bench/gateway.sh   (use build/ as it is)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
duration=5
rounds=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --duration-s) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "bench/gateway.sh: unknown argument $1 (--duration-s N, --rounds N)" >&2; exit 2 ;;
  esac
done
if [[ -z ${BEDS_BENCH_NO_BUILD:-} ]]; then
  scripts/install-deps.sh >/dev/null
  scripts/build.sh "$root/build" >/dev/null
fi
command -v wrk >/dev/null || { echo "bench/gateway.sh: wrk is missing (scripts/install-deps.sh installs it)" >&2; exit 2; }

source "$root/scripts/lib/local-node.sh"
local_node_servers bench 5695 3395 4395
scripts/servers.sh database beds schema/mariadb/*.sql
export BEDS__DATABASES__DOCS__PATH=$BEDS_VAR/docs.sqlite
rm -f "$BEDS__DATABASES__DOCS__PATH"{,-wal,-shm}
export BEDS__LOGGING__LEVEL=warn BEDS__GATEWAY__ENABLED=true
local_node_start "" "" 8695

# wrk asks for the same documents beds-bench reads: bench-fetch-1 … bench-fetch-1000.
lua=$BEDS_VAR/gateway-bench.lua  # local-node.sh's exit trap stops the servers: no trap here
cat >"$lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/v1/Sessions/bench-fetch-" .. ((n % 1000) + 1))
end
done = function(summary, latency, requests)
  io.write(string.format("wrk: %.0f req/s p50 %.0f us, %d non-2xx\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), summary.errors.status))
end
LUA

amqp_line() {  # beds-bench's median line for W: "req/s p50"
  build/beds-bench --config-dir config --mode rec-fetch --inflight "$1" --duration-s "$duration" \
    --rounds 1 | awk '/^median   beds:/ {print $3, $6}'
}
http_line() {  # wrk's: "req/s p50"
  wrk -t1 -c"$1" -d"${duration}s" -s "$lua" http://127.0.0.1:8695 | awk '/^wrk:/ {print $2, $5}'
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
for w in 64 1; do
  amqp=() http=()
  for ((r = 1; r <= rounds; r++)); do
    amqp+=("$(amqp_line "$w")")
    http+=("$(http_line "$w")")
    echo "W=$w round $r  AMQP: ${amqp[-1]}   HTTP: ${http[-1]}   (req/s p50-us)"
  done
  amqp_rps=$(printf '%s\n' "${amqp[@]}" | cut -d' ' -f1 | median)
  amqp_p50=$(printf '%s\n' "${amqp[@]}" | cut -d' ' -f2 | median)
  http_rps=$(printf '%s\n' "${http[@]}" | cut -d' ' -f1 | median)
  http_p50=$(printf '%s\n' "${http[@]}" | cut -d' ' -f2 | median)
  echo "W=$w  AMQP (beds-bench): $amqp_rps req/s p50 $amqp_p50 us   HTTP (wrk): $http_rps req/s p50 $http_p50 us   (medians of $rounds)"
  awk -v a="$amqp_rps" -v h="$http_rps" -v ap="$amqp_p50" -v hp="$http_p50" \
    'BEGIN {printf "      ratio HTTP/AMQP throughput %.2f; p50 difference %+d us\n", h / a, hp - ap}'
done
