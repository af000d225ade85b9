#!/usr/bin/env python3
"""Raw TLS probes of the gateway's TLS front for the tls suite.

  probe.py hello HOST PORT CA [CERT KEY] [--name N] [--tls12]
      a hello over TLS; prints "reply ok", "reply error CODE: MESSAGE" or
      "refused: WHY" (the handshake or the first read failed)
  probe.py slow-handshake HOST PORT     trickles a ClientHello: "closed after N s"
  probe.py slow-handshakes HOST PORT N [HOLD]  N trickled handshakes at once,
      held HOLD s: "closed at once A, held B"
  probe.py slow-frame HOST PORT CA CERT KEY [--name N]
      a good handshake, then a frame a byte every 0.5 s: "closed after N s"
  probe.py hold HOST PORT CA CERT KEY N [--name N] [--flood S]
      N connections at once, a hello on each: "ok A busy B other C"; with
      --flood, hellos on all of them for S seconds ("... answered D")
  probe.py impostor PORT CERT KEY OUT   a TLS server that writes to OUT how
      many bytes of application data it was sent (runs until killed)
"""
import json
import socket
import ssl
import struct
import sys
import time


def frame(obj):
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def read_frame(s):
    hdr = b""
    while len(hdr) < 4:
        b = s.recv(4 - len(hdr))
        if not b:
            return None
        hdr += b
    n = struct.unpack(">I", hdr)[0]
    body = b""
    while len(body) < n:
        b = s.recv(n - len(body))
        if not b:
            return None
        body += b
    return json.loads(body)


def context(ca, cert, key, tls12=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if tls12:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def opt(args, name, default=None):
    if name in args:
        i = args.index(name)
        v = args[i + 1]
        del args[i:i + 2]
        return v
    return default


def connect(host, port, ctx, name):
    raw = socket.create_connection((host, int(port)), timeout=30)
    return ctx.wrap_socket(raw, server_hostname=name or host)


def hello(args):
    name = opt(args, "--name")
    tls12 = "--tls12" in args
    if tls12:
        args.remove("--tls12")
    host, port, ca = args[:3]
    cert, key = (args[3], args[4]) if len(args) >= 5 else (None, None)
    try:
        s = connect(host, port, context(ca, cert, key, tls12), name)
        s.sendall(frame({"v": 1, "op": "hello"}))
        rep = read_frame(s)
    except (ssl.SSLError, OSError) as e:
        print("refused: %s" % e)
        return
    if rep is None:
        print("refused: closed without a reply")
    elif rep.get("ok"):
        print("reply ok")
    else:
        print("reply error %s: %s" % (rep.get("error"), rep.get("message")))


def closed_after(s, payload, step):
    start = time.monotonic()
    try:
        for b in payload:
            s.send(bytes([b]))
            time.sleep(step)
            if time.monotonic() - start > 60:
                print("not closed after 60 s")
                return
        s.settimeout(30)
        while s.recv(4096):
            pass
    except (ssl.SSLError, OSError):
        pass
    print("closed after %d s" % round(time.monotonic() - start))


def slow_handshake(args):
    host, port = args[:2]
    s = socket.create_connection((host, int(port)), timeout=30)
    # A TLS record header and the start of a ClientHello, then more of it.
    closed_after(s, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 200, 0.5)


def slow_handshakes(args):
    """N trickled handshakes at once: "closed at once A, held B"."""
    host, port, n = args[:3]
    conns = [socket.create_connection((host, int(port)), timeout=30) for _ in range(int(n))]
    for s in conns:
        s.send(b"\x16\x03\x01\x02\x00")
    time.sleep(0.5)
    closed = 0
    for s in conns:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    print("closed at once %d, held %d" % (closed, int(n) - closed))
    sys.stdout.flush()
    time.sleep(float(args[3]) if len(args) > 3 else 0)


def slow_frame(args):
    name = opt(args, "--name")
    host, port, ca, cert, key = args[:5]
    s = connect(host, port, context(ca, cert, key), name)
    closed_after(s, frame({"v": 1, "op": "hello", "pad": "x" * 100}), 0.5)


def hold(args):
    name = opt(args, "--name")
    flood = float(opt(args, "--flood", "0"))
    host, port, ca, cert, key, n = args[:6]
    ctx = context(ca, cert, key)
    conns, counts = [], {"ok": 0, "busy": 0, "other": 0}
    for _ in range(int(n)):
        try:
            s = connect(host, port, ctx, name)
            s.sendall(frame({"v": 1, "op": "hello"}))
            rep = read_frame(s)
            if rep is not None and rep.get("ok"):
                counts["ok"] += 1
                conns.append(s)
            elif rep is not None and rep.get("error") == "busy":
                counts["busy"] += 1
            else:
                counts["other"] += 1
        except (ssl.SSLError, OSError):
            counts["other"] += 1
    # --flood S: hellos as fast as they are answered on every connection
    # held, for S seconds (one device flooding its own share).
    counts["answered"] = 0
    end = time.monotonic() + flood
    while conns and time.monotonic() < end:
        for s in conns:
            s.sendall(frame({"v": 1, "op": "hello"}))
            if read_frame(s) is not None:
                counts["answered"] += 1
    if flood:
        print("ok %(ok)d busy %(busy)d other %(other)d answered %(answered)d" % counts)
    else:
        print("ok %(ok)d busy %(busy)d other %(other)d" % counts)


def impostor(args):
    port, cert, key, out = args[:4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", int(port)))
    srv.listen(8)
    got = 0
    with open(out, "w") as f:
        f.write("0\n")
    while True:
        c, _ = srv.accept()
        try:
            t = ctx.wrap_socket(c, server_side=True)
            t.settimeout(5)
            while True:
                b = t.recv(4096)
                if not b:
                    break
                got += len(b)
        except (ssl.SSLError, OSError):
            pass
        c.close()
        with open(out, "w") as f:
            f.write("%d\n" % got)


cmds = {"hello": hello, "slow-handshake": slow_handshake, "slow-frame": slow_frame,
        "hold": hold, "impostor": impostor, "slow-handshakes": slow_handshakes}
sys.stdout.reconfigure(line_buffering=True)
cmds[sys.argv[1]](sys.argv[2:])
