#!/usr/bin/env bash
# Integration: the store remembers which backend token its seals live on.
# A real sealgated over a real SoftHSM2 token (tests/integration/fixture.sh,
# in a directory of its own) binds the token at its first start (audit
# record token_bound); after the token is made anew under the same label
# (new serial, new keys and certificates) the gateway and `--check` refuse
# to start and say how to proceed; `--rebind` takes the new token (audit
# record token_rebound naming both serials), and later starts accept it
# without the flag.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$(dirname "$0")/lib.sh" rebind

serial() {
	SOFTHSM2_CONF=$W/softhsm2.conf softhsm2-util --show-slots |
		awk '/Serial number:/ { s = $3 } /Label:/ && $2 == "sg-it" { print s; exit }'
}

start() { SG_GATEWAY_ARGS="$*" fixture start >>"$W/fixture.out" 2>&1; }
stop() { fixture stop; }

# Made, bound and running: stopped for the test.
fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
stop
first=$(serial)
[ -n "$first" ] || { echo "could not read the token's serial" >&2; exit 1; }

# 1. The first start bound it, and recorded that.
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
fixture retoken
second=$(serial)
[ -n "$second" ] && [ "$second" != "$first" ] && pass "the new token has another serial ($second)" ||
	fail "the new token's serial '$second' is not new (was $first)"
: >"$W/sealgated.log"
if start; then
	fail "sealgated started on a token the store is not bound to"
	stop
else
	pass "sealgated refuses a token it is not bound to"
fi
grep -q "is bound to the token with serial $first" "$W/sealgated.log" &&
	grep -q -- "--rebind" "$W/sealgated.log" &&
	pass "the log names the bound serial and --rebind" ||
	{ fail "no clear error in the log"; cat "$W/sealgated.log"; }
# (That no PIN reaches the foreign token is seen on a card: tests/card.)
if SOFTHSM2_CONF=$W/softhsm2.conf "$gw" --config "$W/sealgated.yaml" --check >"$W/check.out" 2>&1; then
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
	grep -q "Contract Seal" "$W/status.out" && ! grep -q UNAVAILABLE "$W/status.out" &&
	grep -q "backend:  bound to the token with serial $second" "$W/status.out" &&
	pass "the seals are served from the new token, and status names it" ||
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

finish
