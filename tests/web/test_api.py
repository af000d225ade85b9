#!/usr/bin/env python3
# The REST API of sealgate-web (docs/api.md) against a real gateway on
# SoftHSM2 (tests/web/run.sh): every endpoint, and the refusals — an
# approver of another department, the applicant approving their own, a
# missing code, a replayed code, a POST without its CSRF token, an expired
# session, the lockout after wrong passwords through the web, oversized
# bodies, bad JSON, HTML in reasons and comments returned as JSON data.
import base64
import http.client
import json
import os
import socket
import subprocess
import time
import urllib.parse

URL = urllib.parse.urlparse(os.environ["SG_WEB_URL"])
SHORT = urllib.parse.urlparse(os.environ["SG_WEB_SHORT_URL"])
W = os.environ["SG_WEB_DIR"]
results = {"passed": 0, "failed": 0}


def check(ok, what, detail=""):
    if ok:
        results["passed"] += 1
        print("ok - " + what)
    else:
        results["failed"] += 1
        print("not ok - %s %s" % (what, detail))


def code(user):
    with open(os.path.join(W, "clock")) as f:
        now = f.read().strip()
    with open(os.path.join(W, "totp-%s.b32" % user)) as f:
        secret = f.read().strip()
    return subprocess.check_output(["oathtool", "--totp", "-b", "--now", "@" + now, secret],
                                   text=True).strip()


def tick():
    """The gateway's test clock one TOTP step on: a fresh code for everyone."""
    p = os.path.join(W, "clock")
    with open(p) as f:
        t = int(f.read().strip())
    with open(p, "w") as f:
        f.write("%d\n" % (t + 30))


class Reply:
    def __init__(self, r):
        self.status = r.status
        self.headers = {k.lower(): v for k, v in r.getheaders()}
        self.raw = r.read()
        self.json = None
        if self.headers.get("content-type", "").startswith("application/json"):
            self.json = json.loads(self.raw)

    def error(self):
        return (self.json or {}).get("error")

    def __repr__(self):
        return "%d %r" % (self.status, self.raw[:300])


api_types = []   # every API reply's Content-Type


class Client:
    def __init__(self, url=URL):
        self.url = url
        self.cookie = None
        self.csrf = None

    def req(self, method, path, body=None, csrf=True, ctype="application/json", raw=None,
            headers=None):
        c = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=30)
        h = dict(headers or {})
        if self.cookie:
            h["Cookie"] = "sg_session=" + self.cookie
        if method == "POST" and csrf and self.csrf:
            h["X-CSRF-Token"] = self.csrf
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None and ctype:
            h["Content-Type"] = ctype
        c.request(method, path, body=data, headers=h)
        r = Reply(c.getresponse())
        c.close()
        if path.startswith("/api/"):
            api_types.append((path, r.headers.get("content-type", "")))
        return r

    def get(self, path):
        return self.req("GET", "/api/v1" + path)

    def post(self, path, body=None, **kw):
        return self.req("POST", "/api/v1" + path, body if body is not None else {}, **kw)

    def login(self, user, password=None, code=None):
        body = {"user": user, "password": password or user + "-password"}
        if code:
            body["code"] = code
        r = self.post("/login", body)
        if r.status == 200:
            sc = r.headers.get("set-cookie", "")
            self.cookie = sc.split(";")[0].split("=", 1)[1]
            self.csrf = r.json["csrf"]
        return r


# ---- the console's files and the headers of every reply ----
anon = Client()
r = anon.req("GET", "/")
check(r.status == 200 and r.headers["content-type"].startswith("text/html"), "the console's page", r)
check(r.headers.get("x-content-type-options") == "nosniff", "nosniff on a file")
csp = r.headers.get("content-security-policy", "")
check("default-src 'self'" in csp and "http" not in csp and "*" not in csp,
      "a self-only Content-Security-Policy", csp)
r = anon.req("GET", "/js/app.js")
check(r.status == 200 and r.headers["content-type"].startswith("text/javascript"), "a script file", r)
for bad in ("/.hidden", "/../sealgated.yaml", "/js/../../sealgated.yaml", "/%2e%2e/sealgated.yaml"):
    r = anon.req("GET", bad)
    check(r.status == 404, "no file outside the console: " + bad, r)

# ---- logging in ----
r = anon.get("/me")
check(r.status == 401 and r.error() == "not_logged_in", "no session: 401", r)
r = anon.post("/login", {"user": "alice", "password": "wrong-password"})
check(r.status == 401 and r.error() == "bad_login", "a wrong password: 401", r)
r2 = anon.post("/login", {"user": "nobody", "password": "wrong-password"})
check(r2.status == 401 and r2.json == r.json, "an unknown account reads as a wrong password", r2)
r = anon.req("POST", "/api/v1/login", raw=b'{"user": "alice", "password": ', ctype="application/json")
check(r.status == 400 and r.error() == "bad_json", "bad JSON: 400", r)
r = anon.req("POST", "/api/v1/login", raw=b'user=alice&password=alice-password',
             ctype="application/x-www-form-urlencoded")
check(r.status == 400, "a form body is refused", r)
r = anon.req("POST", "/api/v1/login", raw=b'{"user":"a","user":"b","password":"x"}')
check(r.status == 400, "duplicate keys are refused", r)
r = anon.post("/login", {"user": "alice", "password": "x" * (70 * 1024)})
check(r.status == 413 and r.error() == "too_large", "a body over 64 KiB: 413", r)

alice = Client()
r = alice.login("alice")
check(r.status == 200 and r.json["user"] == "alice" and len(r.json["csrf"]) == 64 and
      "employee" in r.json["roles"] and "site" in r.json, "alice logs in", r)
sc = r.headers.get("set-cookie", "")
check(all(a in sc for a in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/")),
      "the cookie is HttpOnly, Secure, SameSite=Strict, Path=/", sc)
check(alice.cookie != alice.csrf and len(alice.cookie) == 64, "a random cookie id, not the CSRF token")
r = alice.req("GET", "/api/v1/me", headers={"User-Agent": "x" * 2000 + "\u00e9"})
check(r.status == 200, "a long, non-ASCII User-Agent is relayed cut and cleaned", r)
r = alice.get("/me")
check(r.status == 200 and r.json["user"] == "alice" and r.json["csrf"] == alice.csrf and
      r.json["department"] == "sales", "GET /me", r)
check(r.headers.get("cache-control") == "no-store", "API replies are not cached", r.headers)
check(r.headers.get("x-content-type-options") == "nosniff", "nosniff on the API")
check("session" not in r.raw.decode(), "the gateway's session never reaches the browser")

# ---- seals and status ----
r = alice.get("/seals")
ids = [s["id"] for s in (r.json or {}).get("seals", [])]
check(r.status == 200 and "approved" in ids and "contract" in ids, "GET /seals", r)
check(all("cert" not in s and "modulus" not in s for s in r.json["seals"]), "no key material for a browser")
r = alice.get("/status")
check(r.status == 200 and "seals" in r.json and "site" in r.json, "GET /status", r)

# ---- applying ----
app = {"seal": "approved", "document_type": "contract", "amount": 100, "business_scope": "sales",
       "reason": "<script>alert(1)</script><b>x</b>", "uses": 1}
r = alice.post("/applications", app, csrf=False)
check(r.status == 403 and r.error() == "csrf", "a POST without X-CSRF-Token: 403 csrf", r)
r = alice.post("/applications", app, headers={"X-CSRF-Token": "0" * 64}, csrf=False)
check(r.status == 403 and r.error() == "csrf", "a wrong X-CSRF-Token: 403 csrf", r)
r = alice.req("POST", "/api/v1/applications", raw=b'{"seal": "approved"', ctype="application/json")
check(r.status == 400 and r.error() == "bad_json", "bad JSON on a session: 400", r)
r = alice.post("/applications", dict(app, amount="many"))
check(r.status == 400 and r.error() == "bad_request", "a field of the wrong type: 400", r)
r = alice.post("/applications", dict(app, seal="finance"))
check(r.status == 403, "a seal alice may not use: 403", r)
r = alice.post("/applications", app)
check(r.status == 200 and isinstance(r.json.get("id"), int), "POST /applications", r)
a1 = r.json["id"]
r = alice.get("/applications/%d" % a1)
check(r.status == 200 and r.json["reason"] == app["reason"] and
      r.headers["content-type"].startswith("application/json"),
      "HTML in a reason comes back as JSON data", r)
r = alice.get("/applications?mine=1")
check(r.status == 200 and a1 in [a["id"] for a in r.json["applications"]], "GET /applications?mine=1", r)
r = alice.get("/applications?state=authorized")
check(r.status == 200 and a1 not in [a["id"] for a in r.json["applications"]], "state= filters", r)
r = alice.get("/applications?before=abc")
check(r.status == 400, "a bad query argument: 400", r)
r = alice.get("/applications/999999")
check(r.status == 404, "an unknown application: 404", r)
r = alice.get("/applications/%d/why" % a1)
check(r.status == 200 and isinstance(r.json.get("text"), str) and r.json["text"], "GET …/why", r)
r = alice.get("/applications/%d/document" % a1)
check(r.status == 404 and r.error() == "no_document", "no document: 404", r)

# ---- a document to bind (stored in the gateway in chunks) ----
pdf = b"%PDF-1.4\n" + bytes(range(256)) * 3000 + b"\n%%EOF\n"   # over one 512 KiB chunk
r = alice.post("/applications", dict(app, reason="with a document",
               document={"name": "contract <1>.pdf", "data": base64.b64encode(pdf).decode()}))
check(r.status == 200, "POST /applications with a document", r)
d1 = r.json.get("id") if r.json else None
r = alice.get("/applications/%s" % d1)
doc = (r.json or {}).get("document") or {}
check(doc.get("size") == len(pdf) and doc.get("stored") and doc.get("name") == "contract <1>.pdf",
      "show says the stored document", r)
r = alice.req("GET", "/api/v1/applications/%s/document" % d1)
check(r.status == 200 and r.raw == pdf and r.headers["content-type"] == "application/pdf",
      "GET …/document gives its bytes", r.status)
check(r.headers.get("content-security-policy", "").startswith("sandbox") and
      "attachment" in r.headers.get("content-disposition", ""),
      "the document is sandboxed, an attachment", r.headers)
r = alice.post("/applications", dict(app, document={"name": "x.pdf", "data": "not base64!"}))
check(r.status == 400, "a document that is not base64: 400", r)

# ---- deciding ----
tick()   # (the fixture's enrolment spent the codes of this step)
bob = Client()
c1 = code("bob")
r = bob.login("bob", code=c1)
check(r.status == 200, "bob logs in with password and code", r)
r = bob.req("GET", "/api/v1/applications/%s/document" % d1)
check(r.status == 200 and r.raw == pdf, "the approver reads the document", r.status)
r = bob.get("/applications?waiting=1")
check(r.status == 200 and a1 in [a["id"] for a in r.json["applications"]], "waiting for bob", r)
r = bob.post("/applications/%d/approve" % a1, {"comment": "ok"})
check(r.status == 403 and r.error() == "mfa_required", "approve without a code: 403", r)
r = bob.post("/applications/%d/approve" % a1, {"comment": "ok", "code": c1})
check(r.status == 403 and r.error() == "replayed", "approve with the login's code: replayed", r)
carol = Client()
tick()
r = carol.login("carol")
check(r.status == 200, "carol logs in", r)
r = carol.post("/applications/%d/approve" % a1, {"comment": "mine?", "code": code("carol")})
check(r.status == 403 and r.error() == "denied", "an approver of another department: 403", r)
# bob applies himself: he is the head the rule names, and may not approve his own
r = bob.post("/applications", dict(app, reason="bob's own"))
check(r.status == 200, "bob applies", r)
b1 = r.json["id"]
tick()
r = bob.post("/applications/%d/approve" % b1, {"comment": "self", "code": code("bob")})
check(r.status == 403, "the applicant approving their own: 403", r)
tick()
c2 = code("bob")
r = bob.post("/applications/%d/approve" % a1, {"comment": "<img src=x onerror=alert(1)>", "code": c2})
check(r.status == 200, "approve with a fresh code", r)
r = bob.post("/applications/%d/reject" % a1, {"comment": "again", "code": c2})
check(r.status == 403 and r.error() == "replayed", "the same code again: replayed", r)
r = alice.get("/applications/%d" % a1)
check(r.status == 200 and r.json["state"] == "authorized", "the application is authorized", r)
comments = [x.get("comment") for x in r.json.get("approvals", [])]
check("<img src=x onerror=alert(1)>" in comments, "HTML in a comment comes back as data", r)
r = alice.post("/applications", dict(app, reason="to reject"))
a2 = r.json["id"]
tick()
r = bob.post("/applications/%d/reject" % a2, {"comment": "no", "code": code("bob")})
check(r.status == 200, "POST …/reject", r)
r = alice.get("/applications/%d" % a2)
check(r.json["state"] == "rejected", "the application is rejected", r)
r = alice.post("/applications", dict(app, reason="to revoke"))
a3 = r.json["id"]
r = alice.post("/applications/%d/revoke" % a3)
check(r.status == 200, "POST …/revoke", r)
r = alice.get("/applications/%d" % a3)
check(r.json["state"] == "revoked", "the application is revoked", r)

# ---- the lockout through the web; a seal admin's unlock ----
dave = Client()
for _ in range(3):
    dave.login("dave", password="wrong-password")
r = dave.login("dave")
check(r.status == 429 and r.error() == "pin_locked", "wrong passwords through the web lock: 429", r)
tick()
frank = Client()
r = frank.login("frank", code=code("frank"))
check(r.status == 200, "frank (seal admin) logs in", r)
r = frank.post("/users/dave/unlock", {})
check(r.status == 403 and r.error() == "mfa_required", "unlock without a code: 403", r)
tick()
r = frank.post("/users/dave/unlock", {"code": code("frank")})
check(r.status == 200, "POST /users/{id}/unlock", r)
r = dave.login("dave")
check(r.status == 200, "dave logs in once unlocked", r)
r = dave.req("GET", "/api/v1/applications/%s/document" % d1)
check(r.status in (403, 404), "someone else may not read the document", r)

# ---- audit ----
r = frank.get("/audit?limit=5")
check(r.status == 200 and isinstance(r.json.get("records"), list) and len(r.json["records"]) == 5,
      "GET /audit", r)
r = frank.get("/audit?action=application_approve&outcome=ok")
check(r.status == 200 and all(x["action"] == "application_approve" for x in r.json["records"]) and
      r.json["records"], "GET /audit with filters", r)
web_rows = [x for x in r.json["records"] if str(x.get("exe", "")).startswith("web:127.0.0.1")]
check(web_rows, "approvals through the web are recorded as web:IP", r.json["records"][:1])
r = frank.get("/audit?limit=x")
check(r.status == 400, "a bad filter: 400", r)
r = alice.get("/audit?person=bob")
check(r.status == 403, "alice may not read bob's records: 403", r)
r = frank.get("/audit/export?limit=10")
check(r.status in (200, 403), "GET /audit/export", r)
r = frank.get("/audit/verify")
check(r.status in (200, 403), "GET /audit/verify", r)

# ---- devices, users, usage, alerts ----
r = frank.get("/devices")
check(r.status in (200, 503), "GET /devices", r)
r = alice.get("/devices")
check(r.status == 403, "GET /devices is for seal admins", r)
r = frank.get("/users")
people = {u["id"]: u for u in (r.json or {}).get("users", [])}
check(r.status == 200 and people["frank"]["totp_enrolled"] and not people["dave"]["locked"] and
      people["alice"]["department"] == "sales", "GET /users", r)
r = alice.get("/users")
check(r.status == 403, "GET /users is for seal admins", r)
# one signature by alice through the protocol (the web front does not sign)
sign = subprocess.run(["python3", os.path.join(os.environ["SEALGATE_SOURCE"], "tests/integration/sgcall.py"),
                       os.path.join(W, "sealgated.sock"), "alice", "alice-password",
                       json.dumps({"op": "sign", "seal": "contract", "mechanism": 1, "data": "AAECAw=="})],
                      capture_output=True, text=True)
check(sign.returncode == 0, "alice signs once", sign.stdout + sign.stderr)
now = int(time.time())
for by, key in (("seal", "contract"), ("department", "sales"), ("site", "main"),
                ("day", time.strftime("%Y-%m-%d", time.gmtime()))):
    r = frank.get("/usage?by=%s&from=%d&to=%d" % (by, now - 3600, now + 3600))
    rows = {x["key"]: x["signatures"] for x in (r.json or {}).get("rows", [])}
    check(r.status == 200 and rows.get(key) == 1, "GET /usage?by=%s counts the signature" % by, r)
r = dave.get("/usage?by=seal")
check(r.status == 200 and r.json["rows"] == [], "usage counts only the records one may read", r)
r = frank.get("/usage?by=colour")
check(r.status == 400, "usage by something else: 400", r)
# each quota's limit and use (the seals op's "quotas", from the store)
r = dave.get("/seals")
qs = {x["id"]: x for x in (r.json or {}).get("seals", [])}.get("quota", {})
check(r.status == 200 and qs.get("quotas") == [{"period": "day", "limit": 100, "used": 0}] and
      qs.get("quota_left") == 100, "GET /seals gives the Quota Seal's day limit and use", r)
sgcall = os.path.join(os.environ["SEALGATE_SOURCE"], "tests/integration/sgcall.py")
sign = subprocess.run(["python3", sgcall, os.path.join(W, "sealgated.sock"), "dave", "dave-password",
                       json.dumps({"op": "sign", "seal": "quota", "mechanism": 4161, "data": "AAECAw=="})],
                      capture_output=True, text=True)
r = dave.get("/seals")
qs = {x["id"]: x for x in (r.json or {}).get("seals", [])}.get("quota", {})
check(sign.returncode == 0 and qs.get("quotas") == [{"period": "day", "limit": 100, "used": 1}] and
      qs.get("quota_left") == 99, "a signature counts in its quota's use", (sign.stdout, r))
check(all(x.get("quotas") == [] for x in r.json["seals"] if x["id"] != "quota"),
      "a seal without quotas has none", r)
# the caller's last refused signature (the protocol's why)
r = frank.get("/why")
check(r.status == 200 and r.json == {"refused": False}, "GET /why: nothing refused yet", r)
sign = subprocess.run(["python3", sgcall, os.path.join(W, "sealgated.sock"), "dave", "dave-password",
                       json.dumps({"op": "sign", "seal": "contract", "mechanism": 1, "data": "AAECAw=="})],
                      capture_output=True, text=True)
r = dave.get("/why")
check(sign.returncode == 1 and r.status == 200 and r.json.get("refused") is True and
      "contract" in r.json.get("reason", "") and isinstance(r.json.get("time"), int),
      "GET /why: dave's refused signature and its reason", (sign.stdout, r))
r = frank.get("/why")
check(r.status == 200 and r.json == {"refused": False}, "GET /why is the caller's own", r)
r = anon.get("/why")
check(r.status == 401, "GET /why needs a session", r)
r = frank.get("/alerts")
check(r.status == 200 and isinstance(r.json.get("alerts"), list) and "engine" in r.json,
      "GET /alerts: the online rules' alerts and how far they have read, for a seal admin", r)
r = dave.get("/alerts")
check(r.status == 403, "GET /alerts is not an employee's", r)

# ---- the feed ----
s = socket.create_connection((URL.hostname, URL.port), timeout=20)
s.sendall(("GET /api/v1/feed HTTP/1.1\r\nHost: x\r\nCookie: sg_session=%s\r\n\r\n"
           % frank.cookie).encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head = buf.split(b"\r\n\r\n")[0].decode().lower()
check(" 200 " in head.splitlines()[0] and "text/event-stream" in head, "GET /feed is an event stream", head)
alice.post("/applications", dict(app, reason="seen in the feed"))
got = b""
try:
    while b"event: record" not in got or b"seen in the feed" not in got:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
except socket.timeout:
    pass
s.close()
check(b"event: record" in got and b"seen in the feed" in got, "the feed shows a new record", got[-300:])
r = anon.get("/feed")
check(r.status == 401, "no feed without a session", r)

# ---- ending sessions ----
old = alice.cookie
r = alice.post("/logout", csrf=False)
check(r.status == 403 and r.error() == "csrf", "logout without its CSRF token: 403", r)
r = alice.post("/logout")
check(r.status == 200 and "Max-Age=0" in r.headers.get("set-cookie", ""), "POST /logout", r)
r = alice.get("/me")
check(r.status == 401, "the session is gone after logout", r)
short = Client(SHORT)
r = short.login("alice")
check(r.status == 200, "a login on the short-timeout server", r)
time.sleep(3)   # over its session_idle (2 s)
r = short.get("/me")
check(r.status == 401 and r.error() == "session_expired", "an idle session expires: 401", r)

# ---- every API reply was JSON (or the document, or the feed) ----
bad = [(p, t) for p, t in api_types if not t.startswith("application/json") and
       not (p.endswith("/document") and t == "application/pdf")]
check(not bad, "every API reply is application/json", bad[:3])
r = anon.req("GET", "/api/v1/nothing")
check(r.status == 404 and r.json is not None, "an unknown API path: 404 JSON", r)
# a document body over the upload cap is refused before it is read
c = http.client.HTTPConnection(URL.hostname, URL.port, timeout=30)
c.putrequest("POST", "/api/v1/applications")
c.putheader("Cookie", "sg_session=" + bob.cookie)
c.putheader("X-CSRF-Token", bob.csrf)
c.putheader("Content-Type", "application/json")
c.putheader("Content-Length", str(64 * 1024 * 1024))
c.endheaders()
try:
    c.send(b"{" * 1024)
except OSError:
    pass
r = Reply(c.getresponse())
check(r.status == 413, "a document body over 16 MiB: 413", r)

print("%d passed, %d failed" % (results["passed"], results["failed"]))
raise SystemExit(1 if results["failed"] else 0)
