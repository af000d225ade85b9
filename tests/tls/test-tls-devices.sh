#!/usr/bin/env bash
# tls: two devices (alice's desktop and dave's) on one gateway. One device
# flooding its share (all its connections held, hellos as fast as they are
# answered, more connections asked for) does not keep the other from
# signing; one address holds at most 8 handshakes in flight while a
# device elsewhere signs; a device whose record has expired is refused at the handshake
# with "certificate expired", which `sealctl status` on its desktop shows;
# a gateway whose TLS key others can read does not start.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE, SEALGATE_MODULE, SG_P11CLIENT
set -euo pipefail
. "$(dirname "$0")/lib.sh" tls-devices
tls_up
URL=tls://$GWIP:$PORT

# enroll DESKDIR PERSON ID: request, approval, collection.
enroll() {
	DESK=$1 desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person "$2" >/dev/null 2>&1 || true
	admin approve "$3" >/dev/null 2>&1
	DESK=$1 desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person "$2" >/dev/null 2>&1
}
enroll "$W/desk1" alice 1 && enroll "$W/desk2" dave 2 &&
	[ -s "$W/desk1/config/sealgate/device.pem" ] && [ -s "$W/desk2/config/sealgate/device.pem" ] &&
	pass "two devices enrolled and approved" || { fail "enrollment"; tail -5 "$W/sealgated.log"; }
D1=$W/desk1/config/sealgate

# Device 1 floods: its 4 connections held and busy, 2 more refused.
in_desk $PROBE hold "$GWIP" "$PORT" "$PKI/site-ca.pem" "$D1/device.pem" "$D1/device.key" 6 --flood 8 \
	>"$W/flood.out" 2>&1 &
flood_pid=$!
sleep 1
ok=0
for i in 1 2 3 4 5; do
	DESK=$W/desk2 desk env SG_PIN=dave-password SG_LABEL="Finance Seal" SG_ECDSA=1 "$P11CLIENT" "$MODULE" sign \
		>"$W/sign2-$i.out" 2>&1 && ok=$((ok + 1))
done
wait "$flood_pid" || true
out=$(cat "$W/flood.out")
case $out in "ok 4 busy 2 other 0 answered "*) pass "device 1 floods within its share ($out)" ;;
	*) fail "flood: $out" ;; esac
[ "$ok" = 5 ] && pass "device 2 signs 5 times while device 1 floods" ||
	{ fail "device 2 signed $ok of 5 during the flood"; cat "$W/sign2-1.out"; }
n=$(audit_count "action = 'sign' AND outcome = 'ok' AND actor = 'dave' AND exe LIKE 'device 2 sha256:%'")
[ "$n" = 5 ] && pass "the 5 records name device 2" || fail "device 2 records: $n"

# One address trickling 10 handshakes at once holds 8 (its share of the
# 64 in flight); the other 2 are closed at once, and a device elsewhere
# signs meanwhile.
"${IN_DESK[@]}" $PROBE slow-handshakes "$GWIP" "$PORT" 10 3 >"$W/slowmany.out" 2>&1 &
slow_pid=$!
BG_PIDS+=("$slow_pid")
sleep 1
if [ -n "$NS_GW" ]; then
	# (from the gateway's own namespace: another source address)
	env HOME="$W/desk1" XDG_CONFIG_HOME="$W/desk1/config" SG_PIN=alice-password \
		"${IN_GW[@]}" "$P11CLIENT" "$MODULE" sign >"$W/other-addr.out" 2>&1 &&
		pass "a device at another address signs while one address holds its handshakes" ||
		{ fail "sign from another address"; cat "$W/other-addr.out"; }
else
	echo "# loopback: one address only, the other-address check is left out"
fi
wait "$slow_pid" || true
out=$(cat "$W/slowmany.out")
[ "$out" = "closed at once 2, held 8" ] && pass "one address gets 8 handshakes in flight ($out)" ||
	fail "handshakes per address: $out"

# Revoked while connected: device 3's open connection is cut at its next
# request; device 4, revoked while its process was idle, comes back on a
# resumed TLS session (which skips the certificate check) and is refused
# after the handshake all the same.
enroll "$W/desk3" alice 3 && enroll "$W/desk4" alice 4 || fail "devices 3 and 4"
revoke_between() { # DESK IDLE ID
	rm -f "$W/rv".*
	DESK=$1 desk env SG_PIN=alice-password SG_SYNC="$W/rv" SG_IDLE="$2" SEALGATE_DEBUG=1 \
		"$P11CLIENT" "$MODULE" resume \
		>"$W/rv$3.out" 2>&1 &
	local pid=$!
	for _ in $(seq 100); do [ -e "$W/rv.ready" ] && break; sleep 0.1; done
	admin revoke "$3" >/dev/null 2>&1 || fail "revoke $3"
	touch "$W/rv.go"
	wait "$pid" && return 1
	grep -q "^sign 0x0$" "$W/rv$3.out" && ! grep -q "^sign again 0x0$" "$W/rv$3.out"
}
revoke_between "$W/desk3" 0 3 && grep -q "^sign again 0x32$" "$W/rv3.out" &&
	pass "a device revoked while connected is cut at its next request (CKR_DEVICE_REMOVED)" ||
	{ fail "revoked while connected"; cat "$W/rv3.out"; }
revoke_between "$W/desk4" 4 4 && grep -q "TLSv1.3, session resumed" "$W/rv4.out" &&
	pass "a device revoked while idle is refused on a resumed session" ||
	{ fail "revoked, resumed"; cat "$W/rv4.out"; }
n=$(audit_count "action = 'sign' AND outcome = 'ok' AND exe LIKE 'device 4 %(resumed)%'")
[ "$n" = 0 ] && pass "no signature of device 4 after its revocation" || fail "device 4 signed $n times resumed"

# Device 2's record says its certificate has expired (as if a year had
# passed; OpenSSL's own date check covers the certificate's notAfter).
fixture stop
python3 - "$W/devices/2.json" <<'PY'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
d["not_after"] = 1
json.dump(d, open(p, "w"))
PY
fixture start >/dev/null 2>&1 || { fail "restart"; tail -5 "$W/sealgated.log"; }
DESK=$W/desk2 desk env SG_PIN=dave-password SG_LABEL="Finance Seal" SG_ECDSA=1 "$P11CLIENT" "$MODULE" sign \
	>"$W/expired.out" 2>&1 && fail "an expired device signed" || pass "an expired device cannot sign"
rc=0
out=$(DESK=$W/desk2 desk "$ctl" status 2>&1) || rc=$?
[ $rc = 3 ] && printf '%s\n' "$out" | grep -q "certificate expired" &&
	pass "sealctl status on its desktop says the certificate has expired" ||
	{ fail "status of an expired device (exit $rc)"; printf '%s\n' "$out"; }
DESK=$W/desk1 desk env SG_PIN=alice-password "$P11CLIENT" "$MODULE" sign >"$W/sign1.out" 2>&1 &&
	pass "device 1 still signs" || { fail "device 1 after the restart"; cat "$W/sign1.out"; }

# The gateway's own TLS key readable by others: it does not start.
fixture stop
chmod 644 "$PKI/gateway.key"
: >"$W/sealgated.log"
if fixture start >/dev/null 2>&1; then
	fail "the gateway started with its TLS key mode 0644"
else
	grep -q "tls_key $PKI/gateway.key: must be a file owned by the gateway's user, mode 0600" "$W/sealgated.log" &&
		pass "a TLS key others can read keeps the gateway from starting, and the log says why" ||
		{ fail "open TLS key: log"; tail -3 "$W/sealgated.log"; }
fi
chmod 600 "$PKI/gateway.key"
finish
