#!/usr/bin/python3
"""End to end: the HTTP gateway under abuse, from raw sockets (Python's socket module) and
python3-requests, against a running `beds` binary with `[gateway] enabled = true` and small limits
(two HTTP threads, max_body_bytes 65536, max_header_bytes 4096, max_connections 50 across both,
idle_timeout_ms 1000), bound to
a fresh MariaDB database like gateway_test.py's node. Checked: headers over max_header_bytes are
431 and the connection closed; garbage bytes (and an HTTP/2 preface, a bad Content-Length, a
broken chunk) are 400 or a closed connection, and the node still answers; HTTP/1.0 without
keep-alive is answered and closed; pipelined requests are answered in order; slowloris (headers,
and a body, one byte every 200 ms) is closed after about idle_timeout_ms while another client is
answered at once; max_connections + 1 is 503 UNAVAILABLE with Retry-After and closed, and the idle
ones are closed after idle_timeout_ms; 10,000 connections opened and dropped and 2,000 half
requests leave the node answering, alive and with no leaked descriptors; a body over
max_body_bytes (with Content-Length, and chunked) is 413 TOO_LARGE; a keep-alive client that
pipelines 2,000 requests and never reads does not keep others from being answered. Then
admin.shutdown and a clean exit 0.

Needs the fixture's RabbitMQ and MariaDB (scripts/servers.sh start); ports come from
BEDS_AMQP_PORT and BEDS_MARIADB_PORT like the script's."""
import argparse
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import requests

from e2e_support import (check, open_channel, rpc, scratch_database, stop_node, summary,
                         wait_for_gateway_port, write_gateway_config)

MAX_BODY = 65536
MAX_HEADER = 4096
MAX_CONNECTIONS = 50
IDLE_MS = 1000
HOST = "127.0.0.1"


class Answer:
    """One HTTP answer read off a raw socket."""

    def __init__(self, status_line, headers, body):
        self.status_line = status_line
        parts = status_line.split(" ", 2)
        try:
            self.status = int(parts[1])
        except (IndexError, ValueError):
            self.status = None
        self.headers = headers  # lower-case names
        self.body = body
        try:
            self.json = json.loads(body)
        except ValueError:
            self.json = None

    def code(self):
        """The body's error code, "<ok>" or a placeholder."""
        if not isinstance(self.json, dict):
            return "<not JSON>"
        return (self.json.get("error") or {}).get("code", "<ok>" if self.json.get("ok") else "<no code>")


class Raw:
    """A client socket to the gateway that keeps what it received and how and when it ended."""

    def __init__(self, port, timeout=5.0, rcvbuf=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(timeout)
        self.s.connect((HOST, port))
        self.opened = time.monotonic()
        self.buf = b""  # received, not yet taken as an answer
        self.received = b""  # everything received
        self.ended = None  # None while open; "closed" (FIN) or "reset (...)" once the server ended it
        self.ended_at = None  # seconds after connect

    def send(self, data):
        """sendall; None, or the error it raised as text."""
        try:
            self.s.settimeout(5.0)
            self.s.sendall(data)
            return None
        except OSError as e:
            return "%s: %s" % (type(e).__name__, e)

    def _end(self, how):
        self.ended = how
        self.ended_at = time.monotonic() - self.opened

    def _fill(self, deadline):
        """One recv before `deadline`: whether it got bytes (False on timeout or the end)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.ended:
            return False
        self.s.settimeout(remaining)
        try:
            chunk = self.s.recv(65536)
        except socket.timeout:
            return False
        except OSError as e:
            self._end("reset (%s)" % e)
            return False
        if not chunk:
            self._end("closed")
            return False
        self.buf += chunk
        self.received += chunk
        return True

    def answer(self, timeout=5.0):
        """The next answer, or None when the connection ended or `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if sep:
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                try:
                    length = int(headers.get("content-length", "0"))
                except ValueError:
                    length = 0
                if len(rest) >= length:
                    self.buf = rest[length:]
                    return Answer(lines[0], headers, rest[:length])
            if not self._fill(deadline):
                return None

    def wait_end(self, timeout):
        """Waits up to `timeout` s for the server to end the connection: whether it did. Bytes
        arriving meanwhile are kept."""
        deadline = time.monotonic() + timeout
        while not self.ended and time.monotonic() < deadline:
            self._fill(deadline)
        return self.ended is not None

    def seen(self):
        """What this connection received and how it ended, for messages."""
        return "received %d bytes %r; %s" % (
            len(self.received), self.received[:300],
            "%s after %.2f s" % (self.ended, self.ended_at) if self.ended else "still open")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def get(port, path="/healthz", timeout=5.0):
    """One GET with Connection: close on a new connection: (answer or None, seconds, Raw or None)."""
    start = time.monotonic()
    try:
        c = Raw(port, timeout=timeout)
    except OSError as e:
        print("     (connect raised %s: %s)" % (type(e).__name__, e), flush=True)
        return None, time.monotonic() - start, None
    c.send(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (path, HOST, port)).encode())
    a = c.answer(timeout)
    elapsed = time.monotonic() - start
    c.wait_end(0.5)  # Connection: close: for the message, how it ended
    c.close()
    return a, elapsed, c


def seen(c):
    return c.seen() if c is not None else "connect failed"


def healthy(a):
    return a is not None and a.status == 200 and a.json == {"ok": True}


def counted(a):
    return a is not None and a.status == 200 and isinstance(a.json, dict) and \
        a.json.get("ok") is True and isinstance(a.json.get("count"), int)


def check_still_answers(port, what):
    a, t, c = get(port)
    check(healthy(a), "%s: GET /healthz on a new connection -> 200 {\"ok\":true} (%.3f s): %s"
          % (what, t, seen(c)))


def open_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


# ---- 1. headers over max_header_bytes ------------------------------------------------------------
def big_headers(port):
    c = Raw(port)
    err = c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n")
    a = c.answer(5)
    check(a is not None and a.status == 431 and a.code() == "TOO_LARGE",
          "an 8 KiB header (max_header_bytes %d) -> 431 TOO_LARGE (send: %s): %s"
          % (MAX_HEADER, err or "ok", c.seen()))
    check(c.wait_end(3), "... and the connection is closed after the 431: " + c.seen())
    c.close()
    c = Raw(port)
    err = c.send(b"GET /healthz?" + b"a" * 8192 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    a = c.answer(5)
    closed = c.wait_end(3)
    check(a is not None and a.status in (414, 431) and closed,
          "an 8 KiB request line -> 431 (or 414) and closed (send: %s): %s" % (err or "ok", c.seen()))
    c.close()
    check_still_answers(port, "after the 431")


# ---- 2. garbage ---------------------------------------------------------------------------------
def garbage(port):
    rnd = random.Random(13)
    cases = [
        ("garbage bytes", b"\x00\xff garbage\r\n\r\n"),
        ("4 KiB of random bytes", bytes(rnd.randrange(256) for _ in range(4096)) + b"\r\n\r\n"),
        ("a request line of spaces", b"      \r\n\r\n"),
        ("Content-Length: abc", b"POST /v1/Users HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"),
        ("a chunk size that is not hex", b"POST /v1/Users HTTP/1.1\r\nHost: x\r\n"
                                         b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
        ("two Content-Lengths that differ", b"POST /v1/Users HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                            b"Content-Length: 3\r\n\r\n{}x"),
    ]
    for what, data in cases:
        c = Raw(port)
        err = c.send(data)
        a = c.answer(3)
        closed = c.wait_end(3)
        check(closed and (a is None or (a.status == 400 and a.code() == "BAD_REQUEST")),
              "%s -> 400 BAD_REQUEST and closed, or closed (send: %s): %s" % (what, err or "ok", c.seen()))
        c.close()
    # gateway.md: "A request that is not HTTP/1.x is answered 400 and the connection closed."
    c = Raw(port)
    err = c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    a = c.answer(3)
    closed = c.wait_end(3)
    check(closed and (a is None or a.status == 400),
          "the HTTP/2 preface (PRI * HTTP/2.0) -> 400 and closed, or closed (send: %s): %s"
          % (err or "ok", c.seen()))
    c.close()
    check_still_answers(port, "after the garbage")


# ---- 3. HTTP/1.0 --------------------------------------------------------------------------------
def http10(port):
    c = Raw(port)
    c.send(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
    a = c.answer(5)
    check(healthy(a), "HTTP/1.0 GET /healthz without keep-alive -> 200: " + c.seen())
    check(c.wait_end(3) and c.ended == "closed" and not c.buf,
          "... and then the server closes the connection (recv returns b''): " + c.seen())
    c.close()


# ---- 4. pipelining ------------------------------------------------------------------------------
def pipelined(port):
    c = Raw(port, timeout=10)
    paths = ["/v1/Users/count", "/healthz", "/v1/Nope/count"]
    c.send(b"".join(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p).encode() for p in paths))
    answers = [c.answer(10) for _ in paths]
    got = [(a.status, a.code()) if a is not None else None for a in answers]
    check(counted(answers[0]) and healthy(answers[1]) and answers[2] is not None and
          answers[2].status == 404 and answers[2].code() == "UNKNOWN_TEMPLATE",
          "three GETs in one sendall (count, healthz, unknown template) -> 200 count, 200 healthz, 404 "
          "UNKNOWN_TEMPLATE, in that order: %s; %s" % (got, c.seen()))
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    a = c.answer(5)
    check(healthy(a), "... and the connection is kept alive for a fourth: " + c.seen())
    idle_from = time.monotonic()
    c.wait_end(IDLE_MS / 1000.0 + 1.5)
    idle_for = time.monotonic() - idle_from
    check(c.ended is not None and not c.buf and IDLE_MS / 1000.0 - 0.2 < idle_for < IDLE_MS / 1000.0 + 1.0,
          "... and closed by the server after idle_timeout_ms with nothing more sent (%.2f s idle): %s"
          % (idle_for, c.seen()))
    c.close()
    c = Raw(port)
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
           b"GET /v1/Users/count HTTP/1.1\r\nHost: x\r\n\r\n")
    a = c.answer(5)
    closed = c.wait_end(3)
    check(healthy(a) and closed and not c.buf,
          "two GETs in one sendall, the first with Connection: close -> one answer, then closed: " + c.seen())
    c.close()


# ---- 5. slowloris -------------------------------------------------------------------------------
def slow_sender(port, head, trickle, out):
    """Sends `head` at once, then `trickle` one byte every 200 ms until the server ends the
    connection or 6 s pass. out gets the Raw and the count of bytes trickled."""
    c = Raw(port)
    out["raw"] = c
    c.send(head)
    sent = 0
    for byte in trickle:
        if c.wait_end(0.2) or time.monotonic() - c.opened > 6:
            break
        err = c.send(bytes([byte]))
        if err:
            if not c.wait_end(0.5):
                c._end("send failed: " + err)
            break
        sent += 1
    out["sent"] = sent
    c.close()


def slowloris(port):
    runs = {
        "headers": (b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100),
        "body": (b"POST /v1/Users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n", b"{" + b" " * 99),
    }
    outs = {k: {} for k in runs}
    threads = [threading.Thread(target=slow_sender, args=(port, h, t, outs[k])) for k, (h, t) in runs.items()]
    for t in threads:
        t.start()
    time.sleep(0.4)
    a, t_ok, c = get(port)
    check(healthy(a) and t_ok < 0.5, "during slowloris another client's GET /healthz is answered at once "
          "(%.3f s): %s" % (t_ok, seen(c)))
    for t in threads:
        t.join(10)
    for k, out in outs.items():
        c = out.get("raw")
        check(c is not None and c.ended is not None and c.ended_at < 4.0,
              "slowloris on the %s (a byte every 200 ms, %s bytes sent) is closed by the server within "
              "idle_timeout_ms %d + 1 s (before 4 s): %s" % (k, out.get("sent"), IDLE_MS, seen(c)))


# ---- 6. max_connections -------------------------------------------------------------------------
def max_connections(port):
    start = time.monotonic()
    idle = []
    try:
        for _ in range(MAX_CONNECTIONS):
            idle.append(Raw(port))
    except OSError as e:
        print("     (connect raised %s: %s)" % (type(e).__name__, e), flush=True)
    one_more = Raw(port)
    opened = time.monotonic() - start
    a = one_more.answer(3)
    check(len(idle) == MAX_CONNECTIONS and opened < IDLE_MS / 1000.0,
          "%d idle connections and one more opened in %.3f s (under idle_timeout_ms)" % (len(idle), opened))
    check(a is not None and a.status == 503 and a.code() == "UNAVAILABLE" and
          a.headers.get("retry-after") == "1",
          "connection %d (max_connections %d) -> 503 UNAVAILABLE with Retry-After: 1: %s"
          % (MAX_CONNECTIONS + 1, MAX_CONNECTIONS, one_more.seen()))
    check(one_more.wait_end(2), "... and it is closed: " + one_more.seen())
    one_more.close()
    for c in idle:
        c.wait_end(max(0.0, 3.0 - (time.monotonic() - c.opened)))
    late = [("%.2f s" % c.ended_at) if c.ended else "open" for c in idle
            if not c.ended or c.ended_at > IDLE_MS / 1000.0 + 1.0]
    when = sorted(c.ended_at for c in idle if c.ended)
    talked = [c.seen() for c in idle if c.received]
    check(not late and not talked,
          "the %d idle connections are closed by the server, silently, within idle_timeout_ms + 1 s "
          "(first %.2f s, last %.2f s; late: %s; answered: %s)"
          % (len(idle), when[0] if when else -1, when[-1] if when else -1, late[:5], talked[:2]))
    for c in idle:
        c.close()
    time.sleep(0.2)
    check_still_answers(port, "once the idle ones are closed")
    a, t, c = get(port, "/v1/Users/count")
    check(counted(a), "... and GET /v1/Users/count -> 200 (%.3f s): %s" % (t, seen(c)))


# ---- 7. connection churn ------------------------------------------------------------------------
def churn(port, node):
    fds_before = open_fds(node.pid)
    start = time.monotonic()
    errors = []
    done = 0
    for _ in range(10000 // 10):
        batch = []
        for _ in range(10):
            try:
                batch.append(socket.create_connection((HOST, port), timeout=5))
            except OSError as e:
                errors.append("%s: %s" % (type(e).__name__, e))
        for s in batch:
            s.close()
            done += 1
    check(done == 10000 and not errors, "10,000 connections opened and dropped, 10 at a time, in %.2f s "
          "(%d connect errors: %s)" % (time.monotonic() - start, len(errors), errors[:3]))
    halves = [b"GET /v1/Users/count HTTP/1.1\r\nHost: x\r\nX-Half: ", b"GET /v1/Us",
              b"POST /v1/Users HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"email\":"]
    start = time.monotonic()
    errors = []
    for i in range(2000):
        try:
            s = socket.create_connection((HOST, port), timeout=5)
            s.sendall(halves[i % len(halves)])
            s.close()
        except OSError as e:
            errors.append("%s: %s" % (type(e).__name__, e))
    check(not errors, "2,000 connections that send half a request and close, in %.2f s (%d errors: %s)"
          % (time.monotonic() - start, len(errors), errors[:3]))
    a, t, c = get(port, timeout=10)
    check(healthy(a), "after the churn GET /healthz -> 200 (%.3f s): %s" % (t, seen(c)))
    a, t, c = get(port, "/v1/Users/count", timeout=10)
    check(counted(a), "after the churn GET /v1/Users/count -> 200 (%.3f s): %s" % (t, seen(c)))
    check(node.poll() is None, "after the churn the node's process is alive (exit %s)" % node.poll())
    # Every churned connection has ended by now or within idle_timeout_ms.
    fds_after = None
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        fds_after = open_fds(node.pid)
        if fds_before is not None and fds_after is not None and fds_after <= fds_before + 5:
            break
        time.sleep(0.2)
    check(fds_before is not None and fds_after is not None and fds_after <= fds_before + 5,
          "the node's open descriptors come back after the churn: %s before, %s after"
          % (fds_before, fds_after))


# ---- 8. bodies over max_body_bytes --------------------------------------------------------------
def big_body(port):
    text = b'{"email": "big@example.org", "name": "'
    text += b"x" * (100000 - len(text) - 2) + b'"}'
    c = Raw(port)
    err = c.send(b"POST /v1/Users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(text) + text)
    a = c.answer(5)
    check(a is not None and a.status == 413 and a.code() == "TOO_LARGE",
          "a %d-byte body with its Content-Length (max_body_bytes %d) -> 413 TOO_LARGE (send: %s): %s"
          % (len(text), MAX_BODY, err or "ok", c.seen()))
    check(c.wait_end(3), "... and the connection is closed after the 413: " + c.seen())
    c.close()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(text[i:i + 8192]), text[i:i + 8192])
                      for i in range(0, len(text), 8192)) + b"0\r\n\r\n"
    c = Raw(port)
    err = c.send(b"POST /v1/Users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    a = c.answer(5)
    check(a is not None and a.status == 413 and a.code() == "TOO_LARGE",
          "the same body chunked -> 413 TOO_LARGE (send: %s): %s" % (err or "ok", c.seen()))
    c.close()
    check_still_answers(port, "after the 413s")


# ---- 9. a client that never reads ---------------------------------------------------------------
TCP_STATES = {1: "ESTABLISHED", 7: "CLOSE (reset)", 8: "CLOSE_WAIT (the server sent FIN)"}


def tcp_state(sock):
    """The kernel's TCP state of `sock` (Linux TCP_INFO), without reading from it."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    except OSError:
        return None


def flood_sender(port, path, out, stop):
    """Pipelines 2,000 GET `path` on one keep-alive connection over ~2 s (100 every 100 ms, as far
    as the server takes them) and reads none of the answers; notes when the server ended it."""
    c = Raw(port, rcvbuf=4096)
    out["raw"] = c
    request = ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode()
    stream = request * 2000
    sent = 0
    start = time.monotonic()
    c.s.setblocking(False)
    while time.monotonic() - start < 2.5 and not stop.is_set():
        state = tcp_state(c.s)
        if state != 1:
            out["ended"] = "%s at %.2f s" % (TCP_STATES.get(state, state), time.monotonic() - start)
            break
        due = min(len(stream), len(request) * 100 * (1 + int((time.monotonic() - start) / 0.1)))
        if sent >= due:
            time.sleep(0.02)
            continue
        try:
            _, writable, _ = select.select([], [c.s], [], 0.05)
            if writable:
                sent += c.s.send(stream[sent:due])
        except OSError as e:
            out["error"] = "%s: %s at %.2f s" % (type(e).__name__, e, time.monotonic() - start)
            out["ended"] = "%s at %.2f s" % (TCP_STATES.get(tcp_state(c.s), tcp_state(c.s)),
                                             time.monotonic() - start)
            break
    out["requests"] = sent / len(request)
    out["seconds"] = time.monotonic() - start


def never_reads(port, node):
    # Answers of ~50 KB each, so that the gateway's writes to the client that never reads stall
    # once the socket buffers are full (2,000 answers of /healthz would all fit in them).
    r = requests.post("http://%s:%d/v1/Users" % (HOST, port), timeout=20,
                      json={"email": "big.%d@example.org" % os.getpid(), "profile": {"blob": "x" * 50000}})
    big = ((r.json().get("data") or [{}])[0].get("id") if r.status_code == 201 else None)
    check(isinstance(big, int), "a user with a 50 KB profile: POST /v1/Users -> 201: %d %s"
          % (r.status_code, r.text[:200]))
    out, stop = {}, threading.Event()
    thread = threading.Thread(target=flood_sender, args=(port, "/v1/Users/%s" % big, out, stop))
    thread.start()
    probes = []
    for i in range(6):
        time.sleep(0.35)
        a, t, c = get(port, "/v1/Users/count" if i % 2 else "/healthz")
        probes.append((a.status if a is not None else None, round(t, 3)))
    stop.set()
    thread.join(10)
    check(all(st == 200 and t < 1.0 for st, t in probes),
          "while one client pipelines GETs of a 50 KB row and never reads, others are answered "
          "(status, s): %s" % probes)
    c = out.get("raw")
    print("     (the never-reading client sent %.0f requests in %.2f s; send error: %s; the server ended "
          "it: %s)" % (out.get("requests", 0), out.get("seconds", 0), out.get("error"), out.get("ended")),
          flush=True)
    check("ended" in out, "the gateway ends the connection of the client that never reads once its "
          "writes stall for idle_timeout_ms (by the end of the ~2.5 s flood): %s; %.0f requests sent, "
          "TCP state now %s" % (out.get("ended", "still open"), out.get("requests", 0),
                                TCP_STATES.get(tcp_state(c.s), tcp_state(c.s)) if c else None))
    if c is not None:
        c.close()
    check(node.poll() is None, "the node's process is alive after the never-reading client (exit %s)"
          % node.poll())
    check_still_answers(port, "after the never-reading client")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", required=True)
    ap.add_argument("--servers", required=True)
    args = ap.parse_args()
    # ctest's TIMEOUT sends SIGTERM: unwind so the finally below stops our node.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated"))

    amqp_port, db_port, vhost, database = scratch_database(args.servers, "gwab")

    with tempfile.TemporaryDirectory() as conf:
        write_gateway_config(conf, "gwabuse", amqp_port, db_port, vhost, database, gateway=(
            "threads = 2\nmax_body_bytes = %d\nmax_header_bytes = %d\nmax_connections = %d\n"
            "idle_timeout_ms = %d\n" % (MAX_BODY, MAX_HEADER, MAX_CONNECTIONS, IDLE_MS)))
        log = open(os.path.join(conf, "beds.log"), "w+", errors="replace")
        node = subprocess.Popen([args.beds, "run", "--config-dir", conf], stderr=log)
        try:
            port = wait_for_gateway_port(log, node)
            check(port is not None, "the log names the gateway's port: %s" % port)
            if port is not None:
                base = "http://%s:%d" % (HOST, port)
                r = None
                deadline = time.time() + 30
                while time.time() < deadline and node.poll() is None:
                    try:
                        r = requests.get(base + "/readyz", timeout=10)
                        if r.status_code == 200:
                            break
                    except requests.RequestException:
                        pass
                    time.sleep(0.2)
                check(r is not None and r.status_code == 200, "GET /readyz -> 200 once a pool answers: %s"
                      % ("%d %s" % (r.status_code, r.text[:200]) if r is not None else "<no answer>"))
                conn, ch = open_channel(amqp_port, vhost, node)
                r = requests.post(base + "/v1/Users", json={"email": "abuse.%d@example.org" % os.getpid()},
                                  timeout=20)
                check(r.status_code == 201, "a user to count: POST /v1/Users -> 201: %d %s"
                      % (r.status_code, r.text[:200]))
                started = time.monotonic()
                steps = [("1 headers over max_header_bytes", lambda: big_headers(port)),
                         ("2 garbage", lambda: garbage(port)),
                         ("3 HTTP/1.0", lambda: http10(port)),
                         ("4 pipelining", lambda: pipelined(port)),
                         ("5 slowloris", lambda: slowloris(port)),
                         ("6 max_connections", lambda: max_connections(port)),
                         ("7 churn", lambda: churn(port, node)),
                         ("8 body over max_body_bytes", lambda: big_body(port)),
                         ("9 a client that never reads", lambda: never_reads(port, node))]
                for name, step in steps:
                    t = time.monotonic()
                    print("---- %s" % name, flush=True)
                    step()
                    print("     (%.2f s)" % (time.monotonic() - t), flush=True)
                print("     (the abuse took %.1f s)" % (time.monotonic() - started), flush=True)
                check(node.poll() is None, "the node's process is alive after all of it (exit %s)" % node.poll())

                bye = rpc(ch, "admin.shutdown.gwabuse",
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
