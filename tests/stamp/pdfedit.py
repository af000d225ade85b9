#!/usr/bin/env python3
# tests/stamp/pdfedit.py — bends a stamped PDF for sealctl verify's tests:
#   edit-receipt IN OUT        the approval receipt's amount changed (1000
#                              to 9000) inside the newest signature's CMS
#   move-sig FROM INTO OUT     INTO with FROM's newest /Contents in place of
#                              its own (same length: the offsets hold)
import base64, re, sys

PAT = re.compile(rb'/Contents <([0-9A-Fa-f]+)>')

def newest(data):
    m = list(PAT.finditer(data))
    if not m:
        raise SystemExit("no /Contents")
    return m[-1]

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
    else:
        raise SystemExit("usage: pdfedit.py edit-receipt IN OUT | move-sig FROM INTO OUT")

main()
