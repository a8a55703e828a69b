#!/usr/bin/env bash
# The observer's figures (utilities/log_dumper, docs/operations.md "Benchmark"): a log store of
# 1,000,000 events written through a real admin node (synthetic events from four nodes over a day,
# and one 5,000-event tree, published on beds.logs as nodes' sinks send them), then Apache's
# server time (%D in its access log) for the pages: recent events with a filter, without, with a
# text search, the 5,000-event tree, the errors of a day, the audit of a key, the nodes. Each page
# is asked 5 times; the median is printed. Goals (issue 14): a filtered recent page <= 200 ms, the
# tree <= 1 s. Throwaway servers on 5693/3393 (var/bench-obs/); everything is stopped at the end.
#   bench/log_dumper.sh [--events N]
#   BEDS_BENCH_NO_BUILD=1 bench/log_dumper.sh   (use build/ as it is)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
events=1000000
[[ ${1:-} == --events ]] && events=$2
if [[ -z ${BEDS_BENCH_NO_BUILD:-} ]]; then
  scripts/install-deps.sh >/dev/null
  scripts/build.sh "$root/build" >/dev/null
fi
source "$root/scripts/lib/local-node.sh"
utilities/log_dumper/serve.sh stop --run-dir "$root/var/bench-obs/log_dumper" >/dev/null
local_node_servers bench-obs 5693 3393 4393
trap 'utilities/log_dumper/serve.sh stop --run-dir "$BEDS_VAR/log_dumper" >/dev/null; local_node_cleanup' EXIT
export BEDS__LOGGING__LEVEL=warn
local_node_start_admin 9693
store=$BEDS_VAR/docs.sqlite

started=$(date +%s)
tree_root=$(/usr/bin/python3 bench/log_dumper_events.py "$BEDS_AMQP_PORT" "$events" 5000)
count() { /usr/bin/python3 -c 'import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
print(db.execute("SELECT COUNT(*) FROM msLogs").fetchone()[0])' "$store" 2>/dev/null || echo 0; }
while (( $(count) < events )); do sleep 2; done
echo "store: $(count) events through the admin node in $(( $(date +%s) - started )) s ($(du -h "$store" | cut -f1))"
kill -TERM "$admin_pid"; wait "$admin_pid" || true; admin_pid=""
chmod o+r "$store"

port=8693
utilities/log_dumper/serve.sh start --sqlite "$store" --port "$port" --run-dir "$BEDS_VAR/log_dumper" >/dev/null
access=$BEDS_VAR/log_dumper/access.log
page() {  # NAME QUERY: the median of 5 server times, in ms
  local name=$1 query=$2
  : >"$access"
  for _ in 1 2 3 4 5; do curl -s -o /dev/null "http://127.0.0.1:$port/$query"; done
  sleep 0.2
  awk '{print $NF}' "$access" | sort -n | awk -v n="$name" '{v[NR] = $1} END {printf "%-38s %8.1f ms (median of %d)\n", n, v[int((NR + 1) / 2)] / 1000, NR}'
}
page "recent, filtered (node, kind, outcome)" "?page=recent&node=app2&kind=request&outcome=VALIDATION"
page "recent, no filter" "?page=recent"
page "recent, text search" "?page=recent&text=reconnected%20after%20499"
page "tree of 5,000 events" "?page=tree&id=$tree_root"
page "errors, 24 h" "?page=errors&window=24h"
page "audit by key" "?page=audit&key=18"
page "nodes" "?page=nodes"
