#!/usr/bin/env python3
# The wire protocol (docs/protocol.md) from a shell test: logs in as USER
# with PASSWORD on SOCKET, sends one request with that session, prints the
# reply as JSON on stdout. Exit 0 for an ok reply, 1 for an error reply.
#
# usage: sgcall.py SOCKET USER PASSWORD REQUEST-JSON
import json
import socket
import struct
import sys


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


sock, user, password, req = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock)
rep = call(s, {"op": "login", "user": user, "pin": password})
if "session" not in rep:
    print(json.dumps(rep))
    sys.exit(1)
rep = call(s, dict(req, session=rep["session"]))
print(json.dumps(rep))
sys.exit(0 if rep.get("ok") else 1)
