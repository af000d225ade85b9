#!/bin/bash
# sealctl report's PDF form (docs/risk.md, "sealctl report"): over a
# gen-activity export (two months, every misuse seeded) the same report
# is written as XHTML and as PDF (-o FILE.pdf, and --format pdf whatever
# the name); pdftotext finds every section's title and the HTML report's
# numbers (the contract seal's row, bob's row, the approvals and the
# alerts counted), and a department named in Chinese; qpdf --check
# passes; pdffonts lists fonts, every one embedded; pdftoppm's page 1
# has the charts' colour (#4a78b5). An unknown --format is refused.
# usage: test-pdf.sh GEN-ACTIVITY
set -euo pipefail
gen=$1
build=${SEALGATE_BUILD:?}
src=${SEALGATE_SOURCE:?}
sealctl=$build/tools/sealctl
py=/usr/bin/python3
[ -x "$py" ] || { echo "SKIP: no /usr/bin/python3"; exit 77; }
for t in pdftotext pdffonts pdftoppm qpdf; do
	command -v "$t" >/dev/null || { echo "SKIP: $t is not installed (poppler-utils, qpdf)"; exit 77; }
done
dir=$(mktemp -d /tmp/sg-risk-pdf-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fails=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }

# Legal is 法务部 here: the PDF must draw Chinese.
sed -e 's/@OS_USER@/sgtest/' -e 's/name: Legal$/name: 法务部/' \
	"$src/softhsm-config/acme-policy.yaml.in" >"$dir/policy.yaml"
grep -q '法务部' "$dir/policy.yaml" || { echo "the policy has no Legal department to rename"; exit 1; }
"$gen" --days 56 --misuse all -o "$dir/all.jsonl" 2>/dev/null
report() { "$sealctl" report --period 2026-11 --from-export "$dir/all.jsonl" --policy "$dir/policy.yaml" "$@"; }
report -o "$dir/report.html" >/dev/null
rc=0
report -o "$dir/report.pdf" >"$dir/out.txt" 2>&1 || rc=$?
[ $rc = 0 ] && head -c 5 "$dir/report.pdf" | grep -q '%PDF-' && pass "-o report.pdf writes a PDF" ||
	fail "-o report.pdf: exit $rc: $(cat "$dir/out.txt")"
rc=0
report --format pdf -o "$dir/report.out" >"$dir/out.txt" 2>&1 || rc=$?
[ $rc = 0 ] && head -c 5 "$dir/report.out" | grep -q '%PDF-' && pass "--format pdf writes a PDF whatever the name" ||
	fail "--format pdf: exit $rc: $(cat "$dir/out.txt")"
rc=0
report --format docx -o "$dir/report.docx" >"$dir/out.txt" 2>&1 || rc=$?
[ $rc = 2 ] && [ ! -e "$dir/report.docx" ] && pass "--format docx refused (exit 2)" || fail "--format docx: exit $rc"

pdftotext -layout "$dir/report.pdf" "$dir/report.txt"
"$py" - "$dir/report.html" "$dir/report.txt" <<'PY' || fails=$((fails + 1))
import re, sys
import xml.etree.ElementTree as ET
h = "{http://www.w3.org/1999/xhtml}"
root = ET.parse(sys.argv[1]).getroot()
text = open(sys.argv[2], encoding="utf-8").read()
words = " ".join(text.split())
bad = []
titles = [sec.find(h + "h2").text for sec in root.iter(h + "section")]
for t in titles + ["Seal audit report, 2026-11", "Signatures per day"]:
    if t not in words: bad.append("title %r not in the PDF" % t)
def row(section, first):
    for sec in root.iter(h + "section"):
        if sec.get("id") != section: continue
        for tr in sec.iter(h + "tr"):
            cells = ["".join(td.itertext()) for td in tr.findall(h + "td")]
            if cells and cells[0] == first: return cells
for section, first in [("seals", "contract"), ("seals", "invoice"), ("people", "bob"),
                       ("departments", "法务部")]:
    cells = row(section, first)
    if not cells:
        bad.append("no %s row %s in the HTML" % (section, first)); continue
    # the row's cells, in order, on one line of the PDF's text
    line = [l for l in text.splitlines() if l.split()[:1] == [first]]
    if not line or line[0].split() != " ".join(cells).split():
        bad.append("%s row %s: HTML %s, PDF %s" % (section, first, cells, line))
    else:
        print("ok - %s row %s the same in both: %s" % (section, first, " ".join(cells)))
html = "".join(root.itertext())
for pat in [r"(\d+) applications filed in the period were approved", r"(\d+) alerts? in the period",
            r"(\d+) audit records in the period"]:
    m = re.search(pat, " ".join(html.split()))
    if not m or m.group(0) not in words: bad.append("%r: HTML %s, not in the PDF" % (pat, m and m.group(0)))
for rule in ["threshold-splitting", "probe.lockout", "volume.seal"]:
    if rule not in words: bad.append("alert %s not in the PDF" % rule)
if "The log verified: chain and signed checkpoints intact." not in words: bad.append("no verdict")
if bad:
    print("not ok - the PDF's text: " + "; ".join(bad)); sys.exit(1)
print("ok - the PDF has every section's title and the HTML report's numbers, the Chinese name too")
PY
qpdf --check "$dir/report.pdf" >"$dir/qpdf.txt" 2>&1 && pass "qpdf --check passes" || fail "qpdf --check: $(cat "$dir/qpdf.txt")"
pdffonts "$dir/report.pdf" >"$dir/fonts.txt"
"$py" - "$dir/fonts.txt" <<'PY' && pass "pdffonts: every font embedded" || fails=$((fails + 1))
import sys
rows = open(sys.argv[1]).read().splitlines()[2:]
assert rows, "no font"
for r in rows:
    f = r.split()
    # name type [encoding] emb sub uni object ID: emb is the 5th column from the end
    assert f[-5] == "yes", "not embedded: " + r
print("\n".join(rows))
PY
pdftoppm -r 60 -f 1 -l 1 "$dir/report.pdf" "$dir/page"
"$py" - "$dir"/page*.ppm <<'PY' && pass "page 1 has the charts' colour" || fails=$((fails + 1))
import sys
data = open(sys.argv[1], "rb").read()
# P6 header: magic, width, height, maxval, then RGB bytes
parts = data.split(maxsplit=4)
assert parts[0] == b"P6", parts[0]
pix = parts[4]
n = sum(1 for i in range(0, len(pix) - 2, 3)
        if abs(pix[i] - 0x4a) < 8 and abs(pix[i + 1] - 0x78) < 8 and abs(pix[i + 2] - 0xb5) < 8)
print("%d pixels of #4a78b5 on page 1" % n)
assert n > 200, n
PY

[ $fails = 0 ] || { echo "$fails failed"; exit 1; }
echo "all passed"
