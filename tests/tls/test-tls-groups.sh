#!/usr/bin/env bash
# tls: device groups (docs/policy.md, docs/deployment.md). A seal admin gives
# a device its group at approval (`sealctl device approve ID --group G`, shown
# by device list and recorded); a seal whose policy says devices: [G] signs
# only for devices of G: another group's device, a device of no group and the
# gateway's own host (the Unix socket, group local, unless listed) are
# refused before the token is asked, and recorded with the reason. local in
# the list lets the socket sign. No device can be given the group local.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE, SEALGATE_MODULE, SG_P11CLIENT
set -euo pipefail
. "$(dirname "$0")/lib.sh" tls-groups
tls_up
URL=tls://$GWIP:$PORT

# The Finance Seal for the finance office's desktops only.
fixture stop
python3 - "$W/policy.yaml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace('    key: "pkcs11:object=finance-seal;type=private"\n',
              '    key: "pkcs11:object=finance-seal;type=private"\n    devices: [finance-office]\n', 1)
open(p, "w").write(s)
PY
fixture start >/dev/null 2>&1 || { fail "start with devices: in the policy"; tail -5 "$W/sealgated.log"; }

# enroll DESKDIR ID [--group G]: dave's request, approval, collection.
enroll() {
	local d=$1 id=$2
	shift 2
	DESK=$d desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person dave >/dev/null 2>&1 || true
	admin approve "$id" "$@" >"$W/approve$id.out" 2>&1 || { cat "$W/approve$id.out"; return 1; }
	DESK=$d desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person dave >/dev/null 2>&1
}
DESK=$W/desk0 desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person dave >/dev/null 2>&1 || true
out=$(admin approve 1 --group local 2>&1) && fail "a device was given the group local" ||
	{ printf '%s\n' "$out" | grep -q "not 'local' (the gateway's own host)" &&
	  pass "no device can be given the group local" || fail "group local: $out"; }
out=$(admin approve 1 --group "finance office" 2>&1) && fail "a group with a space" ||
	pass "a group name is letters, digits, . _ - only"
enroll "$W/desk0" 1 --group finance-office && grep -q "approved, group finance-office" "$W/approve1.out" &&
	enroll "$W/desk2" 2 --group sales-desk && enroll "$W/desk3" 3 &&
	pass "three devices approved: finance-office, sales-desk, no group" ||
	{ fail "enrollment"; tail -5 "$W/sealgated.log"; }
out=$(admin list 2>&1) || true
printf '%s\n' "$out" | grep -q "^1 *approved .*dave .* finance-office  *[0-9a-f]" &&
	printf '%s\n' "$out" | grep -q "^2 *approved .* sales-desk " &&
	printf '%s\n' "$out" | grep -q "^3 *approved .*[0-9A-F] *-  *[0-9a-f]" &&
	printf '%s\n' "$out" | grep -q "^ID .* GROUP " &&
	pass "device list shows each device's group" || { fail "device list"; printf '%s\n' "$out"; }
n=$(audit_count "action = 'device_approve' AND detail LIKE '%\"group\":\"finance-office\"%'")
[ "$n" = 1 ] && pass "the approval records the group" || fail "device_approve with group: $n"

sign() { # DESKDIR SEAL-LABEL
	DESK=$1 desk env SG_PIN=dave-password SG_LABEL="$2" SG_ECDSA=1 "$P11CLIENT" "$MODULE" sign
}
sign "$W/desk0" "Finance Seal" >"$W/s1.out" 2>&1 &&
	pass "a finance-office device signs with the Finance Seal" || { fail "finance-office device"; cat "$W/s1.out"; }
n=$(audit_count "action = 'sign' AND outcome = 'ok' AND seal = 'finance' AND exe LIKE 'device 1 sha256:%'")
[ "$n" = 1 ] && pass "its record names device 1" || fail "device 1 records: $n"
sign "$W/desk0" "Quota Seal" >"$W/s1q.out" 2>&1 &&
	pass "and with a seal that names no devices" || { fail "quota seal from device 1"; cat "$W/s1q.out"; }

refused() { # WHAT DESKDIR|socket WHY
	local rc=0
	if [ "$2" = socket ]; then
		env SEALGATE_SOCKET="$W/sealgated.sock" SEALGATE_USER=dave SG_PIN=dave-password \
			SG_LABEL="Finance Seal" SG_ECDSA=1 "$P11CLIENT" "$MODULE" sign >"$W/r.out" 2>&1 || rc=$?
	else
		sign "$2" "Finance Seal" >"$W/r.out" 2>&1 || rc=$?
	fi
	local n q=\'
	n=$(audit_count "action = 'sign' AND outcome = 'denied' AND seal = 'finance' AND reason = '${3//$q/$q$q}'")
	if [ $rc != 0 ] && [ "$n" = 1 ]; then
		pass "$1 is refused and recorded: $3"
	else
		fail "$1 (exit $rc, $n records)"; cat "$W/r.out"
		store_sql "SELECT outcome, reason FROM audit WHERE action = 'sign' ORDER BY seq DESC LIMIT 2"
	fi
}
refused "a sales-desk device" "$W/desk2" \
	"the Finance Seal may be used only from the devices of finance-office; device 2 is in sales-desk"
# why explains the refusal to dave: the seal's groups and the device's
why=$(printf 'dave-password\n' | "$ctl" --socket "$W/sealgated.sock" --user dave \
	--password-file - why 2>&1) || true
case $why in
*"devices of finance-office"*"device 2 is in sales-desk"*)
	pass "sealctl why names the seal's device groups and the device's: $why" ;;
*) fail "sealctl why after the device refusal: $why" ;;
esac
refused "a device of no group" "$W/desk3" \
	"the Finance Seal may be used only from the devices of finance-office; device 3 is in no group"
refused "the gateway's own host (Unix socket)" socket \
	"the Finance Seal may be used only from the devices of finance-office, not on the gateway's own host (local)"
n=$(audit_count "action = 'sign' AND outcome = 'ok' AND seal = 'finance'")
[ "$n" = 1 ] && pass "no other Finance Seal signature was made" || fail "finance signatures: $n"

# local listed: the gateway's host signs; the other groups are still out.
fixture stop
sed -i 's/devices: \[finance-office\]/devices: [finance-office, local]/' "$W/policy.yaml"
fixture start >/dev/null 2>&1 || { fail "restart"; tail -5 "$W/sealgated.log"; }
env SEALGATE_SOCKET="$W/sealgated.sock" SEALGATE_USER=dave SG_PIN=dave-password \
	SG_LABEL="Finance Seal" SG_ECDSA=1 "$P11CLIENT" "$MODULE" sign >"$W/local.out" 2>&1 &&
	pass "with local listed, the gateway's own host signs" || { fail "local listed"; cat "$W/local.out"; }
sign "$W/desk2" "Finance Seal" >"$W/s2.out" 2>&1 && fail "sales-desk signed with local listed" ||
	pass "a sales-desk device is still refused"
finish
