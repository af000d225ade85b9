#!/usr/bin/env bash
# web-browser: the console against a real sealgate-web and a real gateway
# on SoftHSM2 (a sandbox site, tests/e2e/lib.sh): alice applies with a PDF,
# bob logs in with password and TOTP, sees the PDF drawn and approves with
# a comment and a code, alice signs the PDF through the module (sealctl
# stamp where sealctl has it, else pdfsig: console-e2e.mjs, signPdf), and
# the headquarters page shows that signature in its live feed. The signed
# PDF is then verified here with pdfsig.
set -euo pipefail
# shellcheck source=tests/web/browser/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/e2e/lib.sh
. "$BROWSER_DIR/../../e2e/lib.sh"
browser_need
need certutil modutil pdfsig oathtool
# sealgate-web (web/, libmicrohttpd) serves the console and the API; the
# sandbox starts it on loopback and exports its URL (SEALGATE_WEB_URL).
[ -x "$SEALGATE_BUILD/web/sealgate-web" ] || { log "SKIP: $SEALGATE_BUILD/web/sealgate-web not built"; exit 77; }
browser_install
e2e_setup
browser_shots console-e2e
[ -n "${SEALGATE_WEB_URL:-}" ] || { log "FAIL: the sandbox did not start sealgate-web (no SEALGATE_WEB_URL)"; exit 1; }
log "sealgate-web at $SEALGATE_WEB_URL"
cd "$W"

make_pdf in.pdf "Acme Trading Co. - Sales contract No. 2026-17"
nss_db_with_sealgate "$W/nssdb"
export SG_NSSDB=sql:$W/nssdb SG_NICK="$TOKEN_LABEL:Contract Seal" SG_PDF_IN=$W/in.pdf SG_PDF_OUT=$W/out.pdf

run node "$BROWSER_DIR/console-e2e.mjs"
expect_ok "the console's story in the browser"
# What the gateway said of alice's last refused signature, if any.
run sealctl_as alice why

run pdfsig -nssdir "$SG_NSSDB" out.pdf
expect_out "Signature Validation: Signature is Valid." "the PDF alice signed is valid"
expect_out "Signer Certificate Common Name: Acme Trading Co. Contract Seal" "signed with the Contract Seal"
expect_audit 1 "action='application_approve' AND actor='bob' AND outcome='ok'" \
	"bob's one approval is on the record"
finish
