#!/usr/bin/env bash
# e2e: Authenticode with osslsigncode 2.9 through sealgate-pkcs11.so (its
# -pkcs11module, which loads the libp11 engine) and a real sealgated. Alice
# signs a small PE (tests/e2e/mkpe.py) with the Code Signing Seal, whose
# certificate has the codeSigning EKU: `osslsigncode verify -CAfile` the
# demo CA succeeds, a changed byte of the program does not verify, the
# gateway recorded osslsigncode and one use was spent. The same program
# signed with the Contract Seal (a document seal, no codeSigning EKU) is
# signed but fails verification: Authenticode needs the EKU.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
need osslsigncode python3 /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so
# 2.9 checks the signer's codeSigning EKU in verify, which this test shows;
# bookworm's own 2.5 (tools/install-deps --no-backports) is not tested.
ver=$(osslsigncode --version 2>&1 | sed -n '1s/^osslsigncode \([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p')
read -r vmaj vmin <<<"${ver:-0 0}"
if [ "$vmaj" -lt 2 ] || { [ "$vmaj" = 2 ] && [ "$vmin" -lt 9 ]; }; then
	log "SKIP: osslsigncode ${ver// /.} is older than 2.9"
	exit 77
fi
e2e_setup
cd "$W"

TOKEN_URI="pkcs11:token=$(uri_enc "$TOKEN_LABEL")"
CODE_URI="$TOKEN_URI;object=$(uri_enc "Code Signing Seal")"
CONTRACT_URI="$TOKEN_URI;object=$(uri_enc "Contract Seal")"
export SEALGATE_USER=alice
# The PIN from a file (-readpass): -pass would show it in `ps`.
( umask 077; password_of alice >alice.pin; echo >>alice.pin )

python3 "$SEALGATE_SOURCE/tests/e2e/mkpe.py" "Acme order entry 1.0" >order-entry.exe
run osslsigncode verify -CAfile "$SEALGATE_CA" -in order-entry.exe
expect_fail "the unsigned program does not verify"

# The code seal's certificate is the only one with the codeSigning EKU.
run p11 --read-object --type cert --label "Code Signing Seal" -o code.der
expect_ok "read the Code Signing Seal certificate"
run openssl x509 -inform DER -in code.der -noout -ext extendedKeyUsage
expect_out "Code Signing" "the Code Signing Seal certificate has the codeSigning EKU"
run openssl x509 -in "$E2E_SITE/certs/contract.pem" -noout -ext extendedKeyUsage
expect_no_out "Code Signing" "the Contract Seal certificate has no codeSigning EKU"

# --- no application yet: the gateway refuses, no signed program
run osslsigncode sign -pkcs11module "$SEALGATE_MODULE" -pkcs11cert "$CODE_URI;type=cert" \
	-key "$CODE_URI;type=private" -readpass alice.pin -in order-entry.exe -out refused.exe
# osslsigncode exits 255 on any failure (expect_fail reads >= 128 as a signal).
check "osslsigncode cannot sign before an approved application (exit $RC)" test "$RC" != 0
expect_out "reason(512)" "the refusal is CKR_FUNCTION_REJECTED (0x200, libp11: reason(512))"
check "no signed program was written" test ! -s refused.exe

if APP=$(authorize alice code 3 bob --type software); then
	pass "alice's application #$APP for the Code Signing Seal is authorized"
else
	fail "alice's application for the Code Signing Seal was not authorized"
fi

# --- sign with the code seal, verify against the demo CA
run osslsigncode sign -pkcs11module "$SEALGATE_MODULE" -pkcs11cert "$CODE_URI;type=cert" \
	-key "$CODE_URI;type=private" -readpass alice.pin \
	-n "Acme order entry" -i https://acme.example/order-entry \
	-in order-entry.exe -out order-entry-signed.exe
expect_ok "osslsigncode signs the program with the Code Signing Seal"
run osslsigncode verify -CAfile "$SEALGATE_CA" -in order-entry-signed.exe
expect_ok "osslsigncode verify -CAfile demo CA"
expect_out "Signature verification: ok" "the Authenticode signature is valid"
expect_out "Subject: /C=CN/O=Acme Trading Co./OU=Headquarters/CN=Acme Trading Co. Code Signing Seal" \
	"the signer is the Code Signing Seal"
expect_out "Issuer : /C=CN/O=Acme Trading Co./CN=Acme Trading Co. Demo Root CA" "issued by the demo CA"
check "one signature spent one of the three uses" test "$(uses_left alice "${APP:-0}")" = 2
expect_audit 1 "action='sign' AND outcome='ok' AND actor='alice' AND seal='code' AND exe LIKE '%/osslsigncode'" \
	"the gateway recorded the signature by osslsigncode"

# --- one changed byte of the program's code: the digest no longer matches
cp order-entry-signed.exe tampered.exe
printf '\x90' | dd of=tampered.exe bs=1 seek=$((0x200 + 1)) conv=notrunc status=none
check "the tampered copy differs" bash -c '! cmp -s order-entry-signed.exe tampered.exe'
run osslsigncode verify -CAfile "$SEALGATE_CA" -in tampered.exe
expect_fail "the changed program does not verify"
expect_out "MISMATCH" "osslsigncode names the digest mismatch"

# --- the demo CA is needed: the system's CAs do not know it
run osslsigncode verify -in order-entry-signed.exe
expect_fail "without -CAfile the demo CA is unknown and verify fails"

# --- a document seal (no codeSigning EKU): signed, but it does not verify
if APP2=$(authorize alice contract 2 bob --type contract --amount 1000 --scope sales); then
	pass "alice's application #$APP2 for the Contract Seal is authorized"
else
	fail "alice's application for the Contract Seal was not authorized"
fi
run osslsigncode sign -pkcs11module "$SEALGATE_MODULE" -pkcs11cert "$CONTRACT_URI;type=cert" \
	-key "$CONTRACT_URI;type=private" -readpass alice.pin \
	-in order-entry.exe -out contract-signed.exe
expect_ok "osslsigncode signs with the Contract Seal too (it does not check the EKU)"
run osslsigncode verify -CAfile "$SEALGATE_CA" -in contract-signed.exe
expect_fail "a signature by a seal without the codeSigning EKU does not verify"
expect_out "Unsupported Signer's certificate purpose XKU_CODE_SIGN" "osslsigncode names the missing codeSigning EKU"
expect_audit 1 "action='sign' AND outcome='ok' AND actor='alice' AND seal='contract' AND exe LIKE '%/osslsigncode'" \
	"the gateway recorded the Contract Seal signature (a use is spent even so)"

finish
