#!/usr/bin/env bash
# What the log pipeline costs: sys/ping and the REL point read (Users/call get) at W=64 through an
# application node with logging at info, once with the AMQP log sink off and once with it on and
# an admin node storing every event in msLogs; rounds alternate the two, each round a freshly
# started node. Then the 24-child fan-out against a single child request at W=1 (sink on).
# Throwaway servers on ports 5694/3394 (data under var/bench-logs/); everything is stopped at the
# end.
#   bench/logs.sh [--duration-s N] [--rounds N]
#   BEDS_BENCH_NO_BUILD=1 bench/logs.sh …   (use build/ as it is)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
duration=10
rounds=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --duration-s) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "usage: $0 [--duration-s N] [--rounds N]" >&2; exit 2 ;;
  esac
done
if [[ -z ${BEDS_BENCH_NO_BUILD:-} ]]; then
  scripts/install-deps.sh >/dev/null
  scripts/build.sh "$root/build" >/dev/null
fi

source "$root/scripts/lib/local-node.sh"
local_node_servers bench-logs 5694 3394 4394
scripts/servers.sh database beds schema/mariadb/*.sql
export BEDS__LOGGING__LEVEL=info
local_node_start_admin 9694

stop_node() {
  kill -TERM "$node_pid"
  wait "$node_pid" || true
  node_pid=""
}

# The beds median throughput of one beds-bench run.
bench_once() {
  build/beds-bench --config-dir config --mode "$1" --inflight 64 --rounds 1 \
    --duration-s "$duration" "${@:2}" | tee -a "$BEDS_VAR/bench.out" |
    awk '/^median   beds:/ {print $3}'
}

declare -A sum
for r in $(seq 1 "$rounds"); do
  for sink in false true; do
    BEDS__LOGGING__AMQP=$sink local_node_start
    for mode in ping rel; do
      flags=()
      [[ $mode == ping ]] && flags=(--body-bytes 256)
      rps=$(bench_once "$mode" "${flags[@]}")
      echo "round $r  $mode  sink=$sink  $rps req/s"
      sum[$mode.$sink]="${sum[$mode.$sink]:-} $rps"
    done
    stop_node
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
for mode in ping rel; do
  off=$(echo "${sum[$mode.false]}" | median)
  on=$(echo "${sum[$mode.true]}" | median)
  awk -v m="$mode" -v off="$off" -v on="$on" \
    'BEGIN {printf "%-5s W=64: sink off %.0f req/s, sink on + admin storing %.0f req/s, ratio %.3f\n", m, off, on, on / off}'
done
stored=$(/usr/bin/python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT count(*) FROM msLogs\").fetchone()[0])" "$BEDS_VAR/docs.sqlite" 2>/dev/null || echo "?")
echo "events in msLogs: $stored"

echo
BEDS__LOGGING__AMQP=true local_node_start
build/beds-bench --config-dir config --mode fanout --children 24 --rounds "$rounds" \
  --duration-s "$duration"
stop_node
