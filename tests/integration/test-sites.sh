#!/usr/bin/env bash
# Integration: gateways as sites of a group (docs/sites.md), on SQLite.
#  - A gateway of site shanghai holds the shanghai seals only: it never
#    looks for another site's key on its token, and refuses a signature
#    with a seal of site hq, saying where to sign (recorded).
#  - One gateway per site: a second one on the same store is refused at
#    start, and so is sealgated --set-password while it runs; a store of
#    one site is refused to another.
#  - A management gateway (backend_token: none) starts without a token or
#    PIN file, takes applications and answers status and audit queries,
#    and refuses every signature with the reason.
# (The same on PostgreSQL: test-sites-pg.sh.)
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$(dirname "$0")/lib.sh" sites
. "$SEALGATE_SOURCE/tests/lib/gateway.sh"
call=$SEALGATE_SOURCE/tests/integration/sgcall.py
export SOFTHSM2_CONF=$W/softhsm2.conf

# The fixture's token, people and passwords; its own gateway is not used.
fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
fixture stop

# The fixture's policy as a group's: the contract seal at shanghai, every
# other seal at hq, and one more hq seal whose key is on no token here.
python3 - "$W/policy.yaml" "$W/policy-sites.yaml" <<'PY'
import sys
text = open(sys.argv[1]).read()
out = []
for line in text.splitlines(keepends=True):
    if line == "seals:\n":
        out.append("sites:\n  - { id: hq, name: Headquarters }\n"
                   "  - { id: shanghai, name: Shanghai branch }\n")
    out.append(line)
    if line.startswith("  - id: "):
        seal = line.split(":", 1)[1].strip()
        out.append("    site: %s\n" % ("shanghai" if seal == "contract" else "hq"))
text = "".join(out).replace("name: Contract Seal", "name: Shanghai Contract Seal")
text += """  - id: official
    name: Official Seal
    site: hq
    key: "pkcs11:object=hq-official-seal;type=private"
    users: { people: [alice] }
    approval: none
    mfa: none
"""
open(sys.argv[2], "w").write(text)
PY

# A gateway's directory: its configuration (args: DIR SITE STORE-DIR
# [token|none]) and the fixture's people's passwords in its store.
gateway_dir() {
	mkdir -p "$1"
	{
		if [ "${4:-token}" = none ]; then
			echo "backend_token: none"
		else
			echo "backend_module: /usr/lib/softhsm/libsofthsm2.so"
			echo "backend_token: \"pkcs11:token=sg-it\""
			echo "token_pin_file: $W/token.pin"
		fi
		echo "socket_path: $1/sealgated.sock"
		echo "store: sqlite:$3/sealgate.db"
		echo "site: $2"
		echo "policy_path: $W/policy-sites.yaml"
		echo "backend_sessions: 2"
		echo "test_clock: true"
	} >"$1/sealgated.yaml"
}
set_passwords() {
	for u in alice bob dave frank; do
		printf '%s-password\n' "$u" | "$gw" --config "$1/sealgated.yaml" --set-password "$u" \
			--password-file - >>"$1/setup.out" 2>&1 || { cat "$1/setup.out"; exit 1; }
	done
}
records() {
	python3 - "$1/sealgate.db" "$2" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
print(db.execute("SELECT count(*) FROM audit WHERE " + sys.argv[2]).fetchone()[0])
PY
}
b64() { head -c "$1" /dev/urandom | base64 -w0; }
stop_all() {
	for d in "$W/sh" "$W/sh2" "$W/mg"; do sg_gw_stop "$d"; done
	fixture down || true
}
trap stop_all EXIT

# ---- 1. site shanghai --------------------------------------------------
SH=$W/sh
gateway_dir "$SH" shanghai "$SH"
set_passwords "$SH"
echo 1700000000 >"$SH/clock"
if sg_gw_start "$SH" SEALGATE_TEST_CLOCK="$SH/clock" SOFTHSM2_CONF="$SOFTHSM2_CONF"; then
	pass "a shanghai gateway starts, though an hq seal's key is on no token it has"
else
	fail "the shanghai gateway did not start"; exit 1
fi
"$ctl" --socket "$SH/sealgated.sock" status >"$W/sh-status.out" 2>&1 || true
if grep -q "^site:     shanghai, holding 1 of the policy's 6 seals" "$W/sh-status.out" &&
   grep -q "^seal:     contract .* available" "$W/sh-status.out" &&
   grep -q "^seal:     finance .*held by site hq: sign at that site's gateway" "$W/sh-status.out"; then
	pass "status shows the site and which seals this gateway holds"
else
	fail "status at shanghai"; cat "$W/sh-status.out"
fi
"$ctl" --socket "$SH/sealgated.sock" --user dave seals >"$W/sh-seals.out" 2>&1 || true
if grep -q "site: hq (sign at that site's gateway)" "$W/sh-seals.out"; then
	pass "sealctl seals shows a seal's site"
else
	fail "sealctl seals at shanghai"; cat "$W/sh-seals.out"
fi

rc=0
python3 "$call" "$SH/sealgated.sock" alice alice-password \
	"{\"op\":\"sign\",\"seal\":\"contract\",\"mechanism\":1,\"data\":\"$(b64 35)\"}" >"$W/sign-own.out" || rc=$?
if [ $rc = 0 ] && grep -q '"signature"' "$W/sign-own.out"; then
	pass "the shanghai seal signs at the shanghai gateway"
else
	fail "signing with the site's own seal (exit $rc)"; cat "$W/sign-own.out"
fi
before=$(records "$SH" "action = 'sign' AND outcome = 'denied'")
rc=0
python3 "$call" "$SH/sealgated.sock" dave dave-password \
	"{\"op\":\"sign\",\"seal\":\"finance\",\"mechanism\":4161,\"data\":\"$(b64 32)\"}" >"$W/sign-other.out" || rc=$?
if [ $rc = 1 ] && grep -q '"error": "other_site"' "$W/sign-other.out" &&
   grep -q "the Finance Seal is held by site hq; sign at that site's gateway" "$W/sign-other.out"; then
	pass "a seal of site hq is refused at shanghai, saying where to sign"
else
	fail "signing with another site's seal (exit $rc)"; cat "$W/sign-other.out"
fi
n=$(records "$SH" "action = 'sign' AND outcome = 'denied' AND seal = 'finance' AND reason LIKE '%held by site hq%'")
[ "$n" = 1 ] && [ "$(records "$SH" "action = 'sign' AND outcome = 'denied'")" = $((before + 1)) ] &&
	pass "the refusal is recorded like the others" || fail "refusal records: $n"
n=$(records "$SH" "action = 'gateway_start' AND detail LIKE '%\"site\":\"shanghai\"%'")
[ "$n" = 1 ] && pass "gateway_start names the site" || fail "gateway_start records naming shanghai: $n"

# ---- 2. one gateway per site -------------------------------------------
gateway_dir "$W/sh2" shanghai "$SH"
rc=0
SOFTHSM2_CONF=$SOFTHSM2_CONF "$gw" --config "$W/sh2/sealgated.yaml" --foreground >"$W/sh2.out" 2>&1 &
pid=$!
for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then
	kill $pid; wait $pid || true
	fail "a second gateway of site shanghai on the same store started"
else
	wait $pid || rc=$?
	if [ $rc != 0 ] && grep -q 'another gateway already serves site "shanghai"' "$W/sh2.out"; then
		pass "a second gateway of the site is refused at start, saying why"
	else
		fail "second gateway (exit $rc)"; cat "$W/sh2.out"
	fi
fi
rc=0
printf 'other-password\n' | "$gw" --config "$W/sh2/sealgated.yaml" --set-password frank \
	--password-file - >"$W/sh2-pw.out" 2>&1 || rc=$?
[ $rc != 0 ] && grep -q 'another gateway already serves site "shanghai"' "$W/sh2-pw.out" &&
	pass "--set-password is refused while the site's gateway runs (another socket)" ||
	{ fail "--set-password beside the site's gateway (exit $rc)"; cat "$W/sh2-pw.out"; }
sg_gw_stop "$SH"
gateway_dir "$W/sh2" hq "$SH"
rc=0
printf 'other-password\n' | "$gw" --config "$W/sh2/sealgated.yaml" --set-password frank \
	--password-file - >"$W/sh2-hq.out" 2>&1 || rc=$?
[ $rc != 0 ] && grep -q 'belongs to site "shanghai", not "hq"' "$W/sh2-hq.out" &&
	pass "a SQLite store of site shanghai is refused to site hq" ||
	{ fail "another site on the shanghai store (exit $rc)"; cat "$W/sh2-hq.out"; }
if sg_gw_start "$SH" SEALGATE_TEST_CLOCK="$SH/clock" SOFTHSM2_CONF="$SOFTHSM2_CONF"; then
	pass "the site's claim ends with its gateway: it starts again"
else
	fail "the shanghai gateway did not start again"
fi

# A reload: a policy without the gateway's site is refused (the running
# one stays); a changed site: is said to wait for the next start.
# args: what to wait for in the log
wait_log() {
	for _ in $(seq 100); do grep -q -- "$1" "$SH/sealgated.log" && return 0; sleep 0.05; done
	return 1
}
sed -e '/{ id: shanghai, name: Shanghai branch }/d' -e 's/site: shanghai/site: hq/' \
	"$W/policy-sites.yaml" >"$W/policy-no-shanghai.yaml"
cp "$SH/sealgated.yaml" "$SH/sealgated.yaml.orig"
sed -i "s|^policy_path: .*|policy_path: $W/policy-no-shanghai.yaml|" "$SH/sealgated.yaml"
kill -HUP "$(cat "$SH/sealgated.pid")"
if wait_log "reload rejected, the running policy stays in force: .*this gateway's site 'shanghai' .* is not one of the policy's sites" &&
   "$ctl" --socket "$SH/sealgated.sock" status 2>/dev/null | grep -q "^seal:     contract .* available"; then
	pass "a reload of a policy without the gateway's site is refused; the running policy stays"
else
	fail "reload without the site"; tail -5 "$SH/sealgated.log"
fi
sed -e "s|^site: .*|site: hq|" "$SH/sealgated.yaml.orig" >"$SH/sealgated.yaml"
kill -HUP "$(cat "$SH/sealgated.pid")"
if wait_log "reload: site, store and backend_token changes take effect at the next start only (still site shanghai" &&
   wait_log "policy reloaded"; then
	pass "a reload with another site: says it waits for the next start"
else
	fail "reload with another site"; tail -5 "$SH/sealgated.log"
fi
cp "$SH/sealgated.yaml.orig" "$SH/sealgated.yaml"
sg_gw_stop "$SH"

# ---- 3. a management gateway -------------------------------------------
MG=$W/mg
gateway_dir "$MG" hq "$MG" none
set_passwords "$MG"
echo 1700000000 >"$MG/clock"
rc=0
env -u SOFTHSM2_CONF "$gw" --config "$MG/sealgated.yaml" --check >"$W/mg-check.out" 2>&1 || rc=$?
[ $rc = 0 ] && grep -q "a management gateway of site hq" "$W/mg-check.out" &&
	pass "--check: a management gateway, no token" || { fail "--check (exit $rc)"; cat "$W/mg-check.out"; }
# No SoftHSM2 configuration and no PIN file: nothing of a token is reached.
if sg_gw_start "$MG" SEALGATE_TEST_CLOCK="$MG/clock" SOFTHSM2_CONF=/nonexistent; then
	pass "a management gateway starts without a token or PIN file"
else
	fail "the management gateway did not start"; exit 1
fi
rc=0
"$ctl" --socket "$MG/sealgated.sock" status >"$W/mg-status.out" 2>&1 || rc=$?
if [ $rc = 0 ] && grep -q "^site:     hq, a management gateway" "$W/mg-status.out" &&
   grep -q "^token:    none" "$W/mg-status.out" &&
   grep -q "^seal:     contract .*held by site shanghai" "$W/mg-status.out" &&
   grep -q "^seal:     finance .*held by site hq" "$W/mg-status.out"; then
	pass "status (exit 0): a management gateway, every seal held elsewhere"
else
	fail "status at the management gateway (exit $rc)"; cat "$W/mg-status.out"
fi
printf 'alice-password\n' >"$W/pw-alice"
printf 'bob-password\n' >"$W/pw-bob"
printf 'frank-password\n' >"$W/pw-frank"
rc=0
"$ctl" --socket "$MG/sealgated.sock" --user alice --password-file "$W/pw-alice" \
	apply --seal approved --amount 5000 --reason "a contract of the shanghai branch" >"$W/apply.out" 2>&1 || rc=$?
[ $rc = 0 ] && pass "an application is made at the management gateway" ||
	{ fail "apply (exit $rc)"; cat "$W/apply.out"; }
rc=0
"$ctl" --socket "$MG/sealgated.sock" --user bob --password-file "$W/pw-bob" list --waiting \
	>"$W/waiting.out" 2>&1 || rc=$?
[ $rc = 0 ] && grep -q "^#1 .*approved" "$W/waiting.out" &&
	pass "it waits for its approver there" || { fail "list --waiting (exit $rc)"; cat "$W/waiting.out"; }
rc=0
"$ctl" --socket "$MG/sealgated.sock" --user bob --password-file "$W/pw-bob" approve 1 \
	>"$W/approve.out" 2>&1 </dev/null || rc=$?
[ $rc = 1 ] && grep -q "approve needs a TOTP code, which a management gateway without totp_key_file cannot check" "$W/approve.out" &&
	pass "approving there is refused, saying why (TOTP secrets are on the sites' tokens)" ||
	{ fail "approve at the management gateway (exit $rc)"; cat "$W/approve.out"; }
n=$(records "$MG" "action = 'application_create' AND outcome = 'ok'")
[ "$n" = 1 ] && pass "the application is recorded" || fail "application_create records: $n"
rc=0
"$ctl" --socket "$MG/sealgated.sock" --user alice --password-file "$W/pw-alice" revoke 1 \
	>"$W/revoke.out" 2>&1 || rc=$?
[ $rc = 0 ] && [ "$(records "$MG" "action = 'application_revoke' AND outcome = 'ok'")" = 1 ] &&
	pass "and withdrawn there (recorded)" || { fail "revoke (exit $rc)"; cat "$W/revoke.out"; }

rc=0
python3 "$call" "$MG/sealgated.sock" dave dave-password \
	"{\"op\":\"sign\",\"seal\":\"finance\",\"mechanism\":4161,\"data\":\"$(b64 32)\"}" >"$W/mg-sign.out" || rc=$?
if [ $rc = 1 ] && grep -q '"error": "no_token"' "$W/mg-sign.out" &&
   grep -q "this is a management gateway without a token" "$W/mg-sign.out"; then
	pass "signing is refused at the management gateway, with the reason"
else
	fail "signing at the management gateway (exit $rc)"; cat "$W/mg-sign.out"
fi
rc=0
python3 "$call" "$MG/sealgated.sock" alice alice-password \
	"{\"op\":\"sign\",\"seal\":\"contract\",\"mechanism\":1,\"data\":\"$(b64 35)\"}" >"$W/mg-sign2.out" || rc=$?
[ $rc = 1 ] && grep -q "the Shanghai Contract Seal is held by site shanghai; sign at that site's gateway" \
	"$W/mg-sign2.out" && pass "a branch's seal: sign at the branch" ||
	{ fail "a shanghai seal at the management gateway (exit $rc)"; cat "$W/mg-sign2.out"; }
n=$(records "$MG" "action = 'sign' AND outcome = 'denied'")
[ "$n" = 2 ] && pass "both refusals are recorded" || fail "sign refusals recorded: $n"
rc=0
"$ctl" --socket "$MG/sealgated.sock" --user frank --password-file "$W/pw-frank" \
	audit query --action sign >"$W/mg-audit.out" 2>&1 || rc=$?
[ $rc = 0 ] && [ "$(grep -c "denied" "$W/mg-audit.out")" = 2 ] &&
	pass "audit queries are answered there" || { fail "audit query (exit $rc)"; cat "$W/mg-audit.out"; }
sg_gw_stop "$MG"
rc=0
"$gw" --config "$MG/sealgated.yaml" --verify-audit >"$W/mg-verify.out" 2>&1 || rc=$?
[ $rc = 0 ] && grep -q "audit log intact: .* 0 signed checkpoints" "$W/mg-verify.out" &&
	pass "its chain verifies, with no signed checkpoints" || { fail "verify (exit $rc)"; cat "$W/mg-verify.out"; }
# (an ASan/UBSan build: the gateways' own reports land in their logs)
if grep -l "runtime error\|Sanitizer" "$SH/sealgated.log" "$MG/sealgated.log" "$W/sh2.out" 2>/dev/null; then
	fail "a sanitizer report in a gateway's log"
fi
finish
