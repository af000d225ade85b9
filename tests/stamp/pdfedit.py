#!/usr/bin/env python3
# tests/stamp/pdfedit.py — bends a stamped PDF for sealctl verify's tests:
#   edit-receipt IN OUT        the approval receipt's amount changed (1000
#                              to 9000) inside the newest signature's CMS
#   move-sig FROM INTO OUT     INTO with FROM's newest /Contents in place of
#                              its own (same length: the offsets hold)
#   swap-receipt FROM INTO OUT INTO with FROM's approval receipt (the newest
#                              signature's unsigned attributes) in place of
#                              its own
#   sig-value IN OUT           the newest signature's value (as in its
#                              SignerInfo) to OUT; prints the SHA-256 of its
#                              signed attributes and of the value
#   ec-twin IN OUT             IN's ECDSA-Sig-Value (r, s) as (r, n - s),
#                              P-256: the other value that verifies
#   set-receipt IN REPLY OUT   IN with the receipt of REPLY (a receipt
#                              reply's JSON) in place of its own
#   tst-token IN OUT           the newest signature's RFC 3161 timestamp
#                              token (id-aa-signatureTimeStampToken) to OUT
#   edit-tst IN OUT            IN with one byte of that token's TSTInfo
#                              changed (its serial number): no longer the
#                              TSA's signed bytes
import base64, hashlib, re, sys

PAT = re.compile(rb'/Contents <([0-9A-Fa-f]+)>')

def newest(data):
    m = list(PAT.finditer(data))
    if not m:
        raise SystemExit("no /Contents")
    return m[-1]

# A minimal DER reader and writer: enough to walk a CMS ContentInfo to
# its first SignerInfo and put it back together.
def tlv(b, i):
    tag = b[i]
    n = b[i + 1]
    j = i + 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[j:j + k], "big")
        j += k
    return tag, j, j + n

def children(b, start, end):
    out = []
    while start < end:
        t, cs, ce = tlv(b, start)
        out.append(bytes(b[start:ce]))
        start = ce
    return out

def enc(tag, content):
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(nb)]) + nb + content

def signer(der):
    """(path of (tag, children, index) from the ContentInfo down, the
    SignerInfo's children)"""
    path = []
    node = der[:tlv(der, 0)[2]]
    # ContentInfo -> [0] -> SignedData -> signerInfos SET (its last child)
    # -> the first SignerInfo
    for pick in (1, 0, -1, 0):
        t, cs, ce = tlv(node, 0)
        kids = children(node, cs, ce)
        idx = pick if pick >= 0 else len(kids) - 1
        path.append((t, kids, idx))
        node = kids[idx]
    t, cs, ce = tlv(node, 0)
    return path, (t, children(node, cs, ce))

def rebuild(path, si):
    node = enc(si[0], b"".join(si[1]))
    for t, kids, idx in reversed(path):
        kids = list(kids)
        kids[idx] = node
        node = enc(t, b"".join(kids))
    return node

def main():
    if sys.argv[1] == "edit-receipt":
        data = open(sys.argv[2], "rb").read()
        m = newest(data)
        der = bytearray(bytes.fromhex(m.group(1).decode()))
        key = b'"receipt":"'
        i = der.find(key)
        if i < 0:
            raise SystemExit("no receipt")
        # the receipt's text with its amount changed (1000 -> 9000), the
        # same length in base64: still JSON, still this signature's
        start = i + len(key)
        end = der.index(b'"', start)
        text = base64.b64decode(bytes(der[start:end]))
        if b'"amount":1000' not in text:
            raise SystemExit("no amount 1000 in the receipt")
        text = text.replace(b'"amount":1000', b'"amount":9000', 1)
        der[start:end] = base64.b64encode(text)
        hexed = der.hex().upper().encode()
        data = data[:m.start(1)] + hexed + data[m.end(1):]
        open(sys.argv[3], "wb").write(data)
    elif sys.argv[1] == "move-sig":
        src = open(sys.argv[2], "rb").read()
        dst = open(sys.argv[3], "rb").read()
        a, b = newest(src), newest(dst)
        if len(a.group(1)) != len(b.group(1)):
            raise SystemExit("placeholders of different sizes")
        out = dst[:b.start(1)] + a.group(1) + dst[b.end(1):]
        open(sys.argv[4], "wb").write(out)
    elif sys.argv[1] == "swap-receipt":
        src = open(sys.argv[2], "rb").read()
        dst = open(sys.argv[3], "rb").read()
        a, b = newest(src), newest(dst)
        _, (_, akids) = signer(bytes.fromhex(a.group(1).decode()))
        bpath, (btag, bkids) = signer(bytes.fromhex(b.group(1).decode()))
        if akids[-1][0] != 0xA1 or bkids[-1][0] != 0xA1:
            raise SystemExit("no unsigned attributes")
        der = rebuild(bpath, (btag, bkids[:-1] + [akids[-1]]))
        hexed = der.hex().upper().encode()
        room = len(b.group(1))
        if len(hexed) > room:
            raise SystemExit("the receipt does not fit")
        out = dst[:b.start(1)] + hexed + b"0" * (room - len(hexed)) + dst[b.end(1):]
        open(sys.argv[4], "wb").write(out)
    elif sys.argv[1] == "sig-value":
        data = open(sys.argv[2], "rb").read()
        _, (_, kids) = signer(bytes.fromhex(newest(data).group(1).decode()))
        attrs = next(k for k in kids if k[0] == 0xA0)
        value = next(k for k in kids if k[0] == 0x04)
        t, cs, ce = tlv(value, 0)
        open(sys.argv[3], "wb").write(value[cs:ce])
        print(hashlib.sha256(b"\x31" + attrs[1:]).hexdigest(),
              hashlib.sha256(value[cs:ce]).hexdigest())
    elif sys.argv[1] == "ec-twin":
        v = open(sys.argv[2], "rb").read()
        t, cs, ce = tlv(v, 0)
        r, sv = children(v, cs, ce)
        n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        si = int.from_bytes(sv[2:], "big")
        s2 = (n - si).to_bytes(33, "big").lstrip(b"\x00")
        if s2[0] & 0x80:
            s2 = b"\x00" + s2
        open(sys.argv[3], "wb").write(enc(0x30, r + enc(0x02, s2)))
    elif sys.argv[1] == "set-receipt":
        import json
        data = open(sys.argv[2], "rb").read()
        rep = json.loads(open(sys.argv[3]).read())
        value = json.dumps({k: rep[k] for k in ("cert", "receipt", "signature")},
                           separators=(",", ":"), sort_keys=True).encode()
        m = newest(data)
        path, (tag, kids) = signer(bytes.fromhex(m.group(1).decode()))
        ua = kids[-1]
        t, cs, ce = tlv(ua, 0)
        attr = children(ua, cs, ce)[0]
        t, cs, ce = tlv(attr, 0)
        oid, _ = children(attr, cs, ce)
        kids = kids[:-1] + [enc(0xA1, enc(0x30, oid + enc(0x31, enc(0x04, value))))]
        hexed = rebuild(path, (tag, kids)).hex().upper().encode()
        room = len(m.group(1))
        out = data[:m.start(1)] + hexed + b"0" * (room - len(hexed)) + data[m.end(1):]
        open(sys.argv[4], "wb").write(out)
    elif sys.argv[1] in ("tst-token", "edit-tst"):
        data = open(sys.argv[2], "rb").read()
        m = newest(data)
        der = bytearray(bytes.fromhex(m.group(1).decode()))
        # the attribute: SEQUENCE { OID 1.2.840.113549.1.9.16.2.14, SET { token } }
        oid = bytes.fromhex("060B2A864886F70D010910020E")
        i = der.find(oid)
        if i < 0:
            raise SystemExit("no timestamp token")
        _, tok_at, _ = tlv(der, i + len(oid))       # into the SET
        _, _, tok_end = tlv(der, tok_at)
        if sys.argv[1] == "tst-token":
            open(sys.argv[3], "wb").write(bytes(der[tok_at:tok_end]))
        else:
            # TSTInfo { version INTEGER, policy OID, messageImprint, serialNumber INTEGER, ... }
            tst = der.find(bytes.fromhex("060B2A864886F70D0109100104"), tok_at, tok_end)
            if tst < 0:
                raise SystemExit("no TSTInfo")
            j = der.find(b"\x02", der.find(b"\x04\x20", tst) + 34)
            der[j + 2] ^= 0x01
            hexed = der.hex().upper().encode()
            open(sys.argv[3], "wb").write(data[:m.start(1)] + hexed + data[m.end(1):])
    else:
        raise SystemExit("usage: pdfedit.py edit-receipt IN OUT | move-sig FROM INTO OUT | "
                         "swap-receipt FROM INTO OUT | sig-value IN OUT | ec-twin IN OUT | "
                         "set-receipt IN REPLY OUT | tst-token IN OUT | edit-tst IN OUT")

main()
