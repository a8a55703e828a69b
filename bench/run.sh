#!/usr/bin/env bash
# Runs beds-bench against a fresh node: throwaway servers (ports 5695/3395, data under
# var/bench/), the Release build, the schema/mariadb/ objects loaded into the node's database, one
# `beds` node from config/ with its SQLite document store in var/bench/docs.sqlite (its rBroker
# pool serves the pings and the reads, its wBroker pool the creates), then every mode at W=64 and
# W=1: ping with 256-byte bodies, rel (Users/call get over 1000 rows), rel-create (Users/create
# with an exactly-once key, against the same creates without identity), rec-create
# (Sessions/create) and rec-fetch (Sessions/fetch by key over 1000 documents). Everything it started is stopped at
# the end. ping and rel are also compared with the raw baseline at its best shape (1 or 2
# consumers), and every round prints the node's CPU time per reply (from /proc). rel and
# rel-create also run with batch envelopes of 32 (W=8), reported in operations per second, and rel
# once more with its point reads as fetches by key (--read fetch, at W=64, W=1 and in batches),
# which a worker's cycle and a batch run as one query. Last, a 24-child fan-out (Users/call get)
# at W=1 against the raw baseline's.
#   bench/run.sh [--duration-s N] [--rounds N]   (extra flags go to beds-bench)
#   BEDS_BENCH_NO_BUILD=1 bench/run.sh …          (use build/ as it is: someone else builds it)
#   BEDS_BENCH_MODES="rec-create rec-fetch" bench/run.sh …   (only these modes)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [[ -z ${BEDS_BENCH_NO_BUILD:-} ]]; then
  scripts/install-deps.sh >/dev/null
  scripts/build.sh "$root/build" >/dev/null
fi

source "$root/scripts/lib/local-node.sh"
local_node_servers bench 5695 3395 4395
# Before the node starts: its IPL checks the Users template against these objects. `beds` is
# [databases.main] database in config/beds.toml.
scripts/servers.sh database beds schema/mariadb/*.sql
# [databases.docs] (the Sessions template's) in the throwaway dir, as local_node_servers sets it
# too; said here because beds-bench inherits it and its rec baselines must open the node's file.
export BEDS__DATABASES__DOCS__PATH=$BEDS_VAR/docs.sqlite
rm -f "$BEDS__DATABASES__DOCS__PATH"{,-wal,-shm}
export BEDS__LOGGING__LEVEL=warn
local_node_start

# calgon-poll before calgon-submit: the submits leave a backlog of jobs behind them, and the poll
# mode's own jobs must finish before it measures.
read -r -a modes <<<"${BEDS_BENCH_MODES:-ping rel rel-create rec-create rec-fetch calgon-poll calgon-submit fanout}"
for mode in "${modes[@]}"; do
  # 24 children of one parent at once, one fan-out at a time, against the raw baseline's.
  if [[ $mode == fanout ]]; then
    echo
    build/beds-bench --config-dir config --mode fanout --children 24 "$@"
    continue
  fi
  mode_flags=()
  [[ $mode == ping ]] && mode_flags=(--body-bytes 256)
  # The raw library at its fastest shape too (1 or 2 consumers), where the baseline is an echo.
  [[ $mode == ping || $mode == rel ]] && mode_flags+=(--best-shape)
  for w in 64 1; do
    echo
    build/beds-bench --config-dir config --mode "$mode" --inflight "$w" --node-pid "$node_pid" \
      "${mode_flags[@]}" "$@"
  done
  # Batch envelopes of 32 (issue 15's goals are in operations per second), 8 batches in flight.
  if [[ $mode == rel || $mode == rel-create ]]; then
    echo
    build/beds-bench --config-dir config --mode "$mode" --inflight 8 --node-pid "$node_pid" \
      --batch 32 "$@"
  fi
  # The same point reads as fetches by key, which a worker's cycle (and a batch) runs as one
  # query.
  if [[ $mode == rel ]]; then
    for w in 64 1; do
      echo
      build/beds-bench --config-dir config --mode rel --read fetch --inflight "$w" \
        --node-pid "$node_pid" --best-shape "$@"
    done
    echo
    build/beds-bench --config-dir config --mode rel --read fetch --inflight 8 \
      --node-pid "$node_pid" --batch 32 "$@"
  fi
done
