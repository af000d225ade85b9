#!/usr/bin/env bash
# The online alert on a log that does not verify (docs/risk.md,
# log.verify_failed), through a real sealgated on a SoftHSM2 token with an
# audit key, its store SQLite or, with SG_TEST_STORE=pg, PostgreSQL:
#  - a record alice's login wrote is changed in the store behind the
#    gateway's back (the append-only trigger set aside, as tests/audit
#    does); grace's `sealctl audit verify --all-sites` (the gateway's
#    audit_verify) says the log is broken, and the alert appears in
#    `sealctl alerts --json` naming that seq, high, its notice to grace in
#    the outbox;
#  - the gateway stopped (its last checkpoint covers its last record:
#    gateway_stop, or at night the alert_raise of that stop), that
#    record changed, the gateway started again: the thread's
#    own check, which starts at the last checkpoint, raises the alert for
#    it with no one asking for a verification; the first alert is not
#    raised twice;
#  - stopped again, the last checkpoint's time changed (its signature no
#    longer verifies), started: an alert for that checkpoint's seq.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE, SG_TEST_STORE
set -euo pipefail
build=${SEALGATE_BUILD:?}
src=${SEALGATE_SOURCE:?}
gw=$build/gateway/sealgated
ctl=$build/tools/sealctl
py=/usr/bin/python3
[ -x "$py" ] || { echo "SKIP: no /usr/bin/python3"; exit 77; }
. "$src/tests/lib/gateway.sh"
W=$(mktemp -d /tmp/sg-risk-logverify.XXXXXX)
trap 'sg_gw_stop "$W"; sg_store_down "$W"; [ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
trap 'exit 1' TERM INT HUP
fails=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }

store=$(sg_store_conf "$W") || exit $?
SG_ORG="Risk Co." sh "$src/tests/backend/mktoken.sh" "$W" sg-logv 1234 \
	contract-seal:01:rsa:2048 sealgate-audit:a0:EC:prime256v1 >/dev/null
(umask 077; printf '1234\n' >"$W/token.pin")
cat >"$W/policy.yaml" <<EOP
version: 1
organization:
  name: Risk Co.
  timezone: Asia/Shanghai
  departments:
    - { id: hq, name: Headquarters }
  people:
    - { id: alice, name: Alice, department: hq, roles: [employee] }
    - { id: grace, name: Grace, department: hq, roles: [auditor], email: grace@example.test }
  act_as:
    - { os_login: "$(id -un)", accounts: all }
seals:
  - id: contract
    name: Contract Seal
    kind: contract
    key: "pkcs11:object=contract-seal;type=private"
    holder: hq
    users: { departments: [hq] }
    approval: none
    mfa: none
EOP
# The relay is never reached (port 9): the notices stay in the outbox,
# where the test reads them.
cat >"$W/sealgated.yaml" <<EOC
backend_module: /usr/lib/softhsm/libsofthsm2.so
backend_token: "pkcs11:token=sg-logv"
token_pin_file: $W/token.pin
socket_path: $W/sealgated.sock
$store
policy_path: $W/policy.yaml
token_label: Risk Co.
audit_key: "pkcs11:object=sealgate-audit;type=private"
backend_sessions: 2
notify:
  web_url: https://seal.example.test/
  from: "Sealgate <sealgate@example.test>"
  smtp: { url: "smtp://127.0.0.1:9" }
  poll: 3600
EOC
for u in alice grace; do
	printf '%s-password\n' "$u" >"$W/pw-$u"
	"$gw" --config "$W/sealgated.yaml" --set-password "$u" --password-file "$W/pw-$u" >/dev/null
done
sg_gw_start "$W" SOFTHSM2_CONF="$W/softhsm2.conf"
c() { "$ctl" --socket "$W/sealgated.sock" --user "$1" --password-file "$W/pw-$2" "${@:3}"; }
sql() { "$py" "$src/tests/lib/sgsql.py" "$W" "$1"; }

# Changes one record's actor in the store, as someone with the database
# in hand would: past the append-only trigger.
tamper() {
	if [ -f "$W/store/conninfo" ]; then
		sql "ALTER TABLE audit DISABLE TRIGGER USER; UPDATE audit SET actor = 'mallory' WHERE seq = $1; ALTER TABLE audit ENABLE TRIGGER USER"
	else
		sql "DROP TRIGGER IF EXISTS audit_no_update"
		sql "UPDATE audit SET actor = 'mallory' WHERE seq = $1"
	fi
}

# Polls `sealctl alerts --json` (grace) until a log.verify_failed alert
# with evidence [SEQ] is there (or 60 s pass by the clock: the check
# runs each second);
# the alerts are left in $W/alerts.json.
wait_alert() {
	local end=$((SECONDS + 60))
	while [ $SECONDS -lt $end ]; do
		c grace grace alerts --json >"$W/alerts.json" 2>/dev/null || true
		if "$py" -c 'import json, sys
a = json.load(open(sys.argv[1]))["alerts"]
sys.exit(0 if [x for x in a if x["rule"] == "log.verify_failed" and x["seqs"] == [int(sys.argv[2])]] else 1)' \
			"$W/alerts.json" "$1" 2>/dev/null; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# Polls until the thread has checked the chain up to seq SEQ (60 s).
wait_checked() {
	local end=$((SECONDS + 60))
	while [ $SECONDS -lt $end ]; do
		c grace grace alerts --json >"$W/alerts.json" 2>/dev/null || true
		"$py" -c 'import json, sys
sys.exit(0 if json.load(open(sys.argv[1]))["engine"].get("checked_seq", 0) >= int(sys.argv[2]) else 1)' \
			"$W/alerts.json" "$1" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

for _ in 1 2 3; do c alice alice list >/dev/null; done
bad=$(sql "SELECT max(seq) FROM audit WHERE actor = 'alice' AND action = 'login'")
[ -n "$bad" ] || { echo "no login record of alice"; exit 1; }
wait_checked "$bad" && pass "the thread checked the chain up to seq $bad" ||
	fail "the chain was not checked up to seq $bad: $(cat "$W/alerts.json")"

# ---- a record changed behind the gateway: audit_verify says so, an alert ----
"$py" -c 'import json, sys
a = json.load(open(sys.argv[1]))["alerts"]
sys.exit(1 if [x for x in a if x["rule"] == "log.verify_failed"] else 0)' "$W/alerts.json" &&
	pass "an intact log: no log.verify_failed alert" || fail "an alert on an intact log: $(cat "$W/alerts.json")"
tamper "$bad"
rc=0
c grace grace audit verify --all-sites >"$W/verify.out" 2>&1 || rc=$?
[ $rc != 0 ] && grep -q "seq $bad" "$W/verify.out" && pass "audit verify finds seq $bad changed (exit $rc)" ||
	fail "audit verify (exit $rc): $(cat "$W/verify.out")"
if wait_alert "$bad"; then
	"$py" - "$W/alerts.json" "$bad" <<'PY' && pass "log.verify_failed for seq $bad: high, names the site, what broke and who found it" ||
import json, sys
a = [x for x in json.load(open(sys.argv[1]))["alerts"] if x["rule"] == "log.verify_failed"]
assert len(a) == 1, a
a = a[0]
assert a["severity"] == "high" and a["state"] == "open", a
assert a["subject"].startswith("audit log of site "), a
assert "seq %s" % sys.argv[2] in a["why"] and "record changed" in a["why"], a
assert "audit_verify by grace" in a["why"], a
PY
		fail "the alert: $(cat "$W/alerts.json")"
else
	fail "no log.verify_failed alert for seq $bad within 60 s: $(cat "$W/alerts.json")"
fi
n=$(sql "SELECT count(*) FROM audit WHERE action = 'alert_raise' AND detail LIKE '%log.verify_failed%'")
[ "$n" = 1 ] && pass "raised in one alert_raise record" || fail "$n alert_raise records for it"
n=$(sql "SELECT count(*) FROM outbox WHERE event = 'alert' AND recipient = 'grace' AND detail LIKE '%log.verify_failed%'")
[ "$n" = 1 ] && pass "grace's notice of it is in the outbox" || fail "$n notices to grace"

# ---- the gateway's own check at start, from the last checkpoint ----
sg_gw_stop "$W"
last=$(sql "SELECT max(seq) FROM audit")
cps=$(sql "SELECT max(seq) FROM audit_checkpoints")
[ "$cps" = "$last" ] && pass "the last checkpoint covers the last record (seq $last)" ||
	fail "last checkpoint at seq $cps, log ends at seq $last"
tamper "$last"
sg_gw_start "$W" SOFTHSM2_CONF="$W/softhsm2.conf"
if wait_alert "$last"; then
	"$py" - "$W/alerts.json" "$last" "$bad" <<'PY' && pass "at start the thread finds seq $last changed, with no verification asked; seq $bad's alert once" ||
import json, sys
a = [x for x in json.load(open(sys.argv[1]))["alerts"] if x["rule"] == "log.verify_failed"]
mine = [x for x in a if x["seqs"] == [int(sys.argv[2])]]
assert len(mine) == 1 and mine[0]["severity"] == "high", a
assert "record changed" in mine[0]["why"] and "audit_verify" not in mine[0]["why"], mine
assert len([x for x in a if x["seqs"] == [int(sys.argv[3])]]) == 1, a
assert len(a) == 2, a
PY
		fail "the alerts: $(cat "$W/alerts.json")"
else
	fail "no log.verify_failed alert for seq $last within 60 s: $(cat "$W/alerts.json")"
fi
grep -q "the log does not verify: seq $last" "$W/sealgated.log" && pass "the gateway logs it" ||
	fail "not in the gateway's log"

# ---- a checkpoint changed: its signature no longer verifies ----
sg_gw_stop "$W"
cps=$(sql "SELECT max(seq) FROM audit_checkpoints")
if [ -f "$W/store/conninfo" ]; then
	sql "ALTER TABLE audit_checkpoints DISABLE TRIGGER USER; UPDATE audit_checkpoints SET ts_ns = ts_ns + 1 WHERE seq = $cps; ALTER TABLE audit_checkpoints ENABLE TRIGGER USER"
else
	sql "DROP TRIGGER IF EXISTS audit_checkpoints_no_update"
	sql "UPDATE audit_checkpoints SET ts_ns = ts_ns + 1 WHERE seq = $cps"
fi
sg_gw_start "$W" SOFTHSM2_CONF="$W/softhsm2.conf"
if wait_alert "$cps"; then
	"$py" - "$W/alerts.json" "$cps" <<'PY' && pass "at start the last checkpoint (seq $cps), changed, does not verify: an alert" ||
import json, sys
a = [x for x in json.load(open(sys.argv[1]))["alerts"] if x["rule"] == "log.verify_failed"
     and x["seqs"] == [int(sys.argv[2])]]
assert len(a) == 1 and "forged or changed" in a[0]["why"], a
PY
		fail "the alerts: $(cat "$W/alerts.json")"
else
	fail "no log.verify_failed alert for the checkpoint at seq $cps within 60 s: $(cat "$W/alerts.json")"
fi

[ $fails = 0 ] || { echo "$fails failed"; exit 1; }
echo "all passed"
