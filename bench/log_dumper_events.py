#!/usr/bin/python3
"""Publishes synthetic log events on beds.logs for bench/log_dumper.sh, as nodes' log sinks send
them (application/x-ndjson batches, one routing key per batch): COUNT events from four nodes over
the last day (requests, adapter calls, audits, log lines; a few refused VALIDATION), plus one tree
of TREE events under one request. Prints the tree's root event id.
    log_dumper_events.py AMQP_PORT COUNT TREE"""
import json
import os
import random
import sys
import time

import pika

port, count, tree_size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
random.seed(7)
nodes = ["app1", "app2", "app3", "app4"]
templates = [("Users", "create"), ("Users", "fetch"), ("Orders", "create"), ("Orders", "fetch"),
             ("Sessions", "fetch")]
start_ms = int(time.time() * 1000) - 86_400_000
step_ms = 86_400_000 / max(1, count)
sequence = [0]


def event_id(node, ms):
    sequence[0] += 1
    return "%s.dev.%012x7%03x%016x" % (node, ms, sequence[0] & 0xFFF, (sequence[0] << 20) | random.getrandbits(20))


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + ".%03d000Z" % (ms % 1000)


def event(i):
    ms = int(start_ms + i * step_ms)
    node = nodes[i % 4]
    template, op = templates[i % 5]
    r = i % 20
    kind = "request" if r < 10 else "adapter" if r < 18 else "audit" if r == 18 else "log"
    if kind == "request":
        msg = "VALIDATION: field 'email' is required" if i % 97 == 0 else "ok"
    elif kind == "adapter":
        msg = "mariadb main: ok"
    elif kind == "audit":
        msg = op + " applied"
    else:
        msg = "worker %d reconnected after %d ms" % (i % 8, i % 500)
    e = {"event_id": event_id(node, ms), "parent_id": "", "depth": 0, "kind": kind, "level": "info",
         "node": node, "env": "dev", "ts": iso(ms), "template": template, "op": op, "msg": msg,
         "duration_us": 200 + i % 900}
    if kind == "audit":
        e["fields"] = {"actor": "shop", "key": str(i), "after": {"id": i}}
    return node, e


conn = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=port,
                                                         credentials=pika.PlainCredentials("guest", "guest")))
ch = conn.channel()


def publish(node, batch):
    ch.basic_publish("beds.logs", "log.info." + node, "\n".join(json.dumps(e) for e in batch).encode(),
                     pika.BasicProperties(content_type="application/x-ndjson",
                                          headers={"x-beds-events": len(batch)}))


batches = {n: [] for n in nodes}
for i in range(count - tree_size):
    node, e = event(i)
    batches[node].append(e)
    if len(batches[node]) == 500:
        publish(node, batches[node])
        batches[node] = []
# The tree: a root request, children, grandchildren and so on, four per parent, in the last hour.
now = int(time.time() * 1000) - 3_600_000
root = {"event_id": event_id("app1", now), "parent_id": "", "depth": 0, "kind": "request", "level": "info",
        "node": "app1", "env": "dev", "ts": iso(now + 5000), "template": "Orders", "op": "create",
        "msg": "ok", "duration_us": 5_000_000}
tree = [root]
for i in range(1, tree_size):
    parent = tree[(i - 1) // 4]
    node = nodes[i % 4]
    ms = now + i
    tree.append({"event_id": event_id(node, ms), "parent_id": parent["event_id"], "depth": parent["depth"] + 1,
                 "kind": "request" if i % 2 else "adapter", "level": "info", "node": node, "env": "dev",
                 "ts": iso(ms), "template": "Users", "op": "fetch", "msg": "ok", "duration_us": 300})
for e in tree:
    batches[e["node"]].append(e)
    if len(batches[e["node"]]) == 500:
        publish(e["node"], batches[e["node"]])
        batches[e["node"]] = []
for node, batch in batches.items():
    if batch:
        publish(node, batch)
conn.close()
print(root["event_id"])
