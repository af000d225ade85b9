#!/usr/bin/env bash
# e2e: OpenSC's pkcs11-tool through sealgate-pkcs11.so and a real sealgated.
# Token and object listing before and after login, hash-and-sign
# (SHA256-RSA-PKCS), raw RSA-PKCS over a DigestInfo, ECDSA over a hash,
# each signature verified with OpenSSL against the seal's certificate;
# wrong password.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
e2e_setup

ALICE=$(password_of alice)
DAVE=$(password_of dave)
cd "$W"
printf 'Sales contract No. 2024-117\nAmount: 1000 CNY\n' >doc.txt
openssl dgst -sha256 -binary doc.txt >doc.sha256
{ unhex "$SHA256_DI_PREFIX"; cat doc.sha256; } >doc.di

export SEALGATE_USER=alice

# --- slots and token
run p11 -L
expect_ok "pkcs11-tool -L"
expect_out "token label        : $TOKEN_LABEL" "-L shows the token label"
expect_out "token manufacturer : sealgate" "-L shows sealgate as manufacturer"

# --- objects before login: certificates, no private keys
run p11 -O
expect_ok "pkcs11-tool -O without login"
expect_out "Certificate Object" "certificates are listed before login"
expect_out "label:      Contract Seal" "alice sees the Contract Seal"
expect_no_out "Private Key Object" "no private key is listed before login"
expect_no_out "Invoice Seal" "alice does not see the Invoice Seal (not one of its users)"

# --- objects after login: the private keys appear
run p11 --login --pin "$ALICE" -O
expect_ok "pkcs11-tool -O with login"
expect_out "Private Key Object" "private keys are listed after login"
if grep -A3 '^Private Key Object' <<<"$OUT" | grep -qF 'label:      Contract Seal'; then
	pass "the Contract Seal private key is listed"
else
	fail "no Contract Seal private key after login"
fi

# --- the seal certificate, read through the module
run p11 --read-object --type cert --label "Contract Seal" -o contract.der
expect_ok "read the Contract Seal certificate"
openssl x509 -inform DER -in contract.der -out contract.pem
openssl x509 -in contract.pem -pubkey -noout >contract.pub
run openssl verify -CAfile "$SEALGATE_CA" contract.pem
expect_out "contract.pem: OK" "the Contract Seal certificate chains to the demo CA"
run openssl x509 -in contract.pem -noout -subject
expect_out "CN = Acme Trading Co. Contract Seal" "certificate subject is the Contract Seal"

CONTRACT_ID=$(seal_id "Contract Seal")
FINANCE_ID=$(SEALGATE_USER=dave seal_id "Finance Seal")
check "the Contract Seal has a CKA_ID ($CONTRACT_ID)" test -n "$CONTRACT_ID"
check "the Finance Seal has a CKA_ID ($FINANCE_ID)" test -n "$FINANCE_ID"

# --- without an authorized application the policy refuses the seal
run p11 --login --pin "$ALICE" --sign -m SHA256-RSA-PKCS --id "$CONTRACT_ID" -i doc.txt -o sig-none.bin
expect_fail "alice cannot use the Contract Seal before an approved application"
expect_out "0x200" "the refusal is CKR_FUNCTION_REJECTED (0x200)"
check "no signature was released" test ! -s sig-none.bin
run sealctl_as alice why
expect_ok "sealctl why explains the refusal"
check "sealctl why says something" test -n "$OUT"

# --- the approval workflow: alice applies, bob (head of Sales) approves
if APP=$(authorize alice contract 20 bob --type contract --amount 50000 --scope sales); then
	pass "alice's application #$APP for the Contract Seal is authorized"
else
	fail "alice's application for the Contract Seal was not authorized"
fi
if DAVE_APP=$(authorize dave finance 2 erin --type payment); then
	pass "dave's application #$DAVE_APP for the Finance Seal is authorized"
else
	fail "dave's application for the Finance Seal was not authorized"
fi

# --- hash-and-sign: the module hashes, the gateway signs the DigestInfo
run p11 --login --pin "$ALICE" --sign -m SHA256-RSA-PKCS --id "$CONTRACT_ID" \
	-i doc.txt -o sig-sha256.bin
expect_ok "SHA256-RSA-PKCS signature with alice on the Contract Seal"
run openssl dgst -sha256 -verify contract.pub -signature sig-sha256.bin doc.txt
expect_out "Verified OK" "SHA256-RSA-PKCS signature verifies against the certificate"
DOC_HASH=$(openssl dgst -sha256 -r doc.txt | cut -d' ' -f1 | tr a-f A-F)
expect_audit 1 "action='sign' AND outcome='ok' AND actor='alice' AND seal='contract' AND exe LIKE '%/pkcs11-tool' AND instr(hex(signed_digest), '$DOC_HASH') > 0" \
	"the gateway recorded alice's signature over the document's hash"

# --- raw RSA-PKCS over a DigestInfo: what NSS, libp11 and GnuTLS send
run p11 --login --pin "$ALICE" --sign -m RSA-PKCS --id "$CONTRACT_ID" \
	-i doc.di -o sig-rsapkcs.bin
expect_ok "RSA-PKCS signature over a DigestInfo"
run openssl dgst -sha256 -verify contract.pub -signature sig-rsapkcs.bin doc.txt
expect_out "Verified OK" "RSA-PKCS signature verifies as sha256WithRSAEncryption"
openssl pkeyutl -verifyrecover -pubin -inkey contract.pub -in sig-rsapkcs.bin -out recovered.di 2>/dev/null || true
check "RSA-PKCS signature recovers the exact DigestInfo" cmp -s recovered.di doc.di
check "two signatures used two of alice's 20 approved uses" test "$(uses_left alice "${APP:-0}")" = 18

# --- a tampered document does not verify (the assertions above can fail)
printf 'Sales contract No. 2024-117\nAmount: 9000 CNY\n' >tampered.txt
run openssl dgst -sha256 -verify contract.pub -signature sig-sha256.bin tampered.txt
expect_fail "the signature does not verify over a changed document"

# --- ECDSA over a hash, dave on the Finance Seal
run env SEALGATE_USER=dave pkcs11-tool --module "$SEALGATE_MODULE" \
	--read-object --type cert --label "Finance Seal" -o finance.der
expect_ok "read the Finance Seal certificate as dave"
openssl x509 -inform DER -in finance.der -pubkey -noout >finance.pub
run openssl x509 -inform DER -in finance.der -noout -subject
expect_out "CN = Acme Trading Co. Finance Seal" "the certificate read by label is the Finance Seal's"
run env SEALGATE_USER=dave pkcs11-tool --module "$SEALGATE_MODULE" --login --pin "$DAVE" \
	--sign -m ECDSA --id "$FINANCE_ID" -i doc.sha256 -o sig-ecdsa.der --signature-format openssl
expect_ok "ECDSA signature with dave on the Finance Seal"
run openssl dgst -sha256 -verify finance.pub -signature sig-ecdsa.der doc.txt
expect_out "Verified OK" "ECDSA signature verifies against the Finance Seal certificate"
expect_audit 1 "action='sign' AND outcome='ok' AND actor='dave' AND seal='finance'" \
	"the gateway recorded dave's Finance Seal signature"

# --- alice may not use the Finance Seal
run p11 --login --pin "$ALICE" --sign -m ECDSA --id "$FINANCE_ID" -i doc.sha256 -o sig-denied.bin
expect_fail "alice cannot sign with the Finance Seal"
check "no signature was written for alice" test ! -s sig-denied.bin

# --- wrong password
run p11 --login --pin "not-alices-password" -O
expect_fail "login with a wrong password fails"
expect_out "CKR_PIN_INCORRECT" "a wrong password is reported as CKR_PIN_INCORRECT"
expect_audit 1 "action='login' AND outcome<>'ok' AND actor='alice'" \
	"the gateway recorded the failed login"

# pkcs11-tool's own --test has a script of its own (test-pkcs11-tool-selftest.sh).

finish
