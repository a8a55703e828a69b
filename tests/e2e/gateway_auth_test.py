#!/usr/bin/python3
"""End to end on the HTTP gateway's authentication (docs/gateway.md "Authentication") with clients
that are not BEDS code: Debian's python3-requests for HTTP and python3-pika for AMQP, against a
running `beds` binary with `[gateway] enabled = true`, three `[gateway.auth.principals.*]` and
`[access] trusted_users = ["guest"]` (guest is the gateway's AMQP user, the fixture's), bound to a
fresh MariaDB database with the repository's templates/ and a `logs` pool for lineage/fetch.

Checked: /healthz and /readyz need no credentials; a /v1 request without credentials, with
`Authorization: Basic …`, with an empty bearer token or with a token no principal has is 401
UNAUTHENTICATED (with `WWW-Authenticate: Bearer`); a principal's token works as `Authorization:
Bearer` and as `X-Api-Key`; a principal whose `allow` does not cover `template/op` gets 403
FORBIDDEN naming it and the pair (create, delete, `call:{name}` by POST and GET, tickets as
`calgon/…`, `lineage/fetch`), `*` and `prefix*` pattern sides cover what they should, and a
refused write leaves nothing behind. The audit record of a principal's write names it as
`fields.actor` with `fields.via` = the gateway's AMQP user, both as published on beds.logs and in
/v1/lineage (whose stored documents keep an event's `fields` as `data`). Idempotency-Key is scoped by the
principal: a replay through the gateway is `replayed`, the same key from a direct AMQP client (user
guest, no `x-beds-actor`) is a fresh write, and the trusted user naming the principal in
`x-beds-actor` shares its scope. Then admin.shutdown and a clean exit 0.

Not checked here: a forged `x-beds-actor` from a user not in trusted_users (recorded as
`actor_claimed` and ignored). The only AMQP user of the fixture is guest, which this node must
trust for the gateway, so every pika client here is trusted; that case is unit-tested.

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

import pika
import requests

from e2e_support import (check, open_channel, rpc, scratch_database, stop_node, summary,
                         wait_for_gateway_port, write_gateway_config)

SHOP = "shop-token-0123456789"
AUDITOR = "auditor-token-0123456789"
CLERK = "clerk-token-0123456789"
LIMITED = "limited-token-0123456789"
ORIGIN = "https://shop.example.org"
# More lines of the [gateway] table: its sub-tables for the principals. write_gateway_config puts
# them right after [gateway]'s own keys, before the [brokers.*] tables.
AUTH = f"""max_body_bytes = 65536
cors_origins = ["{ORIGIN}"]
[gateway.auth.principals.limited]
token = "{LIMITED}"
allow = ["*/count"]
rate_per_s = 1
burst = 2
[gateway.auth.principals.shop]
token = "{SHOP}"
allow = ["Users/*", "calgon/*", "lineage/fetch"]
[gateway.auth.principals.auditor]
token = "{AUDITOR}"
allow = ["*/fetch", "*/count"]
[gateway.auth.principals.clerk]
token = "{CLERK}"
allow = ["Users/call:*"]
"""
# write_gateway_config writes no [access] table; this one goes at the end of the file.
PROTOCOL = """
[access]
trusted_users = ["guest"]
"""
STATUS_OF = {"BAD_REQUEST": 400, "VALIDATION": 422, "NOT_FOUND": 404, "CONFLICT": 409,
             "FORBIDDEN": 403, "UNAUTHENTICATED": 401, "TOO_LARGE": 413, "TIMEOUT": 504,
             "UNAVAILABLE": 503, "INTERNAL": 500}
ANSWERS = []  # (what, response) of every answer


def bearer(token):
    return {"Authorization": "Bearer " + token}


class Gateway:
    """requests against one base URL; every answer is kept in ANSWERS. An exception is printed and
    answered as None, so one broken route fails its own checks and not the whole test."""

    def __init__(self, base):
        self.base = base

    def __call__(self, method, path, what, token=None, timeout=40, headers=None, **kw):
        h = dict(bearer(token)) if token else {}
        h.update(headers or {})
        try:
            r = requests.request(method, self.base + path, timeout=timeout, headers=h, **kw)
        except requests.RequestException as e:
            print("     (%s %s raised %s: %s)" % (method, path, type(e).__name__, e), flush=True)
            return None
        ANSWERS.append((what, r))
        return r


def body(r):
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
    b = body(r)
    if not isinstance(b, dict) or b.get("ok") is not True:
        return []
    data = b.get("data")
    if isinstance(data, dict):
        return [data]
    return data if isinstance(data, list) else []


def code(r):
    b = body(r)
    if r is None:
        return "<no answer>"
    if not isinstance(b, dict):
        return "<not JSON>"
    return (b.get("error") or {}).get("code", "<ok>" if b.get("ok") else "<no code>")


def message(r):
    return str(((body(r) or {}).get("error") or {}).get("message", ""))


def show(r):
    if r is None:
        return "<no answer>"
    return "%d %s" % (r.status_code, r.text[:300])


def expect_error(r, status, want, what):
    check(r is not None and r.status_code == status and isinstance(body(r), dict) and
          body(r).get("ok") is False and code(r) == want,
          "%s -> %d %s: %s" % (what, status, want, show(r)))


def expect_unauthenticated(r, what, challenge=True):
    expect_error(r, 401, "UNAUTHENTICATED", what)
    if challenge:
        got = r.headers.get("WWW-Authenticate") if r is not None else None
        check(got == "Bearer", "%s: WWW-Authenticate: Bearer (got %r)" % (what, got))


def expect_forbidden(r, what, permission):
    """403 FORBIDDEN whose message names the auditor-like principal and the template/op pair."""
    expect_error(r, 403, "FORBIDDEN", what)
    principal = what.split()[0]
    m = message(r)
    check("'%s'" % principal in m and permission in m,
          "%s: the 403 names '%s' and %s: %r" % (what, principal, permission, m))


def events(node, out):
    """Every event of a lineage tree, depth first."""
    if isinstance(node, dict):
        out.append(node)
        for child in node.get("children") or []:
            events(child, out)
    return out


def audit_of(gw, event_id, what, printed=[False]):
    """The audit event under `event_id` (lineage/fetch as shop, polled up to 10 s), or None. The
    first tree seen is printed once, to show the reply's structure."""
    r = None
    deadline = time.time() + 10
    while time.time() < deadline:
        r = gw("GET", "/v1/lineage/%s" % event_id, "lineage " + what, token=SHOP)
        if ok(r):
            found = [e for e in events((body(r).get("data") or {}).get("root"), [])
                     if e.get("kind") == "audit"]
            if found:
                if not printed[0]:
                    printed[0] = True
                    print("     lineage reply: %s" % json.dumps(body(r))[:1500], flush=True)
                check(len(found) == 1, "%s: one audit event in its lineage: %d" % (what, len(found)))
                return found[0]
        time.sleep(0.2)
    check(False, "%s: GET /v1/lineage/{its event id} holds an audit event within 10 s: %s"
          % (what, show(r)))
    return None


def amqp_create(ch, data, key, actor=None):
    """A Users/create on rel.write straight over AMQP as guest (user_id guest, persistent), with
    `x-beds-actor` when `actor` is given."""
    props = pika.BasicProperties(delivery_mode=2, user_id="guest",
                                 headers={"x-beds-actor": actor} if actor else None)
    envelope = {"template": "Users", "op": "create", "data": data, "idempotency_key": key}
    reply = rpc(ch, "rel.write", json.dumps(envelope), props=props)
    if reply is None:
        print("     (no reply to rel.write %s)" % json.dumps(envelope), flush=True)
    return reply


def events_of(raw, content_type):
    """A beds.logs message: one event (application/json) or one per line (x-ndjson)."""
    if content_type == "application/x-ndjson":
        return [json.loads(line) for line in raw.decode().splitlines() if line]
    return [json.loads(raw)]


def published_audit(ch, queue, parent):
    """The audit event published on beds.logs as a child of `parent` (waits up to 10 s), or None."""
    deadline = time.time() + 10
    while time.time() < deadline:
        method, props, raw = ch.basic_get(queue, auto_ack=True)
        if method is None:
            time.sleep(0.05)
            continue
        for e in events_of(raw, props.content_type):
            if e.get("kind") == "audit" and e.get("parent_id") == parent:
                return e
    return None


def run_checks(gw, ch, suffix):
    # A queue of our own on beds.logs, for the audit records as published (with `fields`).
    audit_q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(audit_q, "beds.logs", "audit.#")

    # ---- 2. no credentials, wrong scheme, unknown token: 401 ----------------------------------
    r = gw("GET", "/v1/Users/count", "no credentials")
    expect_unauthenticated(r, "GET /v1/Users/count without credentials")
    r = gw("POST", "/v1/Users", "no credentials create", json={"email": "nobody.%s@example.org" % suffix})
    expect_unauthenticated(r, "POST /v1/Users without credentials")
    r = gw("GET", "/v1/Users/count", "basic", headers={"Authorization": "Basic c2hvcDpzaG9w"})
    expect_unauthenticated(r, "Authorization: Basic …")
    r = gw("GET", "/v1/Users/count", "basic with shop's token", headers={"Authorization": "Basic " + SHOP})
    expect_unauthenticated(r, "Authorization: Basic {shop's token} (not Bearer)")
    r = gw("GET", "/v1/Users/count", "empty bearer", headers={"Authorization": "Bearer "})
    expect_unauthenticated(r, "Authorization: 'Bearer ' with no token", challenge=False)
    r = gw("GET", "/v1/Users/count", "unknown token", token="nobody-token-0123456789")
    expect_unauthenticated(r, "an unknown bearer token", challenge=False)
    r = gw("GET", "/v1/Users/count", "unknown api key", headers={"X-Api-Key": "nobody-token-0123456789"})
    expect_unauthenticated(r, "an unknown X-Api-Key", challenge=False)
    r = gw("GET", "/v1/Users/count", "token prefix", token=SHOP[:-1])
    expect_unauthenticated(r, "shop's token less its last character", challenge=False)
    r = gw("GET", "/v1/tickets/x", "ticket without credentials")
    expect_unauthenticated(r, "GET /v1/tickets/x without credentials")
    r = gw("GET", "/v1/lineage/x", "lineage without credentials")
    expect_unauthenticated(r, "GET /v1/lineage/x without credentials")

    # ---- 3. shop by Bearer and by X-Api-Key -------------------------------------------------
    alice_email = "alice.%s@example.org" % suffix
    r = gw("POST", "/v1/Users", "shop create (Bearer)", token=SHOP,
           json={"email": alice_email, "name": "Alice"})
    check(ok(r, 201) and len(rows(r)) == 1, "shop, Authorization: Bearer: POST /v1/Users -> 201: " + show(r))
    alice_id = rows(r)[0].get("id", 0) if rows(r) else 0
    create_event = str((body(r) or {}).get("event_id", ""))
    bob_email = "bob.%s@example.org" % suffix
    r = gw("POST", "/v1/Users", "shop create (X-Api-Key)", headers={"X-Api-Key": SHOP},
           json={"email": bob_email, "name": "Bob"})
    check(ok(r, 201) and len(rows(r)) == 1, "shop, X-Api-Key: POST /v1/Users -> 201: " + show(r))
    bob_id = rows(r)[0].get("id", 0) if rows(r) else 0
    r = gw("GET", "/v1/Users/%d" % bob_id, "shop fetch (X-Api-Key)", headers={"X-Api-Key": SHOP})
    check(ok(r) and [u.get("email") for u in rows(r)] == [bob_email],
          "shop, X-Api-Key: GET /v1/Users/{id} -> 200: " + show(r))
    r = gw("GET", "/v1/Users/count", "shop count", token=SHOP)
    check(ok(r) and (body(r) or {}).get("count") == 2, "shop: GET /v1/Users/count -> 2: " + show(r))

    # ---- 4. auditor: reads yes, writes and calls no -------------------------------------------
    r = gw("GET", "/v1/Users/%d" % alice_id, "auditor fetch", token=AUDITOR)
    check(ok(r) and [u.get("email") for u in rows(r)] == [alice_email],
          "auditor (*/fetch): GET /v1/Users/{id} -> 200: " + show(r))
    r = gw("GET", "/v1/Users", "auditor fetch where", token=AUDITOR, params={"email": bob_email})
    check(ok(r) and [u.get("id") for u in rows(r)] == [bob_id],
          "auditor (*/fetch): GET /v1/Users?email=… -> 200: " + show(r))
    r = gw("GET", "/v1/Users/count", "auditor count", token=AUDITOR)
    check(ok(r) and (body(r) or {}).get("count") == 2, "auditor (*/count): GET /v1/Users/count -> 200: " + show(r))
    r = gw("GET", "/v1/Users/count", "auditor count (X-Api-Key)", headers={"X-Api-Key": AUDITOR})
    check(ok(r), "auditor, X-Api-Key: GET /v1/Users/count -> 200: " + show(r))

    refused_email = "refused.%s@example.org" % suffix
    r = gw("POST", "/v1/Users", "auditor create", token=AUDITOR, json={"email": refused_email, "name": "No"})
    expect_forbidden(r, "auditor POST /v1/Users", "Users/create")
    r = gw("POST", "/v1/Users", "auditor create with key", token=AUDITOR,
           json={"email": refused_email, "name": "No"}, headers={"Idempotency-Key": "refused-%s" % suffix})
    expect_forbidden(r, "auditor POST /v1/Users with Idempotency-Key", "Users/create")
    r = gw("POST", "/v1/Users", "auditor async create", token=AUDITOR,
           json={"email": refused_email, "name": "No"}, headers={"Prefer": "respond-async"})
    expect_forbidden(r, "auditor POST /v1/Users with Prefer: respond-async", "Users/create")
    r = gw("PATCH", "/v1/Users/%d" % alice_id, "auditor update", token=AUDITOR, json={"name": "Mallory"})
    expect_forbidden(r, "auditor PATCH /v1/Users/{id}", "Users/update")
    r = gw("DELETE", "/v1/Users/%d" % bob_id, "auditor delete", token=AUDITOR)
    expect_forbidden(r, "auditor DELETE /v1/Users/{id}", "Users/delete")
    r = gw("POST", "/v1/Users/calls/get", "auditor call POST", token=AUDITOR, json={"id": alice_id})
    expect_forbidden(r, "auditor POST /v1/Users/calls/get", "Users/call:get")
    r = gw("GET", "/v1/Users/calls/get?id=%d" % alice_id, "auditor call GET", token=AUDITOR)
    expect_forbidden(r, "auditor GET /v1/Users/calls/get", "Users/call:get")
    r = gw("GET", "/v1/tickets/x", "auditor ticket", token=AUDITOR)
    expect_forbidden(r, "auditor GET /v1/tickets/x", "calgon/poll")
    r = gw("DELETE", "/v1/tickets/x", "auditor ticket cancel", token=AUDITOR)
    expect_forbidden(r, "auditor DELETE /v1/tickets/x", "calgon/cancel")
    # Nothing was published for the refused ones.
    r = gw("GET", "/v1/Users", "refused email absent", token=SHOP, params={"email": refused_email})
    check(ok(r) and rows(r) == [], "the refused creates stored nothing (shop fetches by email): " + show(r))
    r = gw("GET", "/v1/Users/%d" % alice_id, "alice unchanged", token=SHOP)
    check(ok(r) and [u.get("name") for u in rows(r)] == ["Alice"], "the refused update changed nothing: " + show(r))
    r = gw("GET", "/v1/Users/%d" % bob_id, "bob still there", token=SHOP)
    check(ok(r) and [u.get("id") for u in rows(r)] == [bob_id], "the refused delete deleted nothing: " + show(r))
    r = gw("GET", "/v1/Users/count", "count after refusals", token=SHOP)
    check(ok(r) and (body(r) or {}).get("count") == 2, "Users still counts 2: " + show(r))

    # ---- clerk: a prefix pattern (Users/call:*) and nothing else ------------------------------
    r = gw("POST", "/v1/Users/calls/get", "clerk call POST", token=CLERK, json={"id": alice_id})
    check(ok(r) and [u.get("email") for u in rows(r)] == [alice_email],
          "clerk (Users/call:*): POST /v1/Users/calls/get -> 200: " + show(r))
    r = gw("GET", "/v1/Users/calls/get?id=%d" % alice_id, "clerk call GET", token=CLERK)
    check(ok(r) and [u.get("email") for u in rows(r)] == [alice_email],
          "clerk (Users/call:*): GET /v1/Users/calls/get?id= -> 200: " + show(r))
    r = gw("GET", "/v1/Users/count", "clerk count", token=CLERK)
    expect_forbidden(r, "clerk GET /v1/Users/count", "Users/count")
    r = gw("GET", "/v1/Users/%d" % alice_id, "clerk fetch", token=CLERK)
    expect_forbidden(r, "clerk GET /v1/Users/{id}", "Users/fetch")
    r = gw("GET", "/v1/lineage/%s" % create_event, "clerk lineage", token=CLERK)
    expect_forbidden(r, "clerk GET /v1/lineage/{id}", "lineage/fetch")
    r = gw("GET", "/v1/Orders/count", "clerk other template", token=CLERK)
    expect_forbidden(r, "clerk GET /v1/Orders/count", "Orders/count")

    # ---- 5. the audit record of shop's create names the principal ------------------------------
    audit = audit_of(gw, create_event, "shop's create") if create_event else None
    if audit is not None:
        f = audit.get("data") or {}  # the stored document keeps the event's `fields` as `data`
        check(audit.get("template") == "Users" and audit.get("op") == "create",
              "the audit event is Users/create: %s" % json.dumps(audit)[:300])
        check(f.get("actor") == "shop", "audit (data.)actor == 'shop': %s" % json.dumps(f)[:300])
        check(f.get("via") == "guest", "audit (data.)via == 'guest' (the gateway's AMQP user): %s"
              % json.dumps(f)[:300])
        check("actor_claimed" not in f, "no actor_claimed (guest is trusted): %s" % json.dumps(f)[:300])

    wire = published_audit(ch, audit_q, create_event) if create_event else None
    wf = (wire or {}).get("fields") or {}
    check(wire is not None and wf.get("actor") == "shop" and wf.get("via") == "guest" and
          "actor_claimed" not in wf,
          "the audit event on beds.logs (routing key audit.Users.create): fields.actor 'shop', "
          "fields.via 'guest': %s" % json.dumps(wire)[:400])

    # "*/fetch" covers "lineage/fetch" ("A pattern side may be `*`"; "the lineage route is
    # `lineage/fetch`"): the auditor may read lineage. Asked once the tree is in the log store.
    r = gw("GET", "/v1/lineage/%s" % create_event, "auditor lineage", token=AUDITOR)
    check(ok(r) and create_event in r.text,
          "auditor: GET /v1/lineage/{id} -> 200 (\"*/fetch\" covers lineage/fetch): " + show(r))

    # ---- 6. Idempotency-Key is scoped by the principal -------------------------------------------
    key = "k1-%s" % suffix
    body_a = {"email": "idem-a.%s@example.org" % suffix, "name": "A"}
    body_b = {"email": "idem-b.%s@example.org" % suffix, "name": "B"}
    first = gw("POST", "/v1/Users", "shop create with key", token=SHOP, json=body_a,
               headers={"Idempotency-Key": key})
    check(ok(first, 201) and "replayed" not in (body(first) or {}),
          "shop: create with Idempotency-Key -> 201: " + show(first))
    again = gw("POST", "/v1/Users", "shop create with key again", token=SHOP, json=body_a,
               headers={"Idempotency-Key": key})
    check(ok(again, 201) and (body(again) or {}).get("replayed") is True and
          (body(again) or {}).get("data") == (body(first) or {}).get("data"),
          "shop: the same create with the same key -> 201, same data, replayed: " + show(again))
    # The same key from guest itself (no x-beds-actor) is another scope: a fresh write, not a
    # replay and not a CONFLICT with shop's body A.
    direct = amqp_create(ch, body_b, key)
    check(direct is not None and direct.get("ok") is True and "replayed" not in direct and
          [u.get("email") for u in (direct.get("data") or [])] == [body_b["email"]],
          "AMQP as guest (no x-beds-actor), same key, body B -> a fresh create: %s"
          % json.dumps(direct)[:300])
    # guest is trusted: naming shop in x-beds-actor puts the write in shop's scope -> replay.
    as_shop = amqp_create(ch, body_a, key, actor="shop")
    check(as_shop is not None and as_shop.get("ok") is True and as_shop.get("replayed") is True and
          as_shop.get("data") == (body(first) or {}).get("data"),
          "AMQP as guest with x-beds-actor: shop, same key, body A -> shop's replay: %s"
          % json.dumps(as_shop)[:300])
    r = gw("GET", "/v1/Users/count", "idem A once", token=SHOP, params={"email": body_a["email"]})
    check(ok(r) and (body(r) or {}).get("count") == 1, "body A stored once: " + show(r))
    r = gw("GET", "/v1/Users/count", "idem B once", token=SHOP, params={"email": body_b["email"]})
    check(ok(r) and (body(r) or {}).get("count") == 1, "body B stored once: " + show(r))
    direct_event = str((direct or {}).get("event_id", ""))
    audit = audit_of(gw, direct_event, "guest's direct create") if direct_event else None
    if audit is not None:
        f = audit.get("data") or {}  # the stored document keeps the event's `fields` as `data`
        check(f.get("actor") == "guest" and "via" not in f and "actor_claimed" not in f and
              f.get("idempotency_key") == key,
              "the direct create's audit: actor guest, no via, its key: %s" % json.dumps(f)[:300])


def check_limits_and_cors(base):
    """Rate limits and CORS, with plain requests (their 429 and 204 answers are not protocol
    replies, so they stay out of ANSWERS)."""
    url = base + "/v1/Users/count"
    got = [requests.get(url, headers=bearer(LIMITED), timeout=10) for _ in range(3)]
    check([r.status_code for r in got[:2]] == [200, 200],
          "limited (burst 2): two quick counts -> 200: %s" % [r.status_code for r in got])
    last = got[2]
    check(last.status_code == 429 and last.headers.get("Retry-After") == "1" and
          (body(last) or {}).get("error", {}).get("code") == "UNAVAILABLE" and
          "rate limit" in message(last),
          "the third at once -> 429, Retry-After: 1, UNAVAILABLE naming the rate limit: %s %s"
          % (last.status_code, last.text[:200]))
    other = requests.get(url, headers=bearer(SHOP), timeout=10)
    check(other.status_code == 200, "another principal is not slowed: %d" % other.status_code)
    time.sleep(1.1)
    again = requests.get(url, headers=bearer(LIMITED), timeout=10)
    check(again.status_code == 200, "a second later the bucket has a token again: %d"
          % again.status_code)

    pre = requests.options(url, timeout=10, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    check(pre.status_code == 204 and pre.headers.get("Access-Control-Allow-Origin") == ORIGIN and
          "GET" in pre.headers.get("Access-Control-Allow-Methods", "") and
          "Authorization" in pre.headers.get("Access-Control-Allow-Headers", ""),
          "a preflight from an allowed origin -> 204 with the CORS headers, no credentials "
          "needed: %d %s" % (pre.status_code, dict(pre.headers)))
    bad = requests.options(url, timeout=10, headers={
        "Origin": "https://evil.example.org", "Access-Control-Request-Method": "GET"})
    check(bad.status_code == 403 and "Access-Control-Allow-Origin" not in bad.headers,
          "a preflight from another origin -> 403 without CORS headers: %d" % bad.status_code)
    cross = requests.get(url, timeout=10, headers=dict(bearer(SHOP), Origin=ORIGIN))
    check(cross.status_code == 200 and cross.headers.get("Access-Control-Allow-Origin") == ORIGIN
          and "X-Beds-Event-Id" in cross.headers.get("Access-Control-Expose-Headers", ""),
          "an allowed origin's GET carries Access-Control-Allow-Origin and exposes the event id: "
          "%s" % dict(cross.headers))
    foreign = requests.get(url, timeout=10, headers=dict(bearer(SHOP), Origin="https://evil.example.org"))
    check(foreign.status_code == 200 and "Access-Control-Allow-Origin" not in foreign.headers,
          "another origin's GET is answered without CORS headers (the browser hides it): %s"
          % dict(foreign.headers))


def check_every_answer():
    not_json = ["%s: %r" % (what, r.headers.get("Content-Type")) for what, r in ANSWERS
                if not r.headers.get("Content-Type", "").startswith("application/json")]
    check(not not_json, "every answer is Content-Type application/json (%d answers): %s"
          % (len(ANSWERS), not_json[:5]))
    bad_status = []
    for what, r in ANSWERS:
        b = body(r)
        if not isinstance(b, dict):
            bad_status.append("%s: body not a JSON object: %s" % (what, show(r)))
            continue
        c = (b.get("error") or {}).get("code") if b.get("ok") is False else None
        if c in STATUS_OF and r.status_code != STATUS_OF[c]:
            bad_status.append("%s: %d with %s" % (what, r.status_code, c))
        if b.get("ok") is True and r.status_code not in (200, 201, 202):
            bad_status.append("%s: ok with %d" % (what, r.status_code))
    check(not bad_status, "every answer's status matches its body: %s" % bad_status[:5])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", required=True)
    ap.add_argument("--servers", required=True)
    args = ap.parse_args()
    # ctest's TIMEOUT sends SIGTERM: unwind so the finally below stops our node.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated"))

    amqp_port, db_port, vhost, database = scratch_database(args.servers, "gwauth")

    with tempfile.TemporaryDirectory() as conf:
        write_gateway_config(conf, "authnode", amqp_port, db_port, vhost, database, gateway=AUTH)
        path = os.path.join(conf, "beds.toml")
        with open(path) as f:
            written = f.read()
        # A TOML table may be defined once: should the helper ever write [access], extend it.
        check("\n[access]" not in written, "write_gateway_config writes no [access] table")
        with open(path, "a") as f:
            f.write(PROTOCOL)
        log = open(os.path.join(conf, "beds.log"), "w+", errors="replace")
        node = subprocess.Popen([args.beds, "run", "--config-dir", conf], stderr=log)
        try:
            port = wait_for_gateway_port(log, node)
            check(port is not None, "the log names the gateway's port: %s" % port)
            if port is not None:
                gw = Gateway("http://127.0.0.1:%d" % port)
                # ---- 1. /healthz and /readyz need no credentials -------------------------------
                r = gw("GET", "/healthz", "healthz")
                check(ok(r) and body(r) == {"ok": True}, "GET /healthz without credentials -> 200: " + show(r))
                r = None
                deadline = time.time() + 30
                while time.time() < deadline and node.poll() is None:
                    r = gw("GET", "/readyz", "readyz", timeout=10)
                    if r is not None and r.status_code == 200:
                        break
                    time.sleep(0.2)
                check(ok(r), "GET /readyz without credentials -> 200: " + show(r))
                r = gw("GET", "/healthz", "healthz with unknown token", token="nobody-token-0123456789")
                check(ok(r), "GET /healthz with an unknown token -> 200 (not checked): " + show(r))

                conn, ch = open_channel(amqp_port, vhost, node)
                r = gw("GET", "/v1/Users/count", "first count", token=SHOP)
                check(ok(r) and (body(r) or {}).get("count") == 0,
                      "shop: GET /v1/Users/count on the fresh database -> 0: " + show(r))
                if ok(r):
                    run_checks(gw, ch, str(os.getpid()))
                    check_limits_and_cors(gw.base)
                check_every_answer()

                bye = rpc(ch, "admin.shutdown.authnode",
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
