#!/usr/bin/python3
"""The MongoDB REC adapter at the wire level, against python3-mockupdb.

    /usr/bin/python3 tests/adapters/mongo_wire_test.py --probe build/tests/beds-rec-probe \
        --templates tests/adapters/templates [-k NAME]

How it works
- Each check starts its own MockupDB on a random loopback port and its own beds-rec-probe (the
  MongoDB adapter behind a stdin/stdout loop, see rec_probe.cpp) pointed at it. The probe ensures
  every template at start ("IPL"), prints one `{"prepared": …}` line, then answers one request
  envelope per stdin line. The check writes a request, takes the command the adapter sent off the
  mock server's queue, compares it EXACTLY with what it expects (see `diff`: every key, no extra
  ones, BSON types compared strictly, key order where it matters: sorts and index keys), scripts
  the server's reply (a result, an error document, a hang-up, or silence) and compares the probe's
  reply line with the client-form JSON it expects.
- Only the templates Docs, Counters and Notes are copied from --templates into a temporary
  directory, so templates others add there do not change the IPL this test scripts.
- Probe stdout lines that are not JSON objects (spdlog and libmongoc log lines) are set aside and
  shown only when a check fails, with the probe's stderr.
- Commands are taken from MockupDB's request queue directly (`server._request_q`) instead of
  `server.receives()`: its matcher is a partial match (extra keys pass), and it raises OSError on a
  request whose connection was already closed, which the hang-up checks produce on purpose.

What the mock server says in its hello (HELLO below)
- A standalone mongod of wire version 13 (MongoDB 5.0): `ismaster`/`isWritablePrimary`, `helloOk`
  (so the monitor switches from legacy isMaster to hello, both autoanswered, as are endSessions
  and buildinfo/ping should the driver send them), size limits, and NO
  `logicalSessionTimeoutMinutes`. Without it libmongoc uses no sessions: commands carry no `lsid`,
  no `txnNumber`, so they can be compared exactly, and retryable writes are off (they need sessions
  and a replica set). Retryable reads stay on (they only need wire version >= 6): a read that meets
  a retryable error (not primary, a broken connection) is sent twice, and the checks expect that.
- One check (`replset.retryable_write`) answers as a replica-set primary with
  `logicalSessionTimeoutMinutes`, as production would: the driver then adds lsid/txnNumber and
  resends a write whose connection broke once, with the same txnNumber (the server deduplicates).

Each check prints one line (ok/FAIL, name, what it shows, seconds); the exit status is 1 when any
check failed.
"""

import argparse
import datetime
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import traceback
import uuid
from collections import OrderedDict

from bson import Binary, Decimal128, Int64, ObjectId
from mockupdb import CommandBase, MockupDB

HELLO = {
    "ismaster": True,
    "isWritablePrimary": True,
    "helloOk": True,
    "minWireVersion": 0,
    "maxWireVersion": 13,
    "maxBsonObjectSize": 16 * 1024 * 1024,
    "maxMessageSizeBytes": 48_000_000,
    "maxWriteBatchSize": 100_000,
    "localTime": datetime.datetime.now(datetime.timezone.utc),
}
TEMPLATES = ("Counters", "Docs", "Notes")  # prepared in name order
QUERY_TIMEOUT_MS = 2000
AT = datetime.datetime(2026, 11, 24, 17, 7, 20, 123000)  # BSON date, naive UTC
AT_TEXT = "2026-11-24T17:07:20.123Z"
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

ARGS = None
STOPPERS = []  # threads stopping the mock servers of finished checks


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def O(*pairs):
    """An ordered document: its key order is compared too (sorts, index keys)."""
    return OrderedDict(pairs)


WC = {"w": "majority", "wtimeout": Int64(QUERY_TIMEOUT_MS)}  # the default write concern


def diff(actual, expected, path="$"):
    """Differences between a decoded command/reply and the expected one, as readable lines.

    Documents must hold exactly the expected keys (in order when `expected` is an OrderedDict);
    scalars must be equal AND of the same Python type, so int32 (int) differs from int64 (Int64),
    bool from int, a BSON date (datetime) from a string, Decimal128 from a string, binary (bytes,
    pymongo's decoding of subtype 0) from a base64 string. An `Any` matches by type and test.
    """
    if isinstance(expected, Any):
        ok = isinstance(actual, expected.types) and expected.test(actual)
        return [] if ok else [f"{path}: {actual!r} is not {expected}"]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected a document, got {actual!r}"]
        out = []
        missing = [k for k in expected if k not in actual]
        extra = [k for k in actual if k not in expected]
        if missing:
            out.append(f"{path}: missing {missing}")
        if extra:
            out.append(f"{path}: unexpected {extra} = {[actual[k] for k in extra]!r}")
        if isinstance(expected, OrderedDict) and not missing and not extra:
            if list(actual) != list(expected):
                out.append(f"{path}: key order {list(actual)}, expected {list(expected)}")
        for k in expected:
            if k in actual:
                out += diff(actual[k], expected[k], f"{path}.{k}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        out = []
        for i, (a, e) in enumerate(zip(actual, expected)):
            out += diff(a, e, f"{path}[{i}]")
        return out
    if type(actual) is not type(expected) or actual != expected:
        return [
            f"{path}: got {actual!r} ({type(actual).__name__}), "
            f"expected {expected!r} ({type(expected).__name__})"
        ]
    return []


class Any:
    def __init__(self, types, test=lambda v: True, text="any"):
        self.types, self.test, self.text = types, test, text

    def __str__(self):
        return self.text


def same(actual, expected, what):
    problems = diff(actual, expected)
    if problems:
        raise Failure(f"{what} differs:\n      " + "\n      ".join(problems) +
                      f"\n    got: {actual!r}")


def err(code, retryable, message=None):
    """The probe's reply for an error; `message` is a regex it must match (search)."""
    test = (lambda m: re.search(message, m) is not None) if message else (lambda m: True)
    return {"ok": False, "event_id": "probe",
            "error": {"code": code, "message": Any(str, test, f"a message matching {message!r}"),
                      "retryable": retryable}}


def ok(data, count):
    return {"ok": True, "event_id": "probe", "data": data, "count": count}


def cursor(coll, docs, cursor_id=0, batch="firstBatch"):
    return {"ok": 1, "cursor": {"id": Int64(cursor_id), "ns": f"beds.{coll}", batch: docs}}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def template_dir():
    """A temporary directory holding only the Docs, Counters and Notes templates."""
    out = tempfile.mkdtemp(prefix="beds-mongo-wire-")
    found = set()
    for name in sorted(os.listdir(ARGS.templates)):
        path = os.path.join(ARGS.templates, name)
        if name.endswith(".toml"):
            with open(path, "rb") as f:
                t = tomllib.load(f)
            if t.get("name") in TEMPLATES and t.get("database") == "docs":
                shutil.copy(path, out)
                found.add(t["name"])
    check(found == set(TEMPLATES), f"templates {sorted(set(TEMPLATES) - found)} not found "
                                   f"in {ARGS.templates}")
    return out


class Session:
    """One mock server and one probe talking to it."""

    def __init__(self, server=True, replset=False, uri_options="",
                 query_timeout_ms=QUERY_TIMEOUT_MS, reconnect_wait_ms=2000, extra=()):
        self.server = None
        if server:
            self.server = MockupDB(request_timeout=10)
            port = self.server.run()
            hello = HELLO
            if replset:  # a replica-set primary names itself; sessions on
                me = f"127.0.0.1:{port}"
                hello = dict(HELLO, setName="rs0", hosts=[me], me=me, primary=me,
                             secondary=False, logicalSessionTimeoutMinutes=30)
            for name in ("ismaster", "hello"):
                self.server.autoresponds(CommandBase(name), hello)
            for name in ("endSessions", "ping", "buildinfo"):
                self.server.autoresponds(CommandBase(name), {"ok": 1})
        else:
            port = free_port()  # nothing listens there
        self.uri = f"mongodb://127.0.0.1:{port}/beds{uri_options}"
        self.port = port
        self.dir = template_dir()
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.logs = []
        self.lines = queue.Queue()
        self.probe = subprocess.Popen(
            [ARGS.probe, "--templates", self.dir, "--engine", "mongodb", "--uri", self.uri,
             "--query-timeout-ms", str(query_timeout_ms),
             "--reconnect-wait-ms", str(reconnect_wait_ms), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.probe.stdout:
            (self.lines.put if line.startswith("{") else self.logs.append)(line.rstrip("\n"))
        self.lines.put(None)

    def diagnostics(self):
        self.stderr.seek(0)
        err_lines = self.stderr.read().splitlines()
        text = "\n".join(self.logs[-15:] + err_lines[-15:])
        return "\n    probe log:\n      " + text.replace("\n", "\n      ") if text else ""

    def close(self, failed=False):
        try:
            if failed:
                self.probe.kill()  # it may be waiting for a reply that will never come
            if self.probe.poll() is None:
                self.probe.stdin.close()
                try:
                    self.probe.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.probe.kill()
                    self.probe.wait()
        finally:
            if self.server:
                # stop() takes ~1 s (MockupDB's accept loop polls once a second): let it finish
                # while the next check runs; main() joins these threads before exiting.
                stopper = threading.Thread(target=self.server.stop)
                stopper.start()
                STOPPERS.append(stopper)
            self.stderr.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- the probe's side ----

    def send(self, request):
        self.probe.stdin.write(json.dumps(request) + "\n")
        self.probe.stdin.flush()

    def answer(self, timeout=10.0):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise Failure(f"the probe did not answer within {timeout} s")
        if line is None:
            raise Failure(f"the probe exited (status {self.probe.wait()})")
        return json.loads(line)

    def request(self, request, expected, timeout=10.0):
        """Send a request that must be answered without any command reaching the server."""
        self.send(request)
        same(self.answer(timeout), expected, f"the reply to {json.dumps(request)}")

    # ---- the server's side ----

    def command(self, expected=None, timeout=5.0, strip=()):
        """The next command the adapter sent, compared exactly with `expected` when given.

        `expected` is the command document without "$db" (which must be "beds"), its first key
        the command name; `strip` names keys that must be present but are not compared.
        """
        try:
            req = self.server._request_q.get(timeout=timeout)
        except queue.Empty:
            raise Failure(f"expected a command within {timeout} s, the server received nothing"
                          + ("" if expected is None else f" (expected {dict(expected)!r})"))
        if expected is not None:
            doc = OrderedDict(req.doc)
            check(doc.pop("$db", None) == "beds", f"command {req!r} is not for database beds")
            for key in strip:
                check(doc.pop(key, None) is not None, f"command {req!r} lacks {key}")
            name = next(iter(expected))
            check(next(iter(doc)) == name, f"expected the command {name}, got {req!r}")
            same(doc, dict(expected), f"the {name} command")  # top-level order: name first
        return req

    def nothing(self, seconds=0.3):
        try:
            req = self.server._request_q.get(timeout=seconds)
        except queue.Empty:
            return
        raise Failure(f"the server received {req!r}, expected nothing")

    def reply(self, req, doc):
        try:
            req.replies(dict(doc))
        except OSError:
            raise Failure(f"the connection of {req!r} was closed before the reply")

    def exchange(self, request, expected_command, reply, expected_answer):
        """One request: the exact command it causes, the server's reply, the probe's answer."""
        self.send(request)
        self.reply(self.command(expected_command), reply)
        answer = self.answer()
        same(answer, expected_answer, f"the reply to {json.dumps(request)}")
        return answer

    def ipl(self, replies=None, wc=WC, strip=()):
        """Answer the ensure commands ({collection: reply}, default ok); the prepared map."""
        replies = replies or {}
        for coll, expected in ensure_commands(wc):
            req = self.command(expected, strip=strip)
            self.reply(req, replies.get(coll, {"ok": 1}))
        prepared = self.answer()
        check(set(prepared) == {"prepared"}, f"expected the prepared line, got {prepared!r}")
        return prepared["prepared"]

    def ready(self, wc=WC, strip=()):
        """IPL with every ensure command answered ok: all templates prepared."""
        same(self.ipl(wc=wc, strip=strip), {t: "" for t in TEMPLATES}, "prepared")


def ensure_commands(wc=WC):
    """The exact IPL commands, in preparation order (templates by name)."""
    return [
        ("cntCounters", O(("create", "cntCounters"), ("writeConcern", wc))),
        ("docDocs", O(("createIndexes", "docDocs"),
                      ("indexes", [{"key": O(("n", 1), ("at", -1)), "name": "by_n"},
                                   {"key": O(("expires", 1)), "name": "ttl",
                                    "expireAfterSeconds": Int64(0)}]),
                      ("writeConcern", wc))),
        ("nteNotes", O(("create", "nteNotes"), ("writeConcern", wc))),
    ]


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0


# ---------------------------------------------------------------------------------------------
# The checks. Each gets a fresh Session via the decorator and raises Failure on any difference.

CHECKS = []


def case(name, doc, **session):
    def register(fn):
        CHECKS.append((name, doc, fn, session))
        return fn
    return register


@case("ipl.ensure", "IPL sends createIndexes for Docs (by_n {n:1, at:-1}; ttl {expires:1} "
      "expireAfterSeconds 0) and create for Counters and Notes, all with writeConcern majority")
def _(s):
    s.ready()  # ipl() compares every command exactly
    s.nothing()


@case("ipl.errors", "IPL: NamespaceExists (48) on create is accepted; IndexOptionsConflict (85) "
      "and a writeConcernError are prepared errors; the other templates still work")
def _(s):
    prepared = s.ipl({
        "cntCounters": {"ok": 0, "code": 48, "codeName": "NamespaceExists",
                        "errmsg": "Collection already exists. NS: beds.cntCounters"},
        "docDocs": {"ok": 0, "code": 85, "codeName": "IndexOptionsConflict",
                    "errmsg": "Index with name: by_n already exists with different options"},
        "nteNotes": {"ok": 1, "writeConcernError": {"code": 64, "errmsg": "waiting for "
                                                    "replication timed out"}},
    })
    same(prepared, {
        "Counters": "",
        "Docs": Any(str, lambda m: "docDocs" in m and "by_n already exists" in m,
                    "an error naming docDocs and the server's message"),
        "Notes": Any(str, lambda m: "nteNotes" in m and "write concern" in m,
                     "an error naming nteNotes and the write concern"),
    }, "prepared")
    s.exchange({"template": "Counters", "op": "delete", "id": "5"},
               O(("delete", "cntCounters"), ("ordered", True), ("writeConcern", WC),
                 ("deletes", [{"q": {"_id": {"$eq": Int64(5)}}, "limit": 1}])),
               {"ok": 1, "n": 1}, ok([{"num": 5}], 1))


@case("ipl.unreachable", "IPL with no server listening: every template's prepared error says "
      "the database is not reachable, each after reconnect_wait_ms (500 ms)",
      server=False, reconnect_wait_ms=500)
def _(s):
    prepared, took = timed(s.answer)
    same(prepared, {"prepared": {t: Any(str, lambda m: "not reachable" in m and s.uri not in m
                                        and str(s.port) not in m, "a 'not reachable' error "
                                        "without the URI") for t in TEMPLATES}}, "prepared")
    check(1.4 <= took < 6, f"IPL took {took:.1f} s, expected 3 × 0.5 s server selection")


@case("create.typed", "create → insert of the typed document (_id = key, BSON date, Decimal128, "
      "binary, embedded json, int64) with writeConcern; the reply is the client form")
def _(s):
    s.ready()
    data = {"code": "a", "n": 1, "x": 1.5, "price": "1.50", "flag": True, "title": "t",
            "day": "2026-11-24", "at": AT_TEXT, "meta": {"k": [1, "two", {"z": None}]},
            "blob": "AAEC/w==", "expires": None}
    s.exchange({"template": "Docs", "op": "create", "data": data},
               O(("insert", "docDocs"), ("ordered", True), ("writeConcern", WC),
                 ("documents", [{"_id": "a", "n": Int64(1), "x": 1.5,
                                 "price": Decimal128("1.50"), "flag": True, "title": "t",
                                 "day": "2026-11-24", "at": AT,
                                 "meta": {"k": [Int64(1), "two", {"z": None}]},
                                 "blob": b"\x00\x01\x02\xff", "expires": None}])),
               {"ok": 1, "n": 1}, ok([data], 1))
    # A datetime in another accepted spelling is stored at millisecond precision (finer digits
    # cut) and answered in the canonical form; empty bytes are an empty binary.
    s.exchange({"template": "Docs", "op": "create",
                "data": {"code": "b", "expires": "2026-11-24 17:07:20.123999+00:00", "blob": ""}},
               O(("insert", "docDocs"), ("ordered", True), ("writeConcern", WC),
                 ("documents", [{"_id": "b", "expires": AT, "blob": b""}])),
               {"ok": 1, "n": 1}, ok([{"code": "b", "expires": AT_TEXT, "blob": ""}], 1))
    # An int key is an int64 _id; a template without a key field gets a UUIDv7 string _id.
    s.exchange({"template": "Counters", "op": "create", "data": {"num": 7, "label": "x"}},
               O(("insert", "cntCounters"), ("ordered", True), ("writeConcern", WC),
                 ("documents", [{"_id": Int64(7), "label": "x"}])),
               {"ok": 1, "n": 1}, ok([{"num": 7, "label": "x"}], 1))
    s.send({"template": "Notes", "op": "create", "data": {"body": "hi"}})
    req = s.command()
    new_id = req.doc["documents"][0]["_id"]
    check(isinstance(new_id, str) and UUID7.match(new_id), f"_id {new_id!r} is not a UUIDv7")
    same(req.doc, {"insert": "nteNotes", "ordered": True, "$db": "beds", "writeConcern": WC,
                   "documents": [{"_id": new_id, "body": "hi"}]}, "the insert command")
    s.reply(req, {"ok": 1, "n": 1})
    same(s.answer(), ok([{"id": new_id, "body": "hi"}], 1), "the reply")


@case("create.write_concern_1", "--write-concern 1: writes carry {w: 1, wtimeout}",
      extra=("--write-concern", "1"))
def _(s):
    wc = {"w": 1, "wtimeout": Int64(QUERY_TIMEOUT_MS)}
    s.ready(wc=wc)
    s.exchange({"template": "Docs", "op": "create", "data": {"code": "a"}},
               O(("insert", "docDocs"), ("ordered", True), ("writeConcern", wc),
                 ("documents", [{"_id": "a"}])),
               {"ok": 1, "n": 1}, ok([{"code": "a"}], 1))


@case("create.duplicate", "a duplicate-key writeError (11000) on insert is CONFLICT, "
      "not retryable")
def _(s):
    s.ready()
    s.exchange({"template": "Docs", "op": "create", "data": {"code": "a"}},
               O(("insert", "docDocs"), ("ordered", True), ("writeConcern", WC),
                 ("documents", [{"_id": "a"}])),
               {"ok": 1, "n": 0, "writeErrors": [
                   {"index": 0, "code": 11000, "errmsg": "E11000 duplicate key error "
                    "collection: beds.docDocs index: _id_ dup key: { _id: \"a\" }"}]},
               err("CONFLICT", False, r"^a Docs document with this code exists$"))


@case("create_many.unordered", "a batch insert (the log store's) is one unordered insert with "
      "the write concern; keys already stored (duplicate-key writeErrors) are skipped and the rest "
      "counted; any other writeError fails the batch")
def _(s):
    s.ready()
    dup = {"index": 1, "code": 11000, "errmsg": "E11000 duplicate key error collection: "
           "beds.docDocs index: _id_ dup key: { _id: \"b\" }"}
    s.exchange({"template": "Docs", "op": "create_many",
                "data": [{"code": "a", "n": 1}, {"code": "b"}, {"code": "c"}]},
               O(("insert", "docDocs"), ("ordered", False), ("writeConcern", WC),
                 ("documents", [{"_id": "a", "n": Int64(1)}, {"_id": "b"}, {"_id": "c"}])),
               {"ok": 1, "n": 2, "writeErrors": [dup]}, ok([], 2))
    s.exchange({"template": "Docs", "op": "create_many", "data": [{"code": "d"}, {"code": "e"}]},
               O(("insert", "docDocs"), ("ordered", False), ("writeConcern", WC),
                 ("documents", [{"_id": "d"}, {"_id": "e"}])),
               {"ok": 1, "n": 1, "writeErrors": [
                   {"index": 0, "code": 121, "errmsg": "Document failed validation"}]},
               err("INTERNAL", True, r"refused by MongoDB database 'docs'"))


@case("fetch.filters", "fetch → find with explicit operators grouped per field (typed values), "
      "sort (order, then _id), limit, skip, maxTimeMS = query_timeout_ms; the cursor's BSON "
      "types come back as client JSON, undeclared fields dropped")
def _(s):
    s.ready()
    request = {"template": "Docs", "op": "fetch",
               "where": {"n": {"gt": 1, "lte": 5}, "title": "t", "code": {"in": ["a", "b"]},
                         "x": {"gte": 1}, "price": {"lt": "9.99"}, "at": {"gte": AT_TEXT},
                         "flag": True, "day": {"gt": "2026-01-01"}},
               "order": "-at,title", "limit": 5, "offset": 2}
    command = O(("find", "docDocs"),
                ("filter", {"n": {"$gt": Int64(1), "$lte": Int64(5)}, "title": {"$eq": "t"},
                            "_id": {"$in": ["a", "b"]}, "x": {"$gte": 1.0},
                            "price": {"$lt": Decimal128("9.99")}, "at": {"$gte": AT},
                            "flag": {"$eq": True}, "day": {"$gt": "2026-01-01"}}),
                ("sort", O(("at", -1), ("title", 1), ("_id", 1))),
                ("limit", Int64(5)), ("skip", Int64(2)), ("maxTimeMS", Int64(QUERY_TIMEOUT_MS)))
    stored = {"_id": "a", "n": 3, "x": 2.5, "price": Decimal128("2.50"), "flag": False,
              "title": "t", "day": "2026-01-02", "at": AT,
              "meta": {"k": [1, Int64(2)], "when": datetime.datetime(1969, 12, 31, 23, 59, 59,
                                                                     999000)},
              "blob": Binary(b"\x00\x01\x02\xff"), "expires": None,
              "extra": ObjectId(), "__v": 1}
    client = {"code": "a", "n": 3, "x": 2.5, "price": "2.50", "flag": False, "title": "t",
              "day": "2026-01-02", "at": AT_TEXT,
              "meta": {"k": [1, 2], "when": "1969-12-31T23:59:59.999Z"},
              "blob": "AAEC/w==", "expires": None}
    s.exchange(request, command,
               cursor("docDocs", [stored, {"_id": "b", "n": Int64(2**40)},
                                  {"_id": ObjectId("0123456789abcdef01234567")}]),
               ok([client, {"code": "b", "n": 2**40}, {"code": "0123456789abcdef01234567"}], 3))
    # No offset: no skip at all; a deadline shorter than query_timeout_ms bounds maxTimeMS.
    deadline = int(time.time() * 1000) + 1500
    s.send({"template": "Docs", "op": "fetch", "where": {"n": 1}, "deadline_ms": deadline})
    req = s.command(O(("find", "docDocs"), ("filter", {"n": {"$eq": Int64(1)}}),
                      ("sort", O(("_id", 1))), ("limit", Int64(100)),
                      ("maxTimeMS", Any(Int64, lambda v: 0 < v <= 1500, "0 < maxTimeMS <= 1500")
                       )))
    s.reply(req, cursor("docDocs", []))
    same(s.answer(), ok([], 0), "the reply")


@case("fetch.by_id", "fetch by id → filter {_id: {$eq: id}} (an int key as int64), limit "
      "max_limit; nothing found is NOT_FOUND; a found document is answered")
def _(s):
    s.ready()
    find = O(("find", "docDocs"), ("filter", {"_id": {"$eq": "x"}}), ("sort", O(("_id", 1))),
             ("limit", Int64(100)), ("maxTimeMS", Int64(QUERY_TIMEOUT_MS)))
    s.exchange({"template": "Docs", "op": "fetch", "id": "x"}, find, cursor("docDocs", []),
               err("NOT_FOUND", False, r"^Docs 'x' was not found$"))
    s.exchange({"template": "Docs", "op": "fetch", "id": "x"}, find,
               cursor("docDocs", [{"_id": "x", "at": AT}]),
               ok([{"code": "x", "at": AT_TEXT}], 1))
    s.exchange({"template": "Counters", "op": "fetch", "id": "5"},
               O(("find", "cntCounters"), ("filter", {"_id": {"$eq": Int64(5)}}),
                 ("sort", O(("_id", 1))), ("limit", Int64(1000)),
                 ("maxTimeMS", Int64(QUERY_TIMEOUT_MS))),
               cursor("cntCounters", [{"_id": 5, "a": 1, "label": "l"}]),
               ok([{"num": 5, "a": 1, "label": "l"}], 1))


@case("fetch.get_more", "a cursor in two batches → getMore on the same collection, documents "
      "concatenated; a getMore error is answered (INTERNAL) and the cursor killed")
def _(s):
    s.ready()
    request = {"template": "Docs", "op": "fetch", "where": {"n": {"gt": 1}}, "limit": 3}
    find = O(("find", "docDocs"), ("filter", {"n": {"$gt": Int64(1)}}), ("sort", O(("_id", 1))),
             ("limit", Int64(3)), ("maxTimeMS", Int64(QUERY_TIMEOUT_MS)))
    s.send(request)
    s.reply(s.command(find), cursor("docDocs", [{"_id": "a"}], cursor_id=77))
    s.reply(s.command(O(("getMore", Int64(77)), ("collection", "docDocs"))),
            cursor("docDocs", [{"_id": "b"}, {"_id": "c"}], batch="nextBatch"))
    same(s.answer(), ok([{"code": "a"}, {"code": "b"}, {"code": "c"}], 3), "the reply")
    s.send(request)
    s.reply(s.command(find), cursor("docDocs", [{"_id": "a"}], cursor_id=78))
    s.reply(s.command(O(("getMore", Int64(78)), ("collection", "docDocs"))),
            {"ok": 0, "code": 43, "codeName": "CursorNotFound", "errmsg": "cursor id 78 not found"})
    s.reply(s.command(O(("killCursors", "docDocs"), ("cursors", [Int64(78)]))),
            {"ok": 1, "cursorsKilled": [Int64(78)]})
    same(s.answer(), err("INTERNAL", True, "cursor id 78 not found"), "the reply")


@case("count", "count → aggregate [$match filter, $group {_id: 1, n: {$sum: 1}}] with maxTimeMS; "
      "n from the batch, an empty batch is 0")
def _(s):
    s.ready()
    request = {"template": "Docs", "op": "count", "where": {"n": {"gt": 1}, "title": "t"}}
    aggregate = O(("aggregate", "docDocs"), ("cursor", {}),
                  ("pipeline", [{"$match": {"n": {"$gt": Int64(1)}, "title": {"$eq": "t"}}},
                                {"$group": {"_id": 1, "n": {"$sum": 1}}}]),
                  ("maxTimeMS", Int64(QUERY_TIMEOUT_MS)))
    s.exchange(request, aggregate, cursor("docDocs", [{"_id": 1, "n": 7}]), ok([{"count": 7}], 7))
    s.exchange(request, aggregate, cursor("docDocs", []), ok([{"count": 0}], 0))


@case("update", "update → findAndModify {query: {_id}, update: {$set: typed fields}, new: true, "
      "maxTimeMS, writeConcern}; value null is NOT_FOUND, a value document is the answer")
def _(s):
    s.ready()
    request = {"template": "Docs", "op": "update", "id": "a",
               "data": {"n": 2, "at": AT_TEXT, "price": "2.5", "blob": "AAEC", "title": None}}
    command = O(("findAndModify", "docDocs"), ("query", {"_id": {"$eq": "a"}}),
                ("update", {"$set": {"n": Int64(2), "at": AT, "price": Decimal128("2.5"),
                                     "blob": b"\x00\x01\x02", "title": None}}),
                ("new", True), ("maxTimeMS", Int64(QUERY_TIMEOUT_MS)), ("writeConcern", WC))
    s.exchange(request, command,
               {"ok": 1, "value": None, "lastErrorObject": {"n": 0, "updatedExisting": False}},
               err("NOT_FOUND", False, r"^no Docs document has this code$"))
    value = {"_id": "a", "n": Int64(2), "at": AT, "price": Decimal128("2.5"),
             "blob": b"\x00\x01\x02", "title": None, "flag": True}
    s.exchange(request, command,
               {"ok": 1, "value": value, "lastErrorObject": {"n": 1, "updatedExisting": True}},
               ok([{"code": "a", "n": 2, "at": AT_TEXT, "price": "2.5", "blob": "AAEC",
                    "title": None, "flag": True}], 1))


@case("delete", "delete → delete {q: {_id}, limit: 1} with writeConcern; n=1 is count 1 and "
      "answers the deleted key (as a REL delete does), n=0 is NOT_FOUND")
def _(s):
    s.ready()
    command = O(("delete", "docDocs"), ("ordered", True), ("writeConcern", WC),
                ("deletes", [{"q": {"_id": {"$eq": "a"}}, "limit": 1}]))
    request = {"template": "Docs", "op": "delete", "id": "a"}
    s.exchange(request, command, {"ok": 1, "n": 1}, ok([{"code": "a"}], 1))
    s.exchange(request, command, {"ok": 1, "n": 0},
               err("NOT_FOUND", False, r"^no Docs document has this code$"))


FIND_A = O(("find", "docDocs"), ("filter", {"_id": {"$eq": "a"}}), ("sort", O(("_id", 1))),
           ("limit", Int64(100)), ("maxTimeMS", Int64(QUERY_TIMEOUT_MS)))
INSERT_A = O(("insert", "docDocs"), ("ordered", True), ("writeConcern", WC),
             ("documents", [{"_id": "a"}]))
FETCH_A = {"template": "Docs", "op": "fetch", "id": "a"}
CREATE_A = {"template": "Docs", "op": "create", "data": {"code": "a"}}
NOT_PRIMARY = {"ok": 0, "code": 10107, "codeName": "NotWritablePrimary", "errmsg": "not primary"}


@case("error.not_primary", "not primary (10107): a read is retried once by the driver, then "
      "UNAVAILABLE retryable; a write is not resent (no retryable writes) and is UNAVAILABLE "
      "retryable; a retry that succeeds is answered ok")
def _(s):
    s.ready()
    s.send(FETCH_A)
    s.reply(s.command(FIND_A), NOT_PRIMARY)
    s.reply(s.command(FIND_A, timeout=3), NOT_PRIMARY)  # the driver's one read retry
    same(s.answer(), err("UNAVAILABLE", True, "no primary"), "the reply")
    s.send(FETCH_A)
    s.reply(s.command(FIND_A), NOT_PRIMARY)
    s.reply(s.command(FIND_A, timeout=3), cursor("docDocs", [{"_id": "a"}]))
    same(s.answer(), ok([{"code": "a"}], 1), "the reply")
    s.exchange(CREATE_A, INSERT_A, NOT_PRIMARY, err("UNAVAILABLE", True, "no primary"))
    s.nothing()


@case("error.max_time", "MaxTimeMSExpired (50) is UNAVAILABLE (ran longer than "
      "query_timeout_ms), TIMEOUT once the request's deadline has passed; a deadline already "
      "passed is TIMEOUT with nothing sent")
def _(s):
    s.ready()
    expired = {"ok": 0, "code": 50, "codeName": "MaxTimeMSExpired",
               "errmsg": "operation exceeded time limit"}
    s.exchange(FETCH_A, FIND_A, expired, err("UNAVAILABLE", True, "longer than query_timeout_ms"))
    s.nothing()
    deadline = int(time.time() * 1000) + 1000
    s.send({**FETCH_A, "deadline_ms": deadline})
    req = s.command(O(*list(FIND_A.items())[:-1],
                      ("maxTimeMS", Any(Int64, lambda v: 0 < v <= 1000, "0 < maxTimeMS <= 1000"))))
    time.sleep(max(0.0, deadline / 1000 - time.time()) + 0.1)
    s.reply(req, expired)
    same(s.answer(), err("TIMEOUT", True, "deadline passed during the fetch"), "the reply")
    s.request({**FETCH_A, "deadline_ms": int(time.time() * 1000) - 1},
              err("TIMEOUT", True, "deadline passed"))
    s.nothing()


@case("error.write_concern", "a writeConcernError on insert, findAndModify or delete is "
      "UNAVAILABLE, retryable false (the write may have been applied)")
def _(s):
    s.ready()
    wce = {"writeConcernError": {"code": 64, "codeName": "WriteConcernFailed",
                                 "errmsg": "waiting for replication timed out"}}
    unknown = "not confirmed by the write concern \\(majority\\); it may or may not have been"
    s.exchange(CREATE_A, INSERT_A, {"ok": 1, "n": 1, **wce}, err("UNAVAILABLE", False, unknown))
    s.exchange({"template": "Docs", "op": "update", "id": "a", "data": {"n": 1}},
               O(("findAndModify", "docDocs"), ("query", {"_id": {"$eq": "a"}}),
                 ("update", {"$set": {"n": Int64(1)}}), ("new", True),
                 ("maxTimeMS", Int64(QUERY_TIMEOUT_MS)), ("writeConcern", WC)),
               {"ok": 1, "value": {"_id": "a", "n": 1}, **wce},
               err("UNAVAILABLE", False, unknown))
    s.exchange({"template": "Docs", "op": "delete", "id": "a"},
               O(("delete", "docDocs"), ("ordered", True), ("writeConcern", WC),
                 ("deletes", [{"q": {"_id": {"$eq": "a"}}, "limit": 1}])),
               {"ok": 1, "n": 1, **wce}, err("UNAVAILABLE", False, unknown))
    s.nothing()


@case("error.unexpected", "an unexpected server error (2 BadValue, 13 Unauthorized) is INTERNAL "
      "resp. UNAVAILABLE, sent once, and no message holds the URI, host or port")
def _(s):
    s.ready()
    safe = Any(str, lambda m: "mongodb://" not in m and "127.0.0.1" not in m
               and str(s.port) not in m, "a message without the URI")
    bad = {"ok": 0, "code": 2, "codeName": "BadValue", "errmsg": "unknown operator: $foo"}
    answer = s.exchange(FETCH_A, FIND_A, bad, err("INTERNAL", True, "unknown operator: \\$foo"))
    same(answer["error"]["message"], safe, "the message")
    answer = s.exchange(CREATE_A, INSERT_A, bad, err("INTERNAL", True, "unknown operator"))
    same(answer["error"]["message"], safe, "the message")
    unauthorized = {"ok": 0, "code": 13, "codeName": "Unauthorized", "errmsg": "not authorized"}
    s.exchange(FETCH_A, FIND_A, unauthorized, err("UNAVAILABLE", True, "refused BEDS's "
                                                                         "credentials"))
    s.nothing()


@case("dead.hangup_read", "the server hangs up during a read: the driver resends it once on a "
      "new connection (ok if that works), else UNAVAILABLE retryable, within 5 s")
def _(s):
    s.ready()
    s.send(FETCH_A)
    s.command(FIND_A).hangup()
    s.reply(s.command(FIND_A, timeout=3), cursor("docDocs", [{"_id": "a"}]))
    same(s.answer(), ok([{"code": "a"}], 1), "the reply")
    t0 = time.monotonic()
    s.send(FETCH_A)
    s.command(FIND_A).hangup()
    s.command(FIND_A, timeout=3).hangup()
    same(s.answer(), err("UNAVAILABLE", True, "connection to MongoDB database 'docs' broke "
                                              "during the fetch$"), "the reply")
    check(time.monotonic() - t0 < 5, "the fetch took longer than 5 s")
    s.nothing()


@case("dead.hangup_write", "the server hangs up during insert, findAndModify and delete: each "
      "is sent once and answered UNAVAILABLE, retryable false, 'may or may not have been "
      "applied', within 5 s")
def _(s):
    s.ready()
    unknown = "broke during the %s; it may or may not have been applied$"
    for request, command, what in [
            (CREATE_A, INSERT_A, "create"),
            ({"template": "Docs", "op": "update", "id": "a", "data": {"n": 1}},
             O(("findAndModify", "docDocs"), ("query", {"_id": {"$eq": "a"}}),
               ("update", {"$set": {"n": Int64(1)}}), ("new", True),
               ("maxTimeMS", Int64(QUERY_TIMEOUT_MS)), ("writeConcern", WC)), "update"),
            ({"template": "Docs", "op": "delete", "id": "a"},
             O(("delete", "docDocs"), ("ordered", True), ("writeConcern", WC),
               ("deletes", [{"q": {"_id": {"$eq": "a"}}, "limit": 1}])), "delete")]:
        t0 = time.monotonic()
        s.send(request)
        s.command(command).hangup()
        same(s.answer(), err("UNAVAILABLE", False, unknown % what), f"the reply to {what}")
        check(time.monotonic() - t0 < 5, f"the {what} took longer than 5 s")
        s.nothing()


@case("dead.silent_write", "a server that never answers an insert: UNAVAILABLE retryable false "
      "after socketTimeoutMS = query_timeout_ms + 1 s (1 s + 1 s), sent once",
      query_timeout_ms=1000)
def _(s):
    wc = {"w": "majority", "wtimeout": Int64(1000)}
    s.ready(wc=wc)
    t0 = time.monotonic()
    s.send(CREATE_A)
    s.command(O(("insert", "docDocs"), ("ordered", True), ("writeConcern", wc),
                ("documents", [{"_id": "a"}])))
    answer = s.answer(timeout=15)
    took = time.monotonic() - t0
    same(answer, err("UNAVAILABLE", False, "broke during the create; it may or may not"),
         "the reply")
    check(1.8 <= took < 6, f"answered after {took:.1f} s, expected about 2 s")
    s.nothing()


@case("dead.silent_read", "a server that never answers a find: two attempts (the driver's read "
      "retry), each cut by the URI's socketTimeoutMS=1500 (the URI wins over the adapter's "
      "default), then UNAVAILABLE retryable", uri_options="?socketTimeoutMS=1500")
def _(s):
    s.ready()
    t0 = time.monotonic()
    s.send(FETCH_A)
    s.command(FIND_A)
    s.command(FIND_A, timeout=4)
    same(s.answer(timeout=10), err("UNAVAILABLE", True, "broke during the fetch$"), "the reply")
    took = time.monotonic() - t0
    check(2.9 <= took < 7, f"answered after {took:.1f} s, expected about 2 × 1.5 s")
    s.nothing()


@case("dead.stopped", "the server stops after IPL: a fetch is UNAVAILABLE retryable at once; the "
      "next create waits reconnect_wait_ms (2 s) for a server, then UNAVAILABLE 'not reachable', "
      "retryable (never sent)")
def _(s):
    s.ready()
    s.server.stop()
    answer, took = timed(lambda: (s.send(FETCH_A), s.answer())[1])
    same(answer, err("UNAVAILABLE", True), "the fetch's reply")
    check(took < 10, f"the fetch took {took:.1f} s")
    answer, took = timed(lambda: (s.send(CREATE_A), s.answer())[1])
    same(answer, err("UNAVAILABLE", True, "is not reachable \\(no server could be selected\\)$"),
         "the create's reply")
    check(1.8 <= took < 10, f"the create took {took:.1f} s, expected about 2 s")


@case("injection", "operator-looking input is refused before anything is sent (VALIDATION or "
      "BAD_REQUEST; TOO_LARGE over max_document_bytes); the next command the server sees is the "
      "following valid request, where a '$…' id stays a literal under $eq",
      extra=("--max-document-bytes", "4096"))
def _(s):
    s.ready()
    docs = {"template": "Docs"}
    obj = "must be an? \\w+ \\(\\w+\\), got an object"  # a value's type check
    refused = [
        ({"op": "fetch", "where": {"title": {"$gt": ""}}}, "VALIDATION",
         "unknown operator '\\$gt'"),
        ({"op": "fetch", "where": {"title": {"$ne": None}}}, "VALIDATION", "unknown operator"),
        ({"op": "fetch", "where": {"title": {"eq": {"$ne": ""}}}}, "VALIDATION", "'title' " + obj),
        ({"op": "fetch", "where": {"$where": "sleep(1000)"}}, "VALIDATION", "not a filter"),
        ({"op": "fetch", "where": {"meta.a": 1}}, "VALIDATION", "not a filter"),
        ({"op": "fetch", "where": {"meta": {"$exists": True}}}, "VALIDATION", "not a filter"),
        ({"op": "count", "where": {"n": {"in": [{"$gt": 0}]}}}, "VALIDATION", "'n' " + obj),
        ({"op": "fetch", "order": "$natural"}, "VALIDATION", "cannot order"),
        ({"op": "fetch", "id": {"$ne": None}}, "BAD_REQUEST", "'id' must be a string or an int"),
        ({"op": "create", "data": {"code": "x", "$where": "1"}}, "VALIDATION",
         "unknown field '\\$where'"),
        ({"op": "create", "data": {"code": {"$gt": ""}}}, "VALIDATION", "'code' " + obj),
        ({"op": "create", "data": {"code": "x", "meta": {"$set": {"n": 1}}}}, "VALIDATION",
         "key '\\$set' is not allowed"),
        ({"op": "create", "data": {"code": "x", "meta": {"a": [{"b.c": 1}]}}}, "VALIDATION",
         "key 'b.c' is not allowed"),
        ({"op": "create", "data": {"code": "x", "meta": {"pad": "y" * 5000}}}, "TOO_LARGE",
         "over the limit of 4096"),
        ({"op": "update", "id": "a", "data": {"n": {"$inc": 1}}}, "VALIDATION", "'n' " + obj),
        ({"op": "update", "id": "a", "data": {"$set": {"n": 1}}}, "VALIDATION",
         "unknown field '\\$set'"),
        ({"op": "delete", "id": {"$gt": ""}}, "BAD_REQUEST", "'id' must be a string or an int"),
    ]
    for body, code, message in refused:
        s.request({**docs, **body}, err(code, False, message))
    s.nothing()
    s.exchange({**docs, "op": "fetch", "id": "$where"},
               O(("find", "docDocs"), ("filter", {"_id": {"$eq": "$where"}}),
                 ("sort", O(("_id", 1))), ("limit", Int64(100)),
                 ("maxTimeMS", Int64(QUERY_TIMEOUT_MS))),
               cursor("docDocs", []), err("NOT_FOUND", False, "was not found"))


@case("replset.retryable_write", "as a replica-set primary with sessions: commands carry lsid, "
      "writes a txnNumber; an insert whose connection broke is resent once with the same "
      "lsid/txnNumber (ok when that works, else UNAVAILABLE retryable false)", replset=True)
def _(s):
    s.ready(strip=("lsid",))
    lsid = Any(dict, lambda v: list(v) == ["id"] and isinstance(v["id"], uuid.UUID), "an lsid")
    for second, expected in [("reply", ok([{"code": "a"}], 1)),
                             ("hangup", err("UNAVAILABLE", False, "may or may not have been"))]:
        s.send(CREATE_A)
        first = s.command()
        doc = OrderedDict(first.doc)
        same(doc, {"insert": "docDocs", "ordered": True, "$db": "beds", "lsid": lsid,
                   "txnNumber": Any(Int64, lambda v: v >= 1, "a txnNumber"),
                   "writeConcern": WC, "documents": [{"_id": "a"}]}, "the insert")
        first.hangup()
        retry = s.command(timeout=3)
        same(OrderedDict(retry.doc), doc, "the retried insert")
        if second == "reply":
            s.reply(retry, {"ok": 1, "n": 1})
        else:
            retry.hangup()
        same(s.answer(), expected, f"the reply after the retry's {second}")
    s.nothing()


# ---- exactly once (an idempotency key on a write) ----

BYTES32 = Any(bytes, lambda v: len(v) == 32, "32 bytes (SHA-256)")
DATE = Any(datetime.datetime, text="a BSON date")
RECORDS_INDEX = O(("createIndexes", "beds_idempotency"),
                  ("indexes", [{"key": O(("expires_at", 1)), "name": "beds_expires",
                                "expireAfterSeconds": Int64(0)}]),
                  ("writeConcern", WC))
INSERT_A = {"insert": "docDocs", "ordered": True, "writeConcern": WC, "documents": [{"_id": "a"}]}
DUPLICATE = {"ok": 1, "n": 0, "writeErrors": [{"index": 0, "code": 11000,
                                               "errmsg": "E11000 duplicate key error"}]}


def keyed(data, key):
    return {"template": "Docs", "op": "create", "data": data, "idempotency_key": key}


def replayed(data, count):
    return dict(ok(data, count), replayed=True)


def claim(s, reply):
    """The standalone claim: a pending record inserted before the effect; returns it."""
    req = s.command({"insert": "beds_idempotency", "ordered": True, "writeConcern": WC,
                     "documents": [O(("_id", BYTES32), ("digest", BYTES32), ("state", "pending"),
                                     ("claimed_at", DATE), ("expires_at", DATE))]})
    s.reply(req, reply)
    record = req.doc["documents"][0]
    ttl = (record["expires_at"] - record["claimed_at"]).total_seconds()
    check(ttl == 86400, f"the record expires {ttl} s after its claim, expected ttl_s 86400")
    return record


def complete(s, record, reply={"ok": 1, "n": 1, "nModified": 1}):
    """The standalone completion: the claim (as claimed) set done with the recorded reply."""
    req = s.command({"update": "beds_idempotency", "ordered": True, "writeConcern": WC,
                     "updates": [{"q": O(("_id", record["_id"]), ("state", "pending"),
                                         ("claimed_at", record["claimed_at"])),
                                  "u": {"$set": O(("state", "done"),
                                                  ("reply", Any(str, text="the reply")))}}]})
    s.reply(req, reply)
    return req.doc["updates"][0]["u"]["$set"]["reply"]


def find_record(s, record_id, docs):
    s.reply(s.command(O(("find", "beds_idempotency"), ("filter", {"_id": {"$eq": record_id}}),
                        ("limit", Int64(1)), ("maxTimeMS", Int64(QUERY_TIMEOUT_MS)))),
            cursor("beds_idempotency", docs))


def first_keyed(s):
    """IPL, then the session's first keyed write (create a, key k1): the records' index first."""
    s.ready()
    s.send(keyed({"code": "a"}, "k1"))
    s.reply(s.command(RECORDS_INDEX), {"ok": 1})


def ms_now():
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@case("once.standalone", "a keyed create on a standalone server: the records' TTL index once, "
      "a pending record claimed before the insert and completed (done, reply) after it; the same "
      "key again is answered from the record (replayed) without the insert; with another request "
      "CONFLICT; a failed effect releases its claim")
def _(s):
    first_keyed(s)
    record = claim(s, {"ok": 1, "n": 1})
    s.reply(s.command(INSERT_A), {"ok": 1, "n": 1})
    recorded = complete(s, record)
    same(s.answer(), ok([{"code": "a"}], 1), "the first reply")
    same(json.loads(recorded), {"data": [{"code": "a"}], "count": 1}, "the recorded reply")
    done = dict(record, state="done", reply=recorded)
    # The same request again: the claim meets the record, which answers; no insert.
    s.send(keyed({"code": "a"}, "k1"))
    again = claim(s, DUPLICATE)
    check(again["_id"] == record["_id"] and again["digest"] == record["digest"],
          "a repeat has the first one's identity and digest")
    find_record(s, record["_id"], [done])
    same(s.answer(), replayed([{"code": "a"}], 1), "the repeat's reply")
    # The same key with another request: CONFLICT, nothing run.
    s.send(keyed({"code": "b"}, "k1"))
    other = claim(s, DUPLICATE)
    check(other["digest"] != record["digest"], "another request has another digest")
    find_record(s, record["_id"], [done])
    same(s.answer(), err("CONFLICT", False, "reused with a different request"), "the reuse")
    # An effect that fails (its own key exists): the claim is released, the error answered.
    s.send(keyed({"code": "a"}, "k2"))
    fresh = claim(s, {"ok": 1, "n": 1})
    s.reply(s.command(INSERT_A), DUPLICATE)
    s.reply(s.command({"delete": "beds_idempotency", "ordered": True, "writeConcern": WC,
                       "deletes": [{"q": O(("_id", fresh["_id"]), ("state", "pending"),
                                           ("claimed_at", fresh["claimed_at"])), "limit": 1}]}),
            {"ok": 1, "n": 1})
    same(s.answer(), err("CONFLICT", False, "exists"), "the failed create")
    s.nothing()


@case("once.standalone_pending", "a repeat that finds its record pending: UNAVAILABLE "
      "(retryable) while the claim is fresh; a claim older than the lease (an attempt that died) "
      "is taken over, and the write applied and completed")
def _(s):
    first_keyed(s)
    mine = claim(s, DUPLICATE)
    pending = {"_id": mine["_id"], "digest": mine["digest"], "state": "pending",
               "claimed_at": ms_now(), "expires_at": ms_now()}
    find_record(s, mine["_id"], [pending])
    same(s.answer(), err("UNAVAILABLE", True, "being applied"), "the reply while pending")
    s.send(keyed({"code": "a"}, "k1"))
    mine = claim(s, DUPLICATE)
    stale = dict(pending, claimed_at=ms_now() - datetime.timedelta(hours=1))
    find_record(s, mine["_id"], [stale])
    take = s.command({"update": "beds_idempotency", "ordered": True, "writeConcern": WC,
                      "updates": [{"q": O(("_id", mine["_id"]), ("state", "pending"),
                                          ("claimed_at", stale["claimed_at"])),
                                   "u": {"$set": O(("claimed_at", mine["claimed_at"]))}}]})
    s.reply(take, {"ok": 1, "n": 1, "nModified": 1})
    s.reply(s.command(INSERT_A), {"ok": 1, "n": 1})
    complete(s, mine)
    same(s.answer(), ok([{"code": "a"}], 1), "the reply after the takeover")
    s.nothing()


def txn_command(s, name, db="beds", timeout=5.0):
    """The next command, which must be `name` on `db`, in a transaction (lsid, txnNumber,
    autocommit false); its document without those."""
    try:
        req = s.server._request_q.get(timeout=timeout)
    except queue.Empty:
        raise Failure(f"expected {name} within {timeout} s, the server received nothing")
    doc = OrderedDict(req.doc)
    check(next(iter(doc)) == name, f"expected the command {name}, got {req!r}")
    check(doc.pop("$db", None) == db, f"{name} is not for database {db}: {req!r}")
    check(isinstance(doc.pop("lsid", None), dict), f"{name} has no lsid: {req!r}")
    check(isinstance(doc.pop("txnNumber", None), Int64), f"{name} has no txnNumber: {req!r}")
    check(doc.pop("autocommit", None) is False, f"{name} is not in a transaction: {req!r}")
    return req, doc


def txn_begin(s, record_docs):
    """The transaction's first command: the record looked up; answered with `record_docs`."""
    req, doc = txn_command(s, "find")
    same(doc, {"find": "beds_idempotency", "filter": {"_id": {"$eq": BYTES32}},
               "limit": Int64(1), "maxTimeMS": Int64(QUERY_TIMEOUT_MS),
               "startTransaction": True}, "the lookup opening the transaction")
    s.reply(req, cursor("beds_idempotency", record_docs))
    return req.doc["filter"]["_id"]["$eq"], req.doc["txnNumber"]


@case("once.replset", "a keyed create on a replica-set primary: lookup, insert and record in "
      "one transaction (no per-write concern), committed with writeConcern majority; the same "
      "key again finds the record and aborts (replayed); a WriteConflict (transient) runs the "
      "whole transaction again", replset=True)
def _(s):
    s.ready(strip=("lsid",))
    s.send(keyed({"code": "a"}, "k1"))
    s.reply(s.command(RECORDS_INDEX, strip=("lsid",)), {"ok": 1})
    record_id, txn = txn_begin(s, [])
    req, doc = txn_command(s, "insert")
    same(doc, {"insert": "docDocs", "ordered": True, "documents": [{"_id": "a"}]}, "the insert")
    check(req.doc["txnNumber"] == txn, "the insert is in the lookup's transaction")
    s.reply(req, {"ok": 1, "n": 1})
    req, doc = txn_command(s, "insert")
    same(doc, {"insert": "beds_idempotency", "ordered": True,
               "documents": [O(("_id", record_id), ("digest", BYTES32), ("state", "done"),
                               ("reply", Any(str)), ("claimed_at", DATE),
                               ("expires_at", DATE))]}, "the record")
    s.reply(req, {"ok": 1, "n": 1})
    record = req.doc["documents"][0]
    req, doc = txn_command(s, "commitTransaction", db="admin")
    same(doc, {"commitTransaction": 1, "writeConcern": WC}, "the commit")
    s.reply(req, {"ok": 1})
    same(s.answer(), ok([{"code": "a"}], 1), "the first reply")
    # The same request again: the lookup finds the record; the transaction is aborted.
    s.send(keyed({"code": "a"}, "k1"))
    again_id, _ = txn_begin(s, [dict(record)])
    check(again_id == record_id, "a repeat looks up the same identity")
    req, doc = txn_command(s, "abortTransaction", db="admin")
    s.reply(req, {"ok": 1})
    same(s.answer(), replayed([{"code": "a"}], 1), "the repeat's reply")
    # A write conflict on the insert: the transaction is run again from its lookup.
    s.send(keyed({"code": "a"}, "k2"))
    _, first = txn_begin(s, [])
    req, _ = txn_command(s, "insert")
    s.reply(req, {"ok": 0, "code": 112, "codeName": "WriteConflict", "errmsg": "WriteConflict",
                  "errorLabels": ["TransientTransactionError"]})
    while True:  # the driver may end the failed transaction before the next one starts
        req = s.server._request_q.get(timeout=5)
        if next(iter(req.doc)) != "abortTransaction":
            s.server._request_q.put(req)
            break
        s.reply(req, {"ok": 1})
    _, second = txn_begin(s, [])
    check(second != first, "the second attempt is a new transaction")
    req, _ = txn_command(s, "insert")
    s.reply(req, {"ok": 1, "n": 1})
    req, _ = txn_command(s, "insert")
    s.reply(req, {"ok": 1, "n": 1})
    req, _ = txn_command(s, "commitTransaction", db="admin")
    s.reply(req, {"ok": 1})
    same(s.answer(), ok([{"code": "a"}], 1), "the reply after the conflict")
    s.nothing()


@case("once.replset_pending", "on a replica set, a record left pending by a claim made without "
      "transactions: fresh, the transaction is aborted and UNAVAILABLE (retryable) answered; "
      "stale, it is deleted in the transaction and the write applied and recorded",
      replset=True)
def _(s):
    s.ready(strip=("lsid",))
    s.send(keyed({"code": "a"}, "k1"))
    s.reply(s.command(RECORDS_INDEX, strip=("lsid",)), {"ok": 1})
    req, _ = txn_command(s, "find")
    record_id = req.doc["filter"]["_id"]["$eq"]
    s.reply(req, cursor("beds_idempotency", []))
    req, _ = txn_command(s, "insert")
    s.reply(req, {"ok": 1, "n": 1})
    req, _ = txn_command(s, "insert")
    digest = req.doc["documents"][0]["digest"]
    s.reply(req, {"ok": 1, "n": 1})
    req, _ = txn_command(s, "commitTransaction", db="admin")
    s.reply(req, {"ok": 1})
    same(s.answer(), ok([{"code": "a"}], 1), "the first reply")
    pending = {"_id": record_id, "digest": digest, "state": "pending",
               "claimed_at": ms_now(), "expires_at": ms_now()}
    s.send(keyed({"code": "a"}, "k1"))
    txn_begin(s, [pending])
    req, _ = txn_command(s, "abortTransaction", db="admin")
    s.reply(req, {"ok": 1})
    same(s.answer(), err("UNAVAILABLE", True, "being applied"), "the reply while pending")
    s.send(keyed({"code": "a"}, "k1"))
    txn_begin(s, [dict(pending, claimed_at=ms_now() - datetime.timedelta(hours=1))])
    req, doc = txn_command(s, "delete")
    same(doc, {"delete": "beds_idempotency", "ordered": True,
               "deletes": [{"q": O(("_id", record_id), ("state", "pending")), "limit": 1}]},
         "the stale claim's removal")
    s.reply(req, {"ok": 1, "n": 1})
    for name in ("insert", "insert"):
        req, _ = txn_command(s, name)
        s.reply(req, {"ok": 1, "n": 1})
    req, _ = txn_command(s, "commitTransaction", db="admin")
    s.reply(req, {"ok": 1})
    same(s.answer(), ok([{"code": "a"}], 1), "the reply after the takeover")
    s.nothing()


# ---------------------------------------------------------------------------------------------


def run_check(fn, session):
    s = None
    try:
        s = Session(**session)
        fn(s)
    except Failure as e:
        problem = f"{e}{s.diagnostics() if s else ''}"
    except Exception:  # a bug in the test or in mockupdb: show where
        problem = traceback.format_exc() + (s.diagnostics() if s else "")
    else:
        problem = None
    if s:
        s.close(failed=problem is not None)
    return problem


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", required=True, help="path to beds-rec-probe")
    parser.add_argument("--templates", required=True, help="tests/adapters/templates")
    parser.add_argument("-k", default="", help="run only checks whose name contains this")
    ARGS = parser.parse_args()
    if not os.access(ARGS.probe, os.X_OK):
        print(f"mongo_wire: {ARGS.probe} is not an executable (build beds-rec-probe first)")
        return 1
    failed = []
    t_all = time.monotonic()
    for name, doc, fn, session in CHECKS:
        if ARGS.k not in name:
            continue
        t0 = time.monotonic()
        problem = run_check(fn, dict(session))
        took = time.monotonic() - t0
        print(f"{'ok  ' if problem is None else 'FAIL'} {name:26} {took:5.1f} s  {doc}", flush=True)
        if problem is not None:
            print("    " + problem.replace("\n", "\n    "), flush=True)
            failed.append(name)
    for stopper in STOPPERS:
        stopper.join()
    total = time.monotonic() - t_all
    if failed:
        print(f"mongo_wire: {len(failed)} check(s) FAILED ({', '.join(failed)}) in {total:.0f} s")
        return 1
    print(f"mongo_wire: all checks passed in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
