#!/usr/bin/env bash
# e2e: `soffice --headless` signing a PDF with the Contract Seal through
# sealgate-pkcs11.so and a real sealgated. Headless, LibreOffice's PIN
# prompt (its interaction handler) is cancelled: NSS never logs in, no
# login reaches the gateway, nothing is signed or spent. A UNO script that
# installs its own interaction handler (lo_sign_pdf.py --pin-handler)
# answers the prompt with the PIN and signs: the PDF verifies with pdfsig,
# the gateway recorded soffice.bin's login and signature, one use spent.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
need soffice certutil modutil pdfsig oathtool /usr/bin/python3
/usr/bin/python3 -c 'import uno' 2>/dev/null || { log "SKIP: python3-uno not installed"; exit 77; }
e2e_setup
cd "$W"

DB=sql:$W/nssdb
CN="Acme Trading Co. Contract Seal"
export SEALGATE_USER=alice
export MOZILLA_CERTIFICATE_FOLDER=$DB HOME=$W/home
mkdir -p "$HOME"
nss_db_with_sealgate "$W/nssdb"
SOFFICE="exe LIKE '%/soffice.bin'"

if APP=$(authorize alice contract 3 bob --type contract --amount 50000 --scope sales); then
	pass "alice's application #$APP for the Contract Seal is authorized"
else
	fail "alice's application for the Contract Seal was not authorized"
fi

# --- headless, no handler of the script's own: the prompt is cancelled
run env LO_SIGN_PIN="$(password_of alice)" /usr/bin/python3 "$SEALGATE_SOURCE/tests/e2e/lo_sign_pdf.py" \
	--profile "$W/lo-profile-1" --cn "$CN" --out plain.pdf --headless
expect_rc 1 "soffice --headless without an interaction handler of its own cannot sign"
expect_out "NoPasswordException" "listing the personal certificates fails for want of the PIN"
check "no PDF was written" test ! -s plain.pdf
expect_audit 0 "action='login' AND actor='alice' AND $SOFFICE" "no login reached the gateway"
check "nothing was spent" test "$(uses_left alice "${APP:-0}")" = 3

# --- headless with the script's own interaction handler: signed
run env LO_SIGN_PIN="$(password_of alice)" /usr/bin/python3 "$SEALGATE_SOURCE/tests/e2e/lo_sign_pdf.py" \
	--profile "$W/lo-profile-2" --cn "$CN" --out handler.pdf --headless --pin-handler \
	--text "Acme Trading Co. - Sales contract No. 2024-121"
expect_ok "soffice --headless with its own interaction handler exports a signed PDF"
expect_out "PIN requests answered by the handler: 1" "the handler answered the one PIN request"
check "a signed PDF was written" test -s handler.pdf
expect_audit 1 "action='login' AND outcome='ok' AND actor='alice' AND $SOFFICE" \
	"soffice.bin logged in as alice with the PIN the handler gave"
expect_audit 1 "action='sign' AND outcome='ok' AND actor='alice' AND seal='contract' AND $SOFFICE" \
	"the gateway recorded the headless signature"
check "one signed PDF spent one of the three uses" test "$(uses_left alice "${APP:-0}")" = 2
run pdfsig -nssdir "$DB" handler.pdf
expect_out "Signer Certificate Common Name: $CN" "the signer is the Contract Seal"
expect_out "Signature Validation: Signature is Valid." "the headless PDF's signature is valid"
expect_out "Certificate Validation: Certificate is Trusted." "the seal certificate chains to the demo CA"

finish
