#!/usr/bin/python3
"""End to end on the REL data path with a client that is not BEDS code: Debian's python3-pika
speaks docs/protocol.md to a running `beds` binary bound to a fresh MariaDB database loaded from
schema/mariadb/*.sql, with the repository's templates/ (Users and Orders). Every op on both
templates with real values, the named calls (two result sets, OUT parameters), and the error
codes a client can meet; then admin.shutdown and a clean exit 0.

Needs the fixture's RabbitMQ and MariaDB (scripts/servers.sh start); ports come from
BEDS_AMQP_PORT and BEDS_MARIADB_PORT like the script's."""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile

import pika

from e2e_support import (ROOT, check, open_channel, rpc, scratch_database, stop_node, summary,
                         wait_for_ping)

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
INJECTION = "Robert'); DROP TABLE usr_users; --"


def req(channel, routing_key, **request):
    """A request as a dict; writes go persistent (delivery_mode 2) as docs/protocol.md advises."""
    props = pika.BasicProperties(delivery_mode=2) if routing_key.endswith(".write") else None
    reply = rpc(channel, routing_key, json.dumps(request), props=props)
    if reply is None:
        print("     (no reply to %s %s)" % (routing_key, json.dumps(request)), flush=True)
    return reply


def ok(reply):
    return reply is not None and reply.get("ok") is True


def code(reply):
    if reply is None:
        return "<no reply>"
    return (reply.get("error") or {}).get("code", "<ok>" if reply.get("ok") else "<no code>")


def rows(reply):
    """`data` as a list of rows (a single row object counts as one row)."""
    if not ok(reply):
        return []
    data = reply.get("data")
    if isinstance(data, dict):
        return [data]
    return data if isinstance(data, list) else []


def show(reply):
    return json.dumps(reply)[:300]


def expect_error(reply, want, what):
    check(reply is not None and reply.get("ok") is False and code(reply) == want,
          "%s -> %s (got %s)" % (what, want, code(reply)))
    if reply is not None and reply.get("ok") is False:
        err = reply.get("error") or {}
        check(isinstance(err.get("message"), str) and err["message"] != "" and
              "SELECT" not in err["message"] and "CALL " not in err["message"],
              "%s: message is set and shows no SQL: %r" % (what, err.get("message")))


def run_checks(ch, suffix):
    alice_email = "alice.%s@example.org" % suffix
    bob_email = "bob.%s@example.org" % suffix
    carol_email = "carol.%s@example.org" % suffix
    profile = {"plan": "gold", "tags": ["a", "b"], "n": 3, "nested": {"x": True}}

    # ---- Users: create -------------------------------------------------------------------
    r = req(ch, "rel.write", template="Users", op="create",
            data={"email": alice_email, "name": "Alice", "profile": profile})
    check(ok(r), "Users/create alice ok: " + show(r))
    alice = rows(r)[0] if len(rows(r)) == 1 else {}
    check(len(rows(r)) == 1, "create returns exactly one row")
    check(isinstance(alice.get("id"), int) and not isinstance(alice.get("id"), bool) and alice["id"] > 0,
          "created row has an integer id: %r" % alice.get("id"))
    check(alice.get("email") == alice_email, "created row has the email")
    check(alice.get("name") == "Alice", "created row has the name")
    check(isinstance(alice.get("created"), str) and ISO_Z.match(alice["created"]) is not None,
          "created is ISO 8601 ending in Z: %r" % alice.get("created"))
    check(alice.get("profile") == profile, "profile round-trips as a JSON object: %r" % alice.get("profile"))
    check(r is not None and r.get("event_id", "").startswith("relnode.dev."), "reply carries an event_id")
    alice_id = alice.get("id", 0)

    r = req(ch, "rel.write", template="Users", op="create", data={"email": bob_email, "name": "Bob"})
    check(ok(r) and len(rows(r)) == 1, "Users/create bob ok: " + show(r))
    bob = rows(r)[0] if rows(r) else {}
    bob_id = bob.get("id", 0)
    check(ok(r) and bob.get("profile") is None, "a profile left out comes back null: %r" % bob.get("profile"))
    check(isinstance(bob_id, int) and bob_id > alice_id, "ids increase: %r > %r" % (bob_id, alice_id))

    r = req(ch, "rel.write", template="Users", op="create", data={"email": carol_email, "name": "Carol"})
    check(ok(r) and len(rows(r)) == 1, "Users/create carol ok: " + show(r))
    carol_id = rows(r)[0].get("id", 0) if rows(r) else 0

    # ---- Users: fetch ----------------------------------------------------------------------
    r = req(ch, "rel.read", template="Users", op="fetch", id=str(alice_id))
    check(ok(r) and len(rows(r)) == 1, "fetch by id (string) answers one row: " + show(r))
    got = rows(r)[0] if rows(r) else {}
    check(got.get("id") == alice_id and got.get("email") == alice_email and got.get("name") == "Alice" and
          got.get("profile") == profile and got.get("created") == alice.get("created"),
          "fetch by id returns the created row unchanged")

    r = req(ch, "rel.read", template="Users", op="fetch", id=bob_id)
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0].get("email") == bob_email,
          "fetch by id (integer) answers bob: " + show(r))

    r = req(ch, "rel.read", template="Users", op="fetch", where={"email": bob_email})
    check(ok(r) and [u.get("id") for u in rows(r)] == [bob_id], "fetch where email = bob's: " + show(r))

    r = req(ch, "rel.read", template="Users", op="fetch", where={"id": {"gte": bob_id}}, order="id")
    check(ok(r) and [u.get("id") for u in rows(r)] == [bob_id, carol_id],
          "fetch where id gte bob, order id: " + show(r))

    r = req(ch, "rel.read", template="Users", op="fetch", where={"id": {"gte": alice_id}}, order="-id")
    check(ok(r) and [u.get("id") for u in rows(r)] == [carol_id, bob_id, alice_id],
          "fetch order -id: newest first: %r" % [u.get("id") for u in rows(r)])

    r = req(ch, "rel.read", template="Users", op="fetch", where={"id": {"gte": alice_id}}, order="-id",
            limit=1, offset=1)
    check(ok(r) and [u.get("id") for u in rows(r)] == [bob_id],
          "fetch order -id limit 1 offset 1 -> bob: %r" % [u.get("id") for u in rows(r)])

    r = req(ch, "rel.read", template="Users", op="fetch", where={"id": {"in": [alice_id, carol_id]}},
            order="id")
    check(ok(r) and [u.get("id") for u in rows(r)] == [alice_id, carol_id],
          "fetch where id in [alice, carol]: %r" % [u.get("id") for u in rows(r)])

    r = req(ch, "rel.read", template="Users", op="fetch", where={"email": "nobody@example.org"})
    check(ok(r) and rows(r) == [], "fetch matching nothing -> ok with no rows: " + show(r))

    # ---- Users: count ----------------------------------------------------------------------
    r = req(ch, "rel.read", template="Users", op="count", where={"id": {"gte": bob_id}})
    check(ok(r) and r.get("count") == 2, "count where id gte bob -> 2: " + show(r))
    r = req(ch, "rel.read", template="Users", op="count", where={"email": alice_email})
    check(ok(r) and r.get("count") == 1, "count where email = alice's -> 1: " + show(r))
    r = req(ch, "rel.read", template="Users", op="count")
    check(ok(r) and r.get("count") == 3, "count without where -> 3 (fresh database): " + show(r))

    # ---- Users: update (partial) ---------------------------------------------------------------
    r = req(ch, "rel.write", template="Users", op="update", id=str(alice_id), data={"name": "Alicia"})
    check(ok(r), "update name only ok: " + show(r))
    upd = rows(r)[0] if len(rows(r)) == 1 else {}
    check(upd.get("name") == "Alicia", "update returns the new name: %r" % upd.get("name"))
    check(upd.get("email") == alice_email and upd.get("profile") == profile and
          upd.get("created") == alice.get("created") and upd.get("id") == alice_id,
          "update leaves email, profile, created and id unchanged: " + show(r))
    r = req(ch, "rel.read", template="Users", op="fetch", id=str(alice_id))
    got = rows(r)[0] if len(rows(r)) == 1 else {}
    check(got.get("name") == "Alicia" and got.get("email") == alice_email and got.get("profile") == profile,
          "fetch after update sees the new name and the old email and profile: " + show(r))

    r = req(ch, "rel.write", template="Users", op="update", id="999999999", data={"name": "Ghost"})
    expect_error(r, "NOT_FOUND", "update of a missing user")

    # ---- Orders ------------------------------------------------------------------------------
    r = req(ch, "rel.write", template="Orders", op="create",
            data={"user_id": alice_id, "amount": "12.50", "note": "first"})
    check(ok(r) and len(rows(r)) == 1, "Orders/create ok: " + show(r))
    order1 = rows(r)[0] if rows(r) else {}
    order1_id = order1.get("id", 0)
    check(isinstance(order1_id, int) and order1_id > 0, "order has an integer id: %r" % order1.get("id"))
    check(order1.get("amount") == "12.50", "amount comes back exactly \"12.50\": %r" % order1.get("amount"))
    check(order1.get("user_email") == alice_email, "user_email from the join view: %r" % order1.get("user_email"))
    check(order1.get("user_name") == "Alicia", "user_name from the join view: %r" % order1.get("user_name"))
    check(order1.get("user_id") == alice_id, "order user_id is alice's")
    check(order1.get("status") == "new", "order status defaults to new: %r" % order1.get("status"))
    check(isinstance(order1.get("placed"), str) and ISO_Z.match(order1["placed"]) is not None,
          "placed is ISO 8601 ending in Z: %r" % order1.get("placed"))

    r = req(ch, "rel.write", template="Orders", op="create", data={"user_id": alice_id, "amount": "7.25"})
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0].get("amount") == "7.25", "second order 7.25: " + show(r))
    order2_id = rows(r)[0].get("id", 0) if rows(r) else 0
    r = req(ch, "rel.write", template="Orders", op="create", data={"user_id": bob_id, "amount": "3"})
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0].get("amount") == "3.00",
          "integer-looking amount \"3\" stored as \"3.00\": " + show(r))
    order3_id = rows(r)[0].get("id", 0) if rows(r) else 0

    r = req(ch, "rel.write", template="Orders", op="create", data={"user_id": bob_id, "amount": "-1.00"})
    expect_error(r, "VALIDATION", "negative amount (the procedure's SIGNAL 45000)")
    if r is not None and r.get("ok") is False:
        check("amount must be positive" in (r.get("error") or {}).get("message", ""),
              "the DBA's SIGNAL message reaches the client: %r" % (r.get("error") or {}).get("message"))
    r = req(ch, "rel.write", template="Orders", op="create", data={"user_id": bob_id, "amount": 12.5})
    expect_error(r, "VALIDATION", "amount as a JSON number instead of a decimal string")

    r = req(ch, "rel.read", template="Orders", op="fetch", where={"user_id": alice_id}, order="-amount")
    check(ok(r) and [(o.get("id"), o.get("amount")) for o in rows(r)] == [(order1_id, "12.50"), (order2_id, "7.25")],
          "fetch orders of alice, order -amount: %r" % [(o.get("id"), o.get("amount")) for o in rows(r)])
    r = req(ch, "rel.read", template="Orders", op="fetch", where={"amount": {"gte": "7.25"}}, order="amount")
    check(ok(r) and [o.get("id") for o in rows(r)] == [order2_id, order1_id],
          "fetch orders where amount gte \"7.25\": %r" % [o.get("id") for o in rows(r)])
    r = req(ch, "rel.read", template="Orders", op="count", where={"user_email": alice_email})
    check(ok(r) and r.get("count") == 2, "count orders by the joined user_email -> 2: " + show(r))

    r = req(ch, "rel.write", template="Orders", op="update", id=order1_id, data={"status": "paid"})
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0].get("status") == "paid" and
          rows(r)[0].get("note") == "first" and rows(r)[0].get("amount") == "12.50",
          "Orders/update status only, note and amount kept: " + show(r))
    r = req(ch, "rel.write", template="Orders", op="update", id=order1_id, data={"status": "lost"})
    expect_error(r, "VALIDATION", "order status outside the DBA's list")

    # ---- named calls -------------------------------------------------------------------------
    r = req(ch, "rel.read", template="Orders", op="call", call="user_summary", data={"user_id": alice_id})
    check(ok(r), "Orders/call user_summary ok: " + show(r))
    data = r.get("data") if ok(r) else None
    check(isinstance(data, list) and len(data) == 2 and all(isinstance(s, list) for s in data),
          "user_summary data is a list of two result sets")
    if isinstance(data, list) and len(data) == 2 and all(isinstance(s, list) for s in data):
        check(len(data[0]) == 1 and data[0][0].get("id") == alice_id and data[0][0].get("email") == alice_email
              and data[0][0].get("name") == "Alicia", "first set: the user: %r" % data[0])
        check([(o.get("id"), o.get("amount"), o.get("status")) for o in data[1]] ==
              [(order1_id, "12.50", "paid"), (order2_id, "7.25", "new")],
              "second set: their orders in id order: %r" % data[1])
    r = req(ch, "rel.read", template="Orders", op="call", call="user_summary", data={"user_id": 999999999})
    expect_error(r, "NOT_FOUND", "user_summary of a missing user (SIGNAL 02000)")

    r = req(ch, "rel.read", template="Users", op="call", call="rewards_report",
            data={"min_orders": 1, "min_amount": "0"})
    check(ok(r), "Users/call rewards_report ok: " + show(r))
    check(len(rows(r)) == 1 and rows(r)[0] == {"customers": 2, "total": "22.75"},
          "rewards_report (1 order, 0) -> one row {customers: 2, total: \"22.75\"}: " + show(r))
    r = req(ch, "rel.read", template="Users", op="call", call="rewards_report",
            data={"min_orders": 2, "min_amount": "19.75"})
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0] == {"customers": 1, "total": "19.75"},
          "rewards_report (2 orders, 19.75) -> {customers: 1, total: \"19.75\"}: " + show(r))
    r = req(ch, "rel.read", template="Users", op="call", call="rewards_report",
            data={"min_orders": 5, "min_amount": "0"})
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0] == {"customers": 0, "total": "0.00"},
          "rewards_report nobody qualifies -> {customers: 0, total: \"0.00\"}: " + show(r))

    r = req(ch, "rel.read", template="Users", op="call", call="get", id=str(bob_id))
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0].get("email") == bob_email,
          "Users/call get (point read through a procedure, key from id): " + show(r))

    # ---- error cases ---------------------------------------------------------------------------
    r = req(ch, "rel.write", template="Users", op="create", data={"email": alice_email, "name": "Dup"})
    expect_error(r, "CONFLICT", "duplicate email")
    r = req(ch, "rel.write", template="Users", op="create", data={"name": "No Email"})
    expect_error(r, "VALIDATION", "missing required email")
    r = req(ch, "rel.write", template="Users", op="create", data={"email": 5, "name": "Five"})
    expect_error(r, "VALIDATION", "email of the wrong type (5)")
    r = req(ch, "rel.write", template="Users", op="create", data={"email": "x@" + "a" * 130, "name": "Long"})
    expect_error(r, "VALIDATION", "email longer than max 128")
    r = req(ch, "rel.write", template="Users", op="create", data={"email": "not-an-email"})
    expect_error(r, "VALIDATION", "email the procedure refuses (SIGNAL 45000)")
    r = req(ch, "rel.write", template="Users", op="create", data={"email": "z@example.org", "age": 3})
    expect_error(r, "VALIDATION", "create with an undeclared data field")
    r = req(ch, "rel.read", template="Nope", op="fetch")
    expect_error(r, "UNKNOWN_TEMPLATE", "unknown template")
    r = req(ch, "rel.read", template="Users", op="frobnicate")
    expect_error(r, "UNKNOWN_OP", "unknown op")
    r = req(ch, "rel.read", template="Users", op="call", call="nope")
    expect_error(r, "UNKNOWN_OP", "unknown named call")
    r = req(ch, "rel.read", template="Users", op="fetch", where={"profile": "x"})
    expect_error(r, "VALIDATION", "filter on an undeclared field (profile)")
    r = req(ch, "rel.read", template="Users", op="fetch", where={"id": {"like": "1%"}})
    expect_error(r, "VALIDATION", "filter with an unknown operator (like)")
    r = req(ch, "rel.read", template="Users", op="fetch", order="name")
    expect_error(r, "VALIDATION", "order on an undeclared field (name)")
    r = req(ch, "rel.read", template="Users", op="fetch", limit=501)
    expect_error(r, "VALIDATION", "limit 501 above max_limit 500")
    r = req(ch, "rel.read", template="Users", op="fetch", limit=500)
    check(ok(r) and len(rows(r)) == 3, "limit 500 (= max_limit) is fine: %d rows" % len(rows(r)))
    r = req(ch, "rel.read", template="Users", op="fetch", id="abc")
    expect_error(r, "VALIDATION", "non-integer id for an int key")

    # ---- SQL injection is data, not SQL ----------------------------------------------------------
    evil_email = "evil.%s@example.org" % suffix
    r = req(ch, "rel.write", template="Users", op="create", data={"email": evil_email, "name": INJECTION})
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0].get("name") == INJECTION,
          "injection string stored and returned verbatim by create: " + show(r))
    evil_id = rows(r)[0].get("id", 0) if rows(r) else 0
    r = req(ch, "rel.read", template="Users", op="fetch", where={"name": INJECTION})
    check(ok(r) and [(u.get("id"), u.get("name")) for u in rows(r)] == [(evil_id, INJECTION)],
          "fetch where name = the injection string finds exactly that row: " + show(r))
    r = req(ch, "rel.read", template="Users", op="fetch", where={"email": "' OR '1'='1"})
    check(ok(r) and rows(r) == [], "where email = \"' OR '1'='1\" matches nothing: " + show(r))
    r = req(ch, "rel.read", template="Users", op="count")
    check(ok(r) and r.get("count") == 4, "usr_users still answers count afterwards -> 4: " + show(r))

    # ---- delete ---------------------------------------------------------------------------------
    r = req(ch, "rel.write", template="Users", op="delete", id=str(bob_id))
    expect_error(r, "CONFLICT", "deleting a user who still has orders (foreign key)")
    r = req(ch, "rel.write", template="Orders", op="delete", id=str(order3_id))
    check(ok(r), "Orders/delete bob's order ok: " + show(r))
    check(len(rows(r)) == 1 and rows(r)[0].get("id") == order3_id, "delete returns the id: " + show(r))
    r = req(ch, "rel.read", template="Orders", op="fetch", id=str(order3_id))
    expect_error(r, "NOT_FOUND", "fetch of the deleted order by id")
    r = req(ch, "rel.write", template="Users", op="delete", id=str(bob_id))
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0].get("id") == bob_id, "Users/delete bob ok: " + show(r))
    r = req(ch, "rel.read", template="Users", op="fetch", id=str(bob_id))
    expect_error(r, "NOT_FOUND", "fetch of the deleted user by id")
    r = req(ch, "rel.write", template="Users", op="delete", id=str(bob_id))
    expect_error(r, "NOT_FOUND", "deleting the deleted user again")
    r = req(ch, "rel.read", template="Users", op="count")
    check(ok(r) and r.get("count") == 3, "count after the delete -> 3: " + show(r))

    # ---- exactly once (docs/protocol.md "Exactly once") -----------------------------------------
    key = "pika-%s" % suffix
    dave = {"email": "dave.%s@example.org" % suffix, "name": "Dave"}
    first = req(ch, "rel.write", template="Users", op="create", data=dave, idempotency_key=key)
    check(ok(first) and "replayed" not in first, "create with an idempotency key ok: " + show(first))
    again = req(ch, "rel.write", template="Users", op="create", data=dave, idempotency_key=key)
    check(ok(again) and again.get("replayed") is True and again.get("data") == first.get("data"),
          "the same create with the same key is answered from its record: " + show(again))
    r = req(ch, "rel.write", template="Users", op="create",
            data={"email": "erin.%s@example.org" % suffix}, idempotency_key=key)
    expect_error(r, "CONFLICT", "the key reused for another create")
    r = req(ch, "rel.write", template="Users", op="create", data=dave, idempotency_key="k" * 201)
    expect_error(r, "VALIDATION", "an idempotency key over 200 bytes")
    r = req(ch, "rel.read", template="Users", op="count")
    check(ok(r) and r.get("count") == 4, "the repeated create stored one user -> 4: " + show(r))
    # ---- CALGON (docs/protocol.md "CALGON") ---------------------------------------------------
    sub = req(ch, "rel.write", template="Users", op="create", data={"email": "gus.%s@example.org" % suffix},
              **{"async": True})
    check(ok(sub) and sub.get("status") == "queued" and isinstance(sub.get("ticket"), str),
          "an async create is answered at once with a ticket: " + show(sub))
    if ok(sub):
        done = rpc(ch, "sys.read", json.dumps({"template": "calgon", "op": "wait", "id": sub["ticket"],
                                                "data": {"timeout_ms": 10000}}), timeout=15)
        data = (done or {}).get("data") or {}
        result_rows = (data.get("result") or {}).get("data") or []
        check(ok(done) and data.get("status") == "done" and len(result_rows) == 1
              and result_rows[0].get("email") == "gus.%s@example.org" % suffix,
              "calgon/wait answers the job's result: " + show(done))
    r = req(ch, "sys.read", template="sys", op="ping", **{"async": True})
    expect_error(r, "VALIDATION", "async on sys/ping")
    # A redelivery as pika sees it: one message id, published twice, no key.
    props = pika.BasicProperties(delivery_mode=2, message_id="pika-msg-%s" % suffix)
    frank = json.dumps({"template": "Users", "op": "create",
                        "data": {"email": "frank.%s@example.org" % suffix}})
    one = rpc(ch, "rel.write", frank, props=props)
    two = rpc(ch, "rel.write", frank,
              props=pika.BasicProperties(delivery_mode=2, message_id="pika-msg-%s" % suffix))
    check(ok(one) and ok(two) and two.get("replayed") is True and one.get("data") == two.get("data"),
          "a message published twice with one message id is applied once: %s / %s"
          % (show(one), show(two)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", required=True)
    ap.add_argument("--servers", required=True)
    args = ap.parse_args()
    # ctest's TIMEOUT sends SIGTERM: unwind so the finally below stops our node.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated"))

    amqp_port, db_port, vhost, database = scratch_database(args.servers, "rel")

    with tempfile.TemporaryDirectory() as conf:
        with open(os.path.join(conf, "beds.toml"), "w") as f:
            f.write(f"""
[node]
name = "relnode"
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
path = {json.dumps(os.path.join(conf, "docs.sqlite"))}
[templates]
dir = {json.dumps(os.path.join(ROOT, "templates"))}
[brokers.cBroker]
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
""")
        log = open(os.path.join(conf, "beds.log"), "w+", errors="replace")
        node = subprocess.Popen([args.beds, "run", "--config-dir", conf], stderr=log)
        try:
            conn, ch = open_channel(amqp_port, vhost, node)
            ping = wait_for_ping(ch, node)
            check(ping is not None and ping.get("ok") is True, "sys/ping answered")

            describe = rpc(ch, "sys.read", json.dumps({"template": "sys", "op": "describe"}))
            names = {t.get("name") for t in describe["data"]["templates"]} if ok(describe) else set()
            check({"Users", "Orders"} <= names, "sys/describe lists Users and Orders: %s" % sorted(names))

            # One cheap read first: with the database unreachable every request would wait out
            # reconnect_wait_ms, so stop here instead of failing a hundred checks slowly.
            ready = rpc(ch, "rel.read", json.dumps({"template": "Users", "op": "count"})) if ping else None
            check(ok(ready) and ready.get("count") == 0,
                  "Users/count on the fresh database answers 0: " + show(ready))
            if ok(ready):
                run_checks(ch, str(os.getpid()))

            bye = rpc(ch, "admin.shutdown.relnode",
                      json.dumps({"template": "admin", "op": "shutdown", "data": {"mode": "drain"}}))
            check(bye is not None and bye.get("ok") is True, "admin.shutdown answered")
            conn.close()
            exit_code = node.wait(timeout=30)
            check(exit_code == 0, "beds exited 0 after admin.shutdown (got %s)" % exit_code)
        except Exception as e:  # a crash of the test itself is a failure, with the node's log below
            check(False, "test raised %s: %s" % (type(e).__name__, e))
        finally:
            stop_node(node, log, tail=6000)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
