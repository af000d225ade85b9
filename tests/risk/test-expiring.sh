#!/usr/bin/env bash
# Approvals about to expire unused (docs/risk.md, approval.expiring),
# through a real sealgated on a SoftHSM2 token with the test clock: alice's
# application authorized for 20 h is an alert at once, in an alert_raise
# record, with its create and approve records as evidence; the one for
# three days and the one still pending are not, until the gateway's clock
# (SEALGATE_TEST_CLOCK) moves two days on with no record written: the
# engine's clock tick raises it (the store is watched, not asked through
# the gateway, which would write records). Offline, `sealctl risk scan`
# of grace's export judges at the export's end: the 20 h one only.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE, SG_TEST_STORE
set -euo pipefail
build=${SEALGATE_BUILD:?}
src=${SEALGATE_SOURCE:?}
gw=$build/gateway/sealgated
ctl=$build/tools/sealctl
py=/usr/bin/python3
[ -x "$py" ] || { echo "SKIP: no /usr/bin/python3"; exit 77; }
command -v oathtool >/dev/null || { echo "SKIP: no oathtool"; exit 77; }
. "$src/tests/lib/gateway.sh"
W=$(mktemp -d /tmp/sg-risk-expiring.XXXXXX)
trap 'sg_gw_stop "$W"; sg_store_down "$W"; [ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
trap 'exit 1' TERM INT HUP
fails=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }

store=$(sg_store_conf "$W") || exit $?
SG_ORG="Risk Co." sh "$src/tests/backend/mktoken.sh" "$W" sg-risk 1234 \
	contract-seal:01:rsa:2048 sealgate-audit:a0:EC:prime256v1 >/dev/null
(umask 077; printf '1234\n' >"$W/token.pin")
cat >"$W/policy.yaml" <<EOP
version: 1
organization:
  name: Risk Co.
  timezone: Asia/Shanghai
  departments:
    - { id: hq, name: Headquarters, head: carol }
    - { id: sales, name: Sales, parent: hq, head: bob }
  people:
    - { id: alice, name: Alice, department: sales, roles: [employee] }
    - { id: bob, name: Bob, department: sales, roles: [department_head] }
    - { id: carol, name: Carol, department: hq, roles: [executive, seal_admin] }
    - { id: grace, name: Grace, department: hq, roles: [auditor] }
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
now=$(date +%s)
echo "$now" >"$W/clock"
cat >"$W/sealgated.yaml" <<EOC
backend_module: /usr/lib/softhsm/libsofthsm2.so
backend_token: "pkcs11:token=sg-risk"
token_pin_file: $W/token.pin
socket_path: $W/sealgated.sock
$store
policy_path: $W/policy.yaml
token_label: Risk Co.
audit_key: "pkcs11:object=sealgate-audit;type=private"
backend_sessions: 2
test_clock: true
EOC
for u in alice bob grace; do
	printf '%s-password\n' "$u" >"$W/pw-$u"
	"$gw" --config "$W/sealgated.yaml" --set-password "$u" --password-file "$W/pw-$u" >/dev/null
done
sg_gw_start "$W" SEALGATE_TEST_CLOCK="$W/clock" SOFTHSM2_CONF="$W/softhsm2.conf"
c() { "$ctl" --socket "$W/sealgated.sock" --user "$1" --password-file "$W/pw-$2" "${@:3}"; }
sql() { "$py" "$src/tests/lib/sgsql.py" "$W" "$1"; }
# Approving needs password + code: bob's TOTP secret, codes at the test
# clock, each 30 s after the one before.
code() {
	echo $(($(cat "$W/clock") + 30)) >"$W/clock"
	oathtool --totp -b --now "@$(cat "$W/clock")" "$(cat "$W/totp-bob.b32")"
}
(umask 077; "$py" -c 'import base64, os; print(base64.b32encode(os.urandom(20)).decode())' >"$W/totp-bob.b32")
c bob bob user totp-enroll --secret-file "$W/totp-bob.b32" --code "$(code)" >/dev/null

for v in 3d 20h 20h; do
	c alice alice apply --seal contract --type contract --scope sales --amount 1000 --uses 2 \
		--valid-for "$v" --reason "Supply contract with Hengda Steel" >/dev/null
done
# The ids and records the store gave them: 1 for three days, 2 for 20 h,
# 3 for 20 h and left pending.
ids=$(sql "SELECT application FROM audit WHERE action = 'application_create' AND outcome = 'ok' ORDER BY seq")
read -r a1 a2 a3 <<<"$(echo $ids)"
SEALGATE_CODE=$(code) c bob bob approve "$a1" >/dev/null
SEALGATE_CODE=$(code) c bob bob approve "$a2" >/dev/null
seqs2=$(sql "SELECT seq FROM audit WHERE application = $a2 AND outcome = 'ok' AND action IN ('application_create', 'application_approve') ORDER BY seq" | paste -sd,)

# Polls the store (writing no record) until rule has an alert for app,
# or 30 s pass.
wait_alert() {
	local i
	for i in $(seq 300); do
		[ -n "$(sql "SELECT id FROM risk_alerts WHERE rule = 'approval.expiring' AND apps = '[$1]'")" ] && return 0
		sleep 0.1
	done
	return 1
}
# The engine has evaluated the log up to its head.
caught_up() {
	local head i
	head=$(sql "SELECT max(seq) FROM audit")
	for i in $(seq 300); do
		c grace grace alerts --json >"$W/alerts.json"
		"$py" -c 'import json, sys; e = json.load(open(sys.argv[1]))["engine"]
sys.exit(0 if e["running"] and e["evaluated_seq"] >= int(sys.argv[2]) else 1)' "$W/alerts.json" "$head" && return 0
		sleep 0.1
	done
	return 1
}

if wait_alert "$a2"; then
	got=$(sql "SELECT seqs FROM risk_alerts WHERE rule = 'approval.expiring' AND apps = '[$a2]'")
	[ "$got" = "[$seqs2]" ] && pass "application #$a2, 20 h left: an alert with its create and approve records ($got)" ||
		fail "application #$a2's alert has seqs $got, not [$seqs2]"
	n=$(sql "SELECT count(*) FROM audit WHERE action = 'alert_raise' AND detail LIKE '%approval.expiring%'")
	[ "$n" = 1 ] && pass "raised in an alert_raise record" || fail "$n alert_raise records of approval.expiring"
else
	fail "no approval.expiring alert for application #$a2 (20 h left)"
fi
caught_up || fail "the online rules caught up"
n=$(sql "SELECT count(*) FROM risk_alerts WHERE rule = 'approval.expiring'")
[ "$n" = 1 ] && pass "three days left, or pending: no alert" || fail "$n approval.expiring alerts, not 1"

# ---- offline, at the export's end ----
c grace grace audit export -o "$W/export.jsonl"
rc=0
"$ctl" risk scan --from-export "$W/export.jsonl" --policy "$W/policy.yaml" \
	--cert "$W/sealgate-audit.crt.pem" --json >"$W/offline.json" 2>"$W/err.txt" || rc=$?
[ "$rc" = 1 ] || fail "offline scan: exit $rc, not 1: $(cat "$W/err.txt")"
"$py" - "$W/offline.json" "$a2" "$seqs2" <<'PY' && pass "offline: the same alert, application #$a2 only" || fails=$((fails + 1))
import json, sys
al = [a for a in json.load(open(sys.argv[1]))["alerts"] if a["rule"] == "approval.expiring"]
want = [(int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")])]
got = [(a["applications"][0], a["seqs"]) for a in al]
if got != want:
    print("not ok - offline approval.expiring %s, not %s" % (got, want)); sys.exit(1)
PY

# ---- the clock moves, no record is written: the tick raises it ----
# The export's records are evaluated within a second or so (the engine's
# least pause between evaluations, on this small log): the pause lets
# that happen first, so that what follows is the tick's doing. Were it
# too short the test would pass without the tick, never fail with it.
sleep 3
before=$(sql "SELECT max(seq) FROM audit")
echo $((now + 2 * 86400 + 3600)) >"$W/clock"
if wait_alert "$a1"; then
	pass "two days on, application #$a1 (three days) raised on the engine's clock"
	after=$(sql "SELECT action FROM audit WHERE seq > $before ORDER BY seq" | paste -sd' ')
	[ "$after" = "alert_raise" ] && pass "with no record before its alert_raise" ||
		fail "records after seq $before: $after"
else
	fail "no alert for application #$a1 two days on"
fi
[ -z "$(sql "SELECT id FROM risk_alerts WHERE rule = 'approval.expiring' AND apps = '[$a3]'")" ] &&
	pass "the pending application #$a3: none" || fail "the pending application #$a3 was alerted"

[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all passed"
