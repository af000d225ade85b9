#!/usr/bin/env python3
# tests/stamp/tsa.py — a real RFC 3161 TSA for sealctl stamp --tsa's test:
# `openssl ts -reply` (OpenSSL's own TSA) behind an HTTP server on
# loopback. `tsa.py serve CONF PORTFILE` listens on 127.0.0.1 (a free
# port, written to PORTFILE once it listens) and answers POST by path:
#   /tsa          the request as it came: a good timestamp
#   /bad-nonce    a timestamp of the request with its nonce changed
#   /bad-imprint  a timestamp of the request with its digest changed
#   /rejected     openssl's section that takes SHA-1 only: status rejection
#   /big          a good timestamp carrying many certificates (CONF's
#                 section tsa_big): a token larger than sealctl's room for it
#   /html         an HTML page, not a timestamp reply
#   /no-eku       a good timestamp's TSTInfo signed again (openssl cms) by
#                 noeku.pem beside CONF, a certificate not for timestamping
#   /slow         nothing for 40 s (longer than sealctl's 15 s)
# It exits when the test that started it is gone.
import http.server, os, subprocess, sys, tempfile, threading, time

def tlv(b, i):
    n = b[i + 1]
    j = i + 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[j:j + k], "big")
        j += k
    return j, j + n

def bend(req, what):
    """The TimeStampReq with one byte of its nonce or of its digest
    changed: SEQUENCE { version, MessageImprint { alg, OCTET STRING },
    [reqPolicy], nonce INTEGER, certReq }. Lengths stay as they are."""
    req = bytearray(req)
    cs, ce = tlv(req, 0)
    i = cs
    kids = []
    while i < ce:
        s, e = tlv(req, i)
        kids.append((i, s, e))
        i = e
    if what == "imprint":
        _, s, e = kids[1]
        ms, me = tlv(req, tlv(req, s)[1])       # the OCTET STRING after the algorithm
        req[me - 1] ^= 0x01
    else:
        nonce = next(k for k in kids[2:] if req[k[0]] == 0x02)
        req[nonce[2] - 1] ^= 0x01
    return bytes(req)

def enc(tag, content):
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(nb)]) + nb + content

def resign(d, r):
    """The reply r's TSTInfo signed by noeku.pem: TimeStampResp { status
    granted, the new token }."""
    here = os.path.dirname(CONF)
    tok, tst, new = (os.path.join(d, n) for n in ("tok.der", "tst.der", "new.der"))
    subprocess.run(["openssl", "ts", "-reply", "-in", r, "-token_out", "-out", tok], check=True)
    subprocess.run(["openssl", "cms", "-verify", "-noverify", "-inform", "DER", "-in", tok,
                    "-binary", "-out", tst], check=True, capture_output=True)
    subprocess.run(["openssl", "cms", "-sign", "-binary", "-nodetach", "-nosmimecap",
                    "-econtent_type", "1.2.840.113549.1.9.16.1.4", "-md", "sha256",
                    "-signer", os.path.join(here, "noeku.pem"),
                    "-inkey", os.path.join(here, "noeku.key"),
                    "-in", tst, "-outform", "DER", "-out", new], check=True)
    return enc(0x30, enc(0x30, b"\x02\x01\x00") + open(new, "rb").read())

class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        path = self.path
        if path == "/slow":
            time.sleep(40)
            return
        if path == "/html":
            self.answer(200, "text/html", b"<html>no TSA here</html>")
            return
        if path == "/bad-nonce":
            body = bend(body, "nonce")
        elif path == "/bad-imprint":
            body = bend(body, "imprint")
        section = {"/rejected": ["-section", "tsa_sha1"],
                   "/big": ["-section", "tsa_big"]}.get(path, [])
        with tempfile.TemporaryDirectory() as d:
            q, r = os.path.join(d, "q.tsq"), os.path.join(d, "r.tsr")
            open(q, "wb").write(body)
            p = subprocess.run(["openssl", "ts", "-reply", "-config", CONF, *section,
                                "-queryfile", q, "-out", r], capture_output=True)
            if p.returncode != 0:
                sys.stderr.write(p.stderr.decode(errors="replace"))
                self.answer(500, "text/plain", b"openssl ts -reply failed")
                return
            reply = open(r, "rb").read()
            if path == "/no-eku":
                reply = resign(d, r)
            self.answer(200, "application/timestamp-reply", reply)

    def answer(self, code, ctype, data):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

def watch_parent(ppid):
    while os.getppid() == ppid:
        time.sleep(1)
    os._exit(0)

if len(sys.argv) != 4 or sys.argv[1] != "serve":
    raise SystemExit("usage: tsa.py serve CONF PORTFILE")
CONF = sys.argv[2]
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
tmp = sys.argv[3] + ".tmp"
open(tmp, "w").write(str(srv.server_address[1]))
os.rename(tmp, sys.argv[3])
srv.serve_forever()
