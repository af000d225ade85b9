#!/usr/bin/env bash
# e2e: OpenSSL 3 with the libp11 engine through sealgate-pkcs11.so and a
# real sealgated: a CMS (S/MIME) signature with the Contract Seal that
# verifies against the demo CA and fails on tampered content, the PIN
# given by -passin and by pin-value= in the key URI, and an ECDSA signature
# with the Finance Seal by `openssl dgst`.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
ENGINE=/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
need "$ENGINE"
e2e_setup
cd "$W"

cat >openssl.cnf <<EOF
# OpenSSL with the libp11 engine loading sealgate (docs/clients.md).
openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = $ENGINE
MODULE_PATH = $SEALGATE_MODULE
init = 0
EOF
export OPENSSL_CONF=$W/openssl.cnf

TOKEN_URI="pkcs11:token=$(uri_enc "$TOKEN_LABEL")"
CONTRACT_KEY="$TOKEN_URI;object=$(uri_enc "Contract Seal");type=private"
FINANCE_KEY="$TOKEN_URI;object=$(uri_enc "Finance Seal");type=private"

export SEALGATE_USER=alice
export SEALGATE_PIN_ALICE
SEALGATE_PIN_ALICE=$(password_of alice)

# The signer certificate, read from the token through the module.
run pkcs11-tool --module "$SEALGATE_MODULE" --read-object --type cert --label "Contract Seal" -o contract.der
expect_ok "read the Contract Seal certificate"
openssl x509 -inform DER -in contract.der -out contract.pem

printf 'Sales contract No. 2024-117\nBuyer: Globex Ltd.\nAmount: 1000 CNY\n' >doc.txt

# The approval workflow first: bob (head of Sales) approves alice's use of
# the Contract Seal, erin (head of Finance) dave's use of the Finance Seal.
check "alice's application for the Contract Seal is authorized" \
	authorize alice contract 5 bob --type contract --amount 1000 --scope sales
check "dave's application for the Finance Seal is authorized" \
	authorize dave finance 2 erin --type payment

# --- CMS signature, PIN through -passin
run openssl cms -sign -engine pkcs11 -keyform engine -inkey "$CONTRACT_KEY" \
	-passin env:SEALGATE_PIN_ALICE -signer contract.pem \
	-in doc.txt -out doc.p7s -outform DER -binary -nodetach
expect_ok "openssl cms -sign with the Contract Seal (PIN by -passin)"
check "a CMS signature was written" test -s doc.p7s

run openssl cms -verify -CAfile "$SEALGATE_CA" -inform DER -in doc.p7s -binary -out verified.txt
expect_ok "openssl cms -verify against the demo CA"
expect_out "CMS Verification successful" "the CMS signature is valid"
check "the verified content is the document" cmp -s verified.txt doc.txt

run openssl cms -cmsout -print -inform DER -in doc.p7s
expect_out "CN=Acme Trading Co. Contract Seal" "the signer is the Contract Seal"

# Same length, so the DER stays well-formed and only the content changes.
cp doc.p7s tampered.p7s
perl -0777 -pi -e 's/1000 CNY/9000 CNY/' tampered.p7s
check "the tampered copy differs" bash -c '! cmp -s doc.p7s tampered.p7s'
run openssl cms -verify -CAfile "$SEALGATE_CA" -inform DER -in tampered.p7s -binary -out /dev/null
expect_fail "the tampered CMS does not verify"
expect_out "Verification failure" "OpenSSL reports the verification failure"

# --- detached signature, PIN in the key URI (pin-value=)
run openssl cms -sign -engine pkcs11 -keyform engine \
	-inkey "$CONTRACT_KEY;pin-value=$(uri_enc "$SEALGATE_PIN_ALICE")" -signer contract.pem \
	-in doc.txt -out doc-detached.p7s -outform DER -binary
expect_ok "openssl cms -sign, detached, PIN by pin-value="
run openssl cms -verify -CAfile "$SEALGATE_CA" -inform DER -in doc-detached.p7s \
	-content doc.txt -binary -out /dev/null
expect_ok "the detached signature verifies over the document"

# --- wrong PIN
run env SEALGATE_PIN_ALICE=wrong-password openssl cms -sign -engine pkcs11 -keyform engine \
	-inkey "$CONTRACT_KEY" -passin env:SEALGATE_PIN_ALICE -signer contract.pem \
	-in doc.txt -out bad.p7s -outform DER -binary -nodetach
expect_fail "openssl cms -sign with a wrong password fails (and does not crash at exit)"
expect_out "PIN incorrect" "libp11 reports the wrong PIN"

# --- ECDSA with the Finance Seal, dave
export SEALGATE_USER=dave SEALGATE_PIN_DAVE
SEALGATE_PIN_DAVE=$(password_of dave)
run pkcs11-tool --module "$SEALGATE_MODULE" --read-object --type cert --label "Finance Seal" -o finance.der
expect_ok "read the Finance Seal certificate as dave"
openssl x509 -inform DER -in finance.der -pubkey -noout >finance.pub
run openssl dgst -sha256 -engine pkcs11 -keyform engine -sign "$FINANCE_KEY" \
	-passin env:SEALGATE_PIN_DAVE -out doc.ecdsa doc.txt
expect_ok "openssl dgst -sign with the Finance Seal (dave)"
run openssl dgst -sha256 -verify finance.pub -signature doc.ecdsa doc.txt
expect_out "Verified OK" "the ECDSA signature verifies against the Finance Seal certificate"

# One record per signature: attached and detached CMS (alice), dgst (dave).
expect_audit 2 "action='sign' AND outcome='ok' AND actor='alice' AND seal='contract' AND exe LIKE '%/openssl'" \
	"the gateway recorded alice's two CMS signatures"
expect_audit 1 "action='sign' AND outcome='ok' AND actor='dave' AND seal='finance' AND exe LIKE '%/openssl'" \
	"the gateway recorded dave's ECDSA signature"

finish
