#!/usr/bin/env python3
# tests/stamp/sgraw.py — a raw protocol client for the stamp tests: logs
# in as USER with PASSWORD on the gateway's Unix socket, then sends each
# JSON request of stdin (one a line; "session" added, "$FILE:PATH" in a
# string value replaced by that file's bytes in base64) and prints each
# reply on a line. Frames: 4-byte big-endian length + JSON (protocol.md).
import base64, json, socket, struct, sys

def call(s, msg):
    body = json.dumps(msg).encode()
    s.sendall(struct.pack(">I", len(body)) + body)
    hdr = b""
    while len(hdr) < 4:
        c = s.recv(4 - len(hdr))
        if not c:
            raise SystemExit("gateway closed the connection")
        hdr += c
    n = struct.unpack(">I", hdr)[0]
    buf = b""
    while len(buf) < n:
        c = s.recv(n - len(buf))
        if not c:
            raise SystemExit("gateway closed the connection")
        buf += c
    return json.loads(buf)

def main():
    path, user, pw = sys.argv[1:4]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    rep = call(s, {"v": 1, "op": "login", "user": user, "pin": pw})
    if not rep.get("ok"):
        print(json.dumps(rep))
        return 1
    sess = rep["session"]
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        for k, v in list(req.items()):
            if isinstance(v, str) and v.startswith("$FILE:"):
                with open(v[6:], "rb") as f:
                    req[k] = base64.b64encode(f.read()).decode()
        req.update({"v": 1, "session": sess})
        print(json.dumps(call(s, req)), flush=True)
    return 0

sys.exit(main())
