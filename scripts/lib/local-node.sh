# Sourced by scripts/demo.sh and bench/run.sh: throwaway servers plus `beds` nodes from config/,
# all stopped again when the calling script exits.
#   local_node_servers NAME AMQP_PORT MARIADB_PORT EPMD_PORT   # data under var/NAME/
#   local_node_start [ROLE [METRICS_PORT [GATEWAY_PORT]]]   # the node; waits until it answers
#   local_node_start_admin METRICS_PORT                         # an admin node (role admin)
# Expects $root (the repository) and the build in $root/build.

node_pid=""
admin_pid=""

local_node_cleanup() {
  local pid
  for pid in "$node_pid" "$admin_pid"; do
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      wait "$pid" || true
    fi
  done
  "$root/scripts/servers.sh" stop
}

local_node_servers() {
  export BEDS_VAR=$root/var/$1 BEDS_AMQP_PORT=$2 BEDS_MARIADB_PORT=$3 BEDS_EPMD_PORT=$4
  # Throwaway means fresh: stop what an interrupted earlier run left, then drop its data (durable
  # queues would otherwise still hold that run's messages).
  "$root/scripts/servers.sh" stop
  rm -rf "$BEDS_VAR"
  mkdir -p "$BEDS_VAR"
  trap local_node_cleanup EXIT
  "$root/scripts/servers.sh" start
  # config/beds.toml is the checked-in base; the environment is the last configuration layer.
  export BEDS__BROKER_SERVICES__APP_SERVER__HOST=127.0.0.1
  export BEDS__BROKER_SERVICES__APP_SERVER__PORT=$BEDS_AMQP_PORT
  export BEDS__BROKER_SERVICES__APP_SERVER__PASS=guest
  export BEDS__DATABASES__MAIN__PORT=$BEDS_MARIADB_PORT
  export BEDS__DATABASES__MAIN__PASS=beds
  # The REC templates' embedded document store: a SQLite file in the same throwaway directory.
  export BEDS__DATABASES__DOCS__PATH=$BEDS_VAR/docs.sqlite
}

# The admin role (config/nodes/admin.toml): stores every node's log and audit events in msLogs.
#   local_node_start_admin METRICS_PORT        # log: $BEDS_VAR/admin.log
local_node_start_admin() {
  BEDS__METRICS__LISTEN=127.0.0.1:$1 BEDS__LOGGING__SPILL_PATH=$BEDS_VAR/spill/admin.events \
    "$root/build/beds" run --config-dir "$root/config" --role admin >"$BEDS_VAR/admin.log" 2>&1 &
  admin_pid=$!
  local _
  for _ in $(seq 1 150); do
    "$root/build/bedsctl" --config-dir "$root/config" --timeout-ms 300 ping --node admin \
      >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "the admin node did not answer admin.ping within 30 s; see $BEDS_VAR/admin.log" >&2
  return 1
}

#   local_node_start [ROLE [METRICS_PORT [GATEWAY_PORT]]]   # the application node; log: $BEDS_VAR/beds.log
local_node_start() {
  local role=() gateway=()
  [[ -n ${1:-} ]] && role=(--role "$1")
  [[ -n ${3:-} ]] && gateway=("BEDS__GATEWAY__LISTEN=127.0.0.1:$3")
  env "${gateway[@]}" BEDS__METRICS__LISTEN=${2:+127.0.0.1:$2} \
    BEDS__LOGGING__SPILL_PATH=$BEDS_VAR/spill/appserver.events \
    "$root/build/beds" run --config-dir "$root/config" "${role[@]}" >"$BEDS_VAR/beds.log" 2>&1 &
  node_pid=$!
  local _
  for _ in $(seq 1 150); do
    "$root/build/bedsctl" --config-dir "$root/config" --timeout-ms 300 ping >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "the node did not answer sys/ping within 30 s; see $BEDS_VAR/beds.log" >&2
  return 1
}
