#!/usr/bin/env bash
# sealctl report over every site of a group (docs/risk.md, "Several
# sites"): gateways of sites a and b, each on its own SoftHSM2 token with
# its own audit key, on one PostgreSQL cluster of the test's own; s1 signs
# three times at a and twice at b; the auditor exports each site
# (`audit export --site S`), and one `sealctl report` over both exports
# (--ca: the group's CAs) has a sites section (a: 3 signatures, b: 2, each
# verified), and the seals, quotas, departments and people sections name
# each row's site (s1: 3 at a, 2 at b); the PDF form says the same;
# sealgate-report with SEALGATE_REPORT_SITE='*' exports each site and
# mails that one report (a real SMTP sink). A
# record of b changed behind the gateways: the report still covers both,
# says b did not verify and a did, exit 3. Two exports of one site, or
# --cert with several, are refused (exit 2).
# Skipped (77) when PostgreSQL is not installed; the cluster and the
# gateways are stopped however it ends.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE, SEALGATE_MODULE, SG_CROSS_SIGNER
set -euo pipefail
build=${SEALGATE_BUILD:?}
src=${SEALGATE_SOURCE:?}
gw=$build/gateway/sealgated
ctl=$build/tools/sealctl
signer=${SG_CROSS_SIGNER:?}
py=/usr/bin/python3
[ -x "$py" ] || { echo "SKIP: no /usr/bin/python3"; exit 77; }
. "$src/tests/lib/gateway.sh"
. "$src/tests/lib/pg.sh"
W=$(mktemp -d /tmp/sg-report-sites.XXXXXX)
fails=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }

sink_pid=
cleanup() {
	st=$?
	[ -z "$sink_pid" ] || kill "$sink_pid" 2>/dev/null || true
	for s in a b; do sg_gw_stop "$W/$s" || true; done
	pg_down "$W" || { echo "not ok - the PostgreSQL cluster is still running"; st=1; }
	if { [ $st = 0 ] || [ $st = 77 ]; } && [ -z "${KEEP:-}" ]; then rm -rf "$W"; else echo "(files kept in $W)"; fi
	exit $st
}
trap cleanup EXIT
trap 'exit 1' TERM INT HUP

rc=0
conn=$(pg_up "$W" 2>"$W/pg_up.err") || rc=$?
if [ $rc = 77 ]; then
	echo "ok - # SKIP PostgreSQL is not installed"
	exit 77
elif [ $rc != 0 ]; then
	cat "$W/pg_up.err"
	exit 1
fi
url="postgresql:///sealgate?host=$W/pg/run&port=5432&user=sealgate&passfile=$W/pg/pgpass"
sql() { psql -X -q -At -d "$conn" -c "$1"; }

me=$(id -un)
cat >"$W/policy.yaml" <<EOP
version: 1
sites:
  - { id: a, name: Site A }
  - { id: b, name: Site B }
organization:
  name: Group Co.
  timezone: UTC
  departments:
    - { id: ops, name: Operations }
  people:
    - { id: s1, name: Signer, department: ops, roles: [employee] }
    - { id: au, name: Auditor, department: ops, roles: [auditor], email: au@group.test }
  act_as:
    - { os_login: "$me", accounts: all }
seals:
  - { id: sa, name: SA Seal, kind: invoice, site: a, key: "pkcs11:object=sa-seal;type=private", holder: ops, users: { departments: [ops] }, approval: none, mfa: none }
  - { id: sb, name: SB Seal, kind: invoice, site: b, key: "pkcs11:object=sb-seal;type=private", holder: ops, users: { departments: [ops] }, approval: none, mfa: none }
EOP
# args: SITE TOKEN-LABEL KEY-SPECS... (the site's audit key is audit-SITE)
site_up() {
	local s=$1 label=$2
	shift 2
	mkdir -p "$W/$s"
	SG_ORG="Group Co." sh "$src/tests/backend/mktoken.sh" "$W/$s" "$label" 1234 "$@" >/dev/null
	(umask 077; printf '1234\n' >"$W/$s/token.pin")
	cat >"$W/$s/sealgated.yaml" <<EOC
backend_module: /usr/lib/softhsm/libsofthsm2.so
backend_token: "pkcs11:token=$label"
token_pin_file: $W/$s/token.pin
audit_key: "pkcs11:object=audit-$s;type=private"
socket_path: $W/$s/sealgated.sock
store: "$url"
site: $s
policy_path: $W/policy.yaml
backend_sessions: 2
EOC
}
site_up a sg-ra sa-seal:01:EC:prime256v1 audit-a:09:EC:prime256v1
site_up b sg-rb sb-seal:11:EC:prime256v1 audit-b:19:EC:prime256v1
# Site a's gateway has the relay sealgate-report mails through (a real
# SMTP sink).
"$py" -c 'import aiosmtpd' 2>/dev/null || { echo "SKIP: python3-aiosmtpd is not installed"; exit 77; }
mkdir -p "$W/sink"
"$py" "$src/tests/lib/smtpsink.py" serve "$W/sink" >"$W/sink.log" 2>&1 &
sink_pid=$!
for _ in $(seq 100); do [ -s "$W/sink/port" ] && break; sleep 0.1; done
cat >>"$W/a/sealgated.yaml" <<EOC
notify:
  web_url: https://seal.group.test/
  from: "Sealgate <sealgate@group.test>"
  smtp: { url: "smtp://127.0.0.1:$(cat "$W/sink/port")" }
  poll: 1
EOC
for p in s1 au; do
	printf '%s-password\n' "$p" | "$gw" --config "$W/a/sealgated.yaml" --set-password "$p" --password-file - >/dev/null
done
(umask 077; printf 'au-password\n' >"$W/pw-au")
sg_gw_start "$W/a" SOFTHSM2_CONF="$W/a/softhsm2.conf" || { echo "not ok - gateway a did not start"; exit 1; }
sg_gw_start "$W/b" SOFTHSM2_CONF="$W/b/softhsm2.conf" || { echo "not ok - gateway b did not start"; exit 1; }
ctl_as() { # site person args...
	local s=$1 p=$2
	shift 2
	SEALGATE_USER=$p SEALGATE_PASSWORD=$p-password "$ctl" --socket "$W/$s/sealgated.sock" "$@"
}
sign() { # site label count
	SEALGATE_SOCKET=$W/$1/sealgated.sock SEALGATE_USER=s1 "$signer" s1-password "$2" "$3" >"$W/sign-$1.out" 2>&1
}
sign a "SA Seal" 3
sign b "SB Seal" 2
ctl_as a au audit checkpoint >/dev/null
ctl_as b au audit checkpoint >/dev/null
na=$(sql "SELECT count(*) FROM audit WHERE site = 'a' AND action = 'sign' AND outcome = 'ok'")
nb=$(sql "SELECT count(*) FROM audit WHERE site = 'b' AND action = 'sign' AND outcome = 'ok'")
[ "$na" = 3 ] && [ "$nb" = 2 ] && pass "s1 signed 3 times at a, twice at b" ||
	{ fail "set-up: $na signatures at a, $nb at b"; cat "$W"/sign-*.out; }
ctl_as a au audit export --site a -o "$W/a.jsonl" >/dev/null 2>&1
ctl_as b au audit export --site b -o "$W/b.jsonl" >/dev/null 2>&1
cat "$W/a/ca.pem" "$W/b/ca.pem" >"$W/group-ca.pem"
period=$(date -u +%Y-%m)
report() {
	"$ctl" report --period "$period" --policy "$W/policy.yaml" "$@"
}

# ---- one report over both sites ----
rc=0
report --from-export "$W/a.jsonl" --from-export "$W/b.jsonl" --ca "$W/group-ca.pem" \
	-o "$W/all.html" >"$W/out.txt" 2>&1 || rc=$?
[ $rc = 0 ] && pass "report over a's and b's exports: exit 0" || fail "report: exit $rc: $(cat "$W/out.txt")"
"$py" - "$W/all.html" <<'PY' || fails=$((fails + 1))
import sys
import xml.etree.ElementTree as ET
h = "{http://www.w3.org/1999/xhtml}"
root = ET.parse(sys.argv[1]).getroot()
def rows(section):
    for sec in root.iter(h + "section"):
        if sec.get("id") == section:
            return [["".join(td.itertext()) for td in tr.findall(h + "td")]
                    for tr in sec.iter(h + "tr") if tr.findall(h + "td")]
    return None
bad = []
title = root.find(h + "head").find(h + "title").text
if "sites a, b" not in title: bad.append("title %r" % title)
s = rows("sites")
if s is None: bad.append("no sites section")
else:
    got = {r[0]: (r[2], r[4]) for r in s}
    if got != {"a": ("3", "verified"), "b": ("2", "verified")}:
        bad.append("sites section: %s" % s)
seals = rows("seals") or []
if [r[:3] for r in seals] != [["a", "sa", "3"], ["b", "sb", "2"]]:
    bad.append("seals section: %s" % seals)
people = {(r[0], r[1]): r[3] for r in rows("people") or []}
if people.get(("a", "s1")) != "3" or people.get(("b", "s1")) != "2":
    bad.append("people section: %s" % people)
deps = {r[0]: r[3] for r in rows("departments") or [] if r[1] == "Operations"}
if deps != {"a": "3", "b": "2"}: bad.append("departments section: %s" % deps)
quotas = [r[:2] for r in rows("quotas") or []]
if quotas != [["a", "sa"], ["b", "sb"]]: bad.append("quotas section: %s" % quotas)
if bad:
    print("not ok - the report of both sites: " + "; ".join(bad)); sys.exit(1)
print("ok - one report: a sites section (a 3 signatures, b 2, both verified), each section's rows name their site")
PY
rc=0
report --from-export "$W/a.jsonl" --from-export "$W/b.jsonl" --ca "$W/group-ca.pem" \
	-o "$W/all.pdf" >/dev/null 2>&1 || rc=$?
if [ $rc = 0 ] && command -v pdftotext >/dev/null; then
	pdftotext -layout "$W/all.pdf" "$W/all.txt"
	grep -q "Seal audit report, sites a, b" "$W/all.txt" && grep -Eq '^ *a +sa +3 ' "$W/all.txt" &&
		grep -Eq '^ *b +sb +2 ' "$W/all.txt" && pass "the PDF form names both sites and their seals' rows" ||
		fail "the PDF form: $(head -40 "$W/all.txt")"
else
	fail "the PDF form: exit $rc"
fi

# ---- refused ----
rc=0
report --from-export "$W/a.jsonl" --from-export "$W/a.jsonl" -o "$W/twice.html" >"$W/out2.txt" 2>&1 || rc=$?
[ $rc = 2 ] && [ ! -e "$W/twice.html" ] && grep -q "both site a's exports" "$W/out2.txt" &&
	pass "two exports of one site: refused (exit 2)" || fail "two exports of a: exit $rc: $(cat "$W/out2.txt")"
rc=0
report --from-export "$W/a.jsonl" --from-export "$W/b.jsonl" --cert "$W/a/audit-a.crt.pem" \
	-o "$W/cert.html" >"$W/out3.txt" 2>&1 || rc=$?
[ $rc = 2 ] && [ ! -e "$W/cert.html" ] && pass "--cert with several sites: refused (exit 2)" ||
	fail "--cert with several: exit $rc: $(cat "$W/out3.txt")"

# ---- sealgate-report, every site in one mail ----
rc=0
env SEALGATE_REPORT_USER=au SEALGATE_REPORT_PASSWORD_FILE="$W/pw-au" SEALGATE_CONFIG="$W/a/sealgated.yaml" \
	SEALGATE_REPORT_DIR="$W/reports" SEALGATE_REPORT_SITE='*' SEALGATE_REPORT_CA="$W/group-ca.pem" \
	SEALGATE_REPORT_PERIOD="$period" SEALCTL="$ctl" "$py" "$src/tools/sealgate-report" >"$W/run.txt" 2>&1 || rc=$?
[ $rc = 0 ] && [ -s "$W/reports/audit-$period-a.jsonl" ] && [ -s "$W/reports/audit-$period-b.jsonl" ] &&
	pass "sealgate-report with SEALGATE_REPORT_SITE='*': each site exported, exit 0" ||
	fail "sealgate-report '*': exit $rc: $(cat "$W/run.txt")"
n=0
for _ in $(seq 100); do
	n=$("$py" "$src/tests/lib/smtpsink.py" count "$W/sink" au@group.test)
	[ "$n" -ge 1 ] && grep -lq "audit report all sites" "$W/sink/mail/"*.eml 2>/dev/null && break
	sleep 0.1
done
"$py" - "$W/sink" "$period" <<'PY' && pass "one mail: all sites, report-$period-all.html with both sites attached" ||
import email, email.policy, glob, os, sys
d, period = sys.argv[1], sys.argv[2]
got = []
for e in glob.glob(os.path.join(d, "mail", "*.eml")):
    m = email.message_from_bytes(open(e, "rb").read(), policy=email.policy.default)
    if "audit report" in (m["subject"] or ""):
        got.append(m)
assert len(got) == 1, [m["subject"] for m in got]
m = got[0]
assert m["subject"] == "Group Co. audit report all sites, %s" % period, m["subject"]
att = list(m.iter_attachments())
assert [a.get_filename() for a in att] == ["report-%s-all.html" % period], att
html = att[0].get_content()
html = html.decode() if isinstance(html, bytes) else html
assert "sites <span id=\"site\">a, b</span>" in html and 'id="sites"' in html, html[:600]
PY
	fail "the mail: $(ls "$W/sink/mail" 2>/dev/null)"

# ---- one site's log changed ----
seq=$(sql "SELECT max(seq) FROM audit WHERE site = 'b' AND action = 'sign'")
sql "ALTER TABLE audit DISABLE TRIGGER USER; UPDATE audit SET actor = 'mallory' WHERE site = 'b' AND seq = $seq; ALTER TABLE audit ENABLE TRIGGER USER"
ctl_as a au audit export --site b -o "$W/b2.jsonl" >/dev/null 2>&1 || true
rc=0
report --from-export "$W/a.jsonl" --from-export "$W/b2.jsonl" --ca "$W/group-ca.pem" \
	-o "$W/bad.html" >"$W/out4.txt" 2>&1 || rc=$?
"$py" - "$W/bad.html" "$rc" <<'PY' && pass "b changed: exit 3, b did NOT verify, a verified, both reported" ||
import sys
import xml.etree.ElementTree as ET
h = "{http://www.w3.org/1999/xhtml}"
root = ET.parse(sys.argv[1]).getroot()
for sec in root.iter(h + "section"):
    if sec.get("id") == "sites":
        got = {r[0]: r[4] for r in (["".join(td.itertext()) for td in tr.findall(h + "td")]
                                     for tr in sec.iter(h + "tr")) if r}
assert sys.argv[2] == "3", sys.argv[2]
assert got == {"a": "verified", "b": "did NOT verify"}, got
text = "".join(root.itertext())
assert "b: The log did NOT verify" in text and "a: The log verified" in text
PY
	fail "b changed: exit $rc: $(cat "$W/out4.txt")"

[ $fails = 0 ] || { echo "$fails failed"; exit 1; }
echo "all passed"
