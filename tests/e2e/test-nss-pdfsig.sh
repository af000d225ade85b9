#!/usr/bin/env bash
# e2e: NSS (certutil, modutil) and poppler's pdfsig through
# sealgate-pkcs11.so and a real sealgated: the module registered in an NSS
# database, the seal certificates visible under "<token>:<seal>", a PDF
# signed with the Contract Seal (pdfsig signs twice: a size probe, then the
# real signature — both pass the gateway) and verified as valid and trusted.
# EC seals: tests/e2e/test-pdfsig-ec.sh (the placeholder's DER length).
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
need certutil modutil pdfsig pdfinfo
e2e_setup
cd "$W"

DB=sql:$W/nssdb
NICK="$TOKEN_LABEL:Contract Seal"
export SEALGATE_USER=alice
ALICE=$(password_of alice)

nss_db_with_sealgate "$W/nssdb"
run modutil -dbdir "$DB" -list sealgate </dev/null
expect_ok "modutil -list sealgate"
expect_out "Token Name: $TOKEN_LABEL" "NSS sees the sealgate token"

# certutil logs in to the token to list it: the PIN from a file (-f).
( umask 077; printf '%s\n' "$ALICE" >alice.pin )
run certutil -L -d "$DB" -h "$TOKEN_LABEL" -f alice.pin
expect_ok "certutil -L -h <token> -f pinfile"
expect_out "$NICK" "NSS names the seal certificate \"$NICK\""
run certutil -L -d "$DB" -h "$TOKEN_LABEL" -f alice.pin -n "$NICK"
expect_ok "certutil -L -n \"$NICK\""
expect_out "CN=Acme Trading Co. Contract Seal" "NSS shows the Contract Seal certificate by its nickname"

make_pdf in.pdf "Acme Trading Co. - Sales contract No. 2024-117"
run pdfinfo in.pdf
expect_ok "the unsigned PDF is well-formed"

# The approval workflow first: bob (head of Sales) approves alice's use.
if APP=$(authorize alice contract 5 bob --type contract --amount 50000 --scope sales); then
	pass "alice's application #$APP for the Contract Seal is authorized"
else
	fail "alice's application for the Contract Seal was not authorized"
fi

run pdfsig -add-signature -nssdir "$DB" -nss-pwd "$ALICE" -kpw "$ALICE" \
	-nick "$NICK" -reason "Contract 2024-117 approved" in.pdf out.pdf
expect_ok "pdfsig -add-signature with the Contract Seal (alice)"
check "a signed PDF was written" test -s out.pdf
# pdfsig signs twice (a size probe, then the signature). Both pass the
# gateway; the probe may be answered without a real signature (policy
# `clients: size_probe`), so only the real one must be on the record.
PDFSIG_SIGNS="action='sign' AND actor='alice' AND seal='contract' AND exe LIKE '%/pdfsig'"
n_signed=$(audit_count "$PDFSIG_SIGNS AND outcome='ok'")
if [ -z "$n_signed" ]; then log "note: sqlite3 not installed, audit not checked"
elif [ "$n_signed" -ge 1 ] && [ "$n_signed" -le 2 ]; then pass "pdfsig's signature is on the gateway's record ($n_signed sign record(s))"
else fail "pdfsig: $n_signed sign records, expected 1 (real) or 2 (probe + real)"
fi
n_pdfsig=$(audit_count "exe LIKE '%/pdfsig' AND action='sign'")
# The policy names pdfsig a size-probing client (clients: size_probe), so
# its probe spends no use: one PDF, one use.
check "one signed PDF used one of alice's 5 approved uses" test "$(uses_left alice "${APP:-0}")" = 4

run pdfsig -nssdir "$DB" out.pdf
expect_ok "pdfsig verifies the signed PDF"
expect_out "Signer Certificate Common Name: Acme Trading Co. Contract Seal" "the signer is the Contract Seal"
expect_out "Signature Validation: Signature is Valid." "the PDF signature is valid"
expect_out "Certificate Validation: Certificate is Trusted." "the seal certificate chains to the trusted demo CA"
expect_out "Total document signed" "the signature covers the whole document"

# A changed byte inside the signed range must break the signature.
perl -0777 -pe 's/Sales contract No\. 2024-117/Sales contract No. 2024-118/' out.pdf >tampered.pdf
check "the tampered copy differs" bash -c '! cmp -s out.pdf tampered.pdf'
run pdfsig -nssdir "$DB" tampered.pdf
expect_no_out "Signature Validation: Signature is Valid." "a tampered PDF does not verify"

run pdfsig -add-signature -nssdir "$DB" -nss-pwd wrong-password -kpw wrong-password \
	-nick "$NICK" in.pdf bad.pdf
expect_fail "pdfsig with a wrong password does not sign"
expect_audit "$n_pdfsig" "action='sign' AND exe LIKE '%/pdfsig'" \
	"no signature attempt with a wrong password"

finish
