#!/usr/bin/env bash
# tls: the device CA's key on the backend token (tls_device_ca_token_label,
# docs/deployment.md). The gateway generates the key pair there at its first
# start (sensitive, never extractable), makes the CA certificate beside it
# (tls_device_ca) signed through the token, issues a device certificate
# through the token that verifies against that CA, and the device signs
# over TLS. Restarted, it keeps the same key and certificate. Refused at
# start: a file key and a token key at once, and a CA certificate that is
# not the token key's.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE, SEALGATE_MODULE, SG_P11CLIENT
set -euo pipefail
. "$(dirname "$0")/lib.sh" tls-ca-token
tls_up
URL=tls://$GWIP:$PORT
LABEL="sealgate device CA"
CA=$W/device-ca-token.pem
P11=(pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --token-label sg-it)
tok() { SOFTHSM2_CONF=$W/softhsm2.conf "${P11[@]}" "$@"; }

# From the file key to the token: the file key's line goes, the label comes,
# the CA certificate is a new file the gateway makes.
fixture stop
sed -i -e '/^tls_device_ca_key:/d' -e "s|^tls_device_ca: .*|tls_device_ca: $CA|" "$W/sealgated.yaml"
printf 'tls_device_ca_token_label: "%s"\n' "$LABEL" >>"$W/sealgated.yaml"
: >"$W/sealgated.log"
fixture start >/dev/null 2>&1 || { fail "start with the CA key on the token"; tail -5 "$W/sealgated.log"; }
grep -q "device CA key '$LABEL' generated on the backend token" "$W/sealgated.log" && [ -s "$CA" ] &&
	pass "first start: the CA key generated on the token, its certificate made at tls_device_ca" ||
	{ fail "first start"; tail -5 "$W/sealgated.log"; }

objs=$(tok --login --pin 1234 --list-objects --type privkey 2>/dev/null)
entry=$(printf '%s\n' "$objs" | awk -v l="$LABEL" '
	/^Private Key Object/ { keep = 0 }
	$0 ~ "label: *" l "$" { keep = 1 }
	keep')
if printf '%s\n' "$entry" | grep -q "Access: *sensitive, always sensitive, never extractable"; then
	pass "the CA's private key is on the token, sensitive and never extractable"
else
	fail "CA private key on the token"; printf '%s\n' "$objs"
fi
printf '%s\n' "$entry" | grep -q "Usage: *sign$" && pass "it signs and does nothing else" ||
	{ fail "CA key usage"; printf '%s\n' "$entry"; }
# (pkcs11-tool prints "extractable" for CKA_EXTRACTABLE, "never extractable"
# for CKA_NEVER_EXTRACTABLE: a key never extractable since it was made.)
access=$(printf '%s\n' "$entry" | sed -n 's/^ *Access: *//p')
printf '%s\n' "$access" | grep -qE '(^|, )extractable' &&
	fail "the CA's private key can be extracted ($access)" ||
	pass "CKA_EXTRACTABLE is false ($access)"
id=$(printf '%s\n' "$entry" | sed -n 's/^ *ID: *//p')
seal_ids=$(printf '%s\n' "$objs" | sed -n 's/^ *ID: *//p' | grep -vx "$id" || true)
[ -n "$id" ] && ! printf '%s\n' "$seal_ids" | grep -qx "$id" &&
	pass "it has a CKA_ID of its own ($id)" || fail "CA key id $id among $seal_ids"
tok --read-object --type pubkey --label "$LABEL" -o "$W/ca-pub.der" >/dev/null 2>&1 || true
openssl pkey -pubin -inform DER -in "$W/ca-pub.der" -outform PEM 2>/dev/null >"$W/ca-pub-token.pem" || true
openssl x509 -in "$CA" -pubkey -noout >"$W/ca-pub-cert.pem" 2>/dev/null || true
[ -s "$W/ca-pub-token.pem" ] && cmp -s "$W/ca-pub-token.pem" "$W/ca-pub-cert.pem" &&
	openssl verify -CAfile "$CA" "$CA" >/dev/null 2>&1 &&
	pass "the CA certificate carries the token key and its self-signature (made on the token) verifies" ||
	fail "CA certificate and token key"

# A device enrolls; its certificate, signed through the token, verifies.
desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person alice >/dev/null 2>&1 || true
admin approve 1 >"$W/approve.out" 2>&1 || { fail "approve"; cat "$W/approve.out"; tail -3 "$W/sealgated.log"; }
desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person alice >/dev/null 2>&1 || true
DEV=$DESK/config/sealgate/device.pem
out=$(openssl verify -CAfile "$CA" -purpose sslclient "$DEV" 2>&1) &&
	pass "the device certificate issued through the token verifies against the CA ($out)" ||
	{ fail "device certificate"; printf '%s\n' "$out"; }
openssl verify -CAfile "$PKI/device-ca.pem" "$DEV" >/dev/null 2>&1 &&
	fail "the device certificate verifies against the old file CA" ||
	pass "and not against the old file CA"
desk env SG_PIN=alice-password "$P11CLIENT" "$MODULE" sign >"$W/sign.out" 2>&1 &&
	pass "the device signs over TLS" || { fail "sign"; cat "$W/sign.out"; }

# Restarted: the same key, the same certificate, nothing generated again.
sum=$(sha256sum <"$CA")
fixture stop
: >"$W/sealgated.log"
fixture start >/dev/null 2>&1 || { fail "restart"; tail -5 "$W/sealgated.log"; }
n=$(tok --login --pin 1234 --list-objects --type privkey 2>/dev/null | grep -c "label: *$LABEL$" || true)
[ "$sum" = "$(sha256sum <"$CA")" ] && [ "$n" = 1 ] &&
	! grep -q "generated on the backend token" "$W/sealgated.log" &&
	pass "restarted: the same CA key and certificate" || fail "restart: $n keys"
desk env SG_PIN=alice-password "$P11CLIENT" "$MODULE" sign >"$W/sign2.out" 2>&1 &&
	pass "the device signs after the restart" || { fail "sign after restart"; cat "$W/sign2.out"; }

# Refused at start, with a reason.
refused() { # WHAT EXPECTED-LOG-TEXT
	: >"$W/sealgated.log"
	if fixture start >/dev/null 2>&1; then
		fail "$1: the gateway started"
		fixture stop
	else
		grep -qF "$2" "$W/sealgated.log" && pass "$1 keeps the gateway from starting, and the log says why" ||
			{ fail "$1: log"; tail -3 "$W/sealgated.log"; }
	fi
}
fixture stop
cp "$W/sealgated.yaml" "$W/sealgated.yaml.ok"
printf 'tls_device_ca_key: %s\n' "$PKI/device-ca.key" >>"$W/sealgated.yaml"
refused "a file key and a token key at once" "the device CA's key is on the token or in a file, not both"
cp "$W/sealgated.yaml.ok" "$W/sealgated.yaml"
sed -i "s|^tls_device_ca: .*|tls_device_ca: $PKI/device-ca.pem|" "$W/sealgated.yaml"
refused "a CA certificate of another key" "is not the certificate of the key '$LABEL' on the backend token"
cp "$W/sealgated.yaml.ok" "$W/sealgated.yaml"
finish
