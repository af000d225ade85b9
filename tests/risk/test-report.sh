#!/usr/bin/env bash
# The monthly audit report (docs/risk.md): `sealctl report --site` over a
# real sealgated's export (the site in the title; another site's name
# refused), the timer and service units checked by systemd-analyze, and
# tools/sealgate-report run as the timer runs it: it exports as the
# auditor account, verifies, writes the month's report and mails it
# through the notify: relay (a real SMTP sink) to the policy's auditors
# with an email — grace receives it, and it says the log verified.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
build=${SEALGATE_BUILD:?}
src=${SEALGATE_SOURCE:?}
gw=$build/gateway/sealgated
ctl=$build/tools/sealctl
py=/usr/bin/python3
[ -x "$py" ] || { echo "SKIP: no /usr/bin/python3"; exit 77; }
$py -c 'import aiosmtpd, yaml' 2>/dev/null || { echo "SKIP: python3-aiosmtpd or python3-yaml missing"; exit 77; }
. "$src/tests/lib/gateway.sh"
W=$(mktemp -d /tmp/sg-risk-report.XXXXXX)
sink_pid=
trap '[ -z "$sink_pid" ] || kill "$sink_pid" 2>/dev/null || true; sg_gw_stop "$W"; [ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
trap 'exit 1' TERM INT HUP
fails=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }

# ---- the units ----
if command -v systemd-analyze >/dev/null; then
	mkdir -p "$W/units"
	: >"$W/units/report.env"
	sed -e "s|/usr/bin/sealgate-report|$src/tools/sealgate-report|" \
	    -e "s|/etc/sealgate/report.env|$W/units/report.env|" \
	    "$src/softhsm-config/sealgate-report.service" >"$W/units/sealgate-report.service"
	cp "$src/softhsm-config/sealgate-report.timer" "$W/units/"
	if systemd-analyze verify "$W/units/sealgate-report.service" "$W/units/sealgate-report.timer" \
		>"$W/analyze.txt" 2>&1; then
		pass "systemd-analyze verify: the service and the timer"
	else
		fail "systemd-analyze verify: $(cat "$W/analyze.txt")"
	fi
	grep -qx 'OnCalendar=\*-\*-01 06:00:00' "$W/units/sealgate-report.timer" &&
		grep -qx 'Persistent=true' "$W/units/sealgate-report.timer" &&
		pass "the timer: on the 1st, persistent" || fail "the timer is not monthly on the 1st, persistent"
else
	echo "# systemd-analyze is not installed: the units are not checked"
fi

# ---- a real gateway and a real SMTP sink ----
mkdir -p "$W/sink"
$py "$src/tests/lib/smtpsink.py" serve "$W/sink" >>"$W/sink.log" 2>&1 &
sink_pid=$!
for _ in $(seq 100); do [ -s "$W/sink/port" ] && break; sleep 0.1; done
[ -s "$W/sink/port" ] || { echo "the SMTP sink did not start"; cat "$W/sink.log"; exit 1; }
sport=$(cat "$W/sink/port")

SG_ORG="Report Co." sh "$src/tests/backend/mktoken.sh" "$W" sg-report 1234 \
	contract-seal:01:rsa:2048 sealgate-audit:a0:EC:prime256v1 >/dev/null
(umask 077; printf '1234\n' >"$W/token.pin")
cat >"$W/policy.yaml" <<EOP
version: 1
organization:
  name: Report Co.
  timezone: Asia/Shanghai
  departments:
    - { id: hq, name: Headquarters, head: carol }
    - { id: sales, name: Sales, parent: hq, head: bob }
  people:
    - { id: alice, name: Alice, department: sales, roles: [employee] }
    - { id: bob, name: Bob, department: sales, roles: [department_head] }
    - { id: carol, name: Carol, department: hq, roles: [executive] }
    - { id: grace, name: Grace, department: hq, roles: [auditor], email: grace@report.test }
    - { id: heidi, name: Heidi, department: hq, roles: [auditor] }
  act_as:
    - { os_login: "$(id -un)", accounts: all }
seals:
  - id: contract
    name: Contract Seal
    kind: contract
    key: "pkcs11:object=contract-seal;type=private"
    holder: hq
    document_types: [contract]
    business_scopes: [sales]
    users: { departments: [sales] }
    approval:
      rules:
        - levels:
            - { head_of: applicant }
    mfa: none
EOP
cat >"$W/sealgated.yaml" <<EOC
backend_module: /usr/lib/softhsm/libsofthsm2.so
backend_token: "pkcs11:token=sg-report"
token_pin_file: $W/token.pin
socket_path: $W/sealgated.sock
store_path: $W/sealgate.db
policy_path: $W/policy.yaml
token_label: Report Co.
audit_key: "pkcs11:object=sealgate-audit;type=private"
backend_sessions: 2
notify:
  web_url: https://seal.report.test/
  from: "Sealgate <sealgate@report.test>"
  smtp: { url: "smtp://127.0.0.1:$sport" }
EOC
for u in alice bob grace; do
	(umask 077; printf '%s-password\n' "$u" >"$W/pw-$u")
	"$gw" --config "$W/sealgated.yaml" --set-password "$u" --password-file "$W/pw-$u" >/dev/null
done
sg_gw_start "$W" SOFTHSM2_CONF="$W/softhsm2.conf"
c() { "$ctl" --socket "$W/sealgated.sock" --user "$1" --password-file "$W/pw-$1" "${@:2}"; }
c alice apply --seal contract --type contract --scope sales --amount 1000 \
	--reason "Supply contract with Hengda Steel" >/dev/null
# The month of the records, in the organization's zone (the report's).
period=$(TZ=Asia/Shanghai date +%Y-%m)

# ---- sealctl report --site ----
c grace audit export -o "$W/export.jsonl"
rc=0
"$ctl" report --period "$period" --site main --from-export "$W/export.jsonl" \
	--policy "$W/policy.yaml" -o "$W/site.html" >"$W/out.txt" 2>&1 || rc=$?
if [ "$rc" = 0 ] && grep -q '<title>sealgate audit report site main, ' "$W/site.html" &&
	grep -q 'site <span id="site">main</span>' "$W/site.html"; then
	pass "report --site main: the site in the title and the heading"
else
	fail "report --site main: exit $rc: $(cat "$W/out.txt")"
fi
rc=0
"$ctl" report --period "$period" --site branch --from-export "$W/export.jsonl" \
	--policy "$W/policy.yaml" -o "$W/other.html" >"$W/out.txt" 2>&1 || rc=$?
if [ "$rc" = 2 ] && [ ! -e "$W/other.html" ] && grep -q "site main's export, not branch's" "$W/out.txt"; then
	pass "report --site branch over site main's export: refused (exit 2), no report"
else
	fail "report --site branch over main's export: exit $rc: $(cat "$W/out.txt")"
fi

# ---- the scheduled run ----
run_report() {
	env SEALGATE_REPORT_USER=grace SEALGATE_REPORT_PASSWORD_FILE="$W/pw-grace" \
	    SEALGATE_CONFIG="$W/sealgated.yaml" SEALGATE_REPORT_DIR="$W/reports" \
	    SEALGATE_REPORT_CERT="$W/sealgate-audit.crt.pem" SEALCTL="$ctl" "$@" \
	    "$py" "$src/tools/sealgate-report"
}
rc=0
run_report SEALGATE_REPORT_PERIOD="$period" >"$W/run.txt" 2>&1 || rc=$?
[ "$rc" = 0 ] && pass "sealgate-report: exit 0" || fail "sealgate-report: exit $rc: $(cat "$W/run.txt")"
grep -q "auditor heidi has no email" "$W/run.txt" && pass "heidi (no email) named, not mailed" ||
	fail "heidi without an email not named: $(cat "$W/run.txt")"
[ -s "$W/reports/report-$period.html" ] && [ -s "$W/reports/audit-$period.jsonl" ] &&
	pass "the export and the report kept in the directory" || fail "no report or export in $W/reports"
"$py" - "$W/sink" "$period" <<'PY' || fails=$((fails + 1))
import email, email.policy, glob, json, os, sys
d, period = sys.argv[1], sys.argv[2]
got = []
for j in sorted(glob.glob(os.path.join(d, "mail", "*.json"))):
    env = json.load(open(j))
    msg = email.message_from_bytes(open(j[:-5] + ".eml", "rb").read(), policy=email.policy.default)
    # The gateway's own notices (an alert at night: log.off-hours-restart)
    # go through the same sink: only the report's mails count here.
    if "audit report" in (msg["subject"] or ""):
        got.append((env, msg))
ok = True
def check(cond, what):
    global ok
    print(("ok - " if cond else "not ok - ") + what)
    ok &= bool(cond)
check(len(got) == 1, "one mail sent (%d)" % len(got))
if got:
    env, msg = got[0]
    check(env["to"] == ["grace@report.test"], "to grace, the auditor with an email: %s" % env["to"])
    check(msg["subject"] == "Report Co. audit report %s" % period, "subject: %s" % msg["subject"])
    body = msg.get_body(("plain",)).get_content()
    check("The audit log verified" in body, "the mail says the log verified")
    att = [p for p in msg.iter_attachments()]
    check(len(att) == 1 and att[0].get_filename() == "report-%s.html" % period,
          "the report attached: %s" % [p.get_filename() for p in att])
    if att:
        html = att[0].get_content()
        if isinstance(html, bytes):
            html = html.decode()
        check("The log verified: chain and signed checkpoints intact." in html,
              "the attached report says the log verified")
        check(">contract<" in html and ">alice<" in html, "the attached report has the month's records")
sys.exit(0 if ok else 1)
PY

# A log that does not verify (here: checked against another key's
# certificate) is still reported and sent, and says so: exit 3.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=not-the-audit-key \
	-keyout "$W/other.key" -out "$W/other.crt.pem" -days 2 >/dev/null 2>&1
rc=0
run_report SEALGATE_REPORT_PERIOD="$period" SEALGATE_REPORT_DIR="$W/reports-bad" \
	SEALGATE_REPORT_CERT="$W/other.crt.pem" >"$W/run-bad.txt" 2>&1 || rc=$?
"$py" - "$W/sink" "$rc" <<'PY' || fails=$((fails + 1))
import email, email.policy, glob, os, sys
d, rc = sys.argv[1], sys.argv[2]
bad = []
for e in sorted(glob.glob(os.path.join(d, "mail", "*.eml")), key=lambda p: int(os.path.basename(p)[:-4])):
    msg = email.message_from_bytes(open(e, "rb").read(), policy=email.policy.default)
    if "(log NOT verified)" in (msg["subject"] or ""):
        bad.append(msg)
ok = rc == "3" and len(bad) == 1
if ok:
    body = bad[0].get_body(("plain",)).get_content()
    html = [p for p in bad[0].iter_attachments()][0].get_content()
    html = html.decode() if isinstance(html, bytes) else html
    ok = "did NOT verify" in body and "The log did NOT verify" in html
print(("ok - " if ok else "not ok - ") +
      "a log that does not verify: sent anyway, subject, mail and report say so, exit %s" % rc)
sys.exit(0 if ok else 1)
PY

# A password file others can read is refused before anything is exported.
cp "$W/pw-grace" "$W/pw-open"
chmod 0644 "$W/pw-open"
rc=0
run_report SEALGATE_REPORT_PERIOD="$period" SEALGATE_REPORT_PASSWORD_FILE="$W/pw-open" \
	SEALGATE_REPORT_DIR="$W/reports2" >"$W/run2.txt" 2>&1 || rc=$?
n=$(grep -l "audit report" "$W/sink/mail/"*.eml 2>/dev/null | wc -l)
if [ "$rc" = 2 ] && [ "$n" = 2 ] && [ ! -e "$W/reports2" ] && grep -q "readable by others" "$W/run2.txt"; then
	pass "a 0644 password file: refused (exit 2), nothing exported or sent"
else
	fail "a 0644 password file: exit $rc, $n mails: $(cat "$W/run2.txt")"
fi

# Without a period it is last month's report (the 1st's run).
rc=0
run_report SEALGATE_REPORT_DIR="$W/reports3" >"$W/run3.txt" 2>&1 || rc=$?
last=$(TZ=Asia/Shanghai date -d "$(TZ=Asia/Shanghai date +%Y-%m-01) -1 day" +%Y-%m)
[ "$rc" = 0 ] && [ -s "$W/reports3/report-$last.html" ] &&
	pass "no period: last month's ($last)" || fail "no period: exit $rc, no report-$last.html: $(cat "$W/run3.txt")"

# SEALGATE_REPORT_FORMAT=pdf: the same report as PDF, attached as one.
rc=0
run_report SEALGATE_REPORT_PERIOD="$period" SEALGATE_REPORT_DIR="$W/reports4" \
	SEALGATE_REPORT_FORMAT=pdf >"$W/run4.txt" 2>&1 || rc=$?
"$py" - "$W/sink" "$period" "$rc" <<'PY' || fails=$((fails + 1))
import email, email.policy, glob, os, sys
d, period, rc = sys.argv[1:4]
pdfs = []
for e in sorted(glob.glob(os.path.join(d, "mail", "*.eml"))):
    msg = email.message_from_bytes(open(e, "rb").read(), policy=email.policy.default)
    if "audit report" not in (msg["subject"] or ""):
        continue
    for a in msg.iter_attachments():
        if a.get_filename() == "report-%s.pdf" % period:
            pdfs.append(a)
ok = (rc == "0" and len(pdfs) == 1 and pdfs[0].get_content_type() == "application/pdf"
      and pdfs[0].get_content()[:5] == b"%PDF-")
print(("ok - " if ok else "not ok - ") + "SEALGATE_REPORT_FORMAT=pdf: one mail with report-%s.pdf "
      "(application/pdf), exit %s" % (period, rc))
sys.exit(0 if ok else 1)
PY
rc=0
run_report SEALGATE_REPORT_PERIOD="$period" SEALGATE_REPORT_DIR="$W/reports5" \
	SEALGATE_REPORT_FORMAT=docx >"$W/run5.txt" 2>&1 || rc=$?
[ "$rc" = 2 ] && [ ! -e "$W/reports5" ] && pass "SEALGATE_REPORT_FORMAT=docx refused (exit 2)" ||
	fail "SEALGATE_REPORT_FORMAT=docx: exit $rc: $(cat "$W/run5.txt")"

echo "$fails failed"
[ "$fails" = 0 ]
