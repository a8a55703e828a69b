#!/usr/bin/python3
"""The observer's MongoDB reader (utilities/log_dumper/lib/MongoStore.php, Debian's php-mongodb) at
the wire level, against python3-mockupdb: no MongoDB server needed.

Each check starts a MockupDB answering hello as a standalone MongoDB 5.0 (no sessions, so commands
carry no lsid), runs one MongoStore call in `php`, takes the commands it sends off the mock server,
checks them (collection, filter, sort, limit, pipeline: every filter a page offers, an injection
string kept a plain string, regex metacharacters escaped) and scripts the answers; then checks what
the PHP side made of them (the BSON date as ISO text, _id as event_id). A server that does not
answer is a StoreError saying so within seconds."""
import datetime
import json
import os
import queue
import socket
import subprocess
import sys
import time

from bson import Regex
from mockupdb import CommandBase, MockupDB

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOOTSTRAP = os.path.join(ROOT, "utilities", "log_dumper", "lib", "bootstrap.php")
HELLO = {"ismaster": True, "isWritablePrimary": True, "helloOk": True, "minWireVersion": 0,
         "maxWireVersion": 13, "maxBsonObjectSize": 16 * 1024 * 1024,
         "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000,
         "localTime": datetime.datetime.now(datetime.timezone.utc)}
FAILURES = []
CHECKS = [0]
# Runs one MongoStore call: $argv[1] = URI, $argv[2] = the method, $argv[3] = its arguments (JSON).
PHP = r"""
require getenv('BOOTSTRAP');
use Beds\LogDumper\{Filters, MongoStore, StoreError};
$args = json_decode($argv[3], true);
try {
    $store = new MongoStore($argv[1], 'beds', 'msLogs');
    $result = match ($argv[2]) {
        'recent' => $store->recent(Filters::fromQuery($args), 100),
        'subtree' => $store->subtree($args['id'], 5000),
        'errors' => $store->errors($args['since'], 200),
        'lastMetrics' => $store->lastMetrics(),
    };
    echo json_encode(['ok' => $result]), "\n";
} catch (StoreError $e) {
    echo json_encode(['error' => $e->getMessage()]), "\n";
}
"""


def check(cond, what):
    CHECKS[0] += 1
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILURES.append(what)


class Mock:
    def __init__(self):
        self.server = MockupDB(request_timeout=10)
        self.port = self.server.run()
        for name in ("ismaster", "hello"):
            self.server.autoresponds(CommandBase(name), HELLO)
        for name in ("endSessions", "ping", "buildinfo"):
            self.server.autoresponds(CommandBase(name), {"ok": 1})
        self.uri = "mongodb://127.0.0.1:%d/" % self.port

    def call(self, method, args):
        return subprocess.Popen(["php", "-r", PHP, "--", self.uri, method, json.dumps(args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, BOOTSTRAP=BOOTSTRAP))

    def command(self, name):
        """The next command other than the autoanswered ones (MockupDB's queue, as the adapter's
        wire test takes it: its matcher would accept extra keys)."""
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                request = self.server._request_q.get(timeout=0.5)
            except queue.Empty:
                continue
            if request.command_name == name:
                return request
            request.fail("unexpected")
        return None

    def stop(self):
        self.server.stop()


def ts(s):
    """A UTC time as MockupDB decodes BSON dates: naive."""
    return datetime.datetime.fromisoformat(s.replace("Z", ""))


def finish(proc):
    out, err = proc.communicate(timeout=20)
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"php": out[-500:] + err[-500:]}


def recent_filters():
    m = Mock()
    try:
        proc = m.call("recent", {"node": "appserver", "kind": "request", "outcome": "VALIDATION",
                                 "from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z",
                                 "text": "a.*b"})
        cmd = m.command("find")
        doc = cmd.doc if cmd else {}
        check(doc.get("find") == "msLogs" and doc.get("sort") == {"ts": -1} and doc.get("limit") == 100,
              "recent: find on msLogs, newest first, 100: %r" % {k: doc.get(k) for k in ("find", "sort", "limit")})
        f = doc.get("filter", {})
        check(f.get("node") == "appserver" and f.get("kind") == "request" and
              f.get("message") == Regex("(^VALIDATION:|: VALIDATION$)", "") and
              f.get("ts") == {"$gte": ts("2026-12-01T00:00:00Z"), "$lte": ts("2026-12-02T00:00:00Z")} and
              f.get("$and") == [{"message": Regex(r"a\.\*b", "i")}],
              "recent: every filter as a query field, the text's metacharacters escaped: %r" % f)
        if cmd:
            cmd.reply({"cursor": {"id": 0, "ns": "beds.msLogs", "firstBatch": [
                {"_id": "appserver.dev.1", "ts": ts("2026-12-01T10:00:00.123Z"), "kind": "request",
                 "message": "VALIDATION: <b>x</b>"}]}, "ok": 1})
        got = finish(proc)
        events = got.get("ok") or [{}]
        check(events[0].get("event_id") == "appserver.dev.1" and
              events[0].get("ts") == "2026-12-01T10:00:00.123Z" and "_id" not in events[0],
              "recent: _id as event_id and the BSON date as ISO text: %r" % got)
        proc = m.call("recent", {"node": "{'$ne': 1}", "outcome": "error"})
        cmd = m.command("find")
        f = cmd.doc.get("filter", {}) if cmd else {}
        check(f.get("node") == "{'$ne': 1}" and f.get("kind") == {"$in": ["request", "adapter"]} and
              f.get("message") == {"$not": Regex("(^ok$|: ok$)", "")},
              "recent: an injection string stays a string; outcome=error: %r" % f)
        if cmd:
            cmd.reply({"cursor": {"id": 0, "ns": "beds.msLogs", "firstBatch": []}, "ok": 1})
        check(finish(proc).get("ok") == [], "recent: nothing found is an empty page")
    finally:
        m.stop()


def subtree_levels():
    m = Mock()
    try:
        proc = m.call("subtree", {"id": "n.dev.root"})
        first = m.command("find")
        check(first is not None and first.doc.get("filter") == {"_id": "n.dev.root"},
              "subtree: the root by _id: %r" % (first.doc.get("filter") if first else None))
        if first:
            first.reply({"cursor": {"id": 0, "ns": "beds.msLogs", "firstBatch": [
                {"_id": "n.dev.root", "parent_id": "", "ts": ts("2026-12-01T10:00:00Z")}]}, "ok": 1})
        level1 = m.command("find")
        check(level1 is not None and level1.doc.get("filter") == {"parent_id": {"$in": ["n.dev.root"]}},
              "subtree: then its children by parent_id (the by_parent index)")
        if level1:
            level1.reply({"cursor": {"id": 0, "ns": "beds.msLogs", "firstBatch": [
                {"_id": "n.dev.a", "parent_id": "n.dev.root", "ts": ts("2026-12-01T10:00:00Z")},
                {"_id": "n.dev.b", "parent_id": "n.dev.root", "ts": ts("2026-12-01T10:00:00Z")}]}, "ok": 1})
        level2 = m.command("find")
        check(level2 is not None and level2.doc.get("filter") == {"parent_id": {"$in": ["n.dev.a", "n.dev.b"]}},
              "subtree: then theirs, one query per level")
        if level2:
            level2.reply({"cursor": {"id": 0, "ns": "beds.msLogs", "firstBatch": []}, "ok": 1})
        got = finish(proc)
        check(sorted(e["event_id"] for e in got.get("ok", [])) == ["n.dev.a", "n.dev.b", "n.dev.root"],
              "subtree: the three events: %r" % got)
    finally:
        m.stop()


def errors_pipeline():
    m = Mock()
    try:
        proc = m.call("errors", {"since": "2026-12-01T00:00:00Z"})
        cmd = m.command("aggregate")
        pipeline = cmd.doc.get("pipeline", []) if cmd else []
        match = pipeline[0].get("$match", {}) if pipeline else {}
        check(cmd is not None and cmd.doc.get("aggregate") == "msLogs" and
              match == {"kind": "request", "ts": {"$gte": ts("2026-12-01T00:00:00Z")}, "message": {"$ne": "ok"}} and
              "$group" in pipeline[2],
              "errors: an aggregate matching failed requests in the window, grouped: %r" % pipeline[:1])
        if cmd:
            cmd.reply({"cursor": {"id": 0, "ns": "beds.msLogs", "firstBatch": [
                {"_id": {"template": "Users", "op": "create", "code": "VALIDATION"}, "count": 3,
                 "last_ts": ts("2026-12-01T11:00:00Z"), "event_id": "n.dev.9", "message": "VALIDATION: x"}]}, "ok": 1})
        got = finish(proc)
        g = (got.get("ok") or [{}])[0]
        check(g.get("template") == "Users" and g.get("code") == "VALIDATION" and g.get("count") == 3 and
              g.get("last_ts") == "2026-12-01T11:00:00.000Z", "errors: the group as the page reads it: %r" % got)
    finally:
        m.stop()


def no_server():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    started = time.time()
    proc = subprocess.Popen(["php", "-r", PHP, "--", "mongodb://127.0.0.1:%d/" % port, "recent", "{}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, BOOTSTRAP=BOOTSTRAP))
    got = finish(proc)
    check("error" in got and "MongoDB" in got["error"] and time.time() - started < 15,
          "no server: a StoreError naming MongoDB in %.1f s: %r" % (time.time() - started, got))


def main():
    for check_fn in (recent_filters, subtree_levels, errors_pipeline, no_server):
        try:
            check_fn()
        except Exception as e:  # one broken check must not hide the others
            check(False, "%s raised %r" % (check_fn.__name__, e))
    print("%d passed, %d failed" % (CHECKS[0] - len(FAILURES), len(FAILURES)))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
