#!/usr/bin/python3
"""The README's "Add your own domain" walkthrough, run as a newcomer would run it, so that the
README cannot drift from what BEDS does. The section's fenced blocks are found by the HTML comment
on the line before each (`<!-- walkthrough: NAME -->`):

  env       the exports (servers' ports, credentials as BEDS__* variables)
  schema    the DBA's SQL, loaded twice into a scratch database (it says it is idempotent)
  template  the REL template, written into a scratch templates directory beside copies of the
            repository's templates/*.toml
  node      `beds template check` (must exit 0), `beds run …` (started in the background) and
            `bedsctl … ping` (retried until the node answers)
  requests  one bedsctl command per line; every reply must be "ok": true, and what the fetches
            and counts answer must agree with what the creates, updates and deletes did (decimals
            compared as the exact strings the client sent, e.g. "12.50")

The commands run with the repository's config/ and the README's exports, except where the test
servers differ from the demo's: ports, a vhost and a database of this test's own, a scratch SQLite
file, templates dir and spill file, no /metrics listener, and an environment name without an env
file (BEDS_ENV=walkthrough). Credentials are the README's.

  walkthrough_test.py --beds build/beds --bedsctl build/bedsctl --servers scripts/servers.sh
                      [--readme README.md]

Needs the fixture's RabbitMQ and MariaDB (scripts/servers.sh start); ports come from
BEDS_AMQP_PORT and BEDS_MARIADB_PORT like the script's. It talks to the node only through
bedsctl, as the README does."""
import argparse
import decimal
import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib

from e2e_support import FAILURES, ROOT, check, summary

SECTION = "## Add your own domain"
BLOCK = re.compile(r"^<!--\s*walkthrough:\s*([a-z]+)\s*-->[ \t]*\n```[a-z]*[ \t]*\n(.*?)^```",
                   re.MULTILINE | re.DOTALL)
NEEDED = ("env", "schema", "template", "node", "requests")


def readme_blocks(path):
    """The walkthrough blocks of the README's "Add your own domain" section, by name."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start = text.find("\n" + SECTION + "\n")
    check(start >= 0, "README has a section headed exactly %r" % SECTION)
    if start < 0:
        return text, {}
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else len(text)]
    blocks = {}
    for name, body in BLOCK.findall(section):
        if name in blocks:
            check(False, "one block marked <!-- walkthrough: %s -->, not two" % name)
        blocks[name] = body
    for name in NEEDED:
        check(name in blocks, "the section has a block marked <!-- walkthrough: %s -->" % name)
    return section, blocks


def expand(value, env):
    """$NAME and ${NAME} from the variables the block exported before."""
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), value)


def parse_env(block):
    """NAME -> value for every `export NAME=value` of the env block."""
    env = {}
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] != "export" or len(words) < 2:
            check(False, "env block: only `export NAME=value` lines, got %r" % line)
            continue
        for word in words[1:]:
            name, eq, value = word.partition("=")
            if eq != "=" or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is None:
                check(False, "env block: %r is NAME=value" % word)
                continue
            env[name] = expand(value, env)
    return env


def commands(block):
    """The block's commands, one argv each: lines, split again at `;`, comments dropped."""
    out = []
    for line in block.splitlines():
        for part in line.split(";"):
            words = shlex.split(part, comments=True)
            if words:
                out.append(words)
    return out


def localise(words, tool, binary):
    """A README command line made runnable here: the binary's path, --config-dir, and no shell
    redirections or `&` (the caller runs it in the background itself)."""
    if words[0] != "build/" + tool:
        check(False, "command starts with build/%s: %s" % (tool, shlex.join(words)))
    argv = [binary]
    skip = False
    for i, w in enumerate(words[1:], 1):
        if skip:
            skip = False
            continue
        if w == "&" or re.fullmatch(r"\d?>>?", w):
            skip = w != "&"
            continue
        if re.match(r"\d?>>?\S", w) or w.endswith("&"):
            continue
        if words[i - 1] == "--config-dir":
            w = os.path.join(ROOT, w) if not os.path.isabs(w) else w
        argv.append(w)
    return argv


class Model:
    """What the table holds after the requests so far: id -> row, from the replies of creates and
    updates (each checked against what was sent), less what was deleted."""

    def __init__(self, template):
        self.fields = {name: spec.get("type", "string")
                       for name, spec in template.get("fields", {}).items()}
        self.key = next((n for n, s in template.get("fields", {}).items() if s.get("key")), "id")
        self.rows = {}
        self.ops = set()

    def typed(self, field, value):
        kind = self.fields.get(field, "string")
        if value is None:
            return None
        if kind == "decimal":
            return decimal.Decimal(str(value))
        if kind == "int":
            return int(value)
        return value

    def matches(self, row, where):
        for field, cond in (where or {}).items():
            have = self.typed(field, row.get(field))
            conds = cond if isinstance(cond, dict) else {"eq": cond}
            for op, want in conds.items():
                if have is None:
                    return False
                if op == "in":
                    if have not in [self.typed(field, w) for w in want]:
                        return False
                    continue
                w = self.typed(field, want)
                ok = {"eq": have == w, "gt": have > w, "gte": have >= w, "lt": have < w,
                      "lte": have <= w}.get(op)
                if not ok:
                    return False
        return True

    def expected(self, request):
        rows = [r for r in self.rows.values() if self.matches(r, request.get("where"))]
        if request.get("id") is not None:
            rows = [r for r in rows if str(r.get(self.key)) == str(request["id"])]
        order = [o for o in (request.get("order") or "").split(",") if o]
        if order:
            rows.sort(key=lambda r: r[self.key])  # ties end in key order, as the view returns them
            for item in reversed(order):
                field = item.lstrip("+-")
                rows.sort(key=lambda r: self.typed(field, r.get(field)), reverse=item.startswith("-"))
        offset = request.get("offset", 0)
        limit = request.get("limit")
        return rows[offset:offset + limit if limit is not None else None], bool(order)

    def apply(self, request, reply, line):
        op = request.get("op")
        rows = reply.get("data") if isinstance(reply.get("data"), list) else []
        for row in rows:
            for field, kind in self.fields.items():
                value = row.get(field) if isinstance(row, dict) else None
                if kind == "decimal" and value is not None and not isinstance(value, str):
                    check(False, "decimal %r comes back as a JSON string: %r" % (field, value))
        if op in ("create", "update"):
            check(len(rows) == 1 and isinstance(rows[0], dict),
                  "%s answers the row it wrote: %s" % (op, line))
            if not rows or not isinstance(rows[0], dict):
                return
            row = rows[0]
            sent = dict(request.get("data") or {})
            if op == "update":
                check(str(row.get(self.key)) == str(request.get("id")),
                      "update answers the row it was asked to change")
            for field, value in sent.items():
                check(row.get(field) == value,
                      "%s stored %s exactly as sent: %r, got %r" % (op, field, value, row.get(field)))
            if op == "update" and row.get(self.key) in self.rows:
                before = self.rows[row[self.key]]
                for field, value in before.items():
                    if field not in sent:
                        check(row.get(field) == value,
                              "update kept %s (not sent) as it was: %r, got %r"
                              % (field, value, row.get(field)))
            self.rows[row.get(self.key)] = row
        elif op == "delete":
            key = self.typed(self.key, request.get("id"))
            check(key in self.rows, "delete names a row the creates made: %r" % request.get("id"))
            check(rows == [{self.key: key}], "delete answers the id: %r" % rows)
            self.rows.pop(key, None)
        elif op == "fetch":
            want, ordered = self.expected(request)
            if ordered or "id" in request:
                same = rows == want
            else:
                key = lambda r: json.dumps(r, sort_keys=True)
                same = sorted(rows, key=key) == sorted(want, key=key)
            check(same, "fetch answers what the creates and updates stored%s: %s%s"
                  % (" (in order)" if ordered else "", line,
                     "" if same else "\n       want %s\n       got  %s" % (want, rows)))
        elif op == "count":
            want, _ = self.expected({"where": request.get("where")})
            check(reply.get("count") == len(want) and rows == [{"count": len(want)}],
                  "count answers %d: %s" % (len(want), json.dumps(reply)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", required=True)
    ap.add_argument("--bedsctl", required=True)
    ap.add_argument("--servers", required=True)
    ap.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    args = ap.parse_args()
    # The commands run in a scratch directory: paths given relative to here must still work.
    for name in ("beds", "bedsctl", "servers", "readme"):
        setattr(args, name, os.path.abspath(getattr(args, name)))
    # ctest's TIMEOUT sends SIGTERM: unwind so the finally below stops our node.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated"))

    section, blocks = readme_blocks(args.readme)
    if any(name not in blocks for name in NEEDED):
        return summary()

    # ---- env: the README's exports, pointed at this test's servers ----------------------------
    readme_env = parse_env(blocks["env"])
    amqp_port = os.environ.get("BEDS_AMQP_PORT", "5699")
    db_port = os.environ.get("BEDS_MARIADB_PORT", "3399")
    for name, port_var in (("BEDS__BROKER_SERVICES__APP_SERVER__PORT", "BEDS_AMQP_PORT"),
                           ("BEDS__DATABASES__MAIN__PORT", "BEDS_MARIADB_PORT")):
        check(name in readme_env, "env block exports %s" % name)
        if port_var in readme_env:
            check(readme_env.get(name) == readme_env[port_var],
                  "env block: %s = $%s (%s), got %r"
                  % (name, port_var, readme_env[port_var], readme_env.get(name)))
    for name in ("BEDS__BROKER_SERVICES__APP_SERVER__PASS", "BEDS__DATABASES__MAIN__PASS"):
        check(name in readme_env, "env block exports %s (the servers' passwords)" % name)

    suffix = str(os.getpid())
    vhost = "e2e-walkthrough-%s" % suffix
    database = "e2e_walkthrough_%s" % suffix
    work = tempfile.mkdtemp(prefix="beds-walkthrough-")
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("BEDS__") or k in ("BEDS_ENV", "BEDS_ROLE"))}
    env.update({k: v for k, v in readme_env.items() if k.startswith("BEDS__")})
    templates_dir = os.path.join(work, "templates")
    # An environment without a file: a developer's gitignored config/env_dev.toml (other hosts,
    # say) must not leak into the test. Any name but prod behaves like dev.
    env["BEDS_ENV"] = "walkthrough"
    env.update({
        "BEDS__BROKER_SERVICES__APP_SERVER__PORT": amqp_port,
        "BEDS__BROKER_SERVICES__APP_SERVER__VHOST": vhost,
        "BEDS__DATABASES__MAIN__PORT": db_port,
        "BEDS__DATABASES__MAIN__DATABASE": database,
        "BEDS__DATABASES__DOCS__PATH": os.path.join(work, "docs.sqlite"),
        "BEDS__TEMPLATES__DIR": templates_dir,
        "BEDS__LOGGING__SPILL_PATH": os.path.join(work, "spill", "appserver.events"),
        "BEDS__METRICS__LISTEN": "",
    })

    node = None
    log = open(os.path.join(work, "beds.log"), "w+", errors="replace")
    try:
        # ---- schema: loaded twice over the repository's example domain -------------------------
        schema = os.path.join(work, "walkthrough.sql")
        with open(schema, "w") as f:
            f.write(blocks["schema"])
        repo_schema = sorted(glob.glob(os.path.join(ROOT, "schema", "mariadb", "*.sql")))
        loaded = subprocess.run([args.servers, "database", database] + repo_schema + [schema, schema])
        check(loaded.returncode == 0, "the schema block loads (twice, over schema/mariadb/*.sql)")
        subprocess.run([args.servers, "vhost", vhost], check=True)

        # ---- template: beside copies of the repository's ----------------------------------------
        try:
            template = tomllib.loads(blocks["template"])
        except tomllib.TOMLDecodeError as e:
            check(False, "the template block is TOML: %s" % e)
            return summary()
        tla = template.get("tla", "")
        named = re.findall(r"templates/(%s_\w+\.toml)" % re.escape(tla), section)
        check(bool(named), "the section names the template file templates/%s_….toml" % tla)
        file_name = named[0] if named else "%s_walkthrough_rel.toml" % tla
        os.makedirs(templates_dir)
        for path in sorted(glob.glob(os.path.join(ROOT, "templates", "*.toml"))):
            with open(path, "rb") as f:
                if tomllib.load(f).get("name") == template.get("name"):
                    continue  # the walkthrough's own, already saved in the checkout
            shutil.copy(path, templates_dir)
        with open(os.path.join(templates_dir, file_name), "w") as f:
            f.write(blocks["template"])

        # ---- node: template check, the node, ping ---------------------------------------------
        pinged = False
        for words in commands(blocks["node"]):
            if words[0] == "sleep":
                continue
            if words[:3] == ["build/beds", "template", "check"]:
                argv = localise(words, "beds", args.beds)
                r = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True)
                passed = r.returncode == 0 and re.search(
                    r"^ok +%s " % re.escape(template.get("name", "")), r.stdout, re.MULTILINE)
                check(bool(passed), "beds template check passes with the new template (exit %d)%s"
                      % (r.returncode, "" if passed else ":\n" + r.stdout + r.stderr))
                if not passed:
                    return summary()
            elif words[:2] == ["build/beds", "run"]:
                argv = localise(words, "beds", args.beds)
                node = subprocess.Popen(argv, env=env, cwd=work, stdout=log, stderr=log)
            elif words[0] == "build/bedsctl" and "ping" in words:
                argv = localise(words, "bedsctl", args.bedsctl)
                deadline = time.time() + 30
                while not pinged and time.time() < deadline and (node is None or node.poll() is None):
                    r = subprocess.run(argv[:1] + ["--timeout-ms", "500"] + argv[1:], env=env,
                                       cwd=work, capture_output=True, text=True)
                    pinged = r.returncode == 0
                    if not pinged:
                        time.sleep(0.2)
            else:
                check(False, "node block: a command the test does not know: %s" % shlex.join(words))
        check(node is not None, "the node block starts a node with build/beds run")
        check(pinged, "the node answers bedsctl ping")
        if node is None or not pinged:
            return summary()

        # ---- requests -------------------------------------------------------------------------
        model = Model(template)
        for words in commands(blocks["requests"]):
            line = shlex.join(words)
            argv = localise(words, "bedsctl", args.bedsctl)
            if len(words) < 3 or words[-3] != "request":
                check(False, "requests block: bedsctl … request KEY JSON: %s" % line)
            try:
                request = json.loads(words[-1])
            except ValueError:
                check(False, "the request is JSON: %s" % line)
                continue
            op = request.get("op", "")
            model.ops.add(op + ("_by_id" if op == "fetch" and "id" in request else
                                "_where" if op == "fetch" and "where" in request else ""))
            r = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True)
            try:
                reply = json.loads(r.stdout)
            except ValueError:
                reply = {}
            answered = r.returncode == 0 and reply.get("ok") is True
            check(answered, "ok: %s%s" % (line, "" if answered else "\n       -> %s %s"
                                          % (r.stdout.strip(), r.stderr.strip())))
            if reply.get("ok") is True:
                model.apply(request, reply, line)
        for op in ("create", "fetch_by_id", "fetch_where", "update", "delete"):
            check(op in model.ops, "the requests block has a %s" % op.replace("_", " "))

        # ---- shutdown -------------------------------------------------------------------------
        bye = subprocess.run([args.bedsctl, "--config-dir", os.path.join(ROOT, "config"),
                              "shutdown", "appserver"], env=env, cwd=work, capture_output=True,
                             text=True)
        check(bye.returncode == 0, "bedsctl shutdown appserver: " + bye.stdout.strip())
        try:
            code = node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        check(code == 0, "the node exited 0 after admin.shutdown (got %s)" % code)
    except Exception as e:  # a crash of the test itself is a failure, with the node's log below
        check(False, "test raised %s: %s" % (type(e).__name__, e))
    finally:
        if node is not None and node.poll() is None:
            node.terminate()
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
        log.seek(0)
        text = log.read()
        log.close()
        if FAILURES:
            sys.stderr.write(text[-6000:])
        shutil.rmtree(work, ignore_errors=True)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
