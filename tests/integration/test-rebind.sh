#!/usr/bin/env bash
# Integration: the store remembers which backend token its seals live on.
# A real sealgated over a real SoftHSM2 token binds the token at its first
# start (audit record token_bound); after the token is replaced by another
# with the same label (new serial, new key and certificate) the gateway and
# `--check` refuse to start, before logging in, and say how to proceed;
# `--rebind` takes the new token (audit record token_rebound naming both
# serials), and later starts accept it without the flag.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
build=${SEALGATE_BUILD:?SEALGATE_BUILD not set}
src=${SEALGATE_SOURCE:?SEALGATE_SOURCE not set}
gw=$build/gateway/sealgated
ctl=$build/tools/sealctl
W=$(mktemp -d /tmp/sg-rebind.XXXXXX)
pid=

fails=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }

cleanup() {
	[ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
	[ -z "$pid" ] || wait "$pid" 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT

mk_token() {
	rm -rf "$W/tok"
	SG_ORG="Rebind Co." sh "$src/tests/backend/mktoken.sh" "$W/tok" sg-rebind 1234 \
		seal:01:EC:prime256v1 >/dev/null
}

serial() {
	SOFTHSM2_CONF=$W/tok/softhsm2.conf softhsm2-util --show-slots |
		awk '/Serial number:/ { s = $3 } /Label:/ && $2 == "sg-rebind" { print s; exit }'
}

# Counts audit records matching an SQL condition.
audit_count() {
	python3 - "$W/sealgate.db" "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
print(db.execute("SELECT count(*) FROM audit WHERE " + sys.argv[2]).fetchone()[0])
PY
}

# Starts the gateway with extra arguments; 0 once it answers, 1 if it
# exited (its status is then in $W/exit).
start() {
	rm -f "$W/sealgated.sock"
	SOFTHSM2_CONF=$W/tok/softhsm2.conf "$gw" --config "$W/sealgated.yaml" --foreground "$@" \
		>>"$W/sealgated.log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do
		if [ -S "$W/sealgated.sock" ] && "$ctl" --socket "$W/sealgated.sock" status >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" && echo 0 >"$W/exit" || echo $? >"$W/exit"
			pid=
			return 1
		fi
		sleep 0.1
	done
	echo "sealgated neither answered nor exited in 10 s" >&2
	return 1
}

stop() {
	kill -TERM "$pid"
	wait "$pid" || true
	pid=
}

mk_token
(umask 077; printf '1234\n' >"$W/token.pin")
cat >"$W/policy.yaml" <<EOP
version: 1
organization:
  name: Rebind Co.
  timezone: UTC
  departments:
    - { id: hq, name: Headquarters }
  people:
    - { id: alice, name: Alice, department: hq, roles: [employee] }
  act_as:
    - { os_login: "$(id -un)", accounts: all }
seals:
  - id: official
    name: Official Seal
    kind: official
    key: "pkcs11:object=seal;type=private"
    holder: hq
    users: { people: [alice] }
    approval: none
    mfa: none
EOP
cat >"$W/sealgated.yaml" <<EOC
backend_module: /usr/lib/softhsm/libsofthsm2.so
backend_token: "pkcs11:token=sg-rebind"
token_pin_file: $W/token.pin
socket_path: $W/sealgated.sock
store_path: $W/sealgate.db
policy_path: $W/policy.yaml
token_label: Rebind Co.
EOC

first=$(serial)
[ -n "$first" ] || { echo "could not read the token's serial" >&2; exit 1; }

# 1. First start: bound, recorded.
if start; then pass "first start"; else fail "first start"; cat "$W/sealgated.log"; exit 1; fi
stop
n=$(audit_count "action = 'token_bound' AND reason LIKE 'serial $first,%'")
[ "$n" = 1 ] && pass "first start recorded token_bound for serial $first" ||
	fail "token_bound records for serial $first: $n, expected 1"

# 2. The same token again: no new record.
if start; then pass "restart on the bound token"; else fail "restart on the bound token"; fi
stop
n=$(audit_count "action LIKE 'token_%bound'")
[ "$n" = 1 ] && pass "a restart on the same token records no new binding" ||
	fail "binding records after a plain restart: $n, expected 1"

# 3. Another token with the same label (the card swapped while stopped).
mk_token
second=$(serial)
[ -n "$second" ] && [ "$second" != "$first" ] && pass "the new token has another serial ($second)" ||
	fail "the new token's serial '$second' is not new (was $first)"
: >"$W/sealgated.log"
if start; then
	fail "sealgated started on a token the store is not bound to"
	stop
else
	[ "$(cat "$W/exit")" != 0 ] && pass "sealgated refuses a token it is not bound to" ||
		fail "sealgated exited 0 on a foreign token"
fi
grep -q "is bound to the token with serial $first" "$W/sealgated.log" &&
	grep -q -- "--rebind" "$W/sealgated.log" &&
	pass "the log names the bound serial and --rebind" ||
	{ fail "no clear error in the log"; cat "$W/sealgated.log"; }
# (That no PIN reaches the foreign token is seen on a card: tests/card.)
if SOFTHSM2_CONF=$W/tok/softhsm2.conf "$gw" --config "$W/sealgated.yaml" --check >"$W/check.out" 2>&1; then
	fail "--check accepted a token the store is not bound to"
else
	grep -q -- "--rebind" "$W/check.out" && pass "--check refuses it too, with the hint" ||
		{ fail "--check's message"; cat "$W/check.out"; }
fi
n=$(audit_count "action = 'token_rebound'")
[ "$n" = 0 ] && pass "nothing rebound by the refused starts" || fail "token_rebound records: $n"

# 4. --rebind: taken, recorded with both serials.
if start --rebind; then pass "--rebind starts on the new token"; else fail "--rebind"; cat "$W/sealgated.log"; exit 1; fi
"$ctl" --socket "$W/sealgated.sock" status >"$W/status.out" 2>&1 &&
	grep -q "Official Seal" "$W/status.out" && ! grep -q UNAVAILABLE "$W/status.out" &&
	pass "the seal is served from the new token" ||
	{ fail "status after --rebind"; cat "$W/status.out"; }
stop
n=$(audit_count "action = 'token_rebound' AND reason LIKE 'serial $second,%was serial $first,%'")
[ "$n" = 1 ] && pass "token_rebound recorded with the new and the old serial" ||
	fail "token_rebound records naming $second and $first: $n"

# 5. Later starts need no flag; the log still verifies.
if start; then pass "a plain start on the rebound token"; else fail "plain start after --rebind"; fi
stop
if "$gw" --config "$W/sealgated.yaml" --verify-audit >"$W/verify.out" 2>&1; then
	pass "the audit log verifies"
else
	fail "audit log verification"; cat "$W/verify.out"
fi

echo "$fails failed"
[ "$fails" = 0 ]
