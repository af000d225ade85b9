#!/usr/bin/env python3
# sealgate-web against docs/openapi.yaml, both ways (tests/web/run.sh):
# every route the server serves (sealgate-web --print-routes, and what it
# answers) is in the file, and every path and method of the file answers
# with a status the file lists for it, for a seal admin with a session.
import http.client
import json
import os
import re
import subprocess
import urllib.parse

import yaml

URL = urllib.parse.urlparse(os.environ["SG_WEB_URL"])
W = os.environ["SG_WEB_DIR"]
src = os.environ["SEALGATE_SOURCE"]
build = os.environ["SEALGATE_BUILD"]
results = {"passed": 0, "failed": 0}


def check(ok, what, detail=""):
    results["passed" if ok else "failed"] += 1
    print(("ok - " if ok else "not ok - ") + what + ("" if ok else " " + str(detail)))


def request(method, path, body=None, cookie=None, csrf=None):
    c = http.client.HTTPConnection(URL.hostname, URL.port, timeout=30)
    h = {}
    if cookie:
        h["Cookie"] = "sg_session=" + cookie
    if csrf:
        h["X-CSRF-Token"] = csrf
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    if r.getheader("Content-Type", "").startswith("text/event-stream"):
        status, out = r.status, None   # (a stream: its status is the answer)
    else:
        status, out = r.status, r.read()
    c.close()
    return status, out


spec = yaml.safe_load(open(os.path.join(src, "docs", "openapi.yaml")))
base = spec["servers"][0]["url"]
in_file = {(m.upper(), base + p) for p, ops in spec["paths"].items() for m in ops
           if m in ("get", "post", "put", "delete", "patch")}

# The server's own table, one way and the other.
out = subprocess.check_output([os.path.join(build, "web", "sealgate-web"), "--print-routes"], text=True)
served = {tuple(line.split(" ", 1)) for line in out.splitlines() if line}
for r in sorted(served - in_file):
    check(False, "served but not in openapi.yaml: %s %s" % r)
for r in sorted(in_file - served):
    check(False, "in openapi.yaml but not served: %s %s" % r)
check(served == in_file, "the server's routes are the file's (%d)" % len(served))

# What it answers outside the file: nothing but 404.
for method, path in [("GET", base + "/nothing"), ("POST", base + "/me"), ("DELETE", base + "/applications/1"),
                     ("PUT", base + "/seals"), ("GET", base + "/applications/abc"), ("GET", base)]:
    status, _ = request(method, path)
    check(status == 404, "%s %s is not served (404)" % (method, path), status)

# A seal admin with a session (frank has a TOTP secret: run.sh).
c = http.client.HTTPConnection(URL.hostname, URL.port, timeout=30)
c.request("POST", base + "/login", body=json.dumps({"user": "frank", "password": "frank-password"}),
          headers={"Content-Type": "application/json"})
r = c.getresponse()
check(r.status == 200, "frank logs in", r.status)
cookie = r.getheader("Set-Cookie").split(";")[0].split("=", 1)[1]
csrf = json.loads(r.read())["csrf"]
c.close()

# Every path and method of the file, each with a status it lists.
order = sorted(in_file, key=lambda mp: (mp[1].endswith("/logout"), mp))
for method, path in order:
    op = spec["paths"][path[len(base):]][method.lower()]
    listed = {int(k) for k in op["responses"]}
    real = re.sub(r"\{id\}", "frank" if "/users/" in path else "1", path)
    status, body = request(method, real, {} if method == "POST" else None, cookie, csrf)
    check(status in listed, "%s %s answers a listed status (%d in %s)" % (method, path, status,
          sorted(listed)), body[:200] if body else "")
    if body is not None and status != 200:
        try:
            e = json.loads(body)
            check(set(e) == {"error", "message"}, "%s %s: its error is {error, message}" % (method, path), e)
        except ValueError:
            check(False, "%s %s: its error is JSON" % (method, path), body[:100])

print("%d passed, %d failed" % (results["passed"], results["failed"]))
raise SystemExit(1 if results["failed"] else 0)
