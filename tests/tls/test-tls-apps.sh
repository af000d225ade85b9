#!/usr/bin/env bash
# tls: the office's own applications sign through TLS from the "desktop"
# network namespace (docs/clients.md): poppler's pdfsig with NSS, and
# LibreOffice headless (tests/e2e/lo_sign_pdf.py with its own interaction
# handler for the PIN), each loading sealgate-pkcs11.so that finds the
# gateway in the desktop user's sealgate.conf. The PDFs verify, and the
# gateway's records name the device (certificate fingerprint) and what its
# module reported (OS user, host, program). The e2e suite's helpers are
# reused (tests/e2e/lib.sh: the NSS database, the PDF), run on the desktop.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE, SEALGATE_MODULE, SG_P11CLIENT
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$SEALGATE_SOURCE/tests/e2e/lib.sh"
need certutil modutil pdfsig pdfinfo
. "$(dirname "$0")/lib.sh" tls-apps
# NSS offers a certificate for signing only with emailProtection (and
# pdfsig crashes on a token that has none to offer: poppler 22).
export SG_SEAL_EKU=emailProtection
tls_up
URL=tls://$GWIP:$PORT
CONF=$DESK/config/sealgate

# bob's desktop, approved. (bob, not alice: alice may use the Ed25519 seal
# too, and poppler 22's pdfsig crashes listing a token with an Ed25519
# certificate; an EC seal would need the policy's clients: size_probe.)
desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person bob >/dev/null 2>&1 || true
admin approve 1 >/dev/null 2>&1 || fail "approve"
desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person bob >/dev/null 2>&1 || true
[ -s "$CONF/device.pem" ] && pass "bob's desktop is enrolled" || fail "enrollment"
fp=$(openssl x509 -in "$CONF/device.pem" -outform DER | sha256sum | cut -c1-16)

# The desktop's programs, in its namespace, with its files (no SEALGATE_*):
# the e2e helpers call them by name.
certutil() { desk /usr/bin/certutil "$@"; }
modutil() { desk /usr/bin/modutil "$@"; }
pdfsig() { desk /usr/bin/pdfsig "$@"; }
SEALGATE_CA=$W/ca.pem      # the seals' CA (the fixture's token)
TOKEN_LABEL="Integration Co."
NICK="$TOKEN_LABEL:Contract Seal"
CN=contract-seal          # (fixture.sh's certificates: CN = the key's label)
cd "$W"
DB=sql:$W/nssdb
nss_db_with_sealgate "$W/nssdb"
REPORTED="reported: user $(id -un) host $(hostname)"
SIGNS="action = 'sign' AND outcome = 'ok' AND actor = 'bob' AND seal = 'contract'"

# --- pdfsig
make_pdf in.pdf "Integration Co. - contract signed from a desktop"
run pdfsig -add-signature -nssdir "$DB" -nss-pwd bob-password -kpw bob-password \
	-nick "$NICK" -reason "signed over TLS" in.pdf out.pdf
expect_ok "pdfsig on the desktop signs with the Contract Seal over TLS"
run pdfsig -nssdir "$DB" out.pdf
expect_out "Signature Validation: Signature is Valid." "the PDF pdfsig signed is valid"
expect_out "Certificate Validation: Certificate is Trusted." "its seal certificate chains to the seals' CA"
n=$(audit_count "$SIGNS AND exe LIKE 'device 1 sha256:$fp% from $DESKIP port %; $REPORTED exe %/pdfsig pid %'")
[ "$n" -ge 1 ] && pass "pdfsig's signature is recorded with device 1, its fingerprint and address, and the reported user, host and pdfsig ($n)" ||
	{ fail "pdfsig records: $n"; store_sql "SELECT exe FROM audit WHERE action = 'sign' ORDER BY seq DESC LIMIT 2"; }

# --- LibreOffice headless, the PIN given by the script's own handler
if ! /usr/bin/python3 -c 'import uno' 2>/dev/null || ! command -v soffice >/dev/null; then
	echo "# LibreOffice or python3-uno not installed: its part is left out"
elif case ${SEALGATE_SANITIZE:-} in *address*) true ;; *) false ;; esac; then
	# (the sanitizer's runtime, preloaded for our module, cannot catch
	# pyuno's C++ exceptions: CHECK failed in __cxa_throw)
	echo "# an ASan build: LibreOffice's part is left out"
else
	mkdir -p "$DESK/lo"
	run desk env MOZILLA_CERTIFICATE_FOLDER="$DB" LO_SIGN_PIN=bob-password \
		/usr/bin/python3 "$SEALGATE_SOURCE/tests/e2e/lo_sign_pdf.py" --profile "$DESK/lo/profile" \
		--cn "$CN" --out "$W/lo.pdf" --headless --pin-handler \
		--text "Integration Co. - written and sealed in LibreOffice on a desktop"
	expect_ok "LibreOffice on the desktop exports a PDF signed with the Contract Seal over TLS"
	run pdfsig -nssdir "$DB" "$W/lo.pdf"
	expect_out "Signature Validation: Signature is Valid." "the PDF LibreOffice signed is valid"
	n=$(audit_count "$SIGNS AND exe LIKE 'device 1 sha256:$fp% from $DESKIP port %; $REPORTED exe %/soffice.bin pid %'")
	[ "$n" = 1 ] && pass "LibreOffice's signature is recorded with device 1 and the reported soffice.bin" ||
		{ fail "LibreOffice records: $n"; store_sql "SELECT exe FROM audit WHERE action = 'sign' ORDER BY seq DESC LIMIT 2"; }
fi
finish
