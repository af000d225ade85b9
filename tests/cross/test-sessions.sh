#!/usr/bin/env bash
# Sessions in the store (docs/store.md and docs/sites.md, "Sessions"): two
# real gateways, sites a and b, each on its own SoftHSM2 token, on one
# PostgreSQL cluster of the test's own (tests/lib/pg.sh).
#  - a login at a is known at b (the store's row, not a's memory);
#  - a password change at b ends the person's session at a: a's next
#    request is refused not_logged_in (the DELETE in the change's
#    transaction, its NOTIFY dropping a's cached copy), and the store
#    holds none of their sessions;
#  - a TOTP reset and an unlock at b do the same;
#  - a session idle longer than its idle time, or past its end, is
#    refused by the statement that reads it (the row aged in the store:
#    no sleep), at a gateway that has not cached it;
#  - a row deleted while a's change feed is cut (no NOTIFY heard) is
#    refused at a once its feed is back: the cache is asked again; and
#    while the feed stays down, at a's very next use;
#  - a role taken away by a policy published at b ends the person's
#    sessions at a.
# Skipped (77) when PostgreSQL is not installed; the cluster and both
# gateways are stopped however it ends.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE; SG_CROSS_KEEP=1 keeps the directory
set -euo pipefail
build=${SEALGATE_BUILD:?}
src=${SEALGATE_SOURCE:?}
gw=$build/gateway/sealgated
ctl=$build/tools/sealctl
sess=$src/tests/cross/sgsession.py
. "$src/tests/lib/gateway.sh"
. "$src/tests/lib/pg.sh"
W=$(mktemp -d /tmp/sg-sessions.XXXXXX)
fails=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }

cleanup() {
	st=$?
	sg_gw_stop "$W/a" || true
	sg_gw_stop "$W/b" || true
	for s in a b; do
		if grep -q "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" "$W/$s/sealgated.log" 2>/dev/null; then
			echo "not ok - a sanitizer report in gateway $s's log"; st=1
		fi
	done
	pg_down "$W" || { echo "not ok - the PostgreSQL cluster is still running"; st=1; }
	if { [ $st = 0 ] || [ $st = 77 ]; } && [ -z "${SG_CROSS_KEEP:-}" ]; then rm -rf "$W"; else echo "(files kept in $W)"; fi
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
  name: Cross Co.
  timezone: UTC
  departments:
    - { id: ops, name: Operations, head: hd }
  people:
    - { id: p1, name: Person One, department: ops, roles: [employee] }
    - { id: p2, name: Person Two, department: ops, roles: [employee] }
    - { id: p3, name: Person Three, department: ops, roles: [employee] }
    - { id: p4, name: Person Four, department: ops, roles: [employee] }
    - { id: hd, name: Head, department: ops, roles: [department_head, seal_admin] }
  act_as:
    - { os_login: "$me", accounts: all }
seals:
  - { id: sa, name: SA Seal, kind: invoice, site: a, key: "pkcs11:object=sa-seal;type=private", holder: ops, users: { departments: [ops] }, approval: none, mfa: none }
  - { id: sb, name: SB Seal, kind: invoice, site: b, key: "pkcs11:object=sb-seal;type=private", holder: ops, users: { departments: [ops] }, approval: none, mfa: none }
EOP
site_up() { # SITE TOKEN-LABEL KEY-SPEC
	local s=$1 label=$2
	mkdir -p "$W/$s"
	SG_ORG="Cross Co." sh "$src/tests/backend/mktoken.sh" "$W/$s" "$label" 1234 "$3" >/dev/null
	(umask 077; printf '1234\n' >"$W/$s/token.pin")
	cat >"$W/$s/sealgated.yaml" <<EOC
backend_module: /usr/lib/softhsm/libsofthsm2.so
backend_token: "pkcs11:token=$label"
token_pin_file: $W/$s/token.pin
socket_path: $W/$s/sealgated.sock
store: "$url"
site: $s
policy_path: $W/policy.yaml
backend_sessions: 2
session_timeout: 3600
session_max_age: 86400
test_clock: true
EOC
}
site_up a sg-a sa-seal:01:EC:prime256v1
site_up b sg-b sb-seal:11:EC:prime256v1
for p in p1 p2 p3 p4 hd; do
	printf '%s-password\n' "$p" | "$gw" --config "$W/a/sealgated.yaml" --set-password "$p" --password-file - >/dev/null
done
# (the test clock is TOTP's: sessions keep the real one)
echo 1700000000 >"$W/clock"
start() { sg_gw_start "$W/$1" SOFTHSM2_CONF="$W/$1/softhsm2.conf" SEALGATE_TEST_CLOCK="$W/clock"; }
start a || { echo "not ok - gateway a did not start"; exit 1; }
start b || { echo "not ok - gateway b did not start"; exit 1; }
pass "gateways of sites a and b started on one PostgreSQL store"

login() { python3 "$sess" login "$W/$1/sealgated.sock" "$2" "$2-password"; }
# use SITE TOKEN: a request that needs a session; prints the reply
use() { python3 "$sess" call "$W/$1/sealgated.sock" "$2" '{"op":"list"}' || true; }
refused() { use "$1" "$2" | grep -q '"not_logged_in"'; }
accepted() { use "$1" "$2" | grep -q '"ok": true'; }
# Waits until the shell condition holds, 20 s by the clock at most (not a
# count of looks, each of which starts a python): less than
# GW_AUTH_RECHECK, the 60 s after which a cached session is asked again
# anyway, so that only the change feed can make it hold.
wait_for() {
	local end=$(($(date +%s) + 20))
	while ! eval "$1"; do
		[ "$(date +%s)" -lt $end ] || return 1
		sleep 0.1
	done
}
rows() { sql "SELECT count(*) FROM sessions WHERE account = '$1'"; }

# 1. A login at a is the store's: known at b.
t1=$(login a p1)
if accepted a "$t1" && accepted b "$t1"; then pass "a session made at a is used at b"
else fail "a session made at a is not used at b: $(use b "$t1")"; fi
[ "$(rows p1)" = 1 ] && pass "the store holds the session" || fail "sessions rows of p1: $(rows p1)"
if sql "SELECT id FROM sessions" | grep -q "$(python3 -c 'import base64,sys; print(base64.b64decode(sys.argv[1]).hex())' "$t1" 2>/dev/null || echo none)"; then
	fail "the store holds the token itself"
else
	pass "the store's key is not the token"
fi

# 2. A password change at b ends p1's session at a (which has it cached).
tb=$(login b p1)
python3 "$sess" call "$W/b/sealgated.sock" "$tb" \
	'{"op":"user_passwd","user":"p1","old_password":"p1-password","password":"p1-password-2"}' \
	>"$W/passwd.out" || true
if grep -q '"ok": true' "$W/passwd.out"; then pass "p1 changed their password at b"
else fail "password change at b: $(cat "$W/passwd.out")"; fi
if wait_for "refused a '$t1'"; then pass "the password change at b ended p1's session at a (not_logged_in)"
else fail "p1's session still works at a after the password change at b: $(use a "$t1")"; fi
refused b "$t1" && pass "and at b" || fail "p1's old session still works at b: $(use b "$t1")"
[ "$(rows p1)" = 0 ] && pass "no session of p1 is left in the store" || fail "sessions rows of p1: $(rows p1)"

# 3. A TOTP reset and an unlock by a seal admin at b do the same. hd, the
# seal admin, enrolls a TOTP secret at b and logs in with password + code.
head -c 20 /dev/urandom | base32 | tr -dc 'A-Z2-7' >"$W/totp-hd.b32"
code() { oathtool --totp -b --now "@$(cat "$W/clock")" "$(cat "$W/totp-hd.b32")"; }
echo 1700000060 >"$W/clock"
SEALGATE_USER=hd SEALGATE_PASSWORD=hd-password "$ctl" --socket "$W/b/sealgated.sock" \
	user totp-enroll --secret-file "$W/totp-hd.b32" --code "$(code)" >"$W/enroll.out" 2>&1 ||
	fail "TOTP enrolment of hd at b: $(cat "$W/enroll.out")"
echo 1700000120 >"$W/clock"
th=$(python3 "$sess" login "$W/b/sealgated.sock" hd "hd-password$(code)") || fail "hd's login at b with a code"
for what in totp_reset user_unlock; do
	p=$([ $what = totp_reset ] && echo p2 || echo p3)
	t=$(login a $p)
	accepted a "$t" || fail "$p's session at a before $what"
	python3 "$sess" call "$W/b/sealgated.sock" "$th" "{\"op\":\"$what\",\"user\":\"$p\"}" >"$W/$what.out" || true
	if ! grep -q '"ok": true' "$W/$what.out"; then fail "$what at b: $(cat "$W/$what.out")"; continue; fi
	if wait_for "refused a '$t'"; then pass "$what of $p at b ended their session at a"
	else fail "$p's session still works at a after $what at b: $(use a "$t")"; fi
done

# 4. Idle and absolute expiry, by the statement: the row aged in the store,
# used at b, which has never seen it.
t4=$(login a p4)
sql "UPDATE sessions SET last_used = last_used - 3610 WHERE account = 'p4'"
if refused b "$t4"; then pass "a session idle longer than its idle time is refused at b"
else fail "an idle session was accepted at b: $(use b "$t4")"; fi
t4=$(login a p4)
sql "UPDATE sessions SET last_used = last_used - 3590 WHERE account = 'p4'"
accepted b "$t4" && pass "one idle a little less is still accepted" || fail "a session within its idle time refused at b: $(use b "$t4")"
t4=$(login a p4)
sql "UPDATE sessions SET expires = extract(epoch FROM now())::bigint - 10 WHERE account = 'p4'"
if refused b "$t4"; then pass "a session past its end is refused at b, however recently used"
else fail "a session past its end was accepted at b: $(use b "$t4")"; fi

# 5. A row deleted while a's feed is cut: no NOTIFY reaches a; once its
# feed is back, a asks the store again before using what it cached.
t5=$(login a hd)
accepted a "$t5" || fail "hd's session at a"
before=$(grep -c "change feed: connected again" "$W/a/sealgated.log" || true)
sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND application_name ILIKE '%a%'" >/dev/null || true
sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND state = 'idle' AND query ILIKE '%LISTEN%'" >/dev/null || true
sql "DELETE FROM sessions WHERE account = 'hd'"
if wait_for "[ \$(grep -c 'change feed: connected again' '$W/a/sealgated.log' || true) -gt $before ]"; then
	if refused a "$t5"; then pass "after a lost feed, a asks the store again: the deleted session is refused"
	else fail "a used its cached session after its feed was lost: $(use a "$t5")"; fi
else
	fail "a's change feed was not cut and connected again"
fi

# 6. While a's feed is down (cut, and kept from connecting again by the
# database's connection limit), a asks the store before each use: a row
# deleted meanwhile is refused at once, with no NOTIFY and no reconnection.
su_sql() { _pg_as psql -X -q -At -h "$W/pg/run" -U postgres -d sealgate -c "$1"; }
t6=$(login a p4)
accepted a "$t6" || fail "p4's session at a"
lost=$(grep -c "change feed: .*connection is lost" "$W/a/sealgated.log" || true)
n=$(su_sql "SELECT count(*) FROM pg_stat_activity WHERE datname = 'sealgate' AND application_name <> 'sealgated-feed' AND usename = 'sealgate'")
su_sql "ALTER DATABASE sealgate CONNECTION LIMIT $n" >/dev/null
su_sql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'sealgated-feed'" >/dev/null
su_sql "DELETE FROM sessions WHERE account = 'p4'" >/dev/null
if wait_for "[ \$(grep -c 'change feed: .*connection is lost' '$W/a/sealgated.log' || true) -gt $lost ]"; then
	if refused a "$t6"; then pass "while its feed is down, a asks the store: a session deleted meanwhile is refused"
	else fail "a used its cached session while its feed was down: $(use a "$t6")"; fi
else
	fail "a's change feed was not cut"
fi
su_sql "ALTER DATABASE sealgate CONNECTION LIMIT -1" >/dev/null
t6=$(login a p4)
accepted a "$t6" && pass "and it serves sessions again" || fail "a login at a after its feed was down: $(use a "$t6")"

# 7. A role taken away by a published policy ends the person's sessions:
# p4 is an employee no more in the version hd publishes at b, and p4's
# session at a (which only lists applications, no role needed) ends.
t7=$(login a p4)
accepted a "$t7" || fail "p4's session at a before the publish"
sed 's/{ id: p4, name: Person Four, department: ops, roles: \[employee\] }/{ id: p4, name: Person Four, department: ops, roles: [executive] }/' \
	"$W/policy.yaml" >"$W/policy-2.yaml"
grep -q "roles: \[executive\]" "$W/policy-2.yaml" || fail "the second policy"
echo 1700000180 >"$W/clock"
if SEALGATE_CODE=$(code) SEALGATE_USER=hd SEALGATE_PASSWORD=hd-password "$ctl" \
	--socket "$W/b/sealgated.sock" policy publish "$W/policy-2.yaml" >"$W/publish.out" 2>&1; then
	if wait_for "refused a '$t7'"; then pass "a role taken away by a policy published at b ended the person's session at a"
	else fail "p4's session still works at a after losing a role: $(use a "$t7")"; fi
	[ "$(rows p4)" = 0 ] && pass "and the store holds none of theirs" || fail "sessions rows of p4: $(rows p4)"
else
	fail "policy publish at b: $(cat "$W/publish.out")"
fi

[ $fails = 0 ] || exit 1
