#!/usr/bin/python3
"""End to end on [access] (docs/operations.md "Access") with a client that is not BEDS code:
Debian's python3-pika against one `beds` node (dispatch pools and a `logs` pool) that logs in as a
node user of its own. The RabbitMQ users come from the script `bedsctl access` prints, run with
`sh` as an operator would: a node user with every right on the vhost, and a client (`shop`) that
may only publish on beds.events and read direct reply-to. A third user with the same rights but
not listed in [access] plays the stranger.

Checked: the client calls what its `allow` covers and is answered FORBIDDEN, naming the user and
`template/op`, for the rest; the stranger may only ping; RabbitMQ refuses the client a publish on
beds.logs (403 ACCESS_REFUSED); a forged audit event from a user with write rights on beds.logs
but not in node_users (the fixture's guest) is parked in the logs pool's DLQ with the reason and
never reaches lineage/fetch; a genuine write's audit record is stored, naming the client as actor.
Then admin.shutdown and a clean exit 0; the users are deleted whatever happened.

Needs the fixture's RabbitMQ and MariaDB (scripts/servers.sh start); ports come from
BEDS_AMQP_PORT, BEDS_MARIADB_PORT and BEDS_EPMD_PORT, its data directory from BEDS_VAR, like the
script's."""
import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time

import pika

from e2e_support import (ROOT, check, rpc, scratch_database, stop_node, summary, uuid7_hex,
                         wait_for_ping)

RABBITMQ_BIN = "/usr/lib/rabbitmq/bin"
LOGS_BROKER = "adminLogsBroker"


def rabbit_env():
    """The environment scripts/servers.sh's rabbit_env() gives rabbitmqctl, for the fixture's
    RabbitMQ (BEDS_VAR, BEDS_AMQP_PORT, BEDS_EPMD_PORT as the script reads them)."""
    var = os.path.abspath(os.environ.get("BEDS_VAR", os.path.join(ROOT, "var")))
    amqp_port = int(os.environ.get("BEDS_AMQP_PORT", "5699"))
    env = dict(os.environ)
    env.update({
        "HOME": os.path.join(var, "rabbitmq", "home"),
        "RABBITMQ_NODENAME": "beds%d@localhost" % amqp_port,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_DIST_PORT": str(amqp_port + 20000),
        "ERL_EPMD_PORT": os.environ.get("BEDS_EPMD_PORT", "4399"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_MNESIA_BASE": os.path.join(var, "rabbitmq", "mnesia"),
        "RABBITMQ_LOG_BASE": os.path.join(var, "rabbitmq", "log"),
        "RABBITMQ_CONFIG_FILE": os.path.join(var, "rabbitmq", "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(var, "rabbitmq", "enabled_plugins"),
        "RABBITMQ_PID_FILE": os.path.join(var, "rabbitmq", "beam.pid"),
        "PATH": RABBITMQ_BIN + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
    })
    return env


def rabbitmqctl(env, *args):
    return subprocess.run([os.path.join(RABBITMQ_BIN, "rabbitmqctl"), "-q"] + list(args), env=env,
                          capture_output=True, text=True)


def pass_var(user):
    """BEDS_PASS_{user}, non-alphanumerics as `_` (docs/configuration.md, `bedsctl access`)."""
    return "BEDS_PASS_" + "".join(c if c.isalnum() else "_" for c in user)


def forged_audit(actor="dba-alice"):
    """An audit event as a node's log sink would send it (docs/protocol.md "Log events"), from a
    node that never sent it: (event id, body)."""
    event_id = "appserver.dev." + uuid7_hex()
    now = time.time()
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%06dZ" % int((now % 1) * 1e6)
    event = {"ts": ts, "kind": "audit", "level": "info", "node": "appserver", "env": "dev",
             "event_id": event_id, "parent_id": "", "depth": 0, "template": "Users",
             "op": "create", "msg": "create applied",
             "fields": {"actor": actor, "key": {"id": 1},
                        "after": [{"id": 1, "email": "forged@example.org", "name": "Forged"}]}}
    return event_id, json.dumps(event)


def connect(amqp_port, vhost, user, password):
    params = pika.ConnectionParameters(host="127.0.0.1", port=amqp_port, virtual_host=vhost,
                                       credentials=pika.PlainCredentials(user, password),
                                       blocked_connection_timeout=30)
    return pika.BlockingConnection(params)


def wait_for_exchange(conn, node, timeout=30):
    """A channel once the node has declared beds.events (publishing before would close it)."""
    deadline = time.time() + timeout
    while True:
        ch = conn.channel()
        try:
            ch.exchange_declare("beds.events", passive=True)
            return ch
        except pika.exceptions.ChannelClosedByBroker:
            if time.time() > deadline or node.poll() is not None:
                raise
            time.sleep(0.1)


def as_user(ch, user, routing_key, **request):
    """A request signed with `user_id` = the login (RabbitMQ refuses any other)."""
    props = pika.BasicProperties(user_id=user,
                                 delivery_mode=2 if routing_key.endswith(".write") else None)
    reply = rpc(ch, routing_key, json.dumps(request), props=props)
    if reply is None:
        print("     (no reply to %s %s as %s)" % (routing_key, json.dumps(request), user), flush=True)
    return reply


def ok(reply):
    return reply is not None and reply.get("ok") is True


def error(reply):
    return (reply or {}).get("error") or {}


def show(reply):
    return json.dumps(reply)[:300]


def refused_publish(conn, exchange, routing_key, body, props):
    """Publishes on a fresh confirming channel: the broker's (code, text) when it closes the
    channel, else None."""
    ch = conn.channel()
    ch.confirm_delivery()
    try:
        ch.basic_publish(exchange, routing_key, body, props)
    except pika.exceptions.ChannelClosedByBroker as e:
        return e.reply_code, e.reply_text
    except pika.exceptions.UnroutableError:
        pass
    try:
        conn.process_data_events(time_limit=0.5)
    except pika.exceptions.ChannelClosedByBroker as e:
        return e.reply_code, e.reply_text
    if ch.is_open:
        ch.close()
    return None


def parked(ch, queue, message_ids, timeout=10):
    """The messages in `queue` whose message_id is one of `message_ids`, by id: (properties,
    body). Waits until all are there or `timeout` passed; other messages are put back."""
    found = {}
    deadline = time.time() + timeout
    while len(found) < len(message_ids) and time.time() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=False)
        if method is None:
            time.sleep(0.1)
            continue
        if props.message_id in message_ids:
            found[props.message_id] = (props, body)
            ch.basic_ack(method.delivery_tag)
        else:
            ch.basic_nack(method.delivery_tag, requeue=True)
            time.sleep(0.05)
    return found


def flatten(event, out):
    out.append(event)
    for child in event.get("children", []):
        flatten(child, out)
    return out


def config(name, amqp_port, vhost, node_user, node_pass, shop, db_port, database, conf):
    return f"""
[node]
name = "{name}"
[broker_services.app_server]
host = "127.0.0.1"
port = {amqp_port}
vhost = "{vhost}"
user = "{node_user}"
pass = "{node_pass}"
[access]
node_users = ["{node_user}"]
trusted_users = []
[access.clients.{shop}]
allow = ["Users/*"]
[databases.main]
engine = "mariadb"
host = "127.0.0.1"
port = {db_port}
user = "beds"
pass = "beds"
database = "{database}"
[databases.docs]
engine = "sqlite"
path = {json.dumps(os.path.join(conf, "docs.sqlite"))}
[templates]
dir = {json.dumps(os.path.join(ROOT, "templates"))}
[logging]
metrics_interval_s = 0
spill_path = {json.dumps(os.path.join(conf, name + ".spill"))}
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
[brokers.{LOGS_BROKER}]
handler = "logs"
instances = 1
prefetch = 128
batch_ms = 50
bindings = ["log.#", "audit.#"]
"""


def create_users(args, env, conf, vhost, users, stranger):
    """Runs the script `bedsctl access` prints with `sh`, then makes the stranger by hand with a
    client's rights (the script's client line) but no place in [access]."""
    script = subprocess.run([args.bedsctl, "--config-dir", conf, "access"], capture_output=True,
                            text=True)
    check(script.returncode == 0, "bedsctl access exits 0 (got %d: %s)"
          % (script.returncode, script.stderr.strip()))
    print(script.stdout, end="", flush=True)
    shop_line = "set_permissions -p '%s' '%s' '^$' '^beds\\.events$' '^amq\\.rabbitmq\\.reply-to$'" \
        % (vhost, users["shop"][0])
    node_line = "set_permissions -p '%s' '%s' '.*' '.*' '.*'" % (vhost, users["node"][0])
    check(shop_line in script.stdout, "the script gives the client only beds.events and reply-to")
    check(node_line in script.stdout, "the script gives the node user everything on the vhost")
    check("add_vhost '%s'" % vhost in script.stdout, "the script adds the config's vhost")
    run_env = dict(env)
    for user, password in users.values():
        run_env[pass_var(user)] = password
    ran = subprocess.run(["sh", "-c", script.stdout], env=run_env, capture_output=True, text=True)
    check(ran.returncode == 0, "the script runs (exit %d: %s)" % (ran.returncode,
                                                                  ran.stderr.strip()[-500:]))
    user, password = stranger
    made = rabbitmqctl(env, "add_user", user, password)
    perms = rabbitmqctl(env, "set_permissions", "-p", vhost, user, "^$", "^beds\\.events$",
                        "^amq\\.rabbitmq\\.reply-to$")
    check(made.returncode == 0 and perms.returncode == 0,
          "the stranger is made (%s %s)" % (made.stderr.strip(), perms.stderr.strip()))
    listed = rabbitmqctl(env, "list_permissions", "-p", vhost)
    print(listed.stdout, end="", flush=True)


def run_checks(amqp_port, vhost, node, users, stranger):
    node_user, node_pass = users["node"]
    shop_user, shop_pass = users["shop"]
    stranger_user, stranger_pass = stranger

    node_conn = connect(amqp_port, vhost, node_user, node_pass)
    nch = wait_for_exchange(node_conn, node)
    ping = wait_for_ping(nch, node)
    check(ok(ping), "the node (logged in as %s) answers sys/ping" % node_user)
    if not ok(ping):
        return node_conn, nch

    # ---- 3: the client ---------------------------------------------------------------------
    try:
        shop_conn = connect(amqp_port, vhost, shop_user, shop_pass)
    except Exception as e:
        check(False, "%s logs in: %s: %s" % (shop_user, type(e).__name__, e))
        return node_conn, nch
    sch = shop_conn.channel()
    # Direct reply-to with the client's read right (^amq\.rabbitmq\.reply-to$) only.
    try:
        tag = sch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True)
        sch.basic_cancel(tag)
        check(True, "%s may consume from amq.rabbitmq.reply-to" % shop_user)
    except pika.exceptions.ChannelClosedByBroker as e:
        check(False, "%s may consume from amq.rabbitmq.reply-to: RabbitMQ said %d %s"
              % (shop_user, e.reply_code, e.reply_text))
        sch = shop_conn.channel()
    r = as_user(sch, shop_user, "sys.read", template="sys", op="ping")
    check(ok(r), "%s: sys/ping ok (the reply came back on direct reply-to): %s" % (shop_user, show(r)))
    r = as_user(sch, shop_user, "rel.read", template="Users", op="count")
    check(ok(r) and r.get("count") == 0, "%s: Users/count ok -> 0: %s" % (shop_user, show(r)))
    email = "shop.%d@example.org" % os.getpid()
    created = as_user(sch, shop_user, "rel.write", template="Users", op="create",
                      data={"email": email, "name": "Shop"})
    check(ok(created), "%s: Users/create ok: %s" % (shop_user, show(created)))
    r = as_user(sch, shop_user, "rel.read", template="Orders", op="fetch")
    check(r is not None and r.get("ok") is False and error(r).get("code") == "FORBIDDEN" and
          "Orders/fetch" in error(r).get("message", "") and shop_user in error(r).get("message", ""),
          "%s: Orders/fetch -> FORBIDDEN naming the user and 'Orders/fetch': %s" % (shop_user, show(r)))
    r = as_user(sch, shop_user, "sys.read", template="lineage", op="fetch",
                id=(created or {}).get("event_id", "x"))
    check(error(r).get("code") == "FORBIDDEN" and "lineage/fetch" in error(r).get("message", ""),
          "%s: lineage/fetch (not in Users/*) -> FORBIDDEN: %s" % (shop_user, show(r)))

    # ---- 4: the stranger --------------------------------------------------------------------
    try:
        stranger_conn = connect(amqp_port, vhost, stranger_user, stranger_pass)
        tch = stranger_conn.channel()
        r = as_user(tch, stranger_user, "sys.read", template="sys", op="ping")
        check(ok(r), "%s: sys/ping ok: %s" % (stranger_user, show(r)))
        r = as_user(tch, stranger_user, "rel.read", template="Users", op="count")
        check(r is not None and error(r).get("code") == "FORBIDDEN" and
              "is not a client" in error(r).get("message", "") and
              stranger_user in error(r).get("message", ""),
              "%s: Users/count -> FORBIDDEN, is not a client: %s" % (stranger_user, show(r)))
        stranger_conn.close()
    except Exception as e:
        check(False, "the stranger's checks raised %s: %s" % (type(e).__name__, e))

    # ---- 5: the client may not publish on beds.logs ------------------------------------------
    forged_by_shop, body = forged_audit()
    refused = refused_publish(shop_conn, "beds.logs", "audit.Users.create", body,
                              pika.BasicProperties(user_id=shop_user, message_id=forged_by_shop,
                                                   content_type="application/json",
                                                   delivery_mode=2))
    check(refused is not None and refused[0] == 403 and "ACCESS_REFUSED" in refused[1],
          "%s publishing on beds.logs: RabbitMQ closes the channel 403 ACCESS_REFUSED: %s"
          % (shop_user, refused))

    # ---- 6: a user with write rights on beds.logs, not in node_users --------------------------
    guest_conn = connect(amqp_port, vhost, "guest", "guest")
    forged_guest, body_guest = forged_audit()
    forged_anon, body_anon = forged_audit()
    gch = guest_conn.channel()
    gch.confirm_delivery()
    published = time.time()
    for event_id, body, user in ((forged_guest, body_guest, "guest"), (forged_anon, body_anon, None)):
        gch.basic_publish("beds.logs", "audit.Users.create", body,
                          pika.BasicProperties(user_id=user, message_id=event_id,
                                               content_type="application/json", delivery_mode=2),
                          mandatory=True)
    # Nor can guest sign as the node: RabbitMQ checks user_id against the login.
    forged_node, body_node = forged_audit()
    refused = refused_publish(guest_conn, "beds.logs", "audit.Users.create", body_node,
                              pika.BasicProperties(user_id=node_user, message_id=forged_node,
                                                   content_type="application/json",
                                                   delivery_mode=2))
    check(refused is not None and refused[0] == 406 and "PRECONDITION_FAILED" in refused[1],
          "guest publishing with user_id %s: RabbitMQ closes the channel 406: %s"
          % (node_user, refused))

    dlq = "beds.%s.dlq" % LOGS_BROKER
    found = parked(gch, dlq, {forged_guest, forged_anon}, timeout=10)
    for event_id, who in ((forged_guest, "user_id guest"), (forged_anon, "no user_id")):
        props, _ = found.get(event_id, (None, None))
        why = str(((props.headers or {}) if props else {}).get("x-beds-error", ""))
        check(props is not None, "the forged audit event (%s) is parked in %s" % (who, dlq))
        if props is not None:
            want = "node_users" if event_id == forged_guest else "names no user_id"
            check(want in why and "node user" in why,
                  "its x-beds-error gives the reason (%s): %r" % (want, why))
    # Parked means not stored; still give the logs pool (batches of 50 ms) 3 s to prove it.
    time.sleep(max(0.0, published + 3.0 - time.time()))
    for event_id, who in ((forged_guest, "user_id guest"), (forged_anon, "no user_id")):
        r = as_user(nch, node_user, "sys.read", template="lineage", op="fetch", id=event_id)
        check(r is not None and error(r).get("code") == "NOT_FOUND",
              "lineage/fetch of the forged event (%s) -> NOT_FOUND: %s" % (who, show(r)))
    guest_conn.close()
    # Control: the same form from the node user is stored, so the body is a valid event and only
    # its sender kept the forged ones out.
    control_id, control_body = forged_audit()
    nch.basic_publish("beds.logs", "audit.Users.create", control_body,
                      pika.BasicProperties(user_id=node_user, message_id=control_id,
                                           content_type="application/json", delivery_mode=2))
    r = None
    deadline = time.time() + 10
    while time.time() < deadline:
        r = as_user(nch, node_user, "sys.read", template="lineage", op="fetch", id=control_id)
        if r is None or error(r).get("code") != "NOT_FOUND":
            break
        time.sleep(0.2)
    check(ok(r) and r["data"]["root"].get("kind") == "audit" and
          (r["data"]["root"].get("data") or {}).get("actor") == "dba-alice",
          "control: the same event published by %s is stored: %s" % (node_user, show(r)))

    # ---- 7: the genuine write's audit record is stored -------------------------------------
    root = (created or {}).get("event_id", "")
    audit = None
    last = None
    deadline = time.time() + 10
    while root and audit is None and time.time() < deadline:
        last = as_user(nch, node_user, "sys.read", template="lineage", op="fetch", id=root)
        if ok(last):
            audits = [e for e in flatten(last["data"]["root"], []) if e.get("kind") == "audit"]
            if audits:
                audit = audits[0]
                break
        time.sleep(0.2)
    check(audit is not None, "lineage/fetch (as %s) of %s's create holds its audit event: %s"
          % (node_user, shop_user, show(last)))
    if audit is not None:
        fields = audit.get("data") or {}  # the stored document keeps the event's fields as data
        check(fields.get("actor") == shop_user and audit.get("template") == "Users" and
              audit.get("op") == "create",
              "the audit record names actor %s, Users/create: %s" % (shop_user, json.dumps(audit)[:300]))
        after = fields.get("after") or [{}]
        check(after[0].get("email") == email, "the audit record holds the row after")
    shop_conn.close()
    return node_conn, nch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", required=True)
    ap.add_argument("--bedsctl", required=True)
    ap.add_argument("--servers", required=True)
    args = ap.parse_args()
    # ctest's TIMEOUT sends SIGTERM: unwind so the finally below stops our node and users.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated"))

    amqp_port, db_port, vhost, database = scratch_database(args.servers, "acc")
    pid = os.getpid()
    users = {"node": ("acc-node-%d" % pid, secrets.token_hex(12)),
             "shop": ("acc-shop-%d" % pid, secrets.token_hex(12))}
    stranger = ("acc-stranger-%d" % pid, secrets.token_hex(12))
    env = rabbit_env()

    with tempfile.TemporaryDirectory() as conf:
        with open(os.path.join(conf, "beds.toml"), "w") as f:
            f.write(config("accnode", amqp_port, vhost, users["node"][0], users["node"][1],
                           users["shop"][0], db_port, database, conf))
        node = None
        log = None
        try:
            create_users(args, env, conf, vhost, users, stranger)
            log = open(os.path.join(conf, "beds.log"), "w+", errors="replace")
            node = subprocess.Popen([args.beds, "run", "--config-dir", conf], stderr=log)
            node_conn, nch = run_checks(amqp_port, vhost, node, users, stranger)
            bye = as_user(nch, users["node"][0], "admin.shutdown.accnode",
                          template="admin", op="shutdown", data={"mode": "drain"})
            check(ok(bye), "admin.shutdown (as %s) answered: %s" % (users["node"][0], show(bye)))
            node_conn.close()
            exit_code = node.wait(timeout=30)
            check(exit_code == 0, "beds exited 0 after admin.shutdown (got %s)" % exit_code)
        except Exception as e:  # a crash of the test itself is a failure, with the node's log below
            check(False, "test raised %s: %s" % (type(e).__name__, e))
        finally:
            if node is not None:
                stop_node(node, log, tail=6000)
            for user in (users["node"][0], users["shop"][0], stranger[0]):
                gone = rabbitmqctl(env, "delete_user", user)
                if gone.returncode != 0:
                    print("     (delete_user %s: %s)" % (user, gone.stderr.strip()), flush=True)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
