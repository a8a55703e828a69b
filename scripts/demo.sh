#!/usr/bin/env bash
# The demo: on a fresh Debian machine, installs what BEDS needs, builds it (Release), starts a
# throwaway RabbitMQ and MariaDB on loopback (ports 5697/3397, data under var/demo/), loads the
# example domain (schema/mariadb/*.sql: Users, and Orders with a foreign key and a join view),
# starts a `beds` node from config/ with templates/, and shows every operation over AMQP: REL on
# MariaDB, and REC (Sessions) on the embedded SQLite document store in var/demo/docs.sqlite.
# An admin node stores every event in msLogs, so the demo ends with a request's lineage tree and
# the node's /metrics, then the same data over the HTTP gateway (port 8697) with curl and the
# console page. Everything it started is stopped at the end, except the observer
# (utilities/log_dumper on port 8698), which it starts last so the events can be looked at.
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
# An earlier demo's observer still reads var/demo: stopped before the directory is made afresh.
utilities/log_dumper/serve.sh stop --run-dir "$root/var/demo/log_dumper" >/dev/null
local_node_servers demo 5697 3397 4397
bedsctl=("$root/build/bedsctl" --config-dir config)

say "beds config check (merged config, secrets masked)"
build/beds config check --config-dir config | head -12

say "the DBA's objects: schema/mariadb/*.sql into database beds"
scripts/servers.sh database beds schema/mariadb/*.sql
ls schema/mariadb/
say "beds template check (templates/*.toml bound against those objects)"
build/beds template check --config-dir config

say "starting the admin node: build/beds run --config-dir config --role admin (log: var/demo/admin.log)"
echo "   it stores every node's log and audit events in msLogs (templates/mst_logger_rec.toml)"
local_node_start_admin 9698
say "starting the application node: build/beds run --config-dir config --role appserver (log: var/demo/beds.log)"
local_node_start appserver 9697 8697

say "1. sys/ping"
"${bedsctl[@]}" ping | pretty
say "2. sys/describe"
"${bedsctl[@]}" describe | pretty
rel() { echo "-> $2"; "${bedsctl[@]}" request "$1" "$2" | pretty; }
say "3. Users: create (the procedure usr_create), twice"
rel rel.write '{"template": "Users", "op": "create", "data": {"email": "ann@example.org", "name": "Ann", "profile": {"tier": "gold"}}}'
rel rel.write '{"template": "Users", "op": "create", "data": {"email": "bob@example.org", "name": "Robert'"'"'); DROP TABLE usr_users; --"}}'
say "4. Orders: create (foreign key to Users; DECIMAL amounts travel as exact strings)"
rel rel.write '{"template": "Orders", "op": "create", "data": {"user_id": 1, "amount": "12.50", "note": "first"}}'
rel rel.write '{"template": "Orders", "op": "create", "data": {"user_id": 1, "amount": "87.25"}}'
rel rel.write '{"template": "Orders", "op": "create", "data": {"user_id": 2, "amount": "5.00"}}'
say "5. fetch: by id; and with filters, order and limit on the join view ord_v_orders"
rel rel.read '{"template": "Users", "op": "fetch", "id": "1"}'
rel rel.read '{"template": "Orders", "op": "fetch", "where": {"user_email": "ann@example.org", "amount": {"gte": "10"}}, "order": "-amount", "limit": 10}'
say "6. count"
rel rel.read '{"template": "Orders", "op": "count", "where": {"status": "new"}}'
say "7. update (fields left out stay as they are)"
rel rel.write '{"template": "Orders", "op": "update", "id": "1", "data": {"status": "paid"}}'
say "8. call: a procedure with two result sets, and one with OUT parameters"
rel rel.read '{"template": "Orders", "op": "call", "call": "user_summary", "data": {"user_id": 1}}'
rel rel.read '{"template": "Users", "op": "call", "call": "rewards_report", "data": {"min_orders": 2, "min_amount": "50"}}'
say "9. delete"
rel rel.write '{"template": "Orders", "op": "delete", "id": "3"}'
rel rel.read '{"template": "Orders", "op": "fetch", "id": "3"}' || true
say "10. REC: Sessions (templates/example_rec.toml) in the embedded SQLite document store"
rel rec.write '{"template": "Sessions", "op": "create", "data": {"user_id": 1, "created": "2026-11-25T09:00:00Z", "agent": "demo/1", "data": {"theme": "dark", "tabs": [1, 2]}}}'
rel rec.write '{"template": "Sessions", "op": "create", "data": {"token": "ann-phone", "user_id": 1, "created": "2026-11-25T10:00:00Z", "expires": "2999-01-01T00:00:00Z"}}'
rel rec.read '{"template": "Sessions", "op": "fetch", "where": {"user_id": 1}, "order": "-created"}'
rel rec.write '{"template": "Sessions", "op": "update", "id": "ann-phone", "data": {"agent": "demo/2"}}'
rel rec.read '{"template": "Sessions", "op": "count", "where": {"user_id": 1}}'
rel rec.write '{"template": "Sessions", "op": "delete", "id": "ann-phone"}'
echo "   operator injection is refused before the store is touched:"
rel rec.read '{"template": "Sessions", "op": "fetch", "where": {"agent": {"$gt": ""}}}' || true
rel rec.write '{"template": "Sessions", "op": "create", "data": {"user_id": 1, "data": {"$where": "1"}}}' || true
say "11. bad input gets a clear error and changes nothing"
rel rel.write '{"template": "Users", "op": "create", "data": {"email": "ann@example.org"}}' || true
rel rel.write '{"template": "Users", "op": "create", "data": {"name": "no email"}}' || true
rel rel.read '{"template": "Users", "op": "fetch", "where": {"password": "x"}}' || true
rel rel.write '{"template": "Orders", "op": "create", "data": {"user_id": 1, "amount": "-3"}}' || true
rel rel.write '{"template": "Users", "op": "delete", "id": "1"}' || true
say "12. exactly once: a write sent again with its idempotency key is answered from its record"
kim='{"template": "Users", "op": "create", "data": {"email": "kim@example.org", "name": "Kim"}, "idempotency_key": "demo-kim"}'
rel rel.write "$kim"
echo "-> the same again (a client that lost the reply re-sends it): \"replayed\": true, nothing applied twice"
"${bedsctl[@]}" request rel.write "$kim" | pretty
say "13. CALGON: an async request is answered at once with a ticket; calgon/wait follows it"
submitted=$("${bedsctl[@]}" request rel.write '{"template": "Orders", "op": "create", "async": true, "data": {"user_id": 2, "amount": "5.00", "note": "async"}}')
echo "$submitted" | pretty
ticket=$(echo "$submitted" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])')
rel sys.read "{\"template\": \"calgon\", \"op\": \"wait\", \"id\": \"$ticket\", \"data\": {\"timeout_ms\": 10000}}"
say "14. a malformed message: answered BAD_REQUEST …"
"${bedsctl[@]}" request sys.read '{"template": "sys", "op": ' | pretty || true
say "   … and parked in beds.rBroker.dlq with its reason in x-beds-error"
for _ in $(seq 1 50); do
  out=$("${bedsctl[@]}" dlq list rBroker 2>/dev/null)
  [[ -n $out ]] && break
  sleep 0.1
done
echo "$out" | pretty
say "15. lineage: what actually happened when a request came in?"
echo "-> an order, then 6 child requests issued at once on its behalf (bedsctl fanout --parent)"
order=$("${bedsctl[@]}" request rel.write '{"template": "Orders", "op": "create", "data": {"user_id": 2, "amount": "19.99", "note": "lineage demo"}}')
echo "$order" | pretty
root_id=$(echo "$order" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["event_id"])')
"${bedsctl[@]}" fanout rel.read '{"template": "Users", "op": "fetch", "id": "2"}' 6 --parent "$root_id" >/dev/null
echo "-> bedsctl lineage $root_id --tree   (read from msLogs; events arrive within moments)"
for _ in $(seq 1 50); do
  tree=$("${bedsctl[@]}" lineage "$root_id" --tree 2>/dev/null) || true
  events=$(echo "$tree" | tail -n 1 | cut -d' ' -f1)
  [[ ${events:-0} =~ ^[0-9]+$ && $events -ge 15 ]] && break
  sleep 0.2
done
echo "$tree"
say "16. metrics: GET http://127.0.0.1:9697/metrics (Prometheus text format), an excerpt"
curl -s http://127.0.0.1:9697/metrics | grep -E '^beds_(messages_(consumed|acked)_total|log_events_(emitted|published)_total|log_sink_drops_total)|^beds_request_duration_seconds_count\{template="Users"' || true
say "17. the HTTP gateway (docs/gateway.md): the same data over REST, with curl"
http() { echo "-> curl $*"; curl -s "$@" | pretty; }
http -X POST http://127.0.0.1:8697/v1/Users -d '{"email": "cy@example.org", "name": "Cy"}'
http http://127.0.0.1:8697/v1/Users/1
http 'http://127.0.0.1:8697/v1/Orders?amount.gte=10&order=-amount&limit=10'
echo "-> curl -i http://127.0.0.1:8697/v1/Users/999   (NOT_FOUND is 404; the event id is a header too)"
curl -s -i http://127.0.0.1:8697/v1/Users/999 | tr -d '\r'
echo
say "18. the console: open http://127.0.0.1:8697/ in a browser (docs/gateway.md \"Console\")"
echo "   pick a template and an operation, fill the form, send: the reply, its event id and lineage tree"
if [[ -t 0 ]]; then
  read -r -p "   the nodes stay up until you press Enter " _ || true
else
  echo "   (not a terminal: the demo goes on without waiting)"
fi
say "19. admin.shutdown.all: both nodes drain and exit"
"${bedsctl[@]}" shutdown all | pretty || true
code=0
wait "$node_pid" || code=$?
node_pid=""
admin_code=0
wait "$admin_pid" || admin_code=$?
admin_pid=""
echo "the application node exited with status $code, the admin node with $admin_code"
say "the application node's log"
tail -n 8 "$BEDS_VAR/beds.log"
say "20. the observer (utilities/log_dumper, PHP on Apache): msLogs with every BEDS process stopped"
if utilities/log_dumper/serve.sh start --sqlite "$BEDS_VAR/docs.sqlite" --port 8698 \
  --run-dir "$BEDS_VAR/log_dumper"; then
  echo "   the lineage tree of step 15: http://127.0.0.1:8698/?page=tree&id=$root_id"
  echo "   recent events, audit trail, errors, nodes: http://127.0.0.1:8698/"
  echo "   it keeps running; stop it with: utilities/log_dumper/serve.sh stop --run-dir $BEDS_VAR/log_dumper"
else
  echo "   the observer did not start (see above); the demo itself went through"
fi
[[ $code -eq 0 && $admin_code -eq 0 ]]
