#!/usr/bin/env bash
# Starts and stops the throwaway RabbitMQ and MariaDB servers that the demo, the tests and the
# benchmark run against: loopback only, non-default ports, data under $BEDS_VAR (default var/).
# Every server's pid is recorded in $BEDS_VAR/pids/ and only those pids are ever signalled.
#
#   scripts/servers.sh start|stop|status
#   scripts/servers.sh restart-rabbitmq       # same data directory: durable queues survive
#   scripts/servers.sh stop-rabbitmq|start-rabbitmq
#   scripts/servers.sh vhost NAME             # create a vhost and grant the guest user on it
#   scripts/servers.sh delete-vhost NAME      # delete it (its connections are closed, its queues gone)
#   scripts/servers.sh user NAME PASS VHOST   # create a user (or reset its password) with rights on VHOST
#   scripts/servers.sh close-user NAME        # close every connection of that user
#   scripts/servers.sh stop-mariadb|start-mariadb|restart-mariadb   # same data directory
#   scripts/servers.sh database NAME [FILE.sql…]  # (re)create database NAME, load the files in order
#   scripts/servers.sh start-secondary|stop-secondary   # a second, independent MariaDB (tests of
#                                             # read routing), port BEDS_MARIADB_PORT + 10
#   scripts/servers.sh database-secondary NAME [FILE.sql…]
#
# Ports (environment): BEDS_AMQP_PORT (5699), BEDS_AMQPS_PORT (AMQP port - 1000: the TLS
# listener, with a throwaway CA and a server certificate for localhost under
# $BEDS_VAR/rabbitmq/tls/), BEDS_MARIADB_PORT (3399), BEDS_EPMD_PORT (4399).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
var=${BEDS_VAR:-$root/var}
mkdir -p "$var"
var=$(cd "$var" && pwd)
amqp_port=${BEDS_AMQP_PORT:-5699}
mariadb_port=${BEDS_MARIADB_PORT:-3399}
epmd_port=${BEDS_EPMD_PORT:-4399}
amqps_port=${BEDS_AMQPS_PORT:-$((amqp_port - 1000))}
dist_port=$((amqp_port + 20000))
rnode="beds${amqp_port}@localhost"
pids=$var/pids
mkdir -p "$pids"

log() { echo "servers: $*" >&2; }

alive() { [[ -f $pids/$1 ]] && kill -0 "$(cat "$pids/$1")" 2>/dev/null; }

# Waits until a TCP port accepts connections, or fails after $2 seconds.
wait_port() {
  local port=$1 secs=$2 name=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! alive "$name"; then log "$name exited during start-up; see $var/$name/log"; return 1; fi
    sleep 0.1
  done
  log "$name did not open port $port within ${secs}s"; return 1
}

stop_pid() {
  local name=$1 i pid
  alive "$name" || { rm -f "$pids/$name"; return 0; }
  pid=$(cat "$pids/$name")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "$name ($pid) ignored SIGTERM for 30s; sending SIGKILL"; kill -KILL "$pid" || true; fi
  rm -f "$pids/$name"
}

rabbit_env() {
  export HOME=$var/rabbitmq/home
  export RABBITMQ_NODENAME=$rnode
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=$amqp_port
  export RABBITMQ_DIST_PORT=$dist_port
  export ERL_EPMD_PORT=$epmd_port
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_MNESIA_BASE=$var/rabbitmq/mnesia
  export RABBITMQ_LOG_BASE=$var/rabbitmq/log
  export RABBITMQ_CONFIG_FILE=$var/rabbitmq/rabbitmq
  export RABBITMQ_ENABLED_PLUGINS_FILE=$var/rabbitmq/enabled_plugins
  export RABBITMQ_PID_FILE=$var/rabbitmq/beam.pid
}

start_epmd() {
  alive epmd && return 0
  mkdir -p "$var/epmd"
  ERL_EPMD_ADDRESS=127.0.0.1 epmd -port "$epmd_port" >"$var/epmd/log" 2>&1 &
  echo $! >"$pids/epmd"
  wait_port "$epmd_port" 10 epmd
}

# A CA, a server certificate for localhost/127.0.0.1 signed by it, and an unrelated CA that tests
# use to check that a wrong CA is refused.
make_tls() {
  local dir=$var/rabbitmq/tls
  [[ -f $dir/server.pem ]] && return 0
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=beds test CA" \
      -keyout ca.key -out ca.pem
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=unrelated CA" \
      -keyout wrong-ca.key -out wrong-ca.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile san.ext -out server.pem
    chmod 644 ./*.pem ./*.key
  ) >"$var/rabbitmq/tls.log" 2>&1 || { log "openssl failed; see $var/rabbitmq/tls.log"; return 1; }
}

start_rabbitmq() {
  alive rabbitmq && return 0
  start_epmd
  mkdir -p "$var/rabbitmq/home" "$var/rabbitmq/mnesia" "$var/rabbitmq/log"
  make_tls
  # Loopback-only listener; guest may log in from loopback (the default), no plugins.
  cat >"$var/rabbitmq/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$amqp_port
listeners.ssl.1 = 127.0.0.1:$amqps_port
ssl_options.cacertfile = $var/rabbitmq/tls/ca.pem
ssl_options.certfile = $var/rabbitmq/tls/server.pem
ssl_options.keyfile = $var/rabbitmq/tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
loopback_users.guest = true
vm_memory_high_watermark.relative = 0.2
disk_free_limit.absolute = 200MB
log.console = false
log.file.level = warning
CONF
  echo '[].' >"$var/rabbitmq/enabled_plugins"
  rabbit_env
  # The erlang cookie lives in $HOME, so this instance never shares one with another node.
  # Started from its own directory: Erlang writes crash dumps (erl_crash.dump, MnesiaCore.*) into
  # the working directory, which must not be the caller's checkout.
  (cd "$var/rabbitmq" && exec /usr/lib/rabbitmq/bin/rabbitmq-server >"$var/rabbitmq/log/console.log" 2>&1) &
  echo $! >"$pids/rabbitmq"
  wait_port "$amqp_port" 120 rabbitmq
  wait_port "$amqps_port" 30 rabbitmq
  log "rabbitmq up on 127.0.0.1:$amqp_port, TLS on :$amqps_port (pid $(cat "$pids/rabbitmq"))"
}

stop_rabbitmq() { stop_pid rabbitmq; }

# $1: instance name (mariadb, mariadb-secondary), $2: port
start_mariadb() {
  local name=${1:-mariadb} port=${2:-$mariadb_port}
  alive "$name" && return 0
  local dir=$var/$name
  mkdir -p "$dir"
  if [[ ! -d $dir/data/mysql ]]; then
    mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
      --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 ||
      { log "mariadb-install-db failed; see $dir/install.log"; return 1; }
  fi
  (exec mariadbd --no-defaults --datadir="$dir/data" --socket="$dir/mariadb.sock" \
    --port="$port" --bind-address=127.0.0.1 --pid-file="$dir/mariadb.pid" \
    --user="$(id -un)" --skip-name-resolve --innodb-buffer-pool-size=64M \
    --log-error="$dir/error.log") &
  echo $! >"$pids/$name"
  wait_port "$port" 60 "$name"
  # The account BEDS uses; a fresh data directory has only root over the socket.
  mariadb --no-defaults --socket="$dir/mariadb.sock" -uroot <<SQL
CREATE USER IF NOT EXISTS 'beds'@'127.0.0.1' IDENTIFIED BY 'beds';
CREATE USER IF NOT EXISTS 'beds'@'localhost' IDENTIFIED BY 'beds';
GRANT ALL ON *.* TO 'beds'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL ON *.* TO 'beds'@'localhost' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS beds;
SQL
  log "$name up on 127.0.0.1:$port (pid $(cat "$pids/$name"))"
}

stop_mariadb() { stop_pid mariadb; }

# (Re)creates database $2 on instance $1 and loads the files that follow.
load_database() {
  local name=$1 db=$2
  shift 2
  [[ $db =~ ^[A-Za-z0-9_]+$ ]] || { log "usage: $0 database NAME [FILE.sql…]"; exit 2; }
  local sock=$var/$name/mariadb.sock
  mariadb --no-defaults --socket="$sock" -uroot \
    -e "DROP DATABASE IF EXISTS \`$db\`; CREATE DATABASE \`$db\` CHARACTER SET utf8mb4;"
  local f
  for f in "$@"; do
    mariadb --no-defaults --socket="$sock" -uroot "$db" <"$f" ||
      { log "loading $f into $db failed"; exit 1; }
  done
}

case ${1:-} in
  start) start_rabbitmq; start_mariadb ;;
  stop) stop_rabbitmq; stop_mariadb; stop_pid mariadb-secondary; stop_pid epmd ;;
  start-rabbitmq) start_rabbitmq ;;
  stop-rabbitmq) stop_rabbitmq ;;
  restart-rabbitmq) stop_rabbitmq; start_rabbitmq ;;
  start-mariadb) start_mariadb ;;
  stop-mariadb) stop_mariadb ;;
  restart-mariadb) stop_mariadb; start_mariadb ;;
  database) shift; load_database mariadb "$@" ;;
  start-secondary) start_mariadb mariadb-secondary $((mariadb_port + 10)) ;;
  stop-secondary) stop_pid mariadb-secondary ;;
  database-secondary) shift; load_database mariadb-secondary "$@" ;;
  vhost)
    [[ -n ${2:-} ]] || { log "usage: $0 vhost NAME"; exit 2; }
    rabbit_env
    /usr/lib/rabbitmq/bin/rabbitmqctl -q add_vhost "$2" >/dev/null
    /usr/lib/rabbitmq/bin/rabbitmqctl -q set_permissions -p "$2" guest '.*' '.*' '.*' >/dev/null
    ;;
  user)
    # Creates the user (or resets its password) with full rights on the vhost.
    [[ -n ${3:-} && -n ${4:-} ]] || { log "usage: $0 user NAME PASS VHOST"; exit 2; }
    rabbit_env
    if /usr/lib/rabbitmq/bin/rabbitmqctl -q list_users | awk '{print $1}' | grep -qx "$2"; then
      /usr/lib/rabbitmq/bin/rabbitmqctl -q change_password "$2" "$3" >/dev/null
    else
      /usr/lib/rabbitmq/bin/rabbitmqctl -q add_user "$2" "$3" >/dev/null
    fi
    /usr/lib/rabbitmq/bin/rabbitmqctl -q set_permissions -p "$4" "$2" '.*' '.*' '.*' >/dev/null
    ;;
  close-user)
    [[ -n ${2:-} ]] || { log "usage: $0 close-user NAME"; exit 2; }
    rabbit_env
    /usr/lib/rabbitmq/bin/rabbitmqctl -q close_all_user_connections "$2" "closed by servers.sh" >/dev/null
    ;;
  delete-vhost)
    [[ -n ${2:-} ]] || { log "usage: $0 delete-vhost NAME"; exit 2; }
    rabbit_env
    /usr/lib/rabbitmq/bin/rabbitmqctl -q delete_vhost "$2" >/dev/null
    ;;
  status)
    for n in epmd rabbitmq mariadb mariadb-secondary; do
      if alive $n; then echo "$n running (pid $(cat "$pids/$n"))"; else echo "$n stopped"; fi
    done ;;
  *) log "usage: $0 start|stop|status|start-rabbitmq|stop-rabbitmq|restart-rabbitmq|start-mariadb|stop-mariadb|restart-mariadb|database NAME [FILE…]|start-secondary|stop-secondary|database-secondary NAME [FILE…]|vhost NAME|delete-vhost NAME|user NAME PASS VHOST|close-user NAME"; exit 2 ;;
esac
