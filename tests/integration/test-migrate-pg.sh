#!/usr/bin/env bash
# Integration: a site's SQLite store moved to PostgreSQL with
# `sealgated --migrate-store` (docs/store.md, "Moving to PostgreSQL"), on a
# cluster of the test's own (tests/lib/pg.sh), stopped however it ends.
#  - A real gateway on SQLite signs, takes an application and its approval
#    (password + TOTP code), signs checkpoints (audit_key), and stops.
#  - Refused, writing nothing: while that gateway runs, an unreachable
#    server, a SQLite chain changed behind the gateway's back (saying
#    where it breaks), a site that already has records.
#  - Moved: the pg store has the same rows and the same head; the SQLite
#    file is as it was; the gateway on pg starts, signs, and both
#    `sealctl audit verify` and `sealgated --verify-audit` find the whole
#    chain (old records and new) intact.
# Skipped (77) when PostgreSQL is not installed.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
# The move's source is a SQLite store whatever SG_TEST_STORE says (the
# store suites' PostgreSQL pass): its target is a cluster of its own.
export SG_TEST_STORE=sqlite
. "$(dirname "$0")/lib.sh" migrate-pg
. "$SEALGATE_SOURCE/tests/lib/gateway.sh"
. "$SEALGATE_SOURCE/tests/lib/pg.sh"
export SOFTHSM2_CONF=$W/softhsm2.conf
call=$SEALGATE_SOURCE/tests/integration/sgcall.py

cleanup() {
	st=$?
	sg_gw_stop "$W/pgw" || true
	pg_down "$W" || { echo "not ok - the PostgreSQL cluster is still running"; st=1; }
	fixture down || true
	exit $st
}
trap cleanup EXIT

rc=0
pg_up "$W" >"$W/conninfo" 2>"$W/pg_up.err" || rc=$?
if [ $rc = 77 ]; then
	echo "ok - # SKIP PostgreSQL is not installed"
	exit 77
elif [ $rc != 0 ]; then
	cat "$W/pg_up.err"
	exit 1
fi
conn=$(cat "$W/conninfo")
url="postgresql:///sealgate?host=$W/pg/run&port=5432&user=sealgate&passfile=$W/pg/pgpass"
q() { psql -X -A -t -q "$conn" -c "$1"; }
b64() { head -c "$1" /dev/urandom | base64 -w0; }
sq() {
	python3 - "$1" "$2" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
print("|".join(str(c) for c in db.execute(sys.argv[2]).fetchone()))
PY
}

# ---- a gateway on SQLite, as the fixture leaves it, with signed checkpoints ----
fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
fixture stop
# The quota seal's key signs the audit checkpoints instead (an audit key
# is never a seal's); the fixture's policy ends with that seal.
sed -i '/^  - id: quota$/,$d' "$W/policy.yaml"
printf 'audit_key: "pkcs11:object=quota-seal;type=private"\n' >>"$W/sealgated.yaml"
fixture start
printf 'alice-password\n' >"$W/pw-alice"
printf 'bob-password\n' >"$W/pw-bob"
code() {
	echo $(($(cat "$W/clock") + 30)) >"$W/clock"
	oathtool --totp -b --now "@$(cat "$W/clock")" "$(cat "$W/totp-$1.b32")"
}
rc=0
python3 "$call" "$W/sealgated.sock" alice alice-password \
	"{\"op\":\"sign\",\"seal\":\"contract\",\"mechanism\":1,\"data\":\"$(b64 35)\"}" >"$W/sign1.out" || rc=$?
[ $rc = 0 ] && grep -q '"signature"' "$W/sign1.out" || { fail "a signature on SQLite"; cat "$W/sign1.out"; }
"$ctl" --socket "$W/sealgated.sock" --user alice --password-file "$W/pw-alice" \
	apply --seal approved --amount 5000 --reason "before the move" >"$W/apply.out" 2>&1 ||
	{ fail "apply on SQLite"; cat "$W/apply.out"; }
SEALGATE_CODE=$(code bob) "$ctl" --socket "$W/sealgated.sock" --user bob --password-file "$W/pw-bob" \
	approve 1 --comment "fine" >"$W/approve.out" 2>&1 </dev/null || { fail "approve on SQLite"; cat "$W/approve.out"; }
fixture stop
db=$W/sealgate.db
counts="SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM auth_totp), \
(SELECT count(*) FROM applications), (SELECT count(*) FROM approvals), \
(SELECT count(*) FROM audit), (SELECT count(*) FROM audit_checkpoints)"
before=$(sq "$db" "$counts")
head=$(sq "$db" "SELECT seq, lower(hex(hash)) FROM audit ORDER BY seq DESC LIMIT 1")
IFS='|' read -r n_acc n_totp n_app n_appr n_audit n_cp <<<"$before"
if [ "$n_totp" -ge 2 ] && [ "$n_app" = 1 ] && [ "$n_appr" = 1 ] && [ "$n_cp" -ge 1 ]; then
	pass "the SQLite store has accounts, TOTP secrets, an approved application and signed checkpoints ($before)"
else
	fail "the SQLite store before the move: $before"
fi
sum=$(sha256sum "$db" | cut -d' ' -f1)
# (a table not there yet: the store was never opened, nothing written)
pg_audit() { q "SELECT count(*) FROM audit WHERE site = '$1'" 2>/dev/null || echo 0; }
pg_accounts() { q "SELECT count(*) FROM accounts" 2>/dev/null || echo 0; }
migrate() { "$gw" --config "$W/sealgated.yaml" --migrate-store "$@"; }

# ---- refused: the gateway still runs ----
fixture start
rc=0
migrate "$url" >"$W/m-running.out" 2>&1 || rc=$?
if [ $rc = 1 ] && grep -q "another gateway already serves" "$W/m-running.out" && [ "$(pg_audit main)" = 0 ]; then
	pass "refused while the gateway runs on the SQLite store, nothing written"
else
	fail "a move beside the running gateway (exit $rc)"; cat "$W/m-running.out"
fi
fixture stop
# (the stop signed one more checkpoint: the counts again)
before=$(sq "$db" "$counts")
head=$(sq "$db" "SELECT seq, lower(hex(hash)) FROM audit ORDER BY seq DESC LIMIT 1")
sum=$(sha256sum "$db" | cut -d' ' -f1)

# ---- refused: an unreachable server ----
rc=0
migrate "postgresql:///sealgate?host=$W/nowhere&port=5432&user=sealgate&connect_timeout=3" \
	>"$W/m-unreach.out" 2>&1 || rc=$?
if [ $rc = 1 ] && grep -q "cannot connect" "$W/m-unreach.out" && [ "$(pg_audit main)" = 0 ]; then
	pass "refused when the server is unreachable, saying so"
else
	fail "a move to an unreachable server (exit $rc)"; cat "$W/m-unreach.out"
fi

# ---- refused: a SQLite chain changed behind the gateway's back ----
mkdir -p "$W/t"
cp "$db" "$W/t/sealgate.db"
sed "s|^store_path: .*|store_path: $W/t/sealgate.db|" "$W/sealgated.yaml" >"$W/t/sealgated.yaml"
python3 - "$W/t/sealgate.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript("DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'mallory' WHERE seq = 3;")
db.commit()
PY
rc=0
"$gw" --config "$W/t/sealgated.yaml" --migrate-store "$url" --site tampered >"$W/m-tamper.out" 2>&1 || rc=$?
if [ $rc = 1 ] && grep -q "the SQLite store: the audit log is NOT intact: seq 3" "$W/m-tamper.out" &&
   [ "$(pg_audit tampered)" = 0 ] && [ "$(pg_accounts)" = 0 ]; then
	pass "a SQLite chain that does not verify is not copied, saying where it breaks"
else
	fail "a move of a changed chain (exit $rc)"; cat "$W/m-tamper.out"
fi

# ---- moved ----
rc=0
migrate "$url" >"$W/m.out" 2>&1 || rc=$?
if [ $rc = 0 ] && grep -q "audit log intact on the copy" "$W/m.out" &&
   grep -q "head seq ${head%%|*}, hash ${head#*|}" "$W/m.out"; then
	pass "sealgated --migrate-store moves the store and prints what it moved"
	sed 's/^/# /' "$W/m.out"
else
	fail "the move (exit $rc)"; cat "$W/m.out"
fi
after=$(q "$counts" | tr -d ' ')
pghead=$(q "SELECT seq, encode(hash, 'hex') FROM audit WHERE site = 'main' ORDER BY seq DESC LIMIT 1")
if [ "$after" = "$before" ] && [ "$pghead" = "$head" ]; then
	pass "the pg store has the same rows ($after) and the same head ($pghead)"
else
	fail "after the move: rows $after (SQLite $before), head $pghead (SQLite $head)"
fi
cpmax=$(q "SELECT max_id FROM audit_checkpoint_ids WHERE site = 'main'")
[ "$cpmax" = "$(sq "$db" "SELECT max(id) FROM audit_checkpoints")" ] &&
	pass "the site's highest checkpoint id moved with it" || fail "audit_checkpoint_ids: $cpmax"
[ "$(sha256sum "$db" | cut -d' ' -f1)" = "$sum" ] && pass "the SQLite file is as it was" ||
	fail "the SQLite file changed"
# (with the password in the URL this time: it is in no message)
pw=$(cut -d: -f5 "$W/pg/pgpass")
rc=0
migrate "postgresql://sealgate:$pw@/sealgate?host=$W/pg/run&port=5432" >"$W/m-again.out" 2>&1 || rc=$?
if [ $rc = 1 ] && grep -q "site main is not empty" "$W/m-again.out" &&
   [ "$(q "$counts" | tr -d ' ')" = "$before" ] && ! grep -qF "$pw" "$W/m-again.out"; then
	pass "a site that has records is refused (the URL's password in no message)"
else
	fail "a second move into site main (exit $rc)"; cat "$W/m-again.out"
fi

# ---- the gateway on PostgreSQL ----
mkdir -p "$W/pgw"
{
	grep -v -e '^store_path:' -e '^socket_path:' "$W/sealgated.yaml"
	printf 'store: "%s"\nsite: main\nsocket_path: %s\n' "$url" "$W/pgw/sealgated.sock"
} >"$W/pgw/sealgated.yaml"
if sg_gw_start "$W/pgw" SEALGATE_TEST_CLOCK="$W/clock" SOFTHSM2_CONF="$W/softhsm2.conf" >"$W/pgw/start.out" 2>&1; then
	pass "the gateway starts on the moved store"
	rc=0
	python3 "$call" "$W/pgw/sealgated.sock" alice alice-password \
		"{\"op\":\"sign\",\"seal\":\"contract\",\"mechanism\":1,\"data\":\"$(b64 35)\"}" >"$W/sign2.out" || rc=$?
	[ $rc = 0 ] && grep -q '"signature"' "$W/sign2.out" && pass "and signs" ||
		{ fail "a signature on pg (exit $rc)"; cat "$W/sign2.out"; }
	rc=0
	"$ctl" --socket "$W/pgw/sealgated.sock" --user bob --password-file "$W/pw-bob" show 1 >"$W/show.out" 2>&1 || rc=$?
	[ $rc = 0 ] && grep -q "bob" "$W/show.out" && pass "the application moved with its approval" ||
		{ fail "sealctl show 1 on pg (exit $rc)"; cat "$W/show.out"; }
	# bob's TOTP secret moved with its sealed copies: a fresh code of his
	# approves an application made on the moved store
	rc=0
	"$ctl" --socket "$W/pgw/sealgated.sock" --user alice --password-file "$W/pw-alice" \
		apply --seal approved --amount 5000 --reason "after the move" >"$W/apply2.out" 2>&1 || rc=$?
	app2=$(sed -n '1s/^#\([0-9][0-9]*\).*/\1/p' "$W/apply2.out")
	[ $rc = 0 ] && [ -n "$app2" ] && SEALGATE_CODE=$(code bob) "$ctl" --socket "$W/pgw/sealgated.sock" \
		--user bob --password-file "$W/pw-bob" approve "$app2" --comment "moved" >"$W/approve2.out" 2>&1 </dev/null &&
		pass "a TOTP code of a person enrolled before the move is accepted on PostgreSQL" ||
		{ fail "apply + approve with a code on pg"; cat "$W/apply2.out" "$W/approve2.out"; }
	printf 'frank-password\n' >"$W/pw-frank"
	rc=0
	"$ctl" --socket "$W/pgw/sealgated.sock" --user frank --password-file "$W/pw-frank" \
		audit verify --cert "$W/quota-seal.crt.pem" >"$W/ctl-verify.out" 2>&1 </dev/null || rc=$?
	[ $rc = 0 ] && grep -qi "intact" "$W/ctl-verify.out" &&
		pass "sealctl audit verify: the whole chain intact" ||
		{ fail "sealctl audit verify on pg (exit $rc)"; cat "$W/ctl-verify.out"; }
	sg_gw_stop "$W/pgw"
else
	fail "the gateway on the moved store did not start"; cat "$W/pgw/start.out" "$W/pgw/sealgated.log"
fi
rc=0
"$gw" --config "$W/pgw/sealgated.yaml" --verify-audit >"$W/verify.out" 2>&1 || rc=$?
n_new=$(q "SELECT count(*) FROM audit WHERE site = 'main'")
if [ $rc = 0 ] && grep -q "audit log intact: $n_new records" "$W/verify.out" &&
   [ "$n_new" -gt "${head%%|*}" ]; then
	pass "sealgated --verify-audit: old records and new ($n_new) intact"
else
	fail "--verify-audit on pg (exit $rc, $n_new records)"; cat "$W/verify.out"
fi
finish
