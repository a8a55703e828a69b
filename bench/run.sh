#!/usr/bin/env bash
# Runs beds-bench against a fresh node: throwaway servers (ports 5696/3396, data under
# var/bench/), the Release build, one `beds` node from config/ with only the rBroker pool, then
# W=64 and W=1 with 256-byte bodies. Everything it started is stopped at the end.
#   bench/run.sh [--duration-s N] [--rounds N]   (extra flags go to beds-bench)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/install-deps.sh >/dev/null
scripts/build.sh "$root/build" >/dev/null

export BEDS_VAR=$root/var/bench BEDS_AMQP_PORT=5696 BEDS_MARIADB_PORT=3396 BEDS_EPMD_PORT=4396
mkdir -p "$BEDS_VAR"
node_pid=""
cleanup() {
  if [[ -n $node_pid ]] && kill -0 "$node_pid" 2>/dev/null; then kill -TERM "$node_pid"; wait "$node_pid" || true; fi
  scripts/servers.sh stop
}
trap cleanup EXIT
scripts/servers.sh start

export BEDS__BROKER_SERVICES__APP_SERVER__HOST=127.0.0.1
export BEDS__BROKER_SERVICES__APP_SERVER__PORT=$BEDS_AMQP_PORT
export BEDS__BROKER_SERVICES__APP_SERVER__PASS=guest
export BEDS__DATABASES__MAIN__PORT=$BEDS_MARIADB_PORT
export BEDS__LOGGING__LEVEL=warn
build/beds run --config-dir config >"$BEDS_VAR/beds.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 150); do
  build/bedsctl --config-dir config --timeout-ms 300 ping >/dev/null 2>&1 && break
  sleep 0.2
done

for w in 64 1; do
  echo
  build/beds-bench --config-dir config --inflight "$w" --body-bytes 256 "$@"
done
