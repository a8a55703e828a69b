#!/usr/bin/python3
"""End to end: the HTTP gateway over HTTPS ([gateway] cert_file and key_file), with clients that are
not ours (python3-requests and curl) checking the certificate against a throwaway CA-less
self-signed certificate made here with the openssl command: answers over TLS, a create and a
fetch, the certificate the server presents, plain HTTP on the HTTPS port answered with nothing,
and TLS 1.1 refused. A node whose key file is missing does not start its gateway and says why.

Needs the fixture's RabbitMQ and MariaDB; ports from BEDS_AMQP_PORT and BEDS_MARIADB_PORT."""
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beds", required=True)
    ap.add_argument("--servers", required=True)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit("terminated"))
    amqp_port, db_port, vhost, database = scratch_database(args.servers, "tls")

    with tempfile.TemporaryDirectory() as conf:
        cert = os.path.join(conf, "cert.pem")
        key = os.path.join(conf, "key.pem")
        made = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", key, "-out", cert], capture_output=True, text=True)
        check(made.returncode == 0, "openssl made a self-signed certificate" +
              ("" if made.returncode == 0 else ": " + made.stderr[-300:]))
        write_gateway_config(conf, "tlsnode", amqp_port, db_port, vhost, database,
                             gateway=f"cert_file = {json.dumps(cert)}\nkey_file = {json.dumps(key)}\n")
        log = open(os.path.join(conf, "beds.log"), "w+", errors="replace")
        node = subprocess.Popen([args.beds, "run", "--config-dir", conf], stderr=log)
        try:
            port = wait_for_gateway_port(log, node)
            check(port is not None, "the node logged 'gateway: serving HTTPS on 127.0.0.1:PORT'")
            if port:
                base = "https://127.0.0.1:%d" % port
                ready = None
                deadline = time.time() + 30
                while time.time() < deadline:
                    try:
                        ready = requests.get(base + "/readyz", verify=cert, timeout=5)
                        if ready.status_code == 200:
                            break
                    except requests.RequestException:
                        pass
                    time.sleep(0.2)
                check(ready is not None and ready.status_code == 200,
                      "GET /readyz over HTTPS, the certificate checked -> 200")
                email = "tls.%d@example.org" % os.getpid()
                r = requests.post(base + "/v1/Users", json={"email": email}, verify=cert, timeout=10)
                check(r.status_code == 201, "POST /v1/Users over HTTPS -> 201: %s" % r.text[:200])
                uid = (r.json().get("data") or [{}])[0].get("id") if r.status_code == 201 else 0
                r = requests.get("%s/v1/Users/%s" % (base, uid), verify=cert, timeout=10)
                check(r.status_code == 200 and r.json()["data"][0]["email"] == email,
                      "GET it back over HTTPS: %s" % r.text[:200])
                out = subprocess.run(["curl", "-s", "--cacert", cert, base + "/healthz"],
                                     capture_output=True, text=True)
                check(out.stdout.strip() == '{"ok":true}', "curl --cacert: %r" % out.stdout)
                out = subprocess.run(["curl", "-s", base + "/healthz"], capture_output=True, text=True)
                check(out.returncode != 0, "curl without the certificate refuses the server "
                      "(exit %d)" % out.returncode)
                try:
                    plain = requests.get("http://127.0.0.1:%d/healthz" % port, timeout=5)
                    check(False, "plain HTTP on the HTTPS port got an answer: %d" % plain.status_code)
                except requests.RequestException:
                    check(True, "plain HTTP on the HTTPS port gets no answer")
                old = subprocess.run(
                    ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_1"],
                    input="", capture_output=True, text=True, timeout=20)
                check(old.returncode != 0, "TLS 1.1 is refused (openssl s_client -tls1_1 exit %d)"
                      % old.returncode)
                r = requests.get(base + "/healthz", verify=cert, timeout=5)
                check(r.status_code == 200, "the gateway still answers after those")
        except Exception as e:
            check(False, "test raised %s: %s" % (type(e).__name__, e))
        finally:
            stop_node(node, log, tail=3000)

    # A key file that is not there: the development node goes on without its gateway, saying so.
    with tempfile.TemporaryDirectory() as conf:
        write_gateway_config(conf, "tlsbad", amqp_port, db_port, vhost, database,
                             gateway='cert_file = "/nonexistent/cert.pem"\nkey_file = "/nonexistent/key.pem"\n')
        log = open(os.path.join(conf, "beds.log"), "w+", errors="replace")
        node = subprocess.Popen([args.beds, "run", "--config-dir", conf], stderr=log)
        try:
            text = ""
            deadline = time.time() + 30
            while time.time() < deadline and "ready" not in text and node.poll() is None:
                time.sleep(0.2)
                log.seek(0)
                text = log.read()
            check("cert_file /nonexistent/cert.pem" in text and "no HTTP gateway" in text,
                  "a missing certificate is named in the log and the node is ready without the "
                  "gateway: %s" % text[-600:])
        finally:
            stop_node(node, log, tail=0)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
