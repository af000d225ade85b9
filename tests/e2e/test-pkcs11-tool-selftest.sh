#!/usr/bin/env bash
# e2e: OpenSC's own self test, `pkcs11-tool --test --login`, through
# sealgate-pkcs11.so and a real sealgated, as a person with an approved
# application for every seal they see. pkcs11-tool exits 0 even when a
# check prints "ERR", so the ERR lines are counted: there must be none.
# Each of its signatures is a real one through the gateway: all recorded,
# each spends a use.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
need oathtool
e2e_setup
cd "$W"

# Alice sees the Contract, Official and Code Signing Seals (all RSA: the
# signature tests of pkcs11-tool 0.23 are RSA only) and needs an approved
# application for each, with uses enough for every signature of the test.
USES=50
for a in "contract bob --type contract --amount 1000 --scope sales" \
	"official bob,carol" "code bob --type software"; do
	# shellcheck disable=SC2086 # the words are authorize's arguments
	set -- $a
	seal=$1 approvers=$2
	shift 2
	if app=$(authorize alice "$seal" "$USES" "$approvers" "$@"); then
		pass "alice's application #$app for the $seal seal is authorized"
		eval "APP_$seal=$app"
	else
		fail "alice's application for the $seal seal was not authorized"
	fi
done

export SEALGATE_USER=alice
run p11 --test --login --pin "$(password_of alice)"
expect_ok "pkcs11-tool --test"
errs=$(grep -c 'ERR' <<<"$OUT" || true)
if [ "$errs" = 0 ]; then
	pass "pkcs11-tool --test printed no ERR line"
else
	fail "pkcs11-tool --test printed $errs ERR line(s):"
	grep 'ERR' <<<"$OUT" | sed 's/^/    /' >&2
fi
expect_no_out "Aborting" "pkcs11-tool --test ran to its end"
for label in "Contract Seal" "Official Seal" "Code Signing Seal"; do
	expect_out "($label)" "pkcs11-tool --test signed with the $label"
done

# Every signature it made went through the gateway: recorded and counted.
signed=$(audit_count "action='sign' AND outcome='ok' AND actor='alice' AND exe LIKE '%/pkcs11-tool'")
if [ -n "$signed" ]; then
	spent=$((3 * USES - $(uses_left alice "${APP_contract:-0}") - $(uses_left alice "${APP_official:-0}") \
		- $(uses_left alice "${APP_code:-0}")))
	check "its $signed recorded signatures spent $spent uses, one each" test "$signed" = "$spent"
	check "it signed at least once per seal" test "$signed" -ge 3
fi

finish
