#!/usr/bin/env bash
# Integration: a site's gateway on a PostgreSQL store (docs/sites.md), on a
# cluster of the test's own (tests/lib/pg.sh), stopped however it ends.
#  - The store URL's password is in no message: not at start, not from
#    --check or --verify-audit, whatever the store answers.
#  - One gateway per site: a second gateway of the site on the same
#    database is refused at start. Skipped (77) while the store's sites
#    are not yet on PostgreSQL, as when PostgreSQL is not installed.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$(dirname "$0")/lib.sh" sites-pg
. "$SEALGATE_SOURCE/tests/lib/gateway.sh"
. "$SEALGATE_SOURCE/tests/lib/pg.sh"
export SOFTHSM2_CONF=$W/softhsm2.conf

cleanup() {
	st=$?
	sg_gw_stop "$W/a" || true
	sg_gw_stop "$W/b" || true
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
# The token and policy of the fixture (its own SQLite gateway is not used;
# its policy names no sites, so the gateway is site main).
fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
fixture stop
pw=$(cut -d: -f5 "$W/pg/pgpass")
run=$W/pg/run

# args: DIR STORE-URL
gateway_dir() {
	mkdir -p "$1"
	cat >"$1/sealgated.yaml" <<EOC
backend_module: /usr/lib/softhsm/libsofthsm2.so
backend_token: "pkcs11:token=sg-it"
token_pin_file: $W/token.pin
socket_path: $1/sealgated.sock
store: "$2"
site: main
policy_path: $W/policy.yaml
backend_sessions: 2
EOC
}

# ---- the password of a URL is in no message ----
gateway_dir "$W/a" "postgresql://sealgate:$pw@/sealgate?host=$run&port=5432"
: >"$W/a/sealgated.log"
if sg_gw_start "$W/a" >>"$W/a/start.out" 2>&1; then started=1; else started=0; fi
"$gw" --config "$W/a/sealgated.yaml" --check >"$W/a/check.out" 2>&1 || true
"$gw" --config "$W/a/sealgated.yaml" --verify-audit >"$W/a/verify.out" 2>&1 || true
sg_gw_stop "$W/a"
if grep -qF "$pw" "$W/a/sealgated.log" "$W/a/start.out" "$W/a/check.out" "$W/a/verify.out"; then
	fail "the store URL's password is in a message"
	grep -F "$pw" "$W/a/sealgated.log" "$W/a/check.out" "$W/a/verify.out" | sed "s/$pw/<the password>/g"
else
	pass "the store URL's password is in no message (start, --check, --verify-audit)"
fi
# (and not because nothing was said: the messages name the store, password-less)
[ $started = 1 ] || grep -q "postgresql://sealgate@/sealgate" "$W/a/sealgated.log" "$W/a/check.out" "$W/a/verify.out" ||
	{ fail "no message names the store"; cat "$W/a/sealgated.log" "$W/a/check.out" "$W/a/verify.out"; }

# ---- one gateway per site ----
url="postgresql:///sealgate?host=$run&port=5432&user=sealgate&passfile=$W/pg/pgpass"
gateway_dir "$W/a" "$url"
gateway_dir "$W/b" "$url"
: >"$W/a/sealgated.log"
if ! sg_gw_start "$W/a" >"$W/a/start.out" 2>&1; then
	if grep -q "not yet on the PostgreSQL store" "$W/a/sealgated.log"; then
		grep "not yet on the PostgreSQL store" "$W/a/sealgated.log" | head -1
		echo "ok - # SKIP the store's sites are not yet on PostgreSQL"
		[ "$fails" = 0 ] || exit 1
		exit 77
	fi
	fail "the gateway of site main did not start on PostgreSQL"; cat "$W/a/sealgated.log"
	finish
	exit 1
fi
pass "a gateway of site main starts on PostgreSQL"
rc=0
"$gw" --config "$W/b/sealgated.yaml" --foreground >"$W/b/out" 2>&1 &
pid=$!
for _ in $(seq 150); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then
	kill $pid; wait $pid || true
	fail "a second gateway of site main on the same database started"
else
	wait $pid || rc=$?
	if [ $rc != 0 ] && grep -q "main" "$W/b/out" && grep -qi "another gateway\|already" "$W/b/out"; then
		pass "a second gateway of the site is refused at start, saying why"
	else
		fail "second gateway on PostgreSQL (exit $rc)"; cat "$W/b/out"
	fi
fi
finish
