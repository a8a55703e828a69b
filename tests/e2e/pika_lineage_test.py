#!/usr/bin/python3
"""End to end on event lineage with a client that is not BEDS code: Debian's python3-pika against
two `beds` processes, an admin node (its `logs` handler stores every event in msLogs) and an
application node, sharing one SQLite file for the log store. A write, five child requests sent at
once with `lineage.parent_id`, then lineage/fetch of the write: the tree must hold the write's
request, adapter and audit events and every child with its own adapter call. A consumer bound to
beds.logs sees the audit record of a write, naming the AMQP user that sent it. Then
admin.shutdown.all and a clean exit 0 of both.

Needs the fixture's RabbitMQ and MariaDB (scripts/servers.sh start); ports come from
BEDS_AMQP_PORT and BEDS_MARIADB_PORT like the script's."""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pika

from e2e_support import (ROOT, check, open_channel, rpc, scratch_database, stop_node, summary,
                         wait_for_ping)



def config(name, amqp_port, vhost, db_port, database, docs, dispatch):
    brokers = """
[brokers.rBroker]
instances = 2
bindings = ["sys.read", "rel.read", "rec.read"]
[brokers.wBroker]
instances = 2
bindings = ["rel.write"]
""" if dispatch else """
[brokers.adminLogsBroker]
handler = "logs"
instances = 1
prefetch = 128
batch_ms = 50
bindings = ["log.#", "audit.#"]
"""
    return f"""
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
spill_path = {json.dumps(docs + "." + name + ".spill")}
""" + brokers


def start(conf_dir, text):
    os.makedirs(conf_dir)
    with open(os.path.join(conf_dir, "beds.toml"), "w") as f:
        f.write(text)
    log = open(os.path.join(conf_dir, "beds.log"), "w+", errors="replace")
    return subprocess.Popen([sys.argv[sys.argv.index("--beds") + 1], "run", "--config-dir",
                             conf_dir], stderr=log), log


def flatten(event, parent, out):
    out.append(event)
    if parent is not None:
        check(event.get("parent_id") == parent.get("event_id") and
              event.get("depth") == parent.get("depth", 0) + 1,
              "%s %s sits under its parent" % (event.get("kind"), event.get("event_id")))
    for child in event.get("children", []):
        flatten(child, event, out)


def events_of(body, content_type):
    """A beds.logs message: one event (application/json) or one per line (x-ndjson)."""
    if content_type == "application/x-ndjson":
        return [json.loads(line) for line in body.decode().splitlines() if line]
    return [json.loads(body)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", required=True)
    ap.add_argument("--servers", required=True)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated"))

    amqp_port, db_port, vhost, database = scratch_database(args.servers, "lineage")

    with tempfile.TemporaryDirectory() as tmp:
        docs = os.path.join(tmp, "docs.sqlite")
        admin, admin_log = start(os.path.join(tmp, "admin"),
                                 config("admin", amqp_port, vhost, db_port, database, docs, False))
        app, app_log = start(os.path.join(tmp, "app"),
                             config("app", amqp_port, vhost, db_port, database, docs, True))
        try:
            conn, ch = open_channel(amqp_port, vhost, app)
            deadline = time.time() + 30  # for both nodes
            ping = wait_for_ping(ch, app)
            check(ping is not None and ping.get("ok") is True, "the application node answers")
            admin_up = wait_for_ping(ch, admin, max(0, deadline - time.time()),
                                     routing_key="admin.ping.admin", template="admin")
            check(admin_up is not None, "the admin node answers admin.ping")

            # A consumer of our own on beds.logs, for the audit records.
            audit_q = ch.queue_declare("", exclusive=True).method.queue
            ch.queue_bind(audit_q, "beds.logs", "audit.#")

            write = rpc(ch, "rel.write", json.dumps({"template": "Users", "op": "create",
                                                     "data": {"email": "e2e@example.org",
                                                              "name": "Lin"}}),
                        props=pika.BasicProperties(delivery_mode=2, user_id="guest"))
            check(write is not None and write.get("ok") is True, "the write is answered ok")
            root = write["event_id"] if write else ""

            # Five children, all published before any reply is read.
            corr = {}
            replies = {}

            def on_reply(_ch, _method, props, body):
                if props.correlation_id in corr:
                    replies[props.correlation_id] = json.loads(body)

            tag = ch.basic_consume("amq.rabbitmq.reply-to", on_reply, auto_ack=True)
            for _ in range(5):
                c = str(uuid.uuid4())
                corr[c] = True
                body = {"template": "Users", "op": "fetch", "id": "1",
                        "lineage": {"parent_id": root, "depth": 1}}
                ch.basic_publish("beds.events", "rel.read", json.dumps(body),
                                 pika.BasicProperties(reply_to="amq.rabbitmq.reply-to",
                                                      correlation_id=c,
                                                      content_type="application/json"))
            deadline = time.time() + 10
            while len(replies) < 5 and time.time() < deadline:
                conn.process_data_events(time_limit=0.2)
            ch.basic_cancel(tag)
            check(len(replies) == 5 and all(r.get("ok") for r in replies.values()),
                  "all five children answered ok")
            child_ids = {r.get("event_id") for r in replies.values()}
            check(len(child_ids) == 5 and root not in child_ids, "each child has its own event id")

            tree = None
            deadline = time.time() + 20
            while time.time() < deadline:
                r = rpc(ch, "sys.read", json.dumps({"template": "lineage", "op": "fetch", "id": root}))
                if r and r.get("ok") and r["data"]["events"] >= 13:
                    tree = r["data"]
                    break
                time.sleep(0.1)
            check(tree is not None, "lineage/fetch finds the write's tree with 13 events")
            if tree:
                flat = []
                flatten(tree["root"], None, flat)
                kinds = [e.get("kind") for e in flat]
                check(flat[0].get("event_id") == root and flat[0].get("kind") == "request",
                      "the root is the write's request event")
                check(kinds.count("request") == 6 and kinds.count("adapter") == 6 and
                      kinds.count("audit") == 1, "6 requests, 6 adapter calls, 1 audit: %s" % kinds)
                children = {e["event_id"] for e in flat if e.get("depth") == 1 and
                            e.get("kind") == "request"}
                check(children == child_ids, "the tree's child requests are the five sent")
                check(len({e["event_id"] for e in flat}) == len(flat), "no event appears twice")
                check(tree.get("truncated") is False, "not truncated")

            bad = rpc(ch, "sys.read", json.dumps({"template": "lineage", "op": "fetch", "id": "x"}))
            check(bad is not None and (bad.get("error") or {}).get("code") == "VALIDATION",
                  "lineage/fetch of a malformed id -> VALIDATION")

            audits = []
            deadline = time.time() + 10
            while not audits and time.time() < deadline:
                method, props, body = ch.basic_get(audit_q, auto_ack=True)
                if method is None:
                    time.sleep(0.05)
                    continue
                audits += [e for e in events_of(body, props.content_type)
                           if e.get("parent_id") == root]
            check(len(audits) == 1, "the write's audit record is on beds.logs")
            if audits:
                a = audits[0]
                check(a.get("kind") == "audit" and a.get("template") == "Users" and
                      a.get("op") == "create", "audit names template and op: %s" % a)
                check(a.get("fields", {}).get("actor") == "guest", "audit names the sender")
                after = a.get("fields", {}).get("after") or [{}]
                check(after[0].get("email") == "e2e@example.org", "audit holds the row after")

            bye = rpc(ch, "admin.shutdown.all",
                      json.dumps({"template": "admin", "op": "shutdown", "data": {"mode": "drain"}}))
            check(bye is not None and bye.get("ok") is True, "admin.shutdown.all answered")
            conn.close()
            check(app.wait(timeout=30) == 0, "the application node exited 0")
            check(admin.wait(timeout=30) == 0, "the admin node exited 0")
        except Exception as e:  # a crash of the test itself is a failure, with the logs below
            check(False, "test raised %s: %s" % (type(e).__name__, e))
        finally:
            stop_node(app, app_log, tail=4000)
            stop_node(admin, admin_log, tail=4000)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
