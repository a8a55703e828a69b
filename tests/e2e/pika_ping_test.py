#!/usr/bin/python3
"""End to end with a client that is not BEDS code: Debian's python3-pika speaks docs/protocol.md to a
running `beds` binary. Ping, describe, a malformed message (BAD_REQUEST reply + DLQ entry with its
reason), then admin.shutdown and a clean exit 0.

Needs the fixture's RabbitMQ (scripts/servers.sh start); ports come from BEDS_AMQP_PORT and
BEDS_MARIADB_PORT like the script's."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import pika

from e2e_support import check, open_channel, rpc, stop_node, summary, wait_for_ping

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", required=True)
    ap.add_argument("--servers", required=True)
    args = ap.parse_args()

    amqp_port = int(os.environ.get("BEDS_AMQP_PORT", "5699"))
    db_port = int(os.environ.get("BEDS_MARIADB_PORT", "3399"))
    vhost = "e2e-pika-%d" % os.getpid()
    subprocess.run([args.servers, "vhost", vhost], check=True)

    with tempfile.TemporaryDirectory() as conf:
        with open(os.path.join(conf, "beds.toml"), "w") as f:
            f.write(f"""
[node]
name = "pikanode"
[broker_services.app_server]
host = "127.0.0.1"
port = {amqp_port}
vhost = "{vhost}"
pass = "guest"
[databases.main]
engine = "mariadb"
port = {db_port}
[brokers.rBroker]
instances = 2
bindings = ["sys.read"]
max_retries = 1
retry_backoff_ms = [50]
""")
        log = open(os.path.join(conf, "beds.log"), "w+", errors="replace")
        node = subprocess.Popen([args.beds, "run", "--config-dir", conf], stderr=log)
        try:
            conn, ch = open_channel(amqp_port, vhost, node)
            ping = wait_for_ping(ch, node)
            check(ping is not None, "sys/ping answered")
            if ping:
                check(ping["ok"] is True, "ping ok")
                check(ping["event_id"].startswith("pikanode.dev.") and len(ping["event_id"].split(".")[2]) == 32,
                      "event_id is {node}.{env}.{guid}: " + ping["event_id"])
                check(ping["data"]["node"] == "pikanode", "ping names the node")
                check(ping["data"]["pools"][0]["broker"] == "rBroker" and ping["data"]["pools"][0]["instances"] == 2,
                      "ping lists the broker pool and its size")

            describe = rpc(ch, "sys.read", json.dumps({"template": "sys", "op": "describe"}))
            check(describe is not None and describe["ok"] and
                  any(t["name"] == "sys" for t in describe["data"]["templates"]), "sys/describe lists sys")

            mid = "client.dev." + uuid.uuid4().hex
            bad = rpc(ch, "sys.read", b"{not json", props=pika.BasicProperties(message_id=mid))
            check(bad is not None and bad["ok"] is False and bad["error"]["code"] == "BAD_REQUEST",
                  "malformed body answered BAD_REQUEST")
            check(bad is not None and bad["event_id"] == mid, "message_id of event-id form became the event_id")
            parked = None
            deadline = time.time() + 10
            while parked is None and time.time() < deadline:
                method, props, body = ch.basic_get("beds.rBroker.dlq", auto_ack=True)
                if method:
                    parked = (props, body)
                else:
                    time.sleep(0.05)
            check(parked is not None and parked[1] == b"{not json", "malformed message parked in beds.rBroker.dlq")
            if parked:
                reason = (parked[0].headers or {}).get("x-beds-error", "")
                check("BAD_REQUEST" in str(reason), "DLQ entry says why: %r" % reason)

            unknown = rpc(ch, "sys.read", json.dumps({"template": "Nope", "op": "fetch"}))
            check(unknown is not None and unknown["error"]["code"] == "UNKNOWN_TEMPLATE", "unknown template")

            bye = rpc(ch, "admin.shutdown.pikanode",
                      json.dumps({"template": "admin", "op": "shutdown", "data": {"mode": "drain"}}))
            check(bye is not None and bye["ok"], "admin.shutdown answered")
            conn.close()
            code = node.wait(timeout=30)
            check(code == 0, "beds exited 0 after admin.shutdown (got %s)" % code)
        finally:
            stop_node(node, log)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
