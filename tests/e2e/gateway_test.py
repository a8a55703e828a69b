#!/usr/bin/python3
"""End to end on the HTTP gateway with clients that are not BEDS code: Debian's python3-requests
and curl speak HTTP/1.1 to a running `beds` binary with `[gateway] enabled = true` (port chosen by
the OS, read from the node's log), bound to a fresh MariaDB database loaded from
schema/mariadb/*.sql, with the repository's templates/. The node also runs a `logs` pool so
lineage/fetch finds what it did. Checked: /healthz and /readyz; every REST route on Users (create
201, fetch by id, filters with operators, order, limit and offset from the query string, count,
update, delete); the named calls by POST and by GET; the status each error code gets (400, 404,
405 with Allow, 409, 413, 422) and the gateway's own errors; Idempotency-Key, Prefer:
respond-async with the ticket routes, X-Beds-Parent and X-Beds-Parent-Depth seen in
/v1/lineage, X-Beds-Deadline-Ms; keep-alive and pipelined requests answered in order; and on
every answer Content-Type application/json, X-Beds-Event-Id equal to the body's event_id and
the status matching the body's error code. Then admin.shutdown and a clean exit 0.

Needs the fixture's RabbitMQ and MariaDB (scripts/servers.sh start); ports come from
BEDS_AMQP_PORT and BEDS_MARIADB_PORT like the script's."""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import requests

from e2e_support import (check, open_channel, rpc, scratch_database, stop_node, summary,
                          uuid7_hex, wait_for_gateway_port, write_gateway_config)

INJECTION = "Robert'); DROP TABLE usr_users; --"
STATUS_OF = {"BAD_REQUEST": 400, "VALIDATION": 422, "NOT_FOUND": 404, "CONFLICT": 409,
             "FORBIDDEN": 403, "TOO_LARGE": 413, "TIMEOUT": 504, "UNAVAILABLE": 503,
             "INTERNAL": 500}
ANSWERS = []  # (what, response) of every answer, for the checks that hold for all of them


class Gateway:
    """requests against one base URL; every answer is kept in ANSWERS. An exception (connection
    refused, reset, timeout) is printed and answered as None, so one broken route fails its own
    checks and not the whole test."""

    def __init__(self, base):
        self.base = base

    def __call__(self, method, path, what, session=None, timeout=40, **kw):
        try:
            r = (session or requests).request(method, self.base + path, timeout=timeout, **kw)
        except requests.RequestException as e:
            print("     (%s %s raised %s: %s)" % (method, path, type(e).__name__, e), flush=True)
            return None
        ANSWERS.append((what, r))
        return r


def body(r):
    """The answer's JSON body, or None."""
    if r is None:
        return None
    try:
        return r.json()
    except ValueError:
        return None


def ok(r, status=200):
    b = body(r)
    return r is not None and r.status_code == status and isinstance(b, dict) and b.get("ok") is True


def rows(r):
    """`data` as a list of rows (a single row object counts as one row)."""
    b = body(r)
    if not isinstance(b, dict) or b.get("ok") is not True:
        return []
    data = b.get("data")
    if isinstance(data, dict):
        return [data]
    return data if isinstance(data, list) else []


def ids(r):
    return [u.get("id") for u in rows(r)]


def code(r):
    b = body(r)
    if r is None:
        return "<no answer>"
    if not isinstance(b, dict):
        return "<not JSON>"
    return (b.get("error") or {}).get("code", "<ok>" if b.get("ok") else "<no code>")


def show(r):
    if r is None:
        return "<no answer>"
    return "%d %s" % (r.status_code, r.text[:300])


def expect_error(r, status, want, what):
    check(r is not None and r.status_code == status and isinstance(body(r), dict) and
          body(r).get("ok") is False and code(r) == want,
          "%s -> %d %s: %s" % (what, status, want, show(r)))


def find_event(node, event_id):
    """The lineage tree node with this event id, or None."""
    if not isinstance(node, dict):
        return None
    if node.get("event_id") == event_id:
        return node
    for child in node.get("children") or []:
        found = find_event(child, event_id)
        if found is not None:
            return found
    return None


def curl(*args):
    """curl's stdout (text), or "" when curl could not run."""
    try:
        return subprocess.run(["curl", "-s", "--max-time", "20"] + list(args), capture_output=True,
                              text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        print("     (curl raised %s: %s)" % (type(e).__name__, e), flush=True)
        return ""


def pipelined(port, paths):
    """Sends GETs of `paths` in one write on one connection (the last with Connection: close) and
    answers the (status, parsed body) of each response read back, in the order they came."""
    out = b"".join(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n" %
                    (p, port, "Connection: close\r\n" if i == len(paths) - 1 else "")).encode()
                   for i, p in enumerate(paths))
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(out)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers.get("content-length", "0"))
        try:
            parsed = json.loads(rest[:length])
        except ValueError:
            parsed = None
        answers.append((status, parsed))
        data = rest[length:]
    return answers


def run_checks(gw, port, ch, suffix):
    alice_email = "alice+gw.%s@example.org" % suffix  # '+' and '@' are percent-encoded in queries
    bob_email = "bob.%s@example.org" % suffix
    carol_email = "carol.%s@example.org" % suffix
    profile = {"plan": "gold", "tags": ["a", "b"], "n": 3}

    # ---- create -----------------------------------------------------------------------------
    r = gw("POST", "/v1/Users", "create alice",
           json={"email": alice_email, "name": "Alice", "profile": profile})
    check(ok(r, 201) and len(rows(r)) == 1, "POST /v1/Users -> 201 with one row: " + show(r))
    alice = rows(r)[0] if len(rows(r)) == 1 else {}
    alice_id = alice.get("id", 0)
    check(isinstance(alice_id, int) and alice_id > 0 and alice.get("email") == alice_email and
          alice.get("profile") == profile, "the created row has an id, the email and the profile")
    event_id = str((body(r) or {}).get("event_id", ""))
    header = r.headers.get("X-Beds-Event-Id") if r is not None else None
    check(event_id.startswith("gwnode.") and header == event_id,
          "X-Beds-Event-Id equals the body's event_id: %r / %r" % (header, event_id))
    event_prefix = event_id.rsplit(".", 1)[0]  # "gwnode.{env}"

    r = gw("POST", "/v1/Users", "create bob", json={"email": bob_email, "name": "Bob"})
    check(ok(r, 201) and len(rows(r)) == 1, "create bob -> 201: " + show(r))
    bob_id = rows(r)[0].get("id", 0) if rows(r) else 0
    r = gw("POST", "/v1/Users", "create carol", json={"email": carol_email, "name": "Carol Ann"})
    check(ok(r, 201) and len(rows(r)) == 1, "create carol -> 201: " + show(r))
    carol_id = rows(r)[0].get("id", 0) if rows(r) else 0

    # ---- fetch --------------------------------------------------------------------------------
    r = gw("GET", "/v1/Users/%d" % alice_id, "fetch alice")
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0].get("email") == alice_email and
          rows(r)[0].get("profile") == profile, "GET /v1/Users/{id} -> 200, alice: " + show(r))
    via_amqp = rpc(ch, "rel.read", json.dumps({"template": "Users", "op": "fetch", "id": alice_id}))
    check(via_amqp is not None and (body(r) or {}).get("data") == via_amqp.get("data"),
          "the HTTP body's data is what the node answers over AMQP: %s" % json.dumps(via_amqp)[:300])

    r = gw("GET", "/v1/Users", "fetch where email", params={"email": alice_email})
    check(ok(r) and ids(r) == [alice_id],
          "GET /v1/Users?email=… (%s) finds alice: %s" % (r.request.url if r is not None else "", show(r)))
    r = gw("GET", "/v1/Users?name=Carol+Ann", "fetch where name with +")
    check(ok(r) and ids(r) == [carol_id], "'+' in the query is a space: ?name=Carol+Ann: " + show(r))
    r = gw("GET", "/v1/Users?id.in=%d,%d&order=id" % (alice_id, carol_id), "fetch id.in")
    check(ok(r) and ids(r) == [alice_id, carol_id], "?id.in=alice,carol&order=id: " + show(r))
    r = gw("GET", "/v1/Users?id.gte=%d&order=-id&limit=1" % alice_id, "fetch order -id limit 1")
    check(ok(r) and ids(r) == [carol_id], "?id.gte=alice&order=-id&limit=1 -> carol: " + show(r))
    r = gw("GET", "/v1/Users?id.gte=%d&order=-id&limit=1&offset=1" % alice_id, "fetch offset 1")
    check(ok(r) and ids(r) == [bob_id], "... &offset=1 -> bob: " + show(r))
    r = gw("GET", "/v1/Users?id.gt=%d&order=id" % alice_id, "fetch id.gt")
    check(ok(r) and ids(r) == [bob_id, carol_id], "?id.gt=alice -> bob, carol: " + show(r))
    r = gw("GET", "/v1/Users?id.lt=%d&order=id" % bob_id, "fetch id.lt")
    check(ok(r) and ids(r) == [alice_id], "?id.lt=bob -> alice: " + show(r))
    r = gw("GET", "/v1/Users?id.eq=%d" % bob_id, "fetch id.eq")
    check(ok(r) and ids(r) == [bob_id], "?id.eq=bob -> bob: " + show(r))
    r = gw("GET", "/v1/Users?email=nobody%40example.org", "fetch nothing")
    check(ok(r) and rows(r) == [], "a filter matching nothing -> 200 with no rows: " + show(r))

    # ---- count --------------------------------------------------------------------------------
    r = gw("GET", "/v1/Users/count?id.gte=%d" % bob_id, "count id.gte")
    check(ok(r) and (body(r) or {}).get("count") == 2, "GET /v1/Users/count?id.gte=bob -> 2: " + show(r))
    r = gw("GET", "/v1/Users/count", "count all")
    check(ok(r) and (body(r) or {}).get("count") == 3, "GET /v1/Users/count -> 3: " + show(r))
    r = gw("GET", "/v1/Users/count", "count where email", params={"email": carol_email})
    check(ok(r) and (body(r) or {}).get("count") == 1, "count?email=carol's -> 1: " + show(r))

    # ---- update -------------------------------------------------------------------------------
    r = gw("PATCH", "/v1/Users/%d" % alice_id, "update alice", json={"name": "Alicia"})
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0].get("name") == "Alicia" and
          rows(r)[0].get("email") == alice_email, "PATCH /v1/Users/{id} -> 200 with the new name: " + show(r))
    r = gw("GET", "/v1/Users/%d" % alice_id, "fetch after update")
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0].get("name") == "Alicia",
          "GET after PATCH sees the new name: " + show(r))
    r = gw("PATCH", "/v1/Users/999999999", "update missing", json={"name": "Ghost"})
    expect_error(r, 404, "NOT_FOUND", "PATCH of a missing user")

    # ---- calls --------------------------------------------------------------------------------
    r = gw("POST", "/v1/Users/calls/get", "call get by POST", json={"id": alice_id})
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0].get("email") == alice_email,
          "POST /v1/Users/calls/get -> 200 with alice: " + show(r))
    r = gw("GET", "/v1/Users/calls/get?id=%d" % bob_id, "call get by GET")
    check(ok(r) and len(rows(r)) == 1 and rows(r)[0].get("email") == bob_email,
          "GET /v1/Users/calls/get?id=bob (kind = read) -> 200 with bob: " + show(r))

    # ---- keep-alive and order on one connection --------------------------------------------------
    session = requests.Session()
    statuses = []
    for _ in range(20):
        r = gw("GET", "/v1/Users/%d" % alice_id, "keep-alive GET", session=session)
        statuses.append(r.status_code if r is not None else None)
    check(statuses == [200] * 20, "20 GETs on one requests.Session -> all 200: %s" % statuses)
    pool = session.get_adapter(gw.base).poolmanager.connection_from_url(gw.base)
    check(getattr(pool, "num_connections", None) == 1,
          "the session opened one connection for the 20 GETs (urllib3 num_connections = %s)"
          % getattr(pool, "num_connections", "?"))
    session.close()
    url_a = "%s/v1/Users/%d" % (gw.base, alice_id)
    url_c = "%s/v1/Users/%d" % (gw.base, carol_id)
    out = curl("-w", "%{num_connects}\\n", "-o", "/dev/null", url_a, "-o", "/dev/null", url_c)
    check(out.split() == ["1", "0"], "curl with two URLs: one connect, then reused: %r" % out)
    out = curl(url_a, url_c)
    answers = []
    try:
        decoder, pos = json.JSONDecoder(), 0
        while pos < len(out):
            obj, pos = decoder.raw_decode(out, pos)
            answers.append(obj)
            while pos < len(out) and out[pos].isspace():
                pos += 1
    except ValueError:
        pass
    got = [[u.get("id") for u in a["data"]] if isinstance(a, dict) and isinstance(a.get("data"), list)
           else a for a in answers]
    check(got == [[alice_id], [carol_id]], "curl's two answers on one connection, in order: %r" % out[:300])
    try:
        piped = pipelined(port, ["/v1/Users/%d" % alice_id, "/v1/Users/%d" % bob_id,
                                 "/v1/Users/%d" % carol_id])
    except (OSError, ValueError, IndexError) as e:
        piped = "raised %s: %s" % (type(e).__name__, e)
    piped_ids = [(st, [u.get("id") for u in (b or {}).get("data") or []]) for st, b in piped] \
        if isinstance(piped, list) else piped
    check(piped_ids == [(200, [alice_id]), (200, [bob_id]), (200, [carol_id])],
          "three requests pipelined in one write are answered in order: %r" % (piped_ids,))
    out = curl("-i", url_a)
    head, _, text = out.replace("\r\n", "\n").partition("\n\n")
    head_lines = head.split("\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in head_lines[1:])}
    try:
        curl_body = json.loads(text)
    except ValueError:
        curl_body = None
    check(head_lines[0].startswith("HTTP/1.1 200") and
          headers.get("content-type", "").startswith("application/json") and
          isinstance(curl_body, dict) and curl_body.get("ok") is True and
          headers.get("x-beds-event-id") == curl_body.get("event_id"),
          "curl -i GET: HTTP/1.1 200, application/json, X-Beds-Event-Id = event_id: %r" % out[:400])

    # ---- errors -------------------------------------------------------------------------------
    r = gw("POST", "/v1/Users", "create without email", json={"name": "No Email"})
    expect_error(r, 422, "VALIDATION", "create without the required email")
    r = gw("POST", "/v1/Users", "create duplicate", json={"email": bob_email})
    expect_error(r, 409, "CONFLICT", "create with bob's email again (unique key)")
    r = gw("POST", "/v1/Users", "non-JSON body", data="this is { not json",
           headers={"Content-Type": "application/json"})
    expect_error(r, 400, "BAD_REQUEST", "POST with a body that is not JSON")
    r = gw("POST", "/v1/Users", "array body", json=[{"email": "x@example.org"}])
    expect_error(r, 400, "BAD_REQUEST", "POST with a JSON array as the body")
    check(r is not None and "event_id" not in (body(r) or {}),
          "an error the gateway finds itself has no event_id: " + show(r))
    r = gw("GET", "/v1/Nope", "unknown template")
    expect_error(r, 404, "UNKNOWN_TEMPLATE", "GET /v1/Nope (unknown template)")
    r = gw("POST", "/v1/Nope", "unknown template create", json={"a": 1})
    expect_error(r, 404, "UNKNOWN_TEMPLATE", "POST /v1/Nope (unknown template)")
    r = gw("POST", "/v1/Users/calls/nope", "unknown call", json={})
    expect_error(r, 404, "UNKNOWN_OP", "POST /v1/Users/calls/nope (unknown call)")
    r = gw("GET", "/v1/Users/abc", "non-integer id")
    check(r is not None and 400 <= r.status_code < 500 and (body(r) or {}).get("ok") is False and
          r.status_code == STATUS_OF.get(code(r)),
          "GET /v1/Users/abc (int key) -> 4xx, ok false, status matching its code: " + show(r))
    r = gw("GET", "/v1/Users?id=abc", "non-integer filter")
    expect_error(r, 422, "VALIDATION", "?id=abc on an int field (sent as text)")
    r = gw("GET", "/v1/Users?profile=x", "undeclared filter")
    expect_error(r, 422, "VALIDATION", "?profile=x (not a filter field)")
    r = gw("GET", "/v1/Users?limit=501", "limit over max")
    expect_error(r, 422, "VALIDATION", "?limit=501 (max_limit 500)")
    r = gw("GET", "/v1/Users/999999999", "fetch missing")
    expect_error(r, 404, "NOT_FOUND", "GET of a missing id")
    r = gw("PUT", "/v1/Users/%d" % alice_id, "PUT", json={"name": "x"})
    expect_error(r, 405, "BAD_REQUEST", "PUT /v1/Users/{id} (method not allowed)")
    allow_header = r.headers.get("Allow", "") if r is not None else ""
    allow = {m.strip().upper() for m in allow_header.split(",")}
    check({"GET", "PATCH", "DELETE"} <= allow and "PUT" not in allow,
          "405 names GET, PATCH and DELETE in Allow: %r" % allow_header)
    r = gw("DELETE", "/v1/Users", "DELETE collection")
    allow_header = r.headers.get("Allow", "") if r is not None else ""
    check(r is not None and r.status_code == 405 and allow_header != "",
          "DELETE /v1/Users -> 405 with Allow: %s %r" % (show(r), allow_header))
    r = gw("GET", "/nowhere", "no route")
    expect_error(r, 404, "NOT_FOUND", "GET /nowhere")
    r = gw("GET", "/v1", "no template")
    check(r is not None and r.status_code in (404, 405) and (body(r) or {}).get("ok") is False,
          "GET /v1 -> 404 or 405: " + show(r))
    big = json.dumps({"email": "big.%s@example.org" % suffix, "name": "x" * 70000})
    r = gw("POST", "/v1/Users", "too large", data=big, headers={"Content-Type": "application/json"})
    expect_error(r, 413, "TOO_LARGE", "a %d-byte body over max_body_bytes 65536" % len(big))
    r = gw("GET", "/healthz", "healthz after 413")
    check(ok(r), "the gateway still answers after the 413: " + show(r))

    # ---- SQL injection is data ---------------------------------------------------------------------
    evil_email = "robert'); DROP TABLE usr_users; --.%s@example.org" % suffix
    r = gw("POST", "/v1/Users", "create evil", json={"email": evil_email, "name": INJECTION})
    check(ok(r, 201) and len(rows(r)) == 1 and rows(r)[0].get("email") == evil_email and
          rows(r)[0].get("name") == INJECTION, "injection strings stored verbatim by create: " + show(r))
    evil_id = rows(r)[0].get("id", 0) if rows(r) else 0
    r = gw("GET", "/v1/Users", "fetch evil by email", params={"email": evil_email})
    check(ok(r) and [(u.get("id"), u.get("email")) for u in rows(r)] == [(evil_id, evil_email)],
          "?email=<the injection string> reads exactly that row back: " + show(r))
    r = gw("GET", "/v1/Users", "fetch evil by name", params={"name": INJECTION})
    check(ok(r) and ids(r) == [evil_id], "?name=<the injection string> finds it: " + show(r))
    r = gw("GET", "/v1/Users", "fetch OR 1=1", params={"email": "' OR '1'='1"})
    check(ok(r) and rows(r) == [], "?email=' OR '1'='1 matches nothing: " + show(r))
    r = gw("GET", "/v1/Users/count", "count after injection")
    check(ok(r) and (body(r) or {}).get("count") == 4, "usr_users still counts 4: " + show(r))

    # ---- delete -------------------------------------------------------------------------------
    r = gw("DELETE", "/v1/Users/%d" % bob_id, "delete bob")
    check(ok(r) and ids(r) == [bob_id], "DELETE /v1/Users/{id} -> 200 with the id: " + show(r))
    r = gw("GET", "/v1/Users/%d" % bob_id, "fetch deleted")
    expect_error(r, 404, "NOT_FOUND", "GET of the deleted user")
    check(r is not None and (body(r) or {}).get("event_id") and
          r.headers.get("X-Beds-Event-Id") == (body(r) or {}).get("event_id"),
          "the node's 404 carries X-Beds-Event-Id: " + show(r))
    r = gw("DELETE", "/v1/Users/%d" % bob_id, "delete again")
    expect_error(r, 404, "NOT_FOUND", "DELETE of the deleted user")

    # ---- Idempotency-Key ------------------------------------------------------------------------
    key = "gw-%s" % suffix
    dave = {"email": "dave.%s@example.org" % suffix, "name": "Dave"}
    first = gw("POST", "/v1/Users", "create with key", json=dave, headers={"Idempotency-Key": key})
    check(ok(first, 201) and "replayed" not in (body(first) or {}),
          "create with Idempotency-Key -> 201: " + show(first))
    again = gw("POST", "/v1/Users", "create with key again", json=dave, headers={"Idempotency-Key": key})
    check(ok(again, 201) and (body(again) or {}).get("replayed") is True and
          (body(again) or {}).get("data") == (body(first) or {}).get("data"),
          "the same create with the same key -> 201, same data, replayed: " + show(again))
    r = gw("POST", "/v1/Users", "key reused", json={"email": "erin.%s@example.org" % suffix},
           headers={"Idempotency-Key": key})
    expect_error(r, 409, "CONFLICT", "the key reused for another body")
    r = gw("GET", "/v1/Users/count", "dave once", params={"email": dave["email"]})
    check(ok(r) and (body(r) or {}).get("count") == 1, "the repeated create stored dave once: " + show(r))

    # ---- Prefer: respond-async and tickets ---------------------------------------------------------
    gus_email = "gus.%s@example.org" % suffix
    sub = gw("POST", "/v1/Users", "async create", json={"email": gus_email},
             headers={"Prefer": "respond-async"})
    sb = body(sub) or {}
    ticket = sb.get("ticket") if isinstance(sb.get("ticket"), str) else ""
    check(ok(sub, 202) and sb.get("status") == "queued" and ticket != "",
          "Prefer: respond-async -> 202 with a queued ticket: " + show(sub))
    check(sub is not None and sub.headers.get("Location") == "/v1/tickets/" + ticket,
          "Location: /v1/tickets/{ticket}: %r" % (sub.headers.get("Location") if sub is not None else None))
    if ticket:
        r = gw("GET", "/v1/tickets/%s?wait_ms=10000" % ticket, "ticket wait")
        data = (body(r) or {}).get("data")
        data = data if isinstance(data, dict) else {}
        result_rows = (data.get("result") or {}).get("data") or []
        check(ok(r) and data.get("status") == "done" and len(result_rows) == 1 and
              result_rows[0].get("email") == gus_email,
              "GET /v1/tickets/{ticket}?wait_ms=10000 -> 200, done, with the row: " + show(r))
        r = gw("GET", "/v1/tickets/%s" % ticket, "ticket poll")
        check(ok(r) and ((body(r) or {}).get("data") or {}).get("status") == "done",
              "GET /v1/tickets/{ticket} (poll) -> 200, done: " + show(r))
        r = gw("DELETE", "/v1/tickets/%s" % ticket, "cancel done ticket")
        expect_error(r, 409, "CONFLICT", "DELETE /v1/tickets/{ticket} of an ended job")
    r = gw("GET", "/v1/tickets/%s.%s" % (event_prefix, uuid7_hex()), "unknown ticket")
    expect_error(r, 404, "NOT_FOUND", "GET /v1/tickets/<an unknown ticket of the event-id form>")
    r = gw("GET", "/v1/tickets/unknown-ticket", "malformed ticket")
    check(r is not None and r.status_code in (404, 422) and (body(r) or {}).get("ok") is False and
          r.status_code == STATUS_OF.get(code(r)),
          "GET /v1/tickets/unknown-ticket -> 404 (or 422: not of the event-id form): " + show(r))

    # ---- X-Beds-Parent and lineage --------------------------------------------------------------
    r = gw("GET", "/v1/Users/%d" % alice_id, "lineage root")
    parent = (body(r) or {}).get("event_id", "")
    check(ok(r) and parent != "", "a root request for lineage: " + show(r))
    r = gw("GET", "/v1/Users/%d" % carol_id, "lineage child", headers={"X-Beds-Parent": parent})
    child = (body(r) or {}).get("event_id", "")
    check(ok(r) and child not in ("", parent), "GET with X-Beds-Parent -> 200, its own event id: " + show(r))
    r = gw("GET", "/v1/Users/count", "lineage grandchild",
           headers={"X-Beds-Parent": child, "X-Beds-Parent-Depth": "1"})
    grandchild = (body(r) or {}).get("event_id", "")
    check(ok(r) and grandchild not in ("", parent, child),
          "GET with X-Beds-Parent: child, X-Beds-Parent-Depth: 1 -> 200: " + show(r))
    tree = None
    deadline = time.time() + 20
    while time.time() < deadline:
        r = gw("GET", "/v1/lineage/%s" % parent, "lineage fetch")
        if ok(r) and child in r.text and grandchild in r.text:
            tree = body(r).get("data") or {}
            break
        time.sleep(0.2)
    check(tree is not None, "GET /v1/lineage/{parent} -> 200 and holds the child and grandchild: " + show(r))
    if tree is not None:
        c = find_event(tree.get("root"), child) or {}
        g = find_event(tree.get("root"), grandchild) or {}
        check(c.get("parent_id") == parent and c.get("depth") == 1,
              "the child sits under the parent at depth 1: %s" % json.dumps(c)[:300])
        check(g.get("parent_id") == child and g.get("depth") == 2,
              "the grandchild sits under the child at depth 2: %s" % json.dumps(g)[:300])
    r = gw("GET", "/v1/lineage/%s.%s" % (event_prefix, uuid7_hex()), "lineage unknown")
    expect_error(r, 404, "NOT_FOUND", "GET /v1/lineage/<an unknown event id>")

    # ---- X-Beds-Deadline-Ms ---------------------------------------------------------------------
    for value in ("abc", "0", "-5", "600001"):
        r = gw("GET", "/v1/Users/%d" % alice_id, "deadline " + value, headers={"X-Beds-Deadline-Ms": value})
        expect_error(r, 400, "BAD_REQUEST", "X-Beds-Deadline-Ms: %s" % value)
    r = gw("GET", "/v1/Users/%d" % alice_id, "deadline 5000", headers={"X-Beds-Deadline-Ms": "5000"})
    check(ok(r) and ids(r) == [alice_id], "X-Beds-Deadline-Ms: 5000 -> 200: " + show(r))

    # ---- gzip -----------------------------------------------------------------------------------
    # A fetch of every user (ten more, with long names) is well over 1 KiB: compressed when asked
    # (requests decodes it), plain otherwise; Vary names the header either way. A short answer is
    # never compressed. Last, so the counts above are not disturbed.
    for i in range(10):
        gw("POST", "/v1/Users", "gzip filler",
           json={"email": "filler%d.%s@example.org" % (i, suffix), "name": "F" * 60})
    r = gw("GET", "/v1/Users?order=id", "fetch all, gzip", headers={"Accept-Encoding": "gzip"})
    check(ok(r) and r.headers.get("Content-Encoding") == "gzip" and
          r.headers.get("Vary") == "Accept-Encoding" and len(rows(r)) >= 3,
          "Accept-Encoding: gzip on a long answer -> Content-Encoding gzip, decodes to the rows: %s"
          % (dict(r.headers) if r is not None else None))
    r = gw("GET", "/v1/Users?order=id", "fetch all, identity", headers={"Accept-Encoding": "identity"})
    check(ok(r) and "Content-Encoding" not in r.headers and r.headers.get("Vary") == "Accept-Encoding",
          "without gzip accepted -> sent plain, with Vary: %s" % (dict(r.headers) if r is not None else None))
    r = gw("GET", "/v1/Users/count", "short answer, gzip", headers={"Accept-Encoding": "gzip"})
    check(ok(r) and "Content-Encoding" not in r.headers,
          "a short answer is not compressed: %s" % (dict(r.headers) if r is not None else None))



def check_openapi(base):
    """GET /v1/openapi.json, validated against the OpenAPI 3.1 schema by a validator that is not
    ours (npm's @seriousme/openapi-schema-validator, installed on first use under BEDS_VAR)."""
    r = requests.get(base + "/v1/openapi.json", timeout=10)
    doc = body(r)
    check(r.status_code == 200 and isinstance(doc, dict) and doc.get("openapi") == "3.1.0" and
          "/v1/Users/{id}" in (doc.get("paths") or {}),
          "GET /v1/openapi.json -> 200, OpenAPI 3.1.0 with the Users routes: %s" % r.text[:200])
    if not isinstance(doc, dict):
        return
    prefix = os.path.join(os.environ.get("BEDS_VAR", tempfile.gettempdir()), "npm")
    cli = os.path.join(prefix, "node_modules", "@seriousme", "openapi-schema-validator", "bin",
                       "validate-api-cli.js")
    if not os.path.exists(cli):
        installed = subprocess.run(
            ["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund", "--silent",
             "@seriousme/openapi-schema-validator@2"], capture_output=True, text=True, timeout=300)
        check(installed.returncode == 0, "npm installed the OpenAPI validator: %s"
              % (installed.stderr or installed.stdout)[-500:])
    path = os.path.join(prefix, "openapi.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    out = subprocess.run(["node", cli, path], capture_output=True, text=True, timeout=120)
    check(out.returncode == 0 and '"valid": true' in out.stdout.replace("'", '"'),
          "the document is valid OpenAPI 3.1 (validate-api): %s %s"
          % (out.stdout[-600:], out.stderr[-300:]))


def check_every_answer():
    """What the spec says of every answer, over all the answers the test saw."""
    not_json = ["%s: %r" % (what, r.headers.get("Content-Type")) for what, r in ANSWERS
                if not r.headers.get("Content-Type", "").startswith("application/json")]
    check(not not_json, "every answer is Content-Type application/json (%d answers): %s"
          % (len(ANSWERS), not_json[:5]))
    bad_id = []
    bad_status = []
    bad_503 = []
    for what, r in ANSWERS:
        b = body(r)
        if not isinstance(b, dict):
            bad_status.append("%s: body not a JSON object: %s" % (what, show(r)))
            continue
        if "event_id" in b and r.headers.get("X-Beds-Event-Id") != b["event_id"]:
            bad_id.append("%s: %r vs %r" % (what, r.headers.get("X-Beds-Event-Id"), b["event_id"]))
        c = (b.get("error") or {}).get("code") if b.get("ok") is False else None
        if c in STATUS_OF and r.status_code != STATUS_OF[c] and r.status_code != 405:
            bad_status.append("%s: %d with %s" % (what, r.status_code, c))
        if b.get("ok") is True and r.status_code not in (200, 201, 202):
            bad_status.append("%s: ok with %d" % (what, r.status_code))
        if r.status_code == 503 and r.headers.get("Retry-After") != "1":
            bad_503.append(what)
    check(not bad_id, "every answer with an event_id has it in X-Beds-Event-Id: %s" % bad_id[:5])
    check(not bad_status, "every answer's status matches its body: %s" % bad_status[:5])
    check(not bad_503, "every 503 has Retry-After: 1: %s" % bad_503[:5])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", required=True)
    ap.add_argument("--servers", required=True)
    args = ap.parse_args()
    # ctest's TIMEOUT sends SIGTERM: unwind so the finally below stops our node.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated"))

    amqp_port, db_port, vhost, database = scratch_database(args.servers, "gw")

    with tempfile.TemporaryDirectory() as conf:
        write_gateway_config(conf, "gwnode", amqp_port, db_port, vhost, database,
                             gateway="max_body_bytes = 65536\n")
        log = open(os.path.join(conf, "beds.log"), "w+", errors="replace")
        node = subprocess.Popen([args.beds, "run", "--config-dir", conf], stderr=log)
        try:
            port = wait_for_gateway_port(log, node)
            check(port is not None, "the log names the gateway's port: %s" % port)
            if port is not None:
                gw = Gateway("http://127.0.0.1:%d" % port)
                r = gw("GET", "/healthz", "healthz")
                check(ok(r) and body(r) == {"ok": True}, "GET /healthz -> 200 {\"ok\": true}: " + show(r))

                r = None
                deadline = time.time() + 30
                while time.time() < deadline and node.poll() is None:
                    r = gw("GET", "/readyz", "readyz", timeout=10)
                    if r is not None and r.status_code == 200:
                        break
                    time.sleep(0.2)
                check(ok(r), "GET /readyz -> 200 once a pool answers sys/ping: " + show(r))

                conn, ch = open_channel(amqp_port, vhost, node)
                # One cheap read first: with the database unreachable every request would wait out
                # reconnect_wait_ms, so stop here instead of failing a hundred checks slowly.
                r = gw("GET", "/v1/Users/count", "first count")
                check(ok(r) and (body(r) or {}).get("count") == 0,
                      "GET /v1/Users/count on the fresh database -> 0: " + show(r))
                if ok(r):
                    run_checks(gw, port, ch, str(os.getpid()))
                    check_openapi(gw.base)
                check_every_answer()

                bye = rpc(ch, "admin.shutdown.gwnode",
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
