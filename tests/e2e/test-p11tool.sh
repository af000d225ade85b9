#!/usr/bin/env bash
# e2e: GnuTLS's p11tool through sealgate-pkcs11.so and a real sealgated:
# certificate listing without login, the PKCS#11 URLs of the seals, and
# --test-sign (sign, then verify against the key's public parameters and
# the token's public key) on an RSA and an EC seal.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
need p11tool
e2e_setup

TOKEN_URI="pkcs11:token=$(uri_enc "$TOKEN_LABEL")"
CONTRACT_KEY="$TOKEN_URI;object=$(uri_enc "Contract Seal");type=private"
FINANCE_KEY="$TOKEN_URI;object=$(uri_enc "Finance Seal");type=private"
pt() { p11tool --provider "$SEALGATE_MODULE" "$@"; }

# p11tool then looks for a public key object with the same URL; without
# one it says so and stops with exit 0. When there is one it must verify.
token_pubkey_check() {
	if grep -qF "Verifying against public key in the token" <<<"$OUT"; then
		expect_out "Verifying against public key in the token... ok" "the signature verifies against the token's public key"
	else
		log "note: no public key object on the token for p11tool's third check"
	fi
}

export SEALGATE_USER=alice

run pt --list-tokens
expect_ok "p11tool --list-tokens"
expect_out "Label: $TOKEN_LABEL" "the token is listed with the company's label"

run pt --list-all-certs "$TOKEN_URI"
expect_ok "p11tool --list-all-certs"
expect_out "Label: Contract Seal" "the Contract Seal certificate is listed"
expect_out "object=Contract%20Seal;type=cert" "its URL names the object by the seal's label"

run pt --list-all "$TOKEN_URI"
expect_ok "p11tool --list-all without login"
expect_no_out "type=private" "no private key without login"

export GNUTLS_PIN
GNUTLS_PIN=$(password_of alice)
run pt --login --list-privkeys "$TOKEN_URI"
expect_ok "p11tool --login --list-privkeys"
expect_out "$(uri_enc "Contract Seal");type=private" "the Contract Seal private key is listed after login"

# The approval workflow first: bob (head of Sales) approves alice's use of
# the Contract Seal, erin (head of Finance) dave's use of the Finance Seal.
check "alice's application for the Contract Seal is authorized" \
	authorize alice contract 5 bob --type contract --amount 50000 --scope sales
check "dave's application for the Finance Seal is authorized" \
	authorize dave finance 2 erin --type payment

run pt --login --test-sign "$CONTRACT_KEY"
expect_ok "p11tool --test-sign on the Contract Seal (alice)"
expect_out "Signing using RSA-SHA256... ok" "GnuTLS signed with the Contract Seal"
expect_out "Verifying against private key parameters... ok" "the RSA signature verifies against the key's parameters"
token_pubkey_check

GNUTLS_PIN=$(password_of dave)
run env SEALGATE_USER=dave p11tool --provider "$SEALGATE_MODULE" --login --test-sign "$FINANCE_KEY"
expect_ok "p11tool --test-sign on the Finance Seal (dave)"
expect_out "Signing using ECDSA-SHA256... ok" "GnuTLS signed with the Finance Seal"
expect_out "Verifying against private key parameters... ok" "the ECDSA signature verifies against the key's parameters"
token_pubkey_check

GNUTLS_PIN=wrong-password
run pt --login --test-sign "$CONTRACT_KEY"
expect_fail "p11tool --test-sign with a wrong password fails"

finish
