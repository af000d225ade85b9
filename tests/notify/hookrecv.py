#!/usr/bin/python3
"""A real HTTP receiver of webhooks for the notify tests (http.server).

  hookrecv.py serve DIR
      listens on 127.0.0.1 (a free port, written to DIR/port) and keeps
      each POST as DIR/req/N.json: {"path", "query", "headers", "body"}.
      It answers each path (its first segment, "/dingtalk" -> dingtalk)
      with the next status in DIR/plan/SEGMENT (one a line, consumed), or
      200 when none is left, with {"errcode":0,"code":0,"errmsg":"ok"}.
"""
import http.server
import json
import os
import sys
import threading
import urllib.parse

d = sys.argv[2]
req = os.path.join(d, "req")
plan = os.path.join(d, "plan")
os.makedirs(req, exist_ok=True)
os.makedirs(plan, exist_ok=True)
lock = threading.Lock()


class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        seg = u.path.strip("/").split("/")[0] or "root"
        with lock:
            n = len([f for f in os.listdir(req) if f.endswith(".json")]) + 1
            status = 200
            p = os.path.join(plan, seg)
            if os.path.exists(p):
                lines = open(p).read().split()
                if lines:
                    status = int(lines[0])
                    with open(p, "w") as f:
                        f.write("\n".join(lines[1:]))
            rec = {"path": u.path, "query": urllib.parse.parse_qs(u.query),
                   "headers": dict(self.headers), "body": body.decode("utf-8", "replace"),
                   "status": status}
            with open(os.path.join(req, "%d.tmp" % n), "w") as f:
                json.dump(rec, f, ensure_ascii=False)
            os.rename(os.path.join(req, "%d.tmp" % n), os.path.join(req, "%d.json" % n))
        out = b'{"errcode":0,"code":0,"errmsg":"ok"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(os.path.join(d, "port.tmp"), "w") as f:
    f.write("%d\n" % s.server_address[1])
os.rename(os.path.join(d, "port.tmp"), os.path.join(d, "port"))
s.serve_forever()
