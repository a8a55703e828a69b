#!/usr/bin/python3
"""End to end: the gateway's WebSocket (/v1/ws) with a client that is not ours (Debian's
python3-websocket). Frames are {"id", "request": envelope} or {"id", "subscribe": ticket}; replies
carry the same id, in whatever order they finish. Checks: a burst of requests each answered once
under its id; a create, then the row read back; a malformed frame, an unknown template and a
refused envelope answered under their ids (on a node with two HTTP threads); ws_max_in_flight refusing what is past it with a
clear message while the rest are answered; an async create's ticket subscribed to and its
completion pushed; ping answered by pong; an upgrade on another path refused.

Needs the fixture's RabbitMQ and MariaDB; ports from BEDS_AMQP_PORT and BEDS_MARIADB_PORT."""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import websocket

from e2e_support import (check, scratch_database, stop_node, summary, wait_for_gateway_port,
                         write_gateway_config)


def frames(ws, n, timeout=20):
    """The next n frames as JSON (fewer when `timeout` passes)."""
    out = []
    deadline = time.time() + timeout
    while len(out) < n and time.time() < deadline:
        ws.settimeout(max(0.1, deadline - time.time()))
        try:
            out.append(json.loads(ws.recv()))
        except websocket.WebSocketTimeoutException:
            break
    return out


def run(port, suffix):
    url = "ws://127.0.0.1:%d/v1/ws" % port
    ws = websocket.create_connection(url, timeout=10)
    check(ws.connected, "connected to " + url)

    # As many at once as ws_max_in_flight allows (4): each answered once, under its own id.
    for i in range(4):
        ws.send(json.dumps({"id": "c%d" % i, "request": {"template": "Users", "op": "count"}}))
    got = frames(ws, 4)
    ids = sorted(f.get("id") for f in got)
    check(ids == sorted("c%d" % i for i in range(4)),
          "4 requests sent at once: each answered once under its id (%d frames)" % len(got))
    check(all((f.get("reply") or {}).get("ok") is True for f in got),
          "all 4 replies are ok: %s" % [f for f in got if not (f.get("reply") or {}).get("ok")][:2])

    email = "ws.%s@example.org" % suffix
    ws.send(json.dumps({"id": 1, "request": {"template": "Users", "op": "create",
                                             "data": {"email": email}}}))
    created = frames(ws, 1)
    row = ((created[0].get("reply") or {}).get("data") or [{}])[0] if created else {}
    check(created and created[0].get("id") == 1 and row.get("email") == email,
          "a create answered under its (numeric) id: %s" % created)
    ws.send(json.dumps({"id": "get", "request": {"template": "Users", "op": "fetch",
                                                 "id": str(row.get("id"))}}))
    fetched = frames(ws, 1)
    check(fetched and ((fetched[0].get("reply") or {}).get("data") or [{}])[0].get("email") == email,
          "the row read back: %s" % fetched)

    # Mistakes, each answered under its id (or null when the frame had none).
    ws.send("not json")
    ws.send(json.dumps({"id": "u", "request": {"template": "Nope", "op": "fetch"}}))
    ws.send(json.dumps({"id": "v", "request": {"template": "Users", "op": "create", "data": {}}}))
    ws.send(json.dumps({"id": "w", "something": 1}))
    bad = {json.dumps(f.get("id")): (f.get("reply") or {}).get("error", {}).get("code")
           for f in frames(ws, 4)}
    check(bad == {"null": "BAD_REQUEST", '"u"': "UNKNOWN_TEMPLATE", '"v"': "VALIDATION",
                  '"w"': "BAD_REQUEST"},
          "malformed frame, unknown template, invalid create, frame without request: %s" % bad)

    # An async create: its ticket, then its completion pushed to a subscription.
    ws.send(json.dumps({"id": "job", "request": {"template": "Users", "op": "create", "async": True,
                                                 "data": {"email": "ws.job.%s@example.org" % suffix}}}))
    queued = frames(ws, 1)
    ticket = (queued[0].get("reply") or {}).get("ticket") if queued else None
    check(bool(ticket), "an async create answered with a ticket: %s" % queued)
    if ticket:
        ws.send(json.dumps({"id": "sub", "subscribe": ticket}))
        pushed = frames(ws, 1, timeout=30)
        t = pushed[0].get("ticket") if pushed else None
        check(pushed and pushed[0].get("id") == "sub" and isinstance(t, dict) and
              t.get("status") == "done" and t.get("ticket") == ticket,
              "the subscription pushed the finished ticket: %s" % json.dumps(pushed)[:300])

    # Ping and pong.
    ws.ping("are you there")
    ws.settimeout(5)
    opcode, frame = ws.recv_data_frame(control_frame=True)
    check(opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"are you there",
          "ping answered by pong (opcode %s)" % opcode)
    ws.close()

    # ws_max_in_flight = 4: a burst of 40 is more than 4 waiting at once.
    ws = websocket.create_connection(url, timeout=10)
    for i in range(40):
        ws.send(json.dumps({"id": i, "request": {"template": "Users", "op": "count"}}))
    got = frames(ws, 40)
    refused = [f for f in got if "ws_max_in_flight" in
               ((f.get("reply") or {}).get("error") or {}).get("message", "")]
    answered = [f for f in got if (f.get("reply") or {}).get("ok") is True]
    check(len(got) == 40 and sorted(f.get("id") for f in got) == list(range(40)),
          "all 40 ids answered once (%d frames)" % len(got))
    check(refused and answered and len(refused) + len(answered) == 40,
          "past ws_max_in_flight the reply says so (%d refused, %d answered)"
          % (len(refused), len(answered)))
    ws.close()

    # The WebSocket is on /v1/ws only.
    try:
        websocket.create_connection("ws://127.0.0.1:%d/v1/other" % port, timeout=5)
        check(False, "an upgrade on /v1/other was accepted")
    except websocket.WebSocketBadStatusException as e:
        check(e.status_code == 404, "an upgrade on another path -> 404 (%s)" % e.status_code)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", required=True)
    ap.add_argument("--servers", required=True)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated"))
    amqp_port, db_port, vhost, database = scratch_database(args.servers, "ws")
    with tempfile.TemporaryDirectory() as conf:
        write_gateway_config(conf, "wsnode", amqp_port, db_port, vhost, database,
                             gateway="threads = 2\nws_max_in_flight = 4\n")
        log = open(os.path.join(conf, "beds.log"), "w+", errors="replace")
        node = subprocess.Popen([args.beds, "run", "--config-dir", conf], stderr=log)
        try:
            port = wait_for_gateway_port(log, node)
            check(port is not None, "the gateway's port is in the log")
            if port:
                # Ready when a pool answers.
                deadline = time.time() + 30
                while time.time() < deadline:
                    try:
                        ws = websocket.create_connection("ws://127.0.0.1:%d/v1/ws" % port, timeout=5)
                        ws.send(json.dumps({"id": 0, "request": {"template": "sys", "op": "ping"}}))
                        ok = (json.loads(ws.recv()).get("reply") or {}).get("ok")
                        ws.close()
                        if ok:
                            break
                    except Exception:
                        pass
                    time.sleep(0.2)
                run(port, str(os.getpid()))
        except Exception as e:
            check(False, "test raised %s: %s" % (type(e).__name__, e))
        finally:
            stop_node(node, log, tail=3000)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
