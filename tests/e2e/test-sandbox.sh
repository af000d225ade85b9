#!/usr/bin/env bash
# e2e: tools/sandbox itself. `up` twice reuses everything (same keys,
# certificates, PINs, passwords and the same running gateway); `down`
# stops the gateway (the token disappears for clients, as a pulled card
# would); `up` again restarts it and signing works; the secrets are 0600.
# With python3-aiosmtpd, up starts the site's mail sink: bob's notice of
# the application is there (`sandbox mail`), down stops the sink.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
e2e_setup
S=$E2E_SITE
cd "$W"

# What a second `up` must not change, read from the backend token itself.
backend_cert_digest() { # CKA_ID
	SOFTHSM2_CONF="$S/softhsm2.conf" pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so \
		--token-label sealgate-demo --read-object --type cert --id "$1" -o "$W/cert-$1.der" >/dev/null 2>&1 &&
		openssl dgst -sha256 -r "$W/cert-$1.der" | cut -d' ' -f1
}
state() {
	local id
	for id in 01 02 03 04; do printf 'cert %s %s\n' "$id" "$(backend_cert_digest "$id")"; done
	printf 'pin %s\n' "$(openssl dgst -sha256 -r "$S/token.pin" | cut -d' ' -f1)"
	printf 'credentials %s\n' "$(openssl dgst -sha256 -r "$S/credentials" | cut -d' ' -f1)"
	printf 'ca %s\n' "$(openssl dgst -sha256 -r "$S/ca/ca.pem" | cut -d' ' -f1)"
	# The audit key has no certificate; its public key stands for it.
	SOFTHSM2_CONF="$S/softhsm2.conf" pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so \
		--token-label sealgate-demo --read-object --type pubkey --id a0 2>/dev/null |
		openssl dgst -sha256 -r | sed 's/ .*//; s/^/audit-key /'
}
sign_and_verify() { # what
	local sig=$W/sig.$RANDOM
	local id
	id=$(SEALGATE_USER=alice seal_id "Contract Seal")
	run env SEALGATE_USER=alice pkcs11-tool --module "$SEALGATE_MODULE" --login --pin "$(password_of alice)" \
		--sign -m SHA256-RSA-PKCS --id "${id:-01}" -i doc.txt -o "$sig"
	expect_ok "$1: alice signs with the Contract Seal"
	run openssl dgst -sha256 -verify contract.pub -signature "$sig" doc.txt
	expect_out "Verified OK" "$1: the signature verifies"
}

printf 'Board resolution 2024-03\n' >doc.txt
check "alice's application for the Contract Seal is authorized" \
	authorize alice contract 10 bob --type contract --amount 50000 --scope sales
openssl x509 -in "$S/certs/contract.pem" -pubkey -noout >contract.pub

# --- the notice of that application, in the site's mail sink
mail=0
if /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null; then
	mail=1
	link=$(/usr/bin/python3 "$SEALGATE_SOURCE/tests/lib/smtpsink.py" wait "$S/smtp" bob@acme.example 60) || link=
	check "bob's notice links to the approval page of the sandbox's console" \
		grep -qE '^http://127\.0\.0\.1:[0-9]+/#/applications/[0-9]+$' <<<"$link"
	run "$SANDBOX" mail "$S" bob
	expect_ok "sandbox mail DIR bob"
	expect_out "waits for your approval" "bob reads that an application waits for him"
	expect_out "Alice Chen (sales) applies to use the Contract Seal." "who applies for which seal"
	expect_out "$link" "and the link"
	/usr/bin/python3 "$SEALGATE_SOURCE/tests/lib/smtpsink.py" wait "$S/smtp" alice@acme.example 60 >/dev/null ||
		fail "alice's notice that her application is authorized did not come"
	run "$SANDBOX" mail "$S"
	expect_out "alice@acme.example" "the list of all mail has alice's notice"
	expect_out "is authorized" "that her application is authorized"
	check "the sink keeps the mail in the site's directory" test -s "$S/smtp/mail/1.eml"
else
	log "note: python3-aiosmtpd not installed: the sandbox starts no mail sink"
fi

# --- what the first `up` made
for f in token.pin token-so.pin credentials ca/ca.key; do
	check "$f is mode 0600" test "$(stat -c %a "$S/$f")" = 600
done
check "the seal certificates chain to the demo CA" \
	openssl verify -CAfile "$SEALGATE_CA" "$S/certs/contract.pem" "$S/certs/official.pem" \
	"$S/certs/finance.pem" "$S/certs/invoice.pem"
check "the Contract Seal certificate certifies the token's key" \
	test "$(backend_cert_digest 01)" = "$(openssl x509 -in "$S/certs/contract.pem" -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1)"
run env SOFTHSM2_CONF="$S/softhsm2.conf" pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so \
	--token-label sealgate-demo --login --pin "$(cat "$S/token.pin")" --list-objects --type privkey
expect_out "Access:     sensitive, always sensitive, never extractable, local" "the seal keys were generated on the token and cannot leave it"
for label in contract-seal official-seal finance-seal invoice-seal sealgate-audit; do
	expect_out "label:      $label" "key $label is on the token"
done
for var in SEALGATE_MODULE SEALGATE_SOCKET SEALGATE_TOKEN_LABEL SEALGATE_CA SEALGATE_PASS_ALICE SEALGATE_PASS_SVC_BILLING; do
	check "up exports $var" test -n "${!var:-}"
done
run "$SANDBOX" --build "$SEALGATE_BUILD" env "$S"
expect_ok "sandbox env"
expect_out "export SEALGATE_PASS_DAVE=" "env prints the demo passwords"
expect_no_out "SOFTHSM2_CONF" "the backend's SOFTHSM2_CONF is never exported"
sign_and_verify "first up"

before=$(state)
printf '%s\n' "$before" | sed 's/^/    /' >&2
check "the state read from the token is complete" \
	test "$(grep -cE '^(cert 0[1-4]|pin|credentials|ca|audit-key) [0-9a-f]{64}$' <<<"$before")" = 8
pid1=$(cat "$S/sealgated.pid")

# --- `up` a second time: nothing regenerated, the same gateway
run "$SANDBOX" --build "$SEALGATE_BUILD" up "$S"
expect_ok "a second up on the same directory"
expect_out "export SEALGATE_MODULE=" "the second up prints the exports again"
check "the second up keeps keys, certificates, PINs and passwords" test "$(state)" = "$before"
check "the second up keeps the running gateway" test "$(cat "$S/sealgated.pid")" = "$pid1"
sign_and_verify "after the second up"

# --- `down`: the gateway stops, the token is gone for clients
run "$SANDBOX" down "$S"
expect_ok "down"
check "the gateway process has exited" bash -c "! kill -0 $pid1 2>/dev/null"
check "the pid file is removed" test ! -e "$S/sealgated.pid"
if [ "$mail" = 1 ]; then
	check "down stops the mail sink" test ! -e "$S/smtp/sink.pid"
	check "no process listens on the sink's port any more" \
		bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$(cat "$S/smtp/port")) 2>/dev/null"
fi
if [ -x "$SEALGATE_BUILD/tools/sealctl" ]; then
	run "$SEALGATE_BUILD/tools/sealctl" --socket "$S/sealgated.sock" status
	expect_fail "sealctl status fails while the gateway is down"
fi
run env SEALGATE_USER=alice pkcs11-tool --module "$SEALGATE_MODULE" -L
if [ "$RC" -ge 128 ]; then fail "pkcs11-tool -L crashed with the gateway down"; else pass "pkcs11-tool -L survives a stopped gateway"; fi
expect_no_out "token label        : $SEALGATE_TOKEN_LABEL" "no token is present while the gateway is down"
run "$SANDBOX" down "$S"
expect_ok "down on a stopped site is harmless"

# --- `up` again: a new gateway, same keys, signing works
run "$SANDBOX" --build "$SEALGATE_BUILD" up "$S"
expect_ok "up after down"
pid2=$(cat "$S/sealgated.pid")
check "a new gateway process runs" test "$pid2" != "$pid1"
check "up after down keeps keys, certificates, PINs and passwords" test "$(state)" = "$before"
sign_and_verify "after down and up"

finish
