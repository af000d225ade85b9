#!/usr/bin/env bash
# tls: a desktop reaches the gateway over mutually authenticated TLS 1.3
# (docs/deployment.md). The desktop enrolls (key 0600, a request with host
# and person), a seal admin approves, the gateway issues the certificate;
# pkcs11-tool, OpenSSL+libp11 and p11tool sign through TLS from the desktop's
# network namespace and the record names the device and what its module
# reported; sessions resume; a cut connection is a pulled card and comes
# back; a forked child has its own connection. Refused: no client
# certificate, another CA's certificate, TLS 1.2, an impostor gateway and
# a wrong server name (no byte of a PIN reaches them), a slowloris at the
# handshake and inside a frame, a device over its connection cap, anything
# but enrollment on the enrollment endpoint, and a revoked device (at the
# handshake, with a message `sealctl status` shows on the desktop).
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE, SEALGATE_MODULE, SG_P11CLIENT
set -euo pipefail
. "$(dirname "$0")/lib.sh" tls
tls_up
CONF=$DESK/config/sealgate
URL=tls://$GWIP:$PORT

# --- enrollment
out=$(desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person alice 2>&1) || true
code=$(printf '%s\n' "$out" | sed -n 's/^key code \([0-9A-F-]*\):.*/\1/p')
if printf '%s\n' "$out" | grep -q "device request 1 sent for alice" && [ -n "$code" ]; then
	pass "enroll: request 1 sent, key code $code shown"
else
	fail "enroll"; printf '%s\n' "$out"
fi
[ "$(stat -c %a "$CONF/device.key")" = 600 ] && pass "the device key is a file 0600 in the user's config dir" ||
	fail "device key mode $(stat -c %a "$CONF/device.key")"
out=$(admin list 2>&1) || true
printf '%s\n' "$out" | grep -q "^1 *pending .*alice *$code" &&
	pass "device list: the request, pending, with host, person and key code" ||
	{ fail "device list"; printf '%s\n' "$out"; }
out=$(desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person alice 2>&1) || true
printf '%s\n' "$out" | grep -q "waiting for a seal admin" && [ ! -e "$CONF/device.pem" ] &&
	pass "before approval: no certificate" || { fail "before approval"; printf '%s\n' "$out"; }
out=$("$ctl" --socket "$W/sealgated.sock" --user alice \
	--password-file <(echo alice-password) device approve 1 2>&1) && fail "alice (no seal admin) approved a device" ||
	{ printf '%s\n' "$out" | grep -q "only a seal admin" && pass "only a seal admin approves a device" ||
	  { fail "approval by alice: $out"; }; }
out=$(admin approve 1 2>&1) && pass "frank (seal admin, password + code) approves device 1" ||
	{ fail "approve"; printf '%s\n' "$out"; }
out=$(desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person alice 2>&1) || true
if [ -s "$CONF/device.pem" ] && grep -q "^gateway = $URL" "$CONF/sealgate.conf" &&
   openssl verify -CAfile "$PKI/device-ca.pem" -purpose sslclient "$CONF/device.pem" >/dev/null 2>&1; then
	pass "the desktop collects its certificate (from the device CA, client only) and sealgate.conf"
else
	fail "collect"; printf '%s\n' "$out"
fi
[ "$(audit_count "action = 'device_enroll' AND outcome = 'ok'")" = 1 ] &&
	[ "$(audit_count "action = 'device_approve' AND outcome = 'ok' AND actor = 'frank'")" = 1 ] &&
	pass "enrollment and approval are recorded" || fail "enroll/approve records"

# --- signing from the desktop
out=$(desk "$ctl" status 2>&1) && printf '%s\n' "$out" | grep -q "Contract Seal" &&
	pass "sealctl status on the desktop, over TLS" || { fail "status over TLS"; printf '%s\n' "$out"; }
id=$(desk pkcs11-tool --module "$MODULE" --list-objects --type cert 2>/dev/null | awk '
	/^  label:/ { sub(/^  label: */, ""); label = $0 }
	/^  ID:/    { if (label == "Contract Seal") { print $2; exit } }')
printf 'a contract\n' >"$W/doc.txt"
if desk pkcs11-tool --module "$MODULE" --login --pin alice-password --sign -m SHA256-RSA-PKCS \
	--id "$id" -i "$W/doc.txt" -o "$W/doc.sig" >"$W/p11tool.out" 2>&1 &&
   openssl x509 -inform DER -in <(desk pkcs11-tool --module "$MODULE" --read-object --type cert \
	--label "Contract Seal" 2>/dev/null) -pubkey -noout >"$W/contract.pub" &&
   openssl dgst -sha256 -verify "$W/contract.pub" -signature "$W/doc.sig" "$W/doc.txt" >/dev/null; then
	pass "pkcs11-tool signs through TLS from the desktop, and the signature verifies"
else
	fail "pkcs11-tool over TLS"; cat "$W/p11tool.out"
fi
n=$(audit_count "action = 'sign' AND outcome = 'ok' AND actor = 'alice' AND exe LIKE 'device 1 sha256:%from $DESKIP port %; reported: user % host % exe %pkcs11-tool%'")
[ "$n" -ge 1 ] && pass "the sign record names the device (fingerprint, address) and what its module reported" ||
	{ fail "sign record: $n"; audit_count "1" >/dev/null; }
# OpenSSL + libp11 and GnuTLS's p11tool, as dave on the Finance Seal (EC):
# the account named by SEALGATE_USER over the file's, as the environment
# overrides sealgate.conf.
FIN_URI="pkcs11:token=Integration%20Co.;object=Finance%20Seal"
desk env SEALGATE_USER=dave pkcs11-tool --module "$MODULE" --read-object --type cert --label "Finance Seal" \
	-o "$W/finance.der" >/dev/null 2>&1 || true
openssl x509 -inform DER -in "$W/finance.der" -pubkey -noout >"$W/finance.pub" 2>/dev/null || true
ENGINE=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
if [ -f "$ENGINE" ]; then
	cat >"$W/openssl.cnf" <<EOC
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $ENGINE
MODULE_PATH = $MODULE
init = 0
EOC
	if desk env SEALGATE_USER=dave OPENSSL_CONF="$W/openssl.cnf" openssl dgst -sha256 -engine pkcs11 \
		-keyform engine -sign "$FIN_URI;type=private" -passin pass:dave-password \
		-out "$W/doc.sig2" "$W/doc.txt" >"$W/libp11.out" 2>&1 &&
	   openssl dgst -sha256 -verify "$W/finance.pub" -signature "$W/doc.sig2" "$W/doc.txt" >/dev/null; then
		pass "OpenSSL + libp11 signs through TLS from the desktop (dave, Finance Seal)"
	else
		fail "openssl+libp11 over TLS"; cat "$W/libp11.out"
	fi
else
	echo "# skipped: OpenSSL + libp11 (no $ENGINE)"
fi
if command -v p11tool >/dev/null; then
	if desk env SEALGATE_USER=dave GNUTLS_PIN=dave-password p11tool --provider "$MODULE" --login \
		--test-sign "$FIN_URI;type=private" >"$W/p11tool2.out" 2>&1 &&
	   grep -q "Signing using ECDSA-SHA256... ok" "$W/p11tool2.out"; then
		pass "p11tool signs through TLS from the desktop"
	else
		fail "p11tool over TLS"; cat "$W/p11tool2.out"
	fi
else
	echo "# skipped: p11tool (not installed)"
fi
n=$(audit_count "action = 'sign' AND outcome = 'ok' AND actor = 'dave' AND exe LIKE 'device 1 %exe %openssl%'")
[ "$n" -ge 1 ] && pass "dave's record names the device and openssl as reported" || fail "dave's sign record: $n"

# --- one connection, resumed; a cut; fork
if desk env SG_PIN=alice-password SG_IDLE=4 "$P11CLIENT" "$MODULE" resume >"$W/resume.out" 2>&1 &&
   [ "$(audit_count "action = 'sign' AND outcome = 'ok' AND exe LIKE 'device 1 %(resumed)%p11client%'")" -ge 1 ]; then
	pass "after the gateway closed an idle connection the next one resumes the TLS session"
else
	fail "resumption"; cat "$W/resume.out"
fi
rm -f "$W/sync".*
desk env SG_PIN=alice-password SG_SYNC="$W/sync" SEALGATE_TIMEOUT=3 "$P11CLIENT" "$MODULE" cut \
	>"$W/cut.out" 2>&1 &
cut_pid=$!
for _ in $(seq 100); do [ -e "$W/sync.ready" ] && break; sleep 0.1; done
if [ -n "$NS_GW" ]; then
	ip -n "$NS_DESK" link set "${VETH}d" down
	how="the network cut (veth down)"
else
	fixture stop
	how="the gateway gone"
fi
touch "$W/sync.cut"
for _ in $(seq 200); do [ -e "$W/sync.removed" ] && break; sleep 0.1; done
if [ -n "$NS_GW" ]; then ip -n "$NS_DESK" link set "${VETH}d" up; else fixture start >/dev/null 2>&1; fi
touch "$W/sync.back"
if wait "$cut_pid" && grep -q "after-cut 0x32$" "$W/cut.out" && grep -q "reconnected 0x0$" "$W/cut.out"; then
	pass "$how: CKR_DEVICE_REMOVED, and the next session signs again"
else
	fail "cut"; cat "$W/cut.out"
fi
desk env SG_PIN=alice-password "$P11CLIENT" "$MODULE" fork >"$W/fork.out" 2>&1 &&
	grep -q "child sign 0x0" "$W/fork.out" && grep -q "parent sign after the child 0x0" "$W/fork.out" &&
	pass "a forked child makes its own TLS connection; the parent's still signs" ||
	{ fail "fork"; cat "$W/fork.out"; }

# --- refused
P=(in_desk $PROBE)
out=$("${P[@]}" hello "$GWIP" "$PORT" "$PKI/site-ca.pem")
case $out in refused:*) pass "no client certificate: refused at the handshake ($out)" ;;
	*) fail "no client certificate: $out" ;; esac
out=$("${P[@]}" hello "$GWIP" "$PORT" "$PKI/site-ca.pem" "$PKI/intruder.pem" "$PKI/intruder.key")
case $out in refused:*) pass "a certificate of another CA: refused ($out)" ;;
	*) fail "another CA: $out" ;; esac
out=$("${P[@]}" hello "$GWIP" "$PORT" "$PKI/site-ca.pem" "$CONF/device.pem" "$CONF/device.key" --tls12)
case $out in refused:*) pass "TLS 1.2 with a good device certificate: refused ($out)" ;;
	*) fail "TLS 1.2: $out" ;; esac
out=$("${P[@]}" hello "$GWIP" "$PORT" "$PKI/site-ca.pem" "$CONF/device.pem" "$CONF/device.key")
[ "$out" = "reply ok" ] && pass "the same probe with TLS 1.3 and the device certificate is answered" ||
	fail "probe control: $out"
out=$("${P[@]}" hello "$GWIP" "$EPORT" "$PKI/site-ca.pem")
case $out in "reply error enroll_only:"*) pass "the enrollment endpoint serves nothing but enrollment" ;;
	*) fail "enrollment endpoint: $out" ;; esac
out=$("${P[@]}" hold "$GWIP" "$PORT" "$PKI/site-ca.pem" "$CONF/device.pem" "$CONF/device.key" 6)
[ "$out" = "ok 4 busy 2 other 0" ] && pass "a device holds at most its 4 connections (tls_connections_per_device)" ||
	fail "per-device cap: $out"

# Wrong server name, and an impostor gateway with the right name but not
# from the site CA: the module hangs up before any request.
sed "s|^gateway = .*|gateway = $URL\nserver_name = wrong.test|" "$CONF/sealgate.conf" >"$W/wrongname.conf"
out=$(desk env SEALGATE_CONF="$W/wrongname.conf" SEALGATE_DEBUG=1 SG_PIN=alice-password \
	"$P11CLIENT" "$MODULE" sign 2>&1) && fail "a wrong server name was accepted" ||
	{ printf '%s\n' "$out" | grep -q "not the site's: hostname mismatch" &&
	  pass "a server certificate without the configured name is refused" || { fail "wrong name"; printf '%s\n' "$out"; }; }
# (started directly, not through a function, so $! is the probe itself)
# shellcheck disable=SC2086
"${IN_GW[@]}" $PROBE impostor 9443 "$PKI/impostor.pem" "$PKI/impostor.key" "$W/impostor.bytes" &
imp_pid=$!
BG_PIDS+=("$imp_pid")
for _ in $(seq 50); do [ -e "$W/impostor.bytes" ] && break; sleep 0.1; done
sed "s|^gateway = .*|gateway = tls://$GWIP:9443|" "$CONF/sealgate.conf" >"$W/impostor.conf"
out=$(desk env SEALGATE_CONF="$W/impostor.conf" SEALGATE_DEBUG=1 SG_PIN=alice-password \
	"$P11CLIENT" "$MODULE" sign 2>&1) || true
sleep 0.5
kill "$imp_pid" 2>/dev/null || true
if printf '%s\n' "$out" | grep -q "not the site's" && ! printf '%s\n' "$out" | grep -q "^sign 0x0" &&
   [ "$(cat "$W/impostor.bytes")" = 0 ]; then
	pass "an impostor gateway (right name, not the site CA's) gets no request and no PIN"
else
	fail "impostor ($(cat "$W/impostor.bytes") bytes)"; printf '%s\n' "$out"
fi

# Slowloris: a handshake trickled, and a frame trickled after a good one,
# are cut at the frame deadline (2 s) while the device signs meanwhile.
"${P[@]}" slow-handshake "$GWIP" "$PORT" >"$W/slow1.out" &
slow_pid=$!
desk env SG_PIN=alice-password "$P11CLIENT" "$MODULE" sign >"$W/during.out" 2>&1 &&
	pass "a signature goes through while a slowloris trickles" || { fail "sign during slowloris"; cat "$W/during.out"; }
wait "$slow_pid" || true
out=$(cat "$W/slow1.out")
case $out in "closed after "*) pass "a trickled handshake is cut ($out of a 100 s trickle)" ;;
	*) fail "slow handshake: $out" ;; esac
out=$("${P[@]}" slow-frame "$GWIP" "$PORT" "$PKI/site-ca.pem" "$CONF/device.pem" "$CONF/device.key")
case $out in "closed after "*) pass "a frame trickled over TLS is cut ($out of a 60 s trickle)" ;;
	*) fail "slow frame: $out" ;; esac
grep -q "TLS from .* refused: handshake: .*" "$W/sealgated.log" &&
	pass "refused handshakes are logged with the reason" || fail "no refusal in the log"

# --- revoked: refused at the handshake, and the desktop can read why
out=$(admin revoke 1 2>&1) && pass "frank revokes device 1" || { fail "revoke"; printf '%s\n' "$out"; }
out=$(desk env SG_PIN=alice-password "$P11CLIENT" "$MODULE" sign 2>&1) &&
	fail "a revoked device signed" || pass "a revoked device cannot sign"
rc=0
out=$(desk "$ctl" status 2>&1) || rc=$?
[ $rc = 3 ] && printf '%s\n' "$out" | grep -q "certificate revoked" &&
	pass "sealctl status on the desktop says the certificate is revoked" ||
	{ fail "status of a revoked device (exit $rc)"; printf '%s\n' "$out"; }
grep -q "refusing a certificate at the handshake: device 1 is revoked" "$W/sealgated.log" &&
	[ "$(audit_count "action = 'device_revoke' AND outcome = 'ok' AND actor = 'frank'")" = 1 ] &&
	pass "the revocation is recorded and the gateway logs the refusal" || fail "revocation record/log"
finish
