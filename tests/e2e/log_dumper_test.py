#!/usr/bin/python3
"""End to end: the observer, utilities/log_dumper (PHP on Apache), on a log store written by a
real node. A `beds` node with a `logs` pool (the admin's handler, storing every event in msLogs in
its SQLite document store) and metric events every second takes traffic through its HTTP gateway
(python3-requests): creates, a request with 24 children (X-Beds-Parent), requests refused
VALIDATION; hostile events are published on beds.logs with python3-pika (HTML and script in the
message and the fields, an 8,000-character message, and a lone surrogate, which the node refuses
and parks). Then the node is stopped:
no BEDS process runs while the observer is checked.

Checked: PHPUnit (Debian's phpunit) runs the observer's tests against that store (the SQLite
reader: newest first, paging, every filter, an injection string, the subtree, audit by key, error
groups, IPL and metrics, nothing written). serve.sh starts Apache on a loopback port (and refuses
a store that does not exist); headless Chromium (chromium-driver, python3-selenium) opens every
page and the test asserts on the DOM: recent events with filters applied, the hostile message shown
as text with nothing run, a message that is not UTF-8 (put in the store by hand: the node refuses
such events) shown with replacement characters, the tree's rows, depths and bars, the audit trail of a key, the error
group, the IPL record and the node's last metrics; a POST is refused; with --basic-auth, no page
without the password. Screenshots are kept in {artifacts}/log_dumper-*.png. serve.sh stop stops
Apache by its pid.

Needs the fixture's RabbitMQ and MariaDB; ports from BEDS_AMQP_PORT and BEDS_MARIADB_PORT."""
import argparse
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time

import pika
import requests

from e2e_support import (ROOT, check, free_port, scratch_database, stop_node, summary, uuid7_hex,
                         wait_for_gateway_port, write_gateway_config)

SERVE = os.path.join(ROOT, "utilities", "log_dumper", "serve.sh")
NODE = "obsnode"
CHILDREN = 24
HOSTILE_MESSAGE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">boom'


def now_iso():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)


def traffic(base):
    """Requests through the gateway; returns (created key, tree root event id)."""
    key = None
    for i in range(3):
        r = requests.post(base + "/v1/Users", json={"email": "obs-%d-%d@example.org" % (os.getpid(), i),
                                                   "name": "Observer %d" % i}, timeout=10)
        check(r.status_code == 201, "create %d -> 201: %d %s" % (i, r.status_code, r.text[:200]))
        if r.status_code == 201:
            key = r.json()["data"][0]["id"]
    for _ in range(2):
        r = requests.post(base + "/v1/Users", json={"name": "no email"}, timeout=10)
        check(r.status_code == 422, "a create without its email -> 422: %d" % r.status_code)
    r = requests.get(base + "/v1/Users/%s" % key, timeout=10)
    root = r.json().get("event_id", "") if r.status_code == 200 else ""
    check(root != "", "the tree's root request -> 200 with an event id")
    for _ in range(CHILDREN):
        r = requests.get(base + "/v1/Users/count", headers={"X-Beds-Parent": root}, timeout=10)
        check(r.status_code == 200, "a child request -> 200: %d" % r.status_code)
    # More than a page of events (100) in all, so the recent page has older ones to link to.
    for _ in range(40):
        requests.get(base + "/v1/Users/%s" % key, timeout=10)
    return key, root


def hostile(amqp_port, vhost):
    """Events with hostile content published on beds.logs as a node would; the first one's id."""
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=amqp_port, virtual_host=vhost,
        credentials=pika.PlainCredentials("guest", "guest")))
    ch = conn.channel()
    ids = []
    # As the wire has them (docs/protocol.md "Log events"): msg and fields; stored as message and data.
    bodies = [
        {"msg": HOSTILE_MESSAGE, "fields": {"<b>key</b>": "<i>value</i>", "js": "javascript:alert(1)"}},
        {"msg": "long " + "<x>" * 2700},
        {"msg": "lone surrogate \udcff and U+FFFF \uffff end"},
    ]
    for extra in bodies:
        event_id = "%s.dev.%s" % (NODE, uuid7_hex())
        ids.append(event_id)
        event = {"event_id": event_id, "parent_id": "", "depth": 0, "kind": "log", "level": "warn",
                 "node": NODE, "env": "dev", "ts": now_iso(), "template": "sys", "op": "log"}
        event.update(extra)
        ch.basic_publish("beds.logs", "log.warn." + NODE, json.dumps(event).encode(),
                         pika.BasicProperties(content_type="application/json", message_id=event_id,
                                              delivery_mode=2))
    conn.close()
    return ids[0]


def stored(store, sql, args=()):
    db = sqlite3.connect("file:%s?mode=ro" % store, uri=True)
    try:
        return db.execute(sql, args).fetchone()[0]
    finally:
        db.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", required=True)
    ap.add_argument("--servers", required=True)
    ap.add_argument("--artifacts", required=True)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated"))
    os.makedirs(args.artifacts, exist_ok=True)
    amqp_port, db_port, vhost, database = scratch_database(args.servers, "obs")

    with tempfile.TemporaryDirectory() as conf:
        # Apache's workers (www-data) read the store: its directory must let them in.
        os.chmod(conf, 0o755)
        write_gateway_config(conf, NODE, amqp_port, db_port, vhost, database)
        store = os.path.join(conf, "docs.sqlite")
        # Metric events every second, stored like the admin role stores them (metric.# bound).
        env = dict(os.environ, BEDS__LOGGING__METRICS_INTERVAL_S="1",
                   BEDS__BROKERS__ADMINLOGSBROKER__BINDINGS='["log.#", "audit.#", "metric.#"]')
        log = open(os.path.join(conf, "beds.log"), "w+", errors="replace")
        node = subprocess.Popen([args.beds, "run", "--config-dir", conf], stderr=log, env=env)
        try:
            port = wait_for_gateway_port(log, node)
            check(port is not None, "the node serves its gateway")
            if port is None:
                return
            key, root = traffic("http://127.0.0.1:%d" % port)
            hostile_id = hostile(amqp_port, vhost)
            deadline = time.time() + 30
            ready = False
            while time.time() < deadline and not ready:
                time.sleep(0.3)
                try:
                    ready = (stored(store, "SELECT COUNT(*) FROM msLogs WHERE json_extract(doc,'$.parent_id') = ? "
                                    "AND json_extract(doc,'$.kind') = 'request'", (root,)) == CHILDREN and
                             stored(store, "SELECT COUNT(*) FROM msLogs WHERE id = ?", (hostile_id,)) == 1 and
                             stored(store, "SELECT COUNT(*) FROM msLogs WHERE json_extract(doc,'$.kind') = 'metric'") > 0)
                except sqlite3.Error:
                    pass
            check(ready, "the node stored the tree, the hostile events and a metric event")
        finally:
            stop_node(node, log)
        check(node.returncode == 0, "the node stopped: no BEDS process runs from here on")
        # The node refuses an event that is not valid UTF-8 (the lone surrogate above was parked),
        # but a store may hold one written by other means: put one in by hand.
        db = sqlite3.connect(store)
        db.execute("INSERT INTO msLogs (id, doc) VALUES (?, CAST(? AS TEXT))",
                   ("%s.dev.%s" % (NODE, uuid7_hex()),
                    b'{"kind": "log", "level": "warn", "node": "obsnode", "env": "dev", "ts": "'
                    + now_iso().encode() + b'", "message": "bad \xff\xfe bytes <u>underlined</u>"}'))
        db.commit()
        db.close()
        os.chmod(store, os.stat(store).st_mode | stat.S_IROTH)
        shutil.copy(store, os.path.join(args.artifacts, "log_dumper-store.sqlite"))

        # The pages first: Apache's www-data then finds the store as BEDS left it (no -wal or -shm
        # file, a directory it may not write), as after a demo.
        pages(store, conf, key, root, args.artifacts)
        phpunit(store, key, root, hostile_id)


def phpunit(store, key, root, hostile_id):
    dumper = os.path.join(ROOT, "utilities", "log_dumper")
    env = dict(os.environ, BEDS_LOG_SQLITE=store, BEDS_TEST_NODE=NODE, BEDS_TEST_ROOT=root,
               BEDS_TEST_CHILDREN=str(CHILDREN), BEDS_TEST_AUDIT_KEY=str(key),
               BEDS_TEST_HOSTILE=hostile_id)
    run = subprocess.run(["phpunit", "--bootstrap", os.path.join(dumper, "lib", "bootstrap.php"),
                          os.path.join(dumper, "tests")], capture_output=True, text=True, env=env)
    print(run.stdout[-3000:])
    check(run.returncode == 0 and "Skipped" not in run.stdout,
          "PHPUnit: every test of utilities/log_dumper/tests passed, none skipped: " + run.stderr[-500:])


def pages(store, conf, key, root, artifacts):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    run_dir = os.path.join(conf, "run")
    missing = subprocess.run([SERVE, "start", "--sqlite", os.path.join(conf, "nope.sqlite"),
                              "--run-dir", run_dir], capture_output=True, text=True)
    check(missing.returncode == 2 and "does not exist" in missing.stderr,
          "serve.sh refuses a store that does not exist: %d %r" % (missing.returncode, missing.stderr))
    port = free_port()
    started = subprocess.run([SERVE, "start", "--sqlite", store, "--port", str(port), "--run-dir", run_dir],
                             capture_output=True, text=True)
    check(started.returncode == 0, "serve.sh start: %s %s" % (started.stdout, started.stderr[-500:]))
    base = "http://127.0.0.1:%d/" % port
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1400", "--user-data-dir=" + os.path.join(conf, "chromium")):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        def visit(query, shot):
            started = time.time()
            driver.get(base + query)
            driver.save_screenshot(os.path.join(artifacts, "log_dumper-%s.png" % shot))
            return time.time() - started

        def rows(css="table tbody tr"):
            return driver.find_elements(By.CSS_SELECTOR, css)

        visit("", "recent")
        check(len(rows()) == 100 and driver.find_elements(By.CSS_SELECTOR, "a.older"),
              "recent events: a page of 100 rows and a link to older ones: %d" % len(rows()))
        visit("?page=recent&node=%s&kind=request&outcome=VALIDATION" % NODE, "recent-filtered")
        cells = [r.find_elements(By.TAG_NAME, "td") for r in rows()]
        check(len(cells) >= 2 and all(c[2].text == "request" and "VALIDATION" in c[6].text for c in cells),
              "filtered by node, kind and outcome: only VALIDATION requests (%d rows)" % len(cells))
        visit("?page=recent&text=%3Cscript%3E", "hostile")
        check(any(HOSTILE_MESSAGE[:40] in r.text for r in rows()),
              "the hostile message is shown as text")
        check(not driver.find_elements(By.CSS_SELECTOR, "main img, main script, main b, main i"),
              "no element was made from stored content")
        check(driver.execute_script("return window.__pwned === undefined"), "no stored script ran")
        visit("?page=recent&text=bytes", "invalid-utf8")
        check(any("bad \ufffd\ufffd bytes <u>underlined</u>" in r.text for r in rows()) and
              not driver.find_elements(By.CSS_SELECTOR, "main u"),
              "a message that is not UTF-8 shows with replacement characters, its markup as text")
        visit("?page=recent&kind=log&level=warn&text=long", "hostile-long")
        check(len(rows()) >= 1 and "…" in rows()[0].text,
              "the 8,000-character message is cut for its row: %d rows" % len(rows()))

        took = visit("?page=tree&id=" + root, "tree")
        tree = rows("table.tree tbody tr")
        depth0 = [r for r in tree if r.get_attribute("data-depth") == "0"]
        children = [r for r in tree if r.get_attribute("data-depth") == "1" and "request" in r.text]
        bars = driver.find_elements(By.CSS_SELECTOR, "table.tree svg rect")
        check(len(depth0) == 1 and depth0[0].get_attribute("data-event-id") == root and
              len(children) == CHILDREN and len(bars) == len(tree),
              "the tree: its root at depth 0, %d child requests at depth 1, a bar per row (%d rows, %d bars, %.2f s)"
              % (CHILDREN, len(tree), len(bars), took))
        visit("?page=audit&template=Users&key=%s" % key, "audit")
        check(len(rows()) >= 1 and all("Users/create" in r.text for r in rows()),
              "the audit trail of key %s: its create (%d rows)" % (key, len(rows())))
        visit("?page=errors&window=1h", "errors")
        check(any("Users/create" in r.text and "VALIDATION" in r.text for r in rows()),
              "the errors page groups the refused creates")
        visit("?page=nodes", "nodes")
        check(any(NODE in r.text for r in rows("table:first-of-type tbody tr")) and
              driver.find_elements(By.CSS_SELECTOR, 'tr[data-node="%s"]' % NODE),
              "the nodes page: the node's IPL record and last metrics")
        errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        check(not errors, "no error in the browser's console (a CSP violation would be one): %s" % errors[:3])
        r = requests.post(base, data="x", timeout=10)
        check(r.status_code == 405, "a POST is refused 405: %d" % r.status_code)
        r = requests.get(base + "?page=nope", timeout=10)
        check(r.status_code == 404, "an unknown page is 404: %d" % r.status_code)
        tail = requests.get(base + "?page=recent&tail=1", timeout=10).text
        check('http-equiv="refresh" content="5"' in tail and 'http-equiv="refresh"' not in
              requests.get(base + "?page=recent", timeout=10).text,
              "tail mode reloads the recent page every 5 s (and only tail mode)")
        csp = requests.get(base, timeout=10).headers.get("Content-Security-Policy", "")
        check("default-src 'none'" in csp, "pages are served with a Content-Security-Policy: %r" % csp)
    finally:
        driver.quit()
        stopped = subprocess.run([SERVE, "stop", "--run-dir", run_dir], capture_output=True, text=True)
        check(stopped.returncode == 0 and "stopped" in stopped.stdout, "serve.sh stop: " + stopped.stdout)
        try:
            requests.get(base, timeout=2)
            check(False, "Apache is gone after serve.sh stop")
        except requests.RequestException:
            check(True, "Apache is gone after serve.sh stop")

    port = free_port()
    started = subprocess.run([SERVE, "start", "--sqlite", store, "--port", str(port), "--run-dir", run_dir,
                              "--basic-auth", "ops:s3cret"], capture_output=True, text=True)
    try:
        base = "http://127.0.0.1:%d/" % port
        check(started.returncode == 0 and requests.get(base, timeout=10).status_code == 401 and
              requests.get(base, auth=("ops", "s3cret"), timeout=10).status_code == 200,
              "with --basic-auth: 401 without the password, 200 with it")
    finally:
        subprocess.run([SERVE, "stop", "--run-dir", run_dir], capture_output=True, text=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        sys.exit(summary())
