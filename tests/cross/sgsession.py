#!/usr/bin/env python3
# A session kept across connections and gateways, for the tests of sessions
# in the store (tests/cross/test-sessions.sh): the wire protocol
# (docs/protocol.md, tests/integration/sgcall.py's call) with the token
# printed by one command and given to the next.
#
# usage: sgsession.py login SOCKET USER PASSWORD      prints the token
#        sgsession.py call SOCKET TOKEN REQUEST-JSON  prints the reply
# Exit 0 for an ok reply, 1 for an error reply.
import json
import socket
import struct
import sys



def call(sock, req):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
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
    s.close()
    return json.loads(data)


what, sock = sys.argv[1], sys.argv[2]
if what == "login":
    rep = call(sock, {"op": "login", "user": sys.argv[3], "pin": sys.argv[4]})
    if "session" not in rep:
        print(json.dumps(rep), file=sys.stderr)
        sys.exit(1)
    print(rep["session"])
    sys.exit(0)
rep = call(sock, dict(json.loads(sys.argv[4]), session=sys.argv[3]))
print(json.dumps(rep))
sys.exit(0 if rep.get("ok") else 1)
