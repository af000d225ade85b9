#!/usr/bin/env bash
# The risk rules over the export of a real sealgated (SoftHSM2 token with
# an audit key, checkpoints signed on it), not the generator's: alice files
# three applications just under the contract seal's 1,000,000 threshold and
# dave locks himself out with wrong passwords; grace exports; `sealctl risk
# scan --cert` (the audit certificate pinned) finds the splitting with the
# three application_create records and the lockout with its record, as the
# store holds them.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
build=${SEALGATE_BUILD:?}
src=${SEALGATE_SOURCE:?}
gw=$build/gateway/sealgated
ctl=$build/tools/sealctl
py=/usr/bin/python3
[ -x "$py" ] || { echo "SKIP: no /usr/bin/python3"; exit 77; }
. "$src/tests/lib/gateway.sh"
W=$(mktemp -d /tmp/sg-risk-real.XXXXXX)
trap 'sg_gw_stop "$W"; [ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
fails=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }

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
    - { id: carol, name: Carol, department: hq, roles: [executive] }
    - { id: dave, name: Dave, department: sales, roles: [employee] }
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
        - when: { amount_over: 1000000 }
          levels:
            - { head_of: applicant }
            - { role: executive }
        - levels:
            - { head_of: applicant }
    mfa: none
EOP
cat >"$W/sealgated.yaml" <<EOC
backend_module: /usr/lib/softhsm/libsofthsm2.so
backend_token: "pkcs11:token=sg-risk"
token_pin_file: $W/token.pin
socket_path: $W/sealgated.sock
store_path: $W/sealgate.db
policy_path: $W/policy.yaml
token_label: Risk Co.
audit_key: "pkcs11:object=sealgate-audit;type=private"
backend_sessions: 2
EOC
for u in alice bob carol dave grace; do
	printf '%s-password\n' "$u" >"$W/pw-$u"
	"$gw" --config "$W/sealgated.yaml" --set-password "$u" --password-file "$W/pw-$u" >/dev/null
done
printf 'not-the-password\n' >"$W/pw-wrong"
sg_gw_start "$W" SOFTHSM2_CONF="$W/softhsm2.conf"
c() { "$ctl" --socket "$W/sealgated.sock" --user "$1" --password-file "$W/pw-$2" "${@:3}"; }

for amount in 600000 700000 650000; do
	c alice alice apply --seal contract --type contract --scope sales --amount "$amount" \
		--reason "Supply contract with Hengda Steel" >/dev/null
done
for i in 1 2 3 4 5; do c dave wrong list >/dev/null 2>&1 || true; done
c grace grace audit export -o "$W/export.jsonl"

rc=0
"$ctl" risk scan --from-export "$W/export.jsonl" --policy "$W/policy.yaml" \
	--cert "$W/sealgate-audit.crt.pem" --json >"$W/out.json" 2>"$W/err.txt" || rc=$?
[ "$rc" = 1 ] || fail "scan: exit $rc, not 1: $(cat "$W/err.txt")"
grep -q '"verified": true' "$W/out.json" && pass "the real export verified with the audit certificate pinned" ||
	fail "not verified: $(cat "$W/err.txt")"
"$py" - "$W/sealgate.db" "$W/out.json" <<'PY' || fails=$((fails + 1))
import json, sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
alerts = json.load(open(sys.argv[2]))["alerts"]
creates = db.execute("SELECT seq, application FROM audit WHERE action = 'application_create' "
                     "AND outcome = 'ok' AND actor = 'alice' ORDER BY seq").fetchall()
lock = db.execute("SELECT seq FROM audit WHERE action = 'login' AND outcome = 'denied' AND "
                  "actor = 'dave' AND reason LIKE '%failed attempts:%'").fetchall()
wrong = db.execute("SELECT seq FROM audit WHERE action = 'login' AND outcome = 'denied' AND "
                   "actor = 'dave' AND reason LIKE 'wrong password%'").fetchall()
ok = True
def find(rule, seqs, apps):
    global ok
    for a in alerts:
        if a["rule"] == rule and a["seqs"] == seqs and a["applications"] == apps:
            print("ok - %s: seqs %s applications %s: %s" % (rule, seqs, apps, a["why"]))
            return
    print("not ok - no %s alert with seqs %s applications %s; alerts: %s" % (rule, seqs, apps,
          [(a["rule"], a["seqs"], a["applications"]) for a in alerts]))
    ok = False
find("threshold-splitting", [s for s, _ in creates], [a for _, a in creates])
if len(lock) != 1:
    print("not ok - the store has %d lockout records of dave" % len(lock)); ok = False
else:
    find("probe.lockout", [lock[0][0]], [])
    find("probe.wrong-credentials", sorted([s for (s,) in wrong]), [])
sys.exit(0 if ok else 1)
PY
echo "$fails failed"
[ "$fails" = 0 ]
