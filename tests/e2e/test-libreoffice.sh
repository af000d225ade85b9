#!/usr/bin/env bash
# e2e: LibreOffice 7.4 (soffice.bin, its own NSS) writes a Writer document
# as a signed PDF with the Contract Seal through sealgate-pkcs11.so and a
# real sealgated. LibreOffice asks for the token PIN in its own dialog;
# lo_sign_pdf.py runs soffice without a display (svp) and answers that
# dialog through LibreOffice's UI-test API, as the clerk would. Checked:
# the PDF verifies with pdfsig as signed by the seal, the gateway recorded
# the sign with soffice.bin as the program and counted the use; without an
# approved application and without a signing window nothing is signed and
# the refusal is on the record; Cancel in the PIN dialog sends no login
# and spends nothing; a mistyped PIN is refused and recorded, LibreOffice
# asks again and the right one signs; with `mfa: out_of_band` the clerk
# signs after `sealctl login` by pressing OK in an empty PIN dialog, and
# with `mfa: out_of_band_confirm` the export waits until she runs
# `sealctl confirm`.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
need soffice certutil modutil pdfsig oathtool /usr/bin/python3
# LibreOffice's UNO bindings for Debian's python (not a pyenv/venv python).
/usr/bin/python3 -c 'import uno' 2>/dev/null || { log "SKIP: python3-uno not installed"; exit 77; }
# The "nogui" LibreOffice build cancels every dialog, the PIN prompt
# included, so NSS never logs in; the test needs libreoffice-core.
if dpkg-query -W -f='${Status}' libreoffice-core-nogui 2>/dev/null | grep -q 'ok installed'; then
	log "SKIP: libreoffice-core-nogui cancels LibreOffice's PIN dialog; install libreoffice-writer"
	exit 77
fi
e2e_setup
cd "$W"

DB=sql:$W/nssdb
CN="Acme Trading Co. Contract Seal"
export SEALGATE_USER=alice
ALICE=$(password_of alice)
# LibreOffice finds its NSS database here (FACTS.md); a fresh HOME keeps
# the machine's own profile and certificates out of the test.
export MOZILLA_CERTIFICATE_FOLDER=$DB
export HOME=$W/home
mkdir -p "$HOME"
nss_db_with_sealgate "$W/nssdb"

# One LibreOffice run: a fresh profile, a Writer document, Export as PDF
# with the Contract Seal. Extra arguments go to lo_sign_pdf.py.
n_runs=0
lo_sign() { # out.pdf [lo_sign_pdf.py args...]
	local out=$1
	shift
	n_runs=$((n_runs + 1))
	# The PIN (LO_SIGN_PIN, from the caller) stays out of argv and the log.
	run /usr/bin/python3 "$SEALGATE_SOURCE/tests/e2e/lo_sign_pdf.py" \
		--profile "$W/lo-profile-$n_runs" --cn "$CN" --out "$out" "$@"
}
SOFFICE="exe LIKE '%/soffice.bin'"
signs() { audit_count "action='sign' AND actor='alice' AND seal='contract' AND $SOFFICE AND $1"; }

# 1. No approved application yet: LibreOffice logs in with the PIN, the
# gateway refuses the signature, no PDF is written.
LO_SIGN_PIN=$ALICE lo_sign unapproved.pdf
expect_rc 1 "LibreOffice cannot sign without an approved application"
expect_out "PIN dialog shown: typing the PIN, OK" "LibreOffice asked for the token PIN in its dialog"
expect_out "CN=$CN,OU=Legal" "LibreOffice lists the Contract Seal among its personal certificates"
check "no signed PDF was written" test ! -s unapproved.pdf
expect_audit 1 "action='login' AND outcome='ok' AND actor='alice' AND $SOFFICE AND reason LIKE '%password%'" \
	"soffice.bin logged in as alice with the PIN"
expect_audit 1 "action='sign' AND outcome='denied' AND actor='alice' AND seal='contract' AND $SOFFICE AND reason LIKE '%no authorized application%'" \
	"the gateway refused LibreOffice's unapproved signature and recorded why"

# 2. Bob approves alice's application; the clerk signs with her PIN.
if APP=$(authorize alice contract 5 bob --type contract --amount 50000 --scope sales); then
	pass "alice's application #$APP for the Contract Seal is authorized"
else
	fail "alice's application for the Contract Seal was not authorized"
fi
LO_SIGN_PIN=$ALICE lo_sign contract.pdf --text "Acme Trading Co. - Sales contract No. 2024-117"
expect_ok "LibreOffice exports a signed PDF with the Contract Seal"
expect_out "PIN dialogs answered: 1" "one PIN prompt for the whole run"
check "a signed PDF was written" test -s contract.pdf
expect_audit 1 "action='sign' AND outcome='ok' AND actor='alice' AND seal='contract' AND $SOFFICE" \
	"the gateway recorded LibreOffice's signature (alice, contract, soffice.bin)"
# LibreOffice reserves a fixed-size signature field: one C_Sign per PDF.
check "one signed PDF used one of alice's 5 approved uses" test "$(uses_left alice "${APP:-0}")" = 4

run pdfsig -nssdir "$DB" contract.pdf
expect_ok "pdfsig reads LibreOffice's signed PDF"
expect_out "Signer Certificate Common Name: $CN" "the signer is the Contract Seal"
expect_out "Signature Validation: Signature is Valid." "LibreOffice's PDF signature is valid"
expect_out "Certificate Validation: Certificate is Trusted." "the seal certificate chains to the trusted demo CA"
expect_out "Total document signed" "the signature covers the whole document"
expect_out "Signature Type: adbe.pkcs7.detached" "a PKCS#7 detached PDF signature"

# 2b. The clerk presses Cancel in the PIN dialog: no login, no PDF, nothing spent.
n_login=$(audit_count "action='login' AND actor='alice' AND $SOFFICE")
n_ok=$(signs "outcome='ok'")
LO_SIGN_PIN=$ALICE lo_sign cancelled.pdf --cancel-pin
expect_rc 1 "Cancel in the PIN dialog: LibreOffice does not sign"
expect_out "PIN dialog shown: pressing Cancel" "the PIN dialog was cancelled"
check "no PDF was written after Cancel" test ! -s cancelled.pdf
check "Cancel sent no login to the gateway" \
	test "$(audit_count "action='login' AND actor='alice' AND $SOFFICE")" = "$n_login"
check "Cancel signed nothing" test "$(signs "outcome='ok'")" = "$n_ok"
check "Cancel spent no approved use" test "$(uses_left alice "${APP:-0}")" = 4

# 2c. A typo in the PIN: the gateway refuses that login and records it;
# LibreOffice asks again, and with the right PIN the document is signed.
n_denied=$(audit_count "action='login' AND outcome<>'ok' AND actor='alice' AND $SOFFICE")
LO_SIGN_PIN=$ALICE lo_sign typo.pdf --wrong-pin-first --text "Acme Trading Co. - Sales contract No. 2024-119"
expect_out "PIN dialog shown: typing a wrong PIN, OK" "the clerk first typed a wrong PIN"
expect_audit $((n_denied + 1)) "action='login' AND outcome<>'ok' AND actor='alice' AND $SOFFICE" \
	"the gateway refused the wrong PIN from soffice.bin and recorded it"
expect_ok "after a wrong PIN LibreOffice asks again and signs with the right one"
expect_out "PIN dialogs answered: 2" "two PIN prompts: the wrong PIN, then the right one"
check "the PDF after the typo was written" test -s typo.pdf
check "the typo cost no approved use, the signature one" test "$(uses_left alice "${APP:-0}")" = 3

# 3. The seal switches to `mfa: out_of_band` (the mode for office suites):
# the token now shows a protected authentication path, so NSS logs in
# without a PIN, and without a signing window the gateway refuses.
sed -i '/^  - id: contract$/,/^  - id:/ s/^    mfa: none .*/    mfa: out_of_band/' "$E2E_SITE/policy.yaml"
check "the contract seal is now out_of_band in the policy" grep -q '^    mfa: out_of_band$' "$E2E_SITE/policy.yaml"
kill -HUP "$(cat "$E2E_SITE/sealgated.pid")"
for _ in $(seq 50); do
	[ "$(audit_count "action='policy_reload'")" = 0 ] || break
	sleep 0.1
done
expect_audit 1 "action='policy_reload' AND outcome='ok'" "the gateway reloaded the policy"

n_ok=$(signs "outcome='ok'")
n_denied=$(audit_count "action='login' AND outcome<>'ok' AND actor='alice' AND $SOFFICE")
lo_sign nowindow.pdf --empty-pin
expect_rc 1 "without a signing window LibreOffice cannot sign"
check "no PDF was written without a window" test ! -s nowindow.pdf
expect_audit $((n_denied + 1)) "action='login' AND outcome<>'ok' AND actor='alice' AND $SOFFICE" \
	"the gateway refused soffice.bin's PIN-less login outside a window and recorded it"
check "no signature without a window" test "$(signs "outcome='ok'")" = "$n_ok"

# 4. `sealctl login` (password and code) opens alice's window; in it
# LibreOffice's PIN dialog needs no PIN: the clerk just presses OK.
SEALGATE_CODE=$(totp_of alice) run sealctl_as alice login
expect_ok "sealctl login opens alice's signing window"
expect_out "signing window open for alice" "sealctl says the window is open"
lo_sign window.pdf --empty-pin --text "Acme Trading Co. - Sales contract No. 2024-118"
expect_ok "inside the window LibreOffice signs with no PIN typed"
expect_audit 1 "action='login' AND outcome='ok' AND actor='alice' AND $SOFFICE AND reason LIKE '%window%'" \
	"soffice.bin's login was accepted on the strength of the window"
check "the window signature is on the record" test "$(signs "outcome='ok'")" = $((n_ok + 1))
check "and used another approved use" test "$(uses_left alice "${APP:-0}")" = 2
run pdfsig -nssdir "$DB" window.pdf
expect_out "Signer Certificate Common Name: $CN" "the window PDF is signed by the Contract Seal"
expect_out "Signature Validation: Signature is Valid." "the window PDF's signature is valid"

# 5. `mfa: out_of_band_confirm`: inside her window the clerk presses OK and
# LibreOffice's export waits in C_Sign until she confirms the signature
# with `sealctl confirm` and a fresh code; then the PDF is signed.
sed -i '/^  - id: contract$/,/^  - id:/ s/^    mfa: out_of_band$/    mfa: out_of_band_confirm/' "$E2E_SITE/policy.yaml"
check "the contract seal is now out_of_band_confirm" grep -q '^    mfa: out_of_band_confirm$' "$E2E_SITE/policy.yaml"
kill -HUP "$(cat "$E2E_SITE/sealgated.pid")"
for _ in $(seq 50); do
	[ "$(audit_count "action='policy_reload' AND outcome='ok'")" -lt 2 ] || break
	sleep 0.1
done
expect_audit 2 "action='policy_reload' AND outcome='ok'" "the gateway reloaded the policy again"
n_ok=$(signs "outcome='ok'")
n_runs=$((n_runs + 1))
/usr/bin/python3 "$SEALGATE_SOURCE/tests/e2e/lo_sign_pdf.py" --profile "$W/lo-profile-$n_runs" \
	--cn "$CN" --out confirm.pdf --empty-pin --text "Acme Trading Co. - Sales contract No. 2024-120" \
	>"$W/lo-confirm.out" 2>&1 &
lo_pid=$!
SEALGATE_CODE=$(totp_next alice) run sealctl_as alice confirm --wait 60
expect_ok "sealctl confirm releases the signature LibreOffice is waiting for"
expect_out "confirmed: contract" "the confirmation names the Contract Seal"
set +e
wait "$lo_pid"
RC=$?
set -e
OUT=$(cat "$W/lo-confirm.out")
printf '%s\n' "$OUT" | sed 's/^/    /' >&2
expect_ok "LibreOffice's export finishes once the signature is confirmed"
check "the confirmed PDF was written" test -s confirm.pdf
check "the confirmed signature is on the record" test "$(signs "outcome='ok'")" = $((n_ok + 1))
check "and used another approved use" test "$(uses_left alice "${APP:-0}")" = 1
run pdfsig -nssdir "$DB" confirm.pdf
expect_out "Signature Validation: Signature is Valid." "the confirmed PDF's signature is valid"

finish
