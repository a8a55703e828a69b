"""Shared by the end-to-end tests: check bookkeeping, one RPC over pika with direct reply-to, and
starting/stopping the `beds` node a test runs. Only Debian's python3-pika; no BEDS code."""
import glob
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid

import pika

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GATEWAY_PORT_LINE = re.compile(r"gateway: serving HTTPS? on 127\.0\.0\.1:(\d+)")
FAILURES = []
CHECKS = [0]


def check(cond, what):
    CHECKS[0] += 1
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def rpc(channel, routing_key, body, timeout=10.0, exchange="beds.events", props=None):
    """Publish with reply_to = direct reply-to and wait for the reply carrying our correlation id."""
    corr = str(uuid.uuid4())
    replies = []

    def on_reply(ch, method, properties, reply_body):
        if properties.correlation_id == corr:
            replies.append(reply_body)

    tag = channel.basic_consume("amq.rabbitmq.reply-to", on_reply, auto_ack=True)
    properties = props or pika.BasicProperties()
    properties.reply_to = "amq.rabbitmq.reply-to"
    properties.correlation_id = corr
    properties.content_type = "application/json"
    channel.basic_publish(exchange, routing_key, body, properties)
    deadline = time.time() + timeout
    while not replies and time.time() < deadline:
        channel.connection.process_data_events(time_limit=0.2)
    channel.basic_cancel(tag)
    return json.loads(replies[0]) if replies else None


def open_channel(amqp_port, vhost, node, timeout=30):
    """A connection and a channel once the node has declared beds.events (publishing before that
    would close the channel). Gives up when `node` (a Popen) exits."""
    params = pika.ConnectionParameters(host="127.0.0.1", port=amqp_port, virtual_host=vhost,
                                       credentials=pika.PlainCredentials("guest", "guest"))
    conn = pika.BlockingConnection(params)
    deadline = time.time() + timeout
    while True:
        ch = conn.channel()
        try:
            ch.exchange_declare("beds.events", passive=True)
            return conn, ch
        except pika.exceptions.ChannelClosedByBroker:
            if time.time() > deadline or node.poll() is not None:
                raise
            time.sleep(0.1)


def wait_for_ping(ch, node, timeout=30, routing_key="sys.read", template="sys"):
    """The first ping reply (sys/ping; admin/ping with routing_key admin.ping.NAME), or None if
    none came within `timeout` or the node exited."""
    ping = None
    deadline = time.time() + timeout
    while ping is None and time.time() < deadline and node.poll() is None:
        ping = rpc(ch, routing_key, json.dumps({"template": template, "op": "ping"}), timeout=1.0)
    return ping


def scratch_database(servers, kind):
    """The fixture's AMQP and MariaDB ports, and a vhost and a database (the repository's schema
    loaded) of this process's own: (amqp_port, db_port, vhost, database)."""
    amqp_port = int(os.environ.get("BEDS_AMQP_PORT", "5699"))
    db_port = int(os.environ.get("BEDS_MARIADB_PORT", "3399"))
    suffix = str(os.getpid())
    vhost = "e2e-%s-%s" % (kind, suffix)
    database = "e2e_%s_%s" % (kind, suffix)
    schema = sorted(glob.glob(os.path.join(ROOT, "schema", "mariadb", "*.sql")))
    check(len(schema) >= 2, "schema files found: %s" % [os.path.basename(s) for s in schema])
    subprocess.run([servers, "database", database] + schema, check=True)
    subprocess.run([servers, "vhost", vhost], check=True)
    return amqp_port, db_port, vhost, database


def write_gateway_config(conf, name, amqp_port, db_port, vhost, database, gateway=""):
    """Writes {conf}/beds.toml for a node `name` serving the gateway on 127.0.0.1:0 (the port is
    in its log: wait_for_gateway_port), bound to the scratch vhost and database, with the
    repository's templates/, a calgon pool, read and write pools and a `logs` pool. `gateway` is
    more lines of the [gateway] table (its limits)."""
    docs = os.path.join(conf, "docs.sqlite")
    with open(os.path.join(conf, "beds.toml"), "w") as f:
        f.write(f"""
[node]
name = "{name}"
[broker_services.app_server]
host = "127.0.0.1"
port = {amqp_port}
vhost = "{vhost}"
pass = "guest"
[databases.main]
engine = "mariadb"
host = "127.0.0.1"
port = {db_port}
user = "beds"
pass = "beds"
database = "{database}"
[databases.docs]
engine = "sqlite"
path = {json.dumps(docs)}
[templates]
dir = {json.dumps(os.path.join(ROOT, "templates"))}
[logging]
metrics_interval_s = 0
spill_path = {json.dumps(os.path.join(conf, name + ".spill"))}
[gateway]
enabled = true
listen = "127.0.0.1:0"
{gateway}[brokers.cBroker]
handler = "calgon"
instances = 1
prefetch = 1
bindings = []
max_retries = 1
retry_backoff_ms = [50]
[brokers.rBroker]
instances = 2
bindings = ["sys.read", "rel.read"]
max_retries = 1
retry_backoff_ms = [50]
[brokers.wBroker]
instances = 2
bindings = ["rel.write"]
max_retries = 1
retry_backoff_ms = [50]
[brokers.adminLogsBroker]
handler = "logs"
instances = 1
prefetch = 128
batch_ms = 50
bindings = ["log.#", "audit.#"]
""")


def uuid7_hex():
    """32 lowercase hex digits of a fresh UUIDv7: an event id's last part nobody has used."""
    ms = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) | \
        (rand & ((1 << 62) - 1))
    return "%032x" % value


def free_port():
    """A loopback port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for_gateway_port(log, node, timeout=30):
    """The gateway's port from the node's log line, or None when it did not appear in time or the
    node exited."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        log.seek(0)
        m = GATEWAY_PORT_LINE.search(log.read())
        if m:
            return int(m.group(1))
        if node.poll() is not None:
            return None
        time.sleep(0.1)
    return None


def stop_node(node, log, tail=4000):
    """Stops `node` if it still runs; on failures, shows the end of its log."""
    if node.poll() is None:
        node.terminate()
        node.wait(timeout=30)
    if FAILURES:
        log.seek(0)
        sys.stderr.write(log.read()[-tail:])
    log.close()


def summary():
    print("%d passed, %d failed" % (CHECKS[0] - len(FAILURES), len(FAILURES)))
    return 1 if FAILURES else 0
