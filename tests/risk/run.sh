#!/bin/bash
# sealctl risk scan and sealctl report over exports made by gen-activity
# (the demo company's activity, signed like a real export): a month and
# two months of ordinary activity raise no alert at the defaults; each
# misuse seeded alone is found by its rule with the seeded records and
# applications as evidence; a tampered export is refused unless
# --no-verify, which says so; a risk: parameter of the policy is obeyed;
# the report has every section and well-formed SVG.
# usage: run.sh GEN-ACTIVITY
set -euo pipefail
gen=$1
build=${SEALGATE_BUILD:?}
src=${SEALGATE_SOURCE:?}
sealctl=$build/tools/sealctl
py=/usr/bin/python3
[ -x "$py" ] || { echo "SKIP: no /usr/bin/python3 to read the JSON and XML"; exit 77; }
dir=$(mktemp -d /tmp/sg-risk-XXXXXX)
trap 'rm -rf "$dir"' EXIT
sed 's/@OS_USER@/sgtest/' "$src/softhsm-config/acme-policy.yaml.in" >"$dir/policy.yaml"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

scan() {   # scan EXPORT [args] -> JSON on $dir/out.json, status in $rc
	rc=0
	"$sealctl" risk scan --from-export "$1" --policy "${POLICY:-$dir/policy.yaml}" --json "${@:2}" \
		>"$dir/out.json" 2>"$dir/err.txt" || rc=$?
}

# ---- ordinary activity: no alert at the defaults ----
for spec in "31 1" "31 2" "56 1" "56 2" "56 3"; do
	set -- $spec
	"$gen" --days "$1" --seed "$2" -o "$dir/ord.jsonl" 2>/dev/null
	scan "$dir/ord.jsonl"
	n=$("$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["alerts"]))' "$dir/out.json")
	if [ "$rc" != 0 ] || [ "$n" != 0 ]; then
		fail "ordinary activity, $1 days (seed $2): exit $rc, $n alerts:"
		"$py" -c 'import json,sys; [print("  ", a["rule"], a["why"]) for a in json.load(open(sys.argv[1]))["alerts"]]' "$dir/out.json"
	else
		echo "ok: $1 days of ordinary activity (seed $2): no alert"
	fi
	grep -q '"verified": true' "$dir/out.json" || fail "ordinary: not reported as verified"
done

# ---- each misuse, seeded alone, found with its evidence ----
check='
import json, sys
want = json.load(open(sys.argv[1]))[0]
got = json.load(open(sys.argv[2]))["alerts"]
for a in got:
    if a["rule"] != want["rule"]:
        continue
    s, ap = set(a["seqs"]), set(a["applications"])
    ws, wa = set(want["seqs"]), set(want["apps"])
    if want["match"] == "exact":
        ok = s == ws and ap == wa
    elif want["match"] == "subset":
        ok = ws <= s and wa <= ap
    else:
        ok = bool(ws & s) and wa <= ap
    if ok:
        print("ok: %s found by %s: seqs %s apps %s" % (want["misuse"], a["rule"],
              a["seqs"][:12], a["applications"][:12]))
        sys.exit(0)
print("FAIL: %s: no %s alert with seqs %s apps %s; alerts: %s" % (want["misuse"], want["rule"],
      want["seqs"], want["apps"], [(a["rule"], a["seqs"][:8], a["applications"][:8]) for a in got]))
sys.exit(1)
'
for m in splitting rubber-fast rubber-ratio volume unusual-hour new-host new-exe dormant \
         probe-refusals probe-wrong probe-lockout probe-size quota checkpoint-owed \
         off-hours-restart off-hours-token clock-backwards; do
	"$gen" --days 56 --misuse "$m" --manifest "$dir/man.json" -o "$dir/m.jsonl" 2>/dev/null
	scan "$dir/m.jsonl"
	[ "$rc" = 1 ] || fail "$m: exit $rc, not 1 (alerts fired)"
	"$py" -c "$check" "$dir/man.json" "$dir/out.json" || fails=$((fails + 1))
done

# ---- signatures the token voided count for nothing ----
"$gen" --days 56 --misuse quota-voided -o "$dir/m.jsonl" 2>/dev/null
scan "$dir/m.jsonl"
if [ "$rc" = 0 ]; then
	echo "ok: 41 signatures in a day, 3 of them voided: under 80 % of 50, no alert"
else
	fail "voided signatures counted: exit $rc: $(grep '"rule"' "$dir/out.json" | tr -d '\n')"
fi

# ---- a risk: parameter of the policy is obeyed ----
"$gen" --days 56 --misuse probe-refusals -o "$dir/m.jsonl" 2>/dev/null
{ cat "$dir/policy.yaml"; printf 'risk:\n  probing: { refusals: 13 }\n'; } >"$dir/policy13.yaml"
POLICY=$dir/policy13.yaml scan "$dir/m.jsonl"
if [ "$rc" = 0 ] && ! grep -q probe.refusals "$dir/out.json"; then
	echo "ok: 12 refusals raise nothing under risk.probing.refusals: 13"
else
	fail "risk.probing.refusals: 13 ignored (exit $rc)"
fi
printf 'risk:\n  probing: { refusal: 13 }\n' | cat "$dir/policy.yaml" - >"$dir/typo.yaml"
POLICY=$dir/typo.yaml scan "$dir/m.jsonl"
if [ "$rc" = 2 ] && grep -q "unknown key 'refusal' in risk.probing" "$dir/err.txt"; then
	echo "ok: a typo under risk: is refused with its line: $(head -1 "$dir/err.txt")"
else
	fail "typo under risk: (exit $rc): $(cat "$dir/err.txt")"
fi

# ---- a tampered export is refused unless --no-verify ----
"$gen" --days 31 -o "$dir/ord.jsonl" 2>/dev/null
"$py" - "$dir/ord.jsonl" "$dir/bad.jsonl" <<'PY'
import json, sys
out = open(sys.argv[2], "w")
done = False
for line in open(sys.argv[1]):
    o = json.loads(line)
    # a signature made to look like someone else's
    if not done and o.get("type") == "record" and o.get("action") == "sign" and o.get("actor") == "alice":
        o["actor"] = "bob"
        done = True
        line = json.dumps(o, separators=(",", ":")) + "\n"
    out.write(line)
PY
scan "$dir/bad.jsonl"
if [ "$rc" = 3 ] && grep -q "did not verify" "$dir/err.txt" && ! grep -q '"alerts"' "$dir/out.json"; then
	echo "ok: a tampered export is refused (exit 3), nothing scanned"
else
	fail "tampered export: exit $rc"
fi
scan "$dir/bad.jsonl" --no-verify
if [ "$rc" = 1 ] && grep -q "THE EXPORT WAS NOT VERIFIED" "$dir/err.txt" &&
   grep -q '"verified": null' "$dir/out.json" && grep -q '"log.unverified"' "$dir/out.json"; then
	echo "ok: --no-verify scans it and says loudly that it was not verified"
else
	fail "--no-verify: exit $rc"
fi
rc=0
"$sealctl" risk scan --from-export "$dir/bad.jsonl" --policy "$dir/policy.yaml" --no-verify \
	>"$dir/out.txt" 2>/dev/null || rc=$?
grep -q "THE EXPORT WAS NOT VERIFIED" "$dir/out.txt" || fail "--no-verify: no warning on stdout"

scan "$dir/no-such-export.jsonl"
[ "$rc" = 2 ] && echo "ok: an export that cannot be read: exit 2" || fail "unreadable export: exit $rc"

# ---- the report ----
"$gen" --days 56 --misuse all -o "$dir/all.jsonl" 2>/dev/null
rc=0
"$sealctl" report --period 2026-11 --from-export "$dir/all.jsonl" --policy "$dir/policy.yaml" \
	-o "$dir/report.html" >"$dir/out.txt" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "report: exit $rc: $(cat "$dir/out.txt")"
"$py" - "$dir/report.html" <<'PY' || fails=$((fails + 1))
import re, sys
import xml.etree.ElementTree as ET
text = open(sys.argv[1], encoding="utf-8").read()
ns = {"h": "http://www.w3.org/1999/xhtml", "s": "http://www.w3.org/2000/svg"}
root = ET.fromstring(text)          # the whole file is well-formed XHTML
ids = [s.get("id") for s in root.iter("{%s}section" % ns["h"])]
want = ["verification", "seals", "quotas", "approvals", "departments", "people", "alerts"]
missing = [w for w in want if w not in ids]
svgs = list(root.iter("{%s}svg" % ns["s"]))
for raw in re.findall(r"<svg.*?</svg>", text, re.S):
    ET.fromstring(raw)              # and each chart on its own
bad = []
if missing: bad.append("sections missing: %s" % missing)
if len(svgs) < 3: bad.append("%d charts" % len(svgs))
if "The log verified" not in text: bad.append("no verification verdict")
if "<script" in text or "http://" in text.replace("http://www.w3.org/", ""):
    bad.append("script or network reference")
for seal in ["contract", "invoice", "finance", "official"]:
    if ">%s<" % seal not in text: bad.append("seal %s missing" % seal)
for who in ["alice", "svc-billing", "erin"]:
    if ">%s<" % who not in text: bad.append("person %s missing" % who)
for rule in ["threshold-splitting", "probe.lockout", "volume.seal"]:
    if rule not in text: bad.append("alert %s missing" % rule)
def row(section, first):
    for sec in root.iter("{%s}section" % ns["h"]):
        if sec.get("id") != section: continue
        for tr in sec.iter("{%s}tr" % ns["h"]):
            cells = ["".join(td.itertext()) for td in tr.findall("{%s}td" % ns["h"])]
            if cells and cells[0] == first: return cells
    return None
c = row("seals", "contract")        # seal signatures refused probes applications approved rejected …
if not c or int(c[1]) == 0 or int(c[5]) == 0 or int(c[6]) == 0 or int(c[5]) + int(c[6]) > int(c[4]):
    bad.append("seal contract: signatures, applications and their outcomes not counted: %s" % c)
b = row("people", "bob")            # department signatures applications decisions …
if not b or int(b[4]) == 0:
    bad.append("bob's decisions as approver not counted: %s" % b)
m = re.search(r"(\d+) applications filed in the period were approved", text)
if not m or int(m.group(1)) == 0:
    bad.append("no approval times")
if bad:
    print("FAIL: report: " + "; ".join(bad)); sys.exit(1)
print("ok: report: sections %s, %d well-formed SVG charts, verified, alerts listed" % (ids, len(svgs)))
PY
rc=0
"$sealctl" report --period 2026-10 --from-export "$dir/bad.jsonl" --policy "$dir/policy.yaml" \
	-o "$dir/bad.html" >/dev/null 2>&1 || rc=$?
if [ "$rc" = 3 ] && grep -q "did NOT verify" "$dir/bad.html"; then
	echo "ok: the report of a tampered export says it did not verify (exit 3)"
else
	fail "report of a tampered export: exit $rc"
fi

[ $fails = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all risk checks passed"
