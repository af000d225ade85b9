#!/usr/bin/env python3
# The wire protocol as the web front speaks it, from a shell test: sends
# each REQUEST-JSON on one connection to SOCKET in turn and prints each
# reply as one JSON line. A request's "session": "@" is the session of the
# last ok login reply; "via" is added unless the request has one (or says
# "via": null, which sends none).
#
# usage: webcall.py SOCKET REQUEST-JSON...
import json
import socket
import struct
import sys

VIA = {"remote": "203.0.113.9", "agent": "Mozilla/5.0 (test) \"quoted\""}


def call(s, req):
    body = json.dumps(dict(req, v=1)).encode()
    s.sendall(struct.pack(">I", len(body)) + body)
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            raise SystemExit("the gateway closed the connection")
        head += chunk
    (n,) = struct.unpack(">I", head)
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise SystemExit("the gateway closed the connection")
        data += chunk
    return json.loads(data)


s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
session = None
for arg in sys.argv[2:]:
    req = json.loads(arg)
    if req.get("session") == "@":
        req["session"] = session
    if "via" not in req:
        req["via"] = VIA
    elif req["via"] is None:
        del req["via"]
    rep = call(s, req)
    if req.get("op") == "login" and rep.get("ok"):
        session = rep["session"]
    print(json.dumps(rep), flush=True)
