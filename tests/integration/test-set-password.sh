#!/usr/bin/env bash
# Integration: `sealgated --set-password` (the offline bootstrap of the
# first seal admin) is a credential change like any other: the password and
# its audit record in one transaction, and refused while a gateway runs on
# the store (two writers would fork the audit chain; the running gateway's
# `sealctl user passwd` is the recorded way then).
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$(dirname "$0")/lib.sh" set-password

fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
export SOFTHSM2_CONF=$W/softhsm2.conf

# (the fixture set five passwords offline before it started the gateway)
n=$(audit_count "action = 'password_set' AND actor = 'frank' AND outcome = 'ok'")
if [ "$n" = 1 ]; then pass "an offline password is recorded"; else fail "password_set records of frank: $n"; fi

before=$(audit_count "1")
rc=0
printf 'another-password\n' | "$gw" --config "$W/sealgated.yaml" --set-password frank \
	--password-file - >"$W/running.out" 2>&1 || rc=$?
if [ $rc != 0 ] && grep -q "a gateway is running on" "$W/running.out"; then
	pass "refused while a gateway runs"
else
	fail "set-password while a gateway runs: rc $rc: $(cat "$W/running.out")"
fi
if [ "$(audit_count "1")" = "$before" ]; then pass "nothing recorded"; else fail "the log changed"; fi

fixture stop
printf 'another-password\n' | "$gw" --config "$W/sealgated.yaml" --set-password frank \
	--password-file - >"$W/stopped.out" 2>&1 || fail "set-password on a stopped gateway: $(cat "$W/stopped.out")"
n=$(audit_count "action = 'password_set' AND actor = 'frank' AND outcome = 'ok'")
if [ "$n" = 2 ]; then pass "recorded when set offline again"; else fail "password_set records of frank: $n"; fi
if "$gw" --config "$W/sealgated.yaml" --verify-audit >"$W/verify.out" 2>&1; then
	pass "the chain is intact"
else
	fail "verify-audit: $(cat "$W/verify.out")"
fi
finish
