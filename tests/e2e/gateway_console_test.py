#!/usr/bin/python3
"""End to end: the gateway's console page (docs/gateway.md "Console") in a real browser. Debian's
headless Chromium, driven through chromium-driver by python3-selenium, loads / from a running `beds`
binary with `[gateway] enabled = true` and `[gateway.auth] required = true`, bound to a fresh
MariaDB database with the repository's templates/ and a `logs` pool for /v1/lineage.

Checked over plain HTTP (python3-requests) first: /, /console.js and /console.css are served without
credentials with their content types, a Content-Security-Policy and nosniff, while /v1 still needs a
token; POST / is 405; every OpenAPI operation carries a tag (the console's picker). Then in the
browser, asserting on the DOM: the page loads the OpenAPI document (templates listed, data
templates first) and says the node is ready; a create without the token shows 401; with the token
it shows 201, the event id of the reply's header, the reply, and the request's lineage tree rooted
at that event id; a name holding HTML and script stays inert text (no element made, no script run);
a create without its required field shows 422 VALIDATION; a fetch by key with no key is stopped in
the form; a fetch by key shows the row; "Use as parent" makes the next request a child of the last
one (checked in /v1/lineage of the parent). `bedsctl curl` prints commands that, run by sh with
$BEDS_TOKEN set, create and fetch through this gateway; a batch is refused with exit 2. The browser's console shows no error other than the
failed statuses this test asks for (a CSP violation or a script error would show there). A
screenshot of the page is kept as a test artifact: {artifacts}/console.png.

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

import requests

from e2e_support import (check, scratch_database, stop_node, summary, wait_for_gateway_port,
                         write_gateway_config)

TOKEN = "console-token-0123456789"
GATEWAY = f"""[gateway.auth]
required = true
[gateway.auth.principals.developer]
token = "{TOKEN}"
allow = ["*"]
"""
# Under Users.name's max of 64 characters (the form's input holds no more).
HOSTILE = '<img src=x onerror="window.__pwned=1"><b>Zoë</b>'


def browser(user_data_dir):
    """A headless Chromium through chromium-driver, or exits saying what to install."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        sys.exit("python3-selenium is missing: run scripts/install-deps.sh (it installs chromium, "
                 "chromium-driver and python3-selenium)")
    for path in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not os.path.exists(path):
            sys.exit(path + " is missing: run scripts/install-deps.sh (it installs chromium, "
                     "chromium-driver and python3-selenium)")
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1200", "--user-data-dir=" + user_data_dir):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", required=True)
    ap.add_argument("--servers", required=True)
    ap.add_argument("--bedsctl", required=True)
    ap.add_argument("--artifacts", required=True, help="where the screenshot is kept")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated"))
    os.makedirs(args.artifacts, exist_ok=True)
    amqp_port, db_port, vhost, database = scratch_database(args.servers, "console")

    with tempfile.TemporaryDirectory() as conf:
        write_gateway_config(conf, "consolenode", amqp_port, db_port, vhost, database, gateway=GATEWAY)
        log = open(os.path.join(conf, "beds.log"), "w+", errors="replace")
        node = subprocess.Popen([args.beds, "run", "--config-dir", conf], stderr=log)
        driver = None
        try:
            port = wait_for_gateway_port(log, node)
            check(port is not None, "the node logged 'gateway: serving HTTP on 127.0.0.1:PORT'")
            if port is None:
                return
            base = "http://127.0.0.1:%d" % port
            served(base)
            curl_lines(args.bedsctl, conf, port)
            driver = browser(os.path.join(conf, "chromium"))
            in_browser(driver, base, args.artifacts)
        finally:
            if driver is not None:
                try:
                    driver.save_screenshot(os.path.join(args.artifacts, "console.png"))
                finally:
                    driver.quit()
            stop_node(node, log)


def served(base):
    for path, kind in (("/", "text/html"), ("/console.js", "text/javascript"),
                       ("/console.css", "text/css")):
        r = requests.get(base + path, timeout=10)
        check(r.status_code == 200 and r.headers.get("Content-Type", "").startswith(kind),
              "GET %s without credentials -> 200 %s: %d %s" %
              (path, kind, r.status_code, r.headers.get("Content-Type")))
        csp = r.headers.get("Content-Security-Policy", "")
        check("script-src 'self'" in csp and "default-src 'none'" in csp,
              "%s has a Content-Security-Policy allowing only its own script: %r" % (path, csp))
        check(r.headers.get("X-Content-Type-Options") == "nosniff", path + " is sent with nosniff")
    r = requests.get(base + "/", timeout=10)
    check('src="/console.js"' in r.text and "<script>" not in r.text,
          "the page loads its script from /console.js and has no inline script")
    r = requests.post(base + "/", data="x", timeout=10)
    check(r.status_code == 405 and "GET" in r.headers.get("Allow", ""),
          "POST / -> 405 with Allow: GET: %d %s" % (r.status_code, r.headers.get("Allow")))
    r = requests.get(base + "/v1/Users/1", timeout=10)
    check(r.status_code == 401, "GET /v1/Users/1 without a token is still 401: %d" % r.status_code)
    doc = requests.get(base + "/v1/openapi.json", timeout=10).json()
    untagged = [m + " " + p for p, ms in doc["paths"].items() for m, op in ms.items()
                if not op.get("tags")]
    check(not untagged, "every OpenAPI operation has a tag: untagged %s" % untagged)
    check(doc["paths"]["/v1/Users"]["post"]["tags"] == ["Users"], "Users' create is tagged Users")


def curl_lines(bedsctl, conf, port):
    env = dict(os.environ, BEDS__GATEWAY__LISTEN="127.0.0.1:%d" % port, BEDS_TOKEN=TOKEN)

    def curl_of(envelope):
        return subprocess.run([bedsctl, "--config-dir", conf, "curl", json.dumps(envelope)],
                              capture_output=True, text=True, env=env)

    email = "curl-%d@example.org" % os.getpid()
    printed = curl_of({"template": "Users", "op": "create", "data": {"email": email, "name": "O'Curl"}})
    check(printed.returncode == 0 and printed.stdout.startswith("curl ") and
          "$BEDS_TOKEN" in printed.stdout and TOKEN not in printed.stdout,
          "bedsctl curl prints a create, the token left to $BEDS_TOKEN: %r %r" %
          (printed.stdout, printed.stderr))
    ran = subprocess.run(["sh", "-c", printed.stdout], capture_output=True, text=True, env=env)
    try:
        created = json.loads(ran.stdout)
    except ValueError:
        created = {}
    check(created.get("ok") is True and created["data"][0]["name"] == "O'Curl",
          "the printed create, run by sh, creates the row: %r %r" % (ran.stdout[:300], ran.stderr[:300]))
    printed = curl_of({"template": "Users", "op": "fetch", "where": {"email": email}, "limit": 5})
    ran = subprocess.run(["sh", "-c", printed.stdout], capture_output=True, text=True, env=env)
    check(printed.returncode == 0 and email in ran.stdout,
          "the printed filtered fetch finds it: %r -> %r" % (printed.stdout, ran.stdout[:300]))
    printed = curl_of({"batch": [{"template": "Users", "op": "fetch", "id": "1"}]})
    check(printed.returncode == 2 and printed.stdout == "" and "WebSocket" in printed.stderr,
          "a batch has no curl form: exit 2 saying so: %d %r" % (printed.returncode, printed.stderr))


def in_browser(driver, base, artifacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    def wait(what, condition, timeout=30):
        try:
            return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition())
        except Exception:  # selenium's TimeoutException, or an element gone stale meanwhile
            check(False, "in time: " + what)
            return None

    def text(element_id):
        return driver.find_element(By.ID, element_id).text

    def pick(template, operation_id):
        Select(driver.find_element(By.ID, "template")).select_by_value(template)
        select = Select(driver.find_element(By.ID, "operation"))
        for option in select.options:
            if option.text.split()[0] == operation_id:
                select.select_by_value(option.get_attribute("value"))
                return True
        check(False, "the operation %s is offered for %s" % (operation_id, template))
        return False

    def field(where, name):
        return driver.find_element(By.CSS_SELECTOR, '[data-where="%s"][name="%s"]' % (where, name))

    def fill(where, name, value):
        f = field(where, name)
        f.clear()
        f.send_keys(value)

    def send(expect_status):
        before = driver.execute_script("return document.getElementById('status').textContent")
        driver.execute_script("document.getElementById('status').textContent = ''")
        driver.find_element(By.ID, "send").click()
        got = wait("the reply's status shows %s (it was %r)" % (expect_status, before),
                   lambda: text("status").startswith(str(expect_status)))
        return got

    def reply():
        try:
            return json.loads(text("reply"))
        except ValueError:
            return {}

    driver.get(base + "/")
    wait("the templates are listed from the OpenAPI document",
         lambda: len(Select(driver.find_element(By.ID, "template")).options) > 3)
    names = [o.text for o in Select(driver.find_element(By.ID, "template")).options]
    check("Users" in names and "Orders" in names and names[-1] in ("tickets", "lineage", "health"),
          "data templates first, the gateway's own routes last: %s" % names)
    wait("the badge says the node is ready", lambda: text("ready") == "ready")

    # A create without the token, then with it.
    pick("Users", "Users_create")
    email = "console-%d@example.org" % os.getpid()
    fill("body", "email", email)
    fill("body", "name", HOSTILE)
    fill("body", "profile", '{"plan": "pro"}')
    send(401)
    check("UNAUTHENTICATED" in text("reply"), "the 401's error is shown: %r" % text("reply")[:200])
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    if send(201):
        body = reply()
        event_id = text("event-id")
        check(body.get("ok") is True and body.get("event_id") == event_id and event_id,
              "201: the event id shown is the reply's: %r vs %r" % (event_id, body.get("event_id")))
        row = (body.get("data") or [{}])[0]
        check(row.get("name") == HOSTILE, "the row comes back with the name as sent: %r" % row)
        check(HOSTILE.replace('"', '\\"') in text("reply"), "the hostile name is shown as text")
        check(not driver.find_elements(By.CSS_SELECTOR, "#reply *, #lineage img, #lineage script"),
              "no element was made from the reply")
        check(driver.execute_script("return window.__pwned === undefined"),
              "no script in the reply ran")
        check("curl" in text("curl") and "/v1/Users" in text("curl") and TOKEN not in text("curl"),
              "the request is shown as curl, the token as $TOKEN: %r" % text("curl")[:200])
        root = wait("the lineage tree shows the request at its root",
                    lambda: driver.find_elements(
                        By.CSS_SELECTOR, '#lineage > li[data-event-id="%s"]' % event_id))
        if root:
            events = driver.find_elements(By.CSS_SELECTOR, "#lineage li")
            check(len(events) >= 2 and root[0].get_attribute("data-depth") == "0",
                  "the tree holds the request (depth 0) and what it caused: %d events" % len(events))
            check("Users/create" in root[0].text, "the root reads Users/create: %r" % root[0].text[:120])
        created_id = row.get("id")
    else:
        created_id = None

    # VALIDATION shown as the node answered it.
    pick("Users", "Users_create")  # the same operation: the form keeps what was typed
    field("body", "email").clear()
    fill("body", "name", "no email")
    send(422)
    check(reply().get("error", {}).get("code") == "VALIDATION", "422 VALIDATION shown: %r" % reply())

    # A path parameter left empty is caught in the form.
    pick("Users", "Users_get")
    driver.find_element(By.ID, "send").click()
    wait("the form says the id is required",
         lambda: driver.find_element(By.ID, "form-error").is_displayed() and
         "id is required" in text("form-error"))

    # Fetch by key, then a child of it through "Use as parent".
    if created_id is not None:
        fill("path", "id", str(created_id))
        if send(200):
            check(reply().get("data", [{}])[0].get("email") == email, "the fetch shows the row")
            parent = text("event-id")
            driver.find_element(By.ID, "use-parent").click()
            pick("Users", "Users_count")
            check(field("header", "X-Beds-Parent").get_attribute("value") == parent,
                  "X-Beds-Parent is filled with the last event id")
            if send(200):
                child = text("event-id")
                found = False
                deadline = time.time() + 20
                while time.time() < deadline and not found:
                    r = requests.get(base + "/v1/lineage/" + parent,
                                     headers={"Authorization": "Bearer " + TOKEN}, timeout=10)
                    found = r.status_code == 200 and child in r.text
                    if not found:
                        time.sleep(0.2)
                check(found, "the count is a child of the fetch in /v1/lineage")
                # The screenshot shows a tree.
                wait("the count's lineage is drawn", lambda: driver.find_elements(
                    By.CSS_SELECTOR, '#lineage > li[data-event-id="%s"]' % child))

    # What the browser logged: only the failed statuses this test asked for.
    errors = [e["message"] for e in driver.get_log("browser")
              if e.get("level") == "SEVERE" and "Failed to load resource" not in e["message"]]
    check(not errors, "no script error or CSP violation in the browser's console: %s" % errors[:3])
    print("screenshot: " + os.path.join(artifacts, "console.png"))


if __name__ == "__main__":
    try:
        main()
    finally:
        sys.exit(summary())
