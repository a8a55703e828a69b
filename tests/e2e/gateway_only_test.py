#!/usr/bin/python3
"""End to end: a gateway-only node (config/nodes/gateway.toml's shape: the gateway on, every broker
pool off) in front of a separate node that serves the requests (pools on, gateway off), over the
fixture's RabbitMQ and a fresh MariaDB database, with python3-requests as the client.

Checked: the gateway-only node starts although its [databases] point at nothing (a MariaDB port no
server listens on, a SQLite path in a directory that does not exist), and says it opens no
database; /healthz answers at once and /readyz is 503 while no node serves; the OpenAPI document
lists the templates it read for routing; once the serving node is up, /readyz turns 200 and a
create, a fetch by key and the lineage of the create go through the gateway-only node and are
served by the other node (the lineage's events name it). With RabbitMQ stopped, the gateway's
HTTP threads are not held up: /healthz answers at once, a request is answered 503 UNAVAILABLE
within seconds, not at its deadline; once RabbitMQ is back, requests go through again without a
restart. When the serving node stops, /readyz turns 503 again and the gateway-only node stays up
and answers /healthz.

Needs the fixture's RabbitMQ and MariaDB (scripts/servers.sh start); ports come from
BEDS_AMQP_PORT and BEDS_MARIADB_PORT like the script's."""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import requests

from e2e_support import (check, free_port, scratch_database, stop_node, summary,
                         wait_for_gateway_port, write_gateway_config)


def wait_status(url, status, timeout=30):
    """The last answer's status once it is `status`, or the last seen when time runs out."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = requests.get(url, timeout=5).status_code
        except requests.RequestException:
            last = None
        if last == status:
            return last
        time.sleep(0.1)
    return last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", required=True)
    ap.add_argument("--servers", required=True)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated"))
    amqp_port, db_port, vhost, database = scratch_database(args.servers, "gwonly")

    with tempfile.TemporaryDirectory() as front_conf, tempfile.TemporaryDirectory() as back_conf:
        # The front: the same file as any gateway node, every pool switched off by the role's keys
        # (here as environment overrides), and databases nobody could open.
        write_gateway_config(front_conf, "front", amqp_port, db_port, vhost, database)
        front_env = dict(os.environ)
        for broker in ("RBROKER", "WBROKER", "CBROKER", "ADMINLOGSBROKER"):
            front_env["BEDS__BROKERS__%s__ENABLED" % broker] = "false"
        front_env["BEDS__DATABASES__MAIN__PORT"] = str(free_port())
        front_env["BEDS__DATABASES__DOCS__PATH"] = "/nonexistent-beds-dir/docs.sqlite"
        front_log = open(os.path.join(front_conf, "beds.log"), "w+", errors="replace")
        front = subprocess.Popen([args.beds, "run", "--config-dir", front_conf], stderr=front_log,
                                 env=front_env)
        back = None
        back_log = None
        try:
            port = wait_for_gateway_port(front_log, front)
            check(port is not None, "the gateway-only node serves HTTP although its databases "
                  "cannot be reached")
            if port is None:
                return
            base = "http://127.0.0.1:%d" % port
            front_log.seek(0)
            text = front_log.read()
            check("gateway-only node" in text and "no database is opened" in text,
                  "its log says it opens no database")
            check(requests.get(base + "/healthz", timeout=5).status_code == 200, "/healthz -> 200")
            r = requests.get(base + "/readyz", timeout=10)
            check(r.status_code == 503, "/readyz -> 503 while no node serves: %d %s" %
                  (r.status_code, r.text[:200]))
            doc = requests.get(base + "/v1/openapi.json", timeout=5).json()
            check("/v1/Users" in doc.get("paths", {}) and "/v1/Orders/{id}" in doc["paths"],
                  "the OpenAPI document lists the templates read for routing")

            # The back: pools on, no gateway.
            write_gateway_config(back_conf, "back", amqp_port, db_port, vhost, database)
            back_env = dict(os.environ)
            back_env["BEDS__GATEWAY__ENABLED"] = "false"
            back_log = open(os.path.join(back_conf, "beds.log"), "w+", errors="replace")
            back = subprocess.Popen([args.beds, "run", "--config-dir", back_conf], stderr=back_log,
                                    env=back_env)
            check(wait_status(base + "/readyz", 200, 60) == 200,
                  "/readyz -> 200 once the serving node is up")
            email = "front-%d@example.org" % os.getpid()
            r = requests.post(base + "/v1/Users", json={"email": email, "name": "Front"}, timeout=10)
            created = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}
            check(r.status_code == 201 and created.get("ok") is True,
                  "a create through the gateway-only node -> 201: %d %s" % (r.status_code, r.text[:200]))
            user_id = (created.get("data") or [{}])[0].get("id")
            r = requests.get(base + "/v1/Users/%s" % user_id, timeout=10)
            check(r.status_code == 200 and email in r.text, "the fetch by key -> 200 with the row")
            event_id = created.get("event_id", "")
            nodes = set()
            deadline = time.time() + 20
            while time.time() < deadline and "back" not in nodes:
                r = requests.get(base + "/v1/lineage/" + event_id, timeout=10)
                if r.status_code == 200:
                    stack = [r.json()["data"]["root"]]
                    while stack:
                        n = stack.pop()
                        nodes.add(n.get("node"))
                        stack.extend(n.get("children") or [])
                else:
                    time.sleep(0.2)
            check("back" in nodes and "front" not in nodes,
                  "the create's events were made by the serving node: %s" % sorted(map(str, nodes)))

            # The broker goes away and comes back.
            subprocess.run([args.servers, "stop-rabbitmq"], check=True)
            try:
                started = time.time()
                r = requests.get(base + "/healthz", timeout=5)
                check(r.status_code == 200 and time.time() - started < 1,
                      "/healthz answers at once while the broker is down")
                started = time.time()
                r = requests.get(base + "/v1/Users/%s" % user_id, timeout=30)
                took = time.time() - started
                body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}
                check(r.status_code == 503 and body.get("error", {}).get("code") == "UNAVAILABLE" and
                      took < 10 and r.headers.get("Retry-After"),
                      "a request while the broker is down -> 503 UNAVAILABLE with Retry-After in "
                      "%.1f s: %d %s" % (took, r.status_code, r.text[:200]))
            finally:
                subprocess.run([args.servers, "start-rabbitmq"], check=True)
            ok = False
            deadline = time.time() + 90
            while time.time() < deadline and not ok:
                try:
                    ok = requests.get(base + "/v1/Users/%s" % user_id, timeout=10).status_code == 200
                except requests.RequestException:
                    pass
                if not ok:
                    time.sleep(0.2)
            check(ok, "with the broker back, requests through the gateway are answered again")
            check(front.poll() is None, "the gateway-only node stayed up through the outage")

            back.terminate()
            back.wait(timeout=30)
            check(wait_status(base + "/readyz", 503, 30) == 503,
                  "/readyz -> 503 once the serving node is gone")
            check(front.poll() is None and
                  requests.get(base + "/healthz", timeout=5).status_code == 200,
                  "the gateway-only node stays up")
        finally:
            if back is not None:
                stop_node(back, back_log)
            stop_node(front, front_log)


if __name__ == "__main__":
    try:
        main()
    finally:
        sys.exit(summary())
