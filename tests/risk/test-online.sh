#!/usr/bin/env bash
# The risk rules online (docs/risk.md, "Alerts online"), through a real
# sealgated on a SoftHSM2 token with an audit key, its store SQLite or,
# with SG_TEST_STORE=pg, PostgreSQL: alice files three applications under
# the contract seal's 1,000,000 threshold and dave types five wrong
# passwords; the splitting and the lockout appear in `sealctl alerts`
# without anyone asking for a scan, with the records the store holds as
# evidence; online and offline (`sealctl risk scan` of grace's export)
# give the same alerts; grace acknowledges one and closes another, each
# recorded in the log; a restart raises no alert twice. Until the restart
# the queue of records handed to the rules holds none (risk_queue: 0), so
# the catch-up from the store by seq is what feeds them; after it the
# default queue does, and alice's fourth application joins the splitting
# alert (alert_update), which keeps its id. grace, the auditor, is told of
# each new alert by mail (a real SMTP sink, tests/lib/smtpsink.py), the
# notice queued in the alert's own transaction.
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
W=$(mktemp -d /tmp/sg-risk-online.XXXXXX)
trap 'sg_gw_stop "$W"; sg_store_down "$W"; [ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
trap 'exit 1' TERM INT HUP
fails=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }

store=$(sg_store_conf "$W") || exit $?
"$py" -c 'import aiosmtpd' 2>/dev/null || { echo "SKIP: python3-aiosmtpd is not installed"; exit 77; }
sink=$src/tests/lib/smtpsink.py
mkdir -p "$W/sink"
"$py" "$sink" serve "$W/sink" >"$W/sink.log" 2>&1 &
sink_pid=$!
trap 'kill "$sink_pid" 2>/dev/null; sg_gw_stop "$W"; sg_store_down "$W"; [ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
for _ in $(seq 100); do [ -s "$W/sink/port" ] && break; sleep 0.1; done
sport=$(cat "$W/sink/port") || { echo "the SMTP sink did not start"; cat "$W/sink.log"; exit 1; }
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
    - { id: dave, name: Dave, department: sales, roles: [employee] }
    - { id: grace, name: Grace, department: hq, roles: [auditor], email: grace@example.test }
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
$store
policy_path: $W/policy.yaml
token_label: Risk Co.
audit_key: "pkcs11:object=sealgate-audit;type=private"
backend_sessions: 2
risk_queue: 0
notify:
  web_url: https://seal.example.test/
  from: "Sealgate <sealgate@example.test>"
  smtp: { url: "smtp://127.0.0.1:$sport" }
  poll: 1
EOC
for u in alice bob carol dave grace; do
	printf '%s-password\n' "$u" >"$W/pw-$u"
	"$gw" --config "$W/sealgated.yaml" --set-password "$u" --password-file "$W/pw-$u" >/dev/null
done
printf 'not-the-password\n' >"$W/pw-wrong"
sg_gw_start "$W" SOFTHSM2_CONF="$W/softhsm2.conf"
c() { "$ctl" --socket "$W/sealgated.sock" --user "$1" --password-file "$W/pw-$2" "${@:3}"; }

# The first JSON document of sealctl's output (audit query --json prints
# its logout's reply after it).
first_json() { "$py" -c 'import json, sys
print(json.dumps(json.JSONDecoder().raw_decode(sys.stdin.read())[0]))'; }

# Polls `sealctl alerts --json` as grace until the rules have evaluated
# every record up to the log's head as it was when asked (or 30 s pass,
# a failure: the rules should take a second or two).
alerts_caught_up() {
	local i=0 head
	head=$(c grace grace audit query --json --limit 1000 | first_json | "$py" -c '
import json, sys; rows = json.load(sys.stdin).get("records", []); print(max([r["seq"] for r in rows] or [0]))')
	while [ $i -lt 300 ]; do
		c grace grace alerts --json >"$W/alerts.json"
		if "$py" -c 'import json, sys; e = json.load(open(sys.argv[1]))["engine"]
sys.exit(0 if e["running"] and e["evaluated_seq"] >= int(sys.argv[2]) else 1)' "$W/alerts.json" "$head"; then
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	echo "the rules did not reach seq $head in 30 s: $(cat "$W/alerts.json")" >&2
	return 1
}

for amount in 600000 700000 650000; do
	c alice alice apply --seal contract --type contract --scope sales --amount "$amount" \
		--reason "Supply contract with Hengda Steel" >/dev/null
done
for i in 1 2 3 4 5; do c dave wrong list >/dev/null 2>&1 || true; done
alerts_caught_up || fail "the online rules caught up"

# ---- the seeded misuse is found online, with the store's records ----
c grace grace audit query --json --limit 1000 | first_json >"$W/records.json"
"$py" - "$W/records.json" "$W/alerts.json" <<'PY' || fails=$((fails + 1))
import json, sys
rows = json.load(open(sys.argv[1]))["records"]
alerts = json.load(open(sys.argv[2]))["alerts"]
creates = [(r["seq"], r["application"]) for r in rows if r["action"] == "application_create"
           and r["outcome"] == "ok" and r.get("actor") == "alice"]
wrong = sorted(r["seq"] for r in rows if r["action"] == "login" and r["outcome"] == "denied"
               and r.get("actor") == "dave" and (r.get("reason") or "").startswith("wrong password"))
lock = [r["seq"] for r in rows if r["action"] == "login" and r["outcome"] == "denied"
        and r.get("actor") == "dave" and "failed attempts:" in (r.get("reason") or "")]
ok = True
def find(rule, seqs, apps):
    global ok
    for a in alerts:
        if a["rule"] == rule and a["seqs"] == seqs and a["applications"] == apps:
            if a["state"] != "open":
                print("not ok - %s is %s, not open" % (rule, a["state"])); ok = False
            print("ok - online %s: seqs %s applications %s: %s" % (rule, seqs, apps, a["why"]))
            return
    print("not ok - no online %s alert with seqs %s applications %s; alerts: %s" % (rule, seqs,
          apps, [(a["rule"], a["seqs"], a["applications"]) for a in alerts]))
    ok = False
if len(creates) != 3 or len(lock) != 1:
    print("not ok - the store has %d applications of alice, %d lockouts of dave" % (len(creates), len(lock)))
    sys.exit(1)
find("threshold-splitting", [s for s, _ in creates], [a for _, a in creates])
find("probe.lockout", lock, [])
find("probe.wrong-credentials", wrong, [])
raised = [r for r in rows if r["action"] == "alert_raise"]
if len(raised) != len(alerts):
    print("not ok - %d alert_raise records for %d alerts" % (len(raised), len(alerts))); ok = False
else:
    print("ok - each of the %d alerts raised in its own alert_raise record" % len(alerts))
sys.exit(0 if ok else 1)
PY
# ---- grace is told of each new alert by mail ----
# (one mail per alert: at night in the policy's zone the restart's own
# log.off-hours-restart alert is one more)
want=$("$py" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["alerts"]))' "$W/alerts.json")
n=0
for _ in $(seq 600); do
	n=$("$py" "$sink" count "$W/sink" grace@example.test)
	[ "$n" -ge "$want" ] && break
	sleep 0.1
done
for i in $(seq "$n"); do "$py" "$sink" show "$W/sink" grace@example.test "$i"; done >"$W/grace-mail.json" 2>&1 || true
"$py" - "$W/grace-mail.json" "$W/alerts.json" <<'PY' && pass "grace's mail names each alert's rule and links to the alerts" ||
import json, sys
dec, text, mails, i = json.JSONDecoder(), open(sys.argv[1]).read(), [], 0
while i < len(text):
    if text[i].isspace(): i += 1; continue
    m, i = dec.raw_decode(text, i); mails.append(m)
rules = {a["rule"] for a in json.load(open(sys.argv[2]))["alerts"]}
got = {r for r in rules for m in mails if m["subject"] == "Alert: " + r}
assert rules and got == rules, (rules, [m["subject"] for m in mails])
assert all("https://seal.example.test/#/alerts" in m["body"] for m in mails), mails
PY
	fail "grace's mail: $(cat "$W/grace-mail.json" | head -c 2000)"
grep -q '"overflows": [1-9]' "$W/alerts.json" && pass "the queue of none overflowed: the rules read the records back from the store" ||
	fail "the queue never overflowed: $(cat "$W/alerts.json")"

# ---- online and offline: the same alerts over the same log ----
c grace grace audit export -o "$W/export.jsonl"
rc=0
"$ctl" risk scan --from-export "$W/export.jsonl" --policy "$W/policy.yaml" \
	--cert "$W/sealgate-audit.crt.pem" --json >"$W/offline.json" 2>"$W/err.txt" || rc=$?
[ "$rc" = 1 ] || fail "offline scan: exit $rc, not 1: $(cat "$W/err.txt")"
alerts_caught_up || fail "the online rules caught up after the export"
"$py" - "$W/offline.json" "$W/alerts.json" <<'PY' || fails=$((fails + 1))
import json, sys
off = json.load(open(sys.argv[1]))
on = json.load(open(sys.argv[2]))["alerts"]
last = off["records"]
key = lambda a: (a["rule"], a["subject"], tuple(a["seqs"]), tuple(a["applications"]), a["why"])
# The online engine has also seen the records after the export (its own
# alert records, the export's): only alerts whose evidence is all in the
# export are compared; offline sees nothing beyond it.
a = sorted(key(x) for x in off["alerts"])
b = sorted(key(x) for x in on if max(x["seqs"] or [0]) <= last)
if a == b and a:
    print("ok - online and offline give the same %d alerts: %s" % (len(a), [x[0] for x in a]))
    sys.exit(0)
print("not ok - online and offline differ:\n  offline %s\n  online  %s" % (a, b))
sys.exit(1)
PY

# ---- acknowledged and closed, with who and the comment, recorded ----
id_of() { "$py" -c 'import json, sys
print([a["id"] for a in json.load(open(sys.argv[1]))["alerts"] if a["rule"] == sys.argv[2]][0])' "$W/alerts.json" "$1"; }
split=$(id_of threshold-splitting)
lockout=$(id_of probe.lockout)
rc=0; c bob bob alerts ack "$split" -m "not mine to judge" >/dev/null 2>&1 || rc=$?
[ "$rc" != 0 ] && pass "a department head may not acknowledge an alert" || fail "bob acknowledged alert $split"
rc=0; c carol carol alerts close "$split" -m "seal admins only read" >/dev/null 2>&1 || rc=$?
[ "$rc" != 0 ] && pass "a seal admin may not close an alert" || fail "carol closed alert $split"
c carol carol alerts --json >/dev/null && pass "a seal admin reads the alerts" || fail "carol could not read the alerts"
c grace grace alerts ack "$split" -m "asking alice about Hengda Steel" >/dev/null ||
	fail "grace could not acknowledge alert $split"
c grace grace alerts close "$lockout" -m "dave forgot his password, reset" >/dev/null ||
	fail "grace could not close alert $lockout"
rc=0; c grace grace alerts ack "$lockout" -m "again" >/dev/null 2>&1 || rc=$?
[ "$rc" != 0 ] && pass "a closed alert is not acknowledged" || fail "closed alert $lockout acknowledged"
c grace grace alerts --open --json >"$W/open.json"
c grace grace audit query --json --limit 1000 | first_json >"$W/records.json"
"$py" - "$W/open.json" "$W/records.json" "$split" "$lockout" <<'PY' || fails=$((fails + 1))
import json, sys
alerts = {a["id"]: a for a in json.load(open(sys.argv[1]))["alerts"]}
rows = json.load(open(sys.argv[2]))["records"]
split, lockout = int(sys.argv[3]), int(sys.argv[4])
ok = True
s = alerts.get(split)
if s and s["state"] == "acknowledged" and s["state_by"] == "grace" and \
   s["state_comment"] == "asking alice about Hengda Steel" and s["state_at"] > 0:
    print("ok - alert %d acknowledged by grace with her comment" % split)
else:
    print("not ok - alert %d: %s" % (split, s)); ok = False
if lockout in alerts:
    print("not ok - closed alert %d listed with --open" % lockout); ok = False
else:
    print("ok - the closed alert is not open")
def recorded(action, aid, comment):
    global ok
    for r in rows:
        d = json.loads(r.get("detail") or "{}")
        if r["action"] == action and r["outcome"] == "ok" and r.get("actor") == "grace" and \
           d.get("alert") == aid and d.get("comment") == comment:
            print("ok - %s of alert %d recorded at seq %d" % (action, aid, r["seq"]))
            return
    print("not ok - no %s record of alert %d" % (action, aid)); ok = False
recorded("alert_ack", split, "asking alice about Hengda Steel")
recorded("alert_close", lockout, "dave forgot his password, reset")
denied = [r for r in rows if r["action"] in ("alert_ack", "alert_close") and r["outcome"] == "denied"]
if len(denied) == 3:
    print("ok - the three refused changes recorded as denied")
else:
    print("not ok - %d denied alert changes recorded, not 3" % len(denied)); ok = False
sys.exit(0 if ok else 1)
PY

# ---- a restart raises nothing twice ----
c grace grace alerts --json >"$W/before.json"
sg_gw_stop "$W"
sed -i '/^risk_queue:/d' "$W/sealgated.yaml"
sg_gw_start "$W" SOFTHSM2_CONF="$W/softhsm2.conf"
alerts_caught_up || fail "the online rules caught up after the restart"
cp "$W/alerts.json" "$W/restarted.json"
c alice alice apply --seal contract --type contract --scope sales --amount 550000 \
	--reason "Supply contract with Hengda Steel" >/dev/null
alerts_caught_up || fail "the online rules caught up after alice's fourth application"
c grace grace audit query --json --limit 1000 | first_json >"$W/records.json"
"$py" - "$W/alerts.json" "$W/records.json" "$split" <<'PY' || fails=$((fails + 1))
import json, sys
rep = json.load(open(sys.argv[1]))
rows = json.load(open(sys.argv[2]))["records"]
split = int(sys.argv[3])
creates = [(r["seq"], r["application"]) for r in rows if r["action"] == "application_create"
           and r["outcome"] == "ok" and r.get("actor") == "alice"]
a = [x for x in rep["alerts"] if x["id"] == split]
# (found with two applications already, the alert may have grown to three
# in an alert_update before: when the rules ran between them)
ups = [r for r in rows if r["action"] == "alert_update" and
       json.loads(r["detail"])["key"] == "threshold-splitting|%d|alice" % creates[0][0] and
       json.loads(r["detail"])["evidence"] == 4]
ok = bool(a) and a[0]["seqs"] == [s for s, _ in creates] and \
     a[0]["applications"] == [i for _, i in creates] and len(creates) == 4 and \
     a[0]["state"] == "acknowledged" and len(ups) == 1 and rep["engine"]["handed"] > 0
print("%s - handed over by the writer: alice's fourth application joins alert %d (%s), "
      "its alert_update record" % ("ok" if ok else "not ok", split,
      a[0]["seqs"] if a else None))
sys.exit(0 if ok else 1)
PY
"$py" - "$W/before.json" "$W/restarted.json" "$split" <<'PY' || fails=$((fails + 1))
import json, sys
before = json.load(open(sys.argv[1]))["alerts"]
after = json.load(open(sys.argv[2]))["alerts"]
key = lambda a: (a["rule"], a["subject"], a["seqs"][0] if a["seqs"] else 0)
seen = {}
for a in after:
    seen.setdefault(key(a), []).append(a["id"])
dups = {k: v for k, v in seen.items() if len(v) > 1}
old = {a["id"] for a in before}
kept = all(a["id"] in {x["id"] for x in after} for a in before)
state = [a for a in after if a["id"] == int(sys.argv[3])]
# (the restart itself may be outside working hours: a new alert for it is right)
new = [(a["rule"], a["seqs"]) for a in after if a["id"] not in old]
if not dups and kept and state and state[0]["state"] == "acknowledged" and \
   all(r in ("log.off-hours-restart",) for r, _ in new):
    print("ok - after a restart: no alert twice, every alert kept with its state; new: %s" % new)
    sys.exit(0)
print("not ok - after the restart: duplicates %s, kept %s, new %s" % (dups, kept, new))
sys.exit(1)
PY
echo "$fails failed"
[ "$fails" = 0 ]
