#!/usr/bin/env bash
# The demo: on a fresh Debian machine, installs what BEDS needs, builds it (Release), starts a
# throwaway RabbitMQ and MariaDB on loopback (ports 5697/3397, data under var/demo/), starts a
# `beds` node from config/, and shows it working. Everything it started is stopped at the end.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pretty() { /usr/bin/python3 -c 'import json,sys
for line in sys.stdin:
    line = line.strip()
    if line:
        try: print(json.dumps(json.loads(line), indent=2))
        except ValueError: print(line)'; }

say "installing packages and building (Release)"
scripts/install-deps.sh
scripts/build.sh "$root/build"

source "$root/scripts/lib/local-node.sh"
say "starting RabbitMQ and MariaDB on 127.0.0.1:5697 and :3397"
local_node_servers demo 5697 3397 4397
bedsctl=("$root/build/bedsctl" --config-dir config)

say "beds config check (merged config, secrets masked)"
build/beds config check --config-dir config | head -12

say "starting the node: build/beds run --config-dir config (log: var/demo/beds.log)"
local_node_start

say "1. sys/ping"
"${bedsctl[@]}" ping | pretty
say "2. sys/describe"
"${bedsctl[@]}" describe | pretty
say "3. a malformed message: answered BAD_REQUEST …"
"${bedsctl[@]}" request sys.read '{"template": "sys", "op": ' | pretty || true
say "   … and parked in beds.rBroker.dlq with its reason in x-beds-error"
for _ in $(seq 1 50); do
  out=$("${bedsctl[@]}" dlq list rBroker 2>/dev/null)
  [[ -n $out ]] && break
  sleep 0.1
done
echo "$out" | pretty
say "4. admin.shutdown.appserver"
"${bedsctl[@]}" shutdown appserver | pretty
code=0
wait "$node_pid" || code=$?
node_pid=""
echo "beds exited with status $code"
say "the node's log"
tail -n 8 "$BEDS_VAR/beds.log"
[[ $code -eq 0 ]]
