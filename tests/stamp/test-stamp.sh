#!/usr/bin/env bash
# stamp: sealctl stamp on a document-bound application (docs/stamp.md).
# alice applies with contract.pdf, bob approves, alice stamps it: pdfsig
# says the signature is valid, qpdf --check finds no error, and the page
# rendered by pdftoppm has the seal's red in the box asked for and nowhere
# else. A second stamp (on an application bound to the stamped file)
# leaves both valid. sealctl verify checks them and the approval receipts
# (and fails on another site's audit certificate, an edited receipt, a
# signature moved to another file), and with an audit export that the
# receipt's record is in the log. Refused and recorded, with nothing spent (the uses
# and the quota as they were): another document, the document changed
# after approval, an application already used, a seal the person may not
# use. --near TEXT puts the seal over the text. An EC seal stamps as well.
# Two stamps of one 2-use application each carry their own receipt. A
# policy's PNG or SVG for the seal is drawn instead of the round seal.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../e2e/lib.sh"
need pdfsig qpdf pdftoppm python3 oathtool sqlite3
HERE=$(cd "$(dirname "$0")" && pwd)
e2e_setup
cd "$W"

make_pdf contract.pdf "Acme Trading Co. - Sales contract No. 2026-19"
ID=$(authorize alice contract 1 bob --type contract --amount 1000 --scope sales --doc contract.pdf)
check "alice's application bound to contract.pdf is authorized" test -n "$ID"

run sealctl_as grace audit export -o early.jsonl
expect_ok "grace (auditor) exports the log before the stamp"
run sealctl_as alice stamp --seal contract --in contract.pdf --out stamped.pdf \
	--application "$ID" --page 1 --at 420,200 --reason "Contract 2026-19 approved"
expect_ok "alice stamps the approved contract"
run pdfsig stamped.pdf
expect_out "Signature Validation: Signature is Valid." "pdfsig: the stamp's signature is valid"
expect_out "ETSI.CAdES.detached" "pdfsig: a CAdES detached signature"
expect_out "Total document signed" "pdfsig: the signature covers the whole file"
run qpdf --check stamped.pdf
expect_ok "qpdf --check passes"
expect_out "No syntax or stream encoding errors found" "qpdf finds no error"
pdftoppm -r 72 -f 1 -l 1 stamped.pdf page
run python3 "$HERE/redbox.py" page-1.ppm 360.5 140.5 479.5 259.5
read -r IN OUTSIDE <<<"$OUT"
check "the seal's red is in the box asked for ($IN pixels)" test "${IN:-0}" -gt 500
check "and nowhere else ($OUTSIDE pixels)" test "${OUTSIDE:-1}" = 0
expect_audit 1 "action='sign' AND outcome='ok' AND application=$ID" "the stamp's signature is recorded"

# --- sealctl verify, offline: the signature, the seal's certificate, the
# receipt against the site's audit certificate, who applied and approved
AUDIT_CERT=$E2E_SITE/certs/audit.pem
run "$SEALGATE_BUILD/tools/sealctl" verify stamped.pdf --ca "$SEALGATE_CA" --audit-cert "$AUDIT_CERT"
expect_ok "sealctl verify: the stamped contract holds"
expect_out "receipt: valid, site main" "the receipt is valid, from site main"
expect_out "Alice Chen (alice) applied for the Contract Seal: e2e test test-stamp" "it says who applied"
expect_out "level 1: approved by Bob Li (bob)" "and who approved"
# With an audit export: the receipt's record is in the log.
run sealctl_as grace audit export -o export.jsonl
expect_ok "grace exports the log after the stamp"
run "$SEALGATE_BUILD/tools/sealctl" verify stamped.pdf --audit-cert "$AUDIT_CERT" --export export.jsonl
expect_ok "sealctl verify --export: the receipt's record is in the export"
expect_out "in the export, intact" "and says so"
run "$SEALGATE_BUILD/tools/sealctl" verify stamped.pdf --audit-cert "$AUDIT_CERT" --export early.jsonl
expect_fail "an export from before the stamp does not hold its record"
expect_out "NOT in the export" "and says so"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key \
	-subj "/CN=Other site audit" -days 2 -out other-audit.pem 2>/dev/null
run "$SEALGATE_BUILD/tools/sealctl" verify stamped.pdf --audit-cert other-audit.pem
expect_fail "a receipt checked against another site's audit certificate fails"
expect_out "another site's" "and says so"
python3 "$HERE/pdfedit.py" edit-receipt stamped.pdf edited.pdf
run "$SEALGATE_BUILD/tools/sealctl" verify edited.pdf --audit-cert "$AUDIT_CERT"
expect_fail "an edited receipt (its amount 1000 made 9000) fails"
expect_out "its signature does not verify" "and says so"

# --- refused, recorded, nothing spent
# (the first JSON object of --json: the reply to show)
uses_left() {
	sealctl_as alice --json show "$1" | python3 -c 'import json,sys
print(json.JSONDecoder().raw_decode(sys.stdin.read())[0]["application"]["uses_left"])'
}
signs() { audit_count "action='sign' AND outcome='ok'"; }
SIGNS=$(signs)

run sealctl_as alice stamp --seal contract --in contract.pdf --out again.pdf --application "$ID"
expect_fail "a second stamp on an application already used is refused"
check "no file is written" test ! -e again.pdf

make_pdf other.pdf "Acme Trading Co. - Another contract"
ID2=$(authorize alice contract 1 bob --type contract --amount 1000 --scope sales --doc contract.pdf)
run sealctl_as alice stamp --seal contract --in other.pdf --out other-stamped.pdf --application "$ID2"
expect_fail "another document under contract.pdf's approval is refused"
expect_audit 1 "action='stamp_prepare' AND outcome='denied' AND application=$ID2" "and recorded"
sed 's/No. 2026-19/No. 2026-91/' contract.pdf >changed.pdf
run sealctl_as alice stamp --seal contract --in changed.pdf --out changed-stamped.pdf --application "$ID2"
expect_fail "the contract changed after approval is refused"
check "the uses of the application are untouched" test "$(uses_left "$ID2")" = 1
check "no signature was made" test "$(signs)" = "$SIGNS"
run sealctl_as dave stamp --seal contract --in contract.pdf --out dave.pdf
expect_fail "dave (finance) may not stamp with the contract seal"
check "still no signature" test "$(signs)" = "$SIGNS"

# A client that shows the gateway a stamp of the approved document with
# the page changed in it (a same-length edit of the update sealctl wrote:
# every offset still right) is refused: only the field may be added.
SIZE=$(stat -c %s contract.pdf)
tail -c +$((SIZE + 1)) stamped.pdf >update.bin
DOCSHA=$(sha256sum contract.pdf | cut -d' ' -f1)
prepare_with() { # update-file
	python3 "$HERE/sgraw.py" "$SEALGATE_SOCKET" alice "$(password_of alice)" <<<'{"op":"stamp_prepare","seal":"contract","doc_sha256":"'"$DOCSHA"'","application":'"$ID2"',"update":"$FILE:'"$1"'"}'
}
run prepare_with update.bin
expect_out '"ok": true' "the update sealctl wrote passes the gateway's check"
sed 's|/MediaBox \[ 0 0 612 792 \]|/MediaBox [ 0 0 612 999 ]|' update.bin >media.bin
check "the page's box is changed in the update" test "$(cmp -s update.bin media.bin; echo $?)" = 1
run prepare_with media.bin
expect_out '"error": "bad_stamp"' "a stamp whose page is not the document's is refused"
expect_out "page 1 is not the document's" "and says so"
sed 's|/Type /Catalog|/Type /Catalxg|' update.bin >catalog.bin
run prepare_with catalog.bin
expect_out "the catalog is not the document's" "a stamp that changes the catalog is refused"
sed 's|/Prev [0-9]*|/Prev 0|' update.bin >prev.bin
run prepare_with prev.bin
expect_out '"error": "bad_stamp"' "a stamp that is not appended to the document's last xref is refused"
# the widget made to act (its /F 132 made /AA<<>>, the same length)
sed 's|/F 132 |/AA<<>>|' update.bin >action.bin
run prepare_with action.bin
expect_out "has /AA: a stamp does not act" "a stamp whose widget has an action is refused"
expect_audit 4 "action='stamp_prepare' AND outcome='denied' AND application=$ID2 AND reason LIKE 'not a stamp%'" \
	"each is recorded"
check "the uses are still untouched" test "$(uses_left "$ID2")" = 1

# --- the application's stamp, then a countersignature on the stamped file
run sealctl_as alice stamp --seal contract --in contract.pdf --out one.pdf --application "$ID2" \
	--at 150,200
expect_ok "the second application's stamp"
ID3=$(authorize alice contract 1 bob --type contract --amount 1000 --scope sales --doc one.pdf)
run sealctl_as alice stamp --seal contract --in one.pdf --out two.pdf --application "$ID3" \
	--at 420,200 --reason "countersigned"
expect_ok "a second stamp on the stamped file"
run pdfsig two.pdf
expect_out "Signature #2" "pdfsig sees two signatures"
check "both are valid" test "$(grep -c 'Signature Validation: Signature is Valid.' <<<"$OUT")" = 2
run qpdf --check two.pdf
expect_out "No syntax or stream encoding errors found" "qpdf finds no error in the twice stamped file"
run "$SEALGATE_BUILD/tools/sealctl" verify two.pdf --ca "$SEALGATE_CA" --audit-cert "$AUDIT_CERT"
expect_ok "sealctl verify: both stamps hold"
expect_out "2 signature(s), all valid" "verify sees both"
expect_out "an earlier revision" "the first covers the revision it signed"
# The first stamp's signature moved into the second application's file
# (the same contract, stamped elsewhere on the page): it fails.
python3 "$HERE/pdfedit.py" move-sig stamped.pdf one.pdf moved.pdf
run "$SEALGATE_BUILD/tools/sealctl" verify moved.pdf --audit-cert "$AUDIT_CERT"
expect_fail "a signature moved to another document fails"
expect_out "the signature does not match the bytes it covers" "and says so"
# LibreOffice opens the twice stamped file as it opens the contract
# (Draw's PDF import, libreoffice-draw, which tools/install-deps installs:
# without it LibreOffice opens no PDF at all).
lo_open() { soffice -env:UserInstallation="file://$W/lo-profile" --headless --convert-to png \
	--outdir lo "$1" >/dev/null 2>&1; test -s "lo/${1%.pdf}.png"; }
if ! command -v soffice >/dev/null; then
	log "note: soffice not installed: LibreOffice not tried"
elif ! dpkg-query -W -f '${Status}' libreoffice-draw 2>/dev/null | grep -q 'ok installed'; then
	log "note: libreoffice-draw not installed (tools/install-deps installs it): LibreOffice not tried"
else
	check "LibreOffice opens the contract" lo_open contract.pdf
	check "LibreOffice opens the twice stamped file" lo_open two.pdf
fi

# --- --near TEXT: the seal's centre on the text's box, as pdftotext -bbox
# measures the word (origin top left there)
make_pdf near.pdf "Acme Trading Co. - Sales contract No. 2026-55"
ID5=$(authorize alice contract 1 bob --type contract --amount 1000 --scope sales --doc near.pdf)
run sealctl_as alice stamp --seal contract --in near.pdf --out near-stamped.pdf --application "$ID5" \
	--near "2026-55"
expect_ok "alice stamps over the contract's number (--near)"
RECT=$(sed -n 's/.* at \[\([0-9 .-]*\)\].*/\1/p' <<<"$OUT")
pdftotext -bbox near.pdf near.html
WORD=$(sed -n 's/.*xMin="\([0-9.]*\)" yMin="\([0-9.]*\)" xMax="\([0-9.]*\)" yMax="\([0-9.]*\)">2026-55<.*/\1 \2 \3 \4/p' near.html)
check "the seal's centre is the word's ($RECT / $WORD)" python3 -c '
import sys
r = [float(v) for v in sys.argv[1].split()]
w = [float(v) for v in sys.argv[2].split()]
cx, cy = (r[0] + r[2]) / 2, (r[1] + r[3]) / 2
wx, wy = (w[0] + w[2]) / 2, 792 - (w[1] + w[3]) / 2
sys.exit(0 if abs(cx - wx) < 3 and abs(cy - wy) < 3 else 1)' "$RECT" "$WORD"
pdftoppm -r 72 -f 1 -l 1 near-stamped.pdf near
read -r X0 Y0 X1 Y1 <<<"$RECT"
run python3 "$HERE/redbox.py" near-1.ppm "$X0" "$Y0" "$X1" "$Y1"
read -r IN OUTSIDE <<<"$OUT"
check "the seal is drawn there ($IN red pixels in its box, $OUTSIDE outside)" \
	test "${IN:-0}" -gt 500 -a "${OUTSIDE:-1}" = 0
run sealctl_as alice stamp --seal contract --in near.pdf --out none.pdf --near "no such words"
expect_fail "a text that is not on the page is refused before anything is signed"

# --- an EC seal (P-256): CKM_ECDSA_SHA256, the token's r||s made DER
make_pdf payment.pdf "Acme Trading Co. - Payment voucher 2026-0042"
ID4=$(authorize dave finance 1 erin --type payment --doc payment.pdf)
run sealctl_as dave stamp --seal finance --in payment.pdf --out payment-stamped.pdf \
	--application "$ID4" --reason "voucher approved"
expect_ok "dave stamps the payment voucher with the Finance Seal (EC)"
run pdfsig payment-stamped.pdf
expect_out "Signature Validation: Signature is Valid." "pdfsig: the EC stamp is valid"
run "$SEALGATE_BUILD/tools/sealctl" verify payment-stamped.pdf --ca "$SEALGATE_CA" --audit-cert "$AUDIT_CERT"
expect_ok "sealctl verify: the EC stamp and its receipt hold"
expect_out "level 1: approved by Erin Liu (erin)" "erin's approval is in the receipt"
# --- two stamps of one 2-use application: each receipt is its own
# signature's (the signature value's SHA-256 in it), so the receipt of the
# first, asked for after the second was made, is still the first's, and
# a receipt moved to the other stamp fails there.
make_pdf voucher.pdf "Acme Trading Co. - Payment voucher 2026-0043"
ID6=$(authorize dave finance 2 erin --type payment --doc voucher.pdf)
run sealctl_as dave stamp --seal finance --in voucher.pdf --out voucher-a.pdf --application "$ID6"
expect_ok "dave's first stamp of the 2-use application"
run sealctl_as dave stamp --seal finance --in voucher.pdf --out voucher-b.pdf --application "$ID6"
expect_ok "and the second"
for f in voucher-a.pdf voucher-b.pdf; do
	run "$SEALGATE_BUILD/tools/sealctl" verify "$f" --audit-cert "$AUDIT_CERT"
	expect_ok "sealctl verify: $f and its own receipt hold"
done
python3 "$HERE/pdfedit.py" swap-receipt voucher-b.pdf voucher-a.pdf voucher-swapped.pdf
run pdfsig voucher-swapped.pdf
expect_out "Signature Validation: Signature is Valid." "the receipt moved in changes no signed byte"
run "$SEALGATE_BUILD/tools/sealctl" verify voucher-swapped.pdf --audit-cert "$AUDIT_CERT"
expect_fail "the second stamp's receipt in the first stamp's file fails"
expect_out "it is another signature's" "and says so"
read -r ATTRS_A VALUE_A <<<"$(python3 "$HERE/pdfedit.py" sig-value voucher-a.pdf sig-a.bin)"
receipt_for() { # signature-value-file
	python3 "$HERE/sgraw.py" "$SEALGATE_SOCKET" dave "$(password_of dave)" \
		<<<'{"op":"receipt","application":'"$ID6"',"signature":"$FILE:'"$1"'"}'
}
run receipt_for sig-a.bin
check "the first stamp's receipt, asked for after the second, names its signed attributes and value" \
	python3 -c '
import base64, json, sys
r = json.loads(sys.stdin.read())
rec = json.loads(base64.b64decode(r["receipt"]))["record"]
sys.exit(0 if rec["signed_digest"] == sys.argv[1] and rec["signature_sha256"] == sys.argv[2] else 1)' \
	"$ATTRS_A" "$VALUE_A" <<<"$OUT"
printf '%s\n' "$OUT" >a-reply.json
python3 "$HERE/pdfedit.py" set-receipt voucher-a.pdf a-reply.json voucher-a2.pdf
run "$SEALGATE_BUILD/tools/sealctl" verify voucher-a2.pdf --audit-cert "$AUDIT_CERT"
expect_ok "that receipt put into the first stamp's file holds there"
# ECDSA's other value over the same signed attributes, (r, n - s), gets a
# receipt of the same record naming that value: in the file whose value
# is (r, s) it fails, though its signed digest is that file's.
python3 "$HERE/pdfedit.py" ec-twin sig-a.bin sig-twin.bin
run receipt_for sig-twin.bin
expect_out '"ok": true' "the other ECDSA value of the first stamp's signature gets a receipt"
printf '%s\n' "$OUT" >twin-reply.json
python3 "$HERE/pdfedit.py" set-receipt voucher-a.pdf twin-reply.json voucher-twin.pdf
run "$SEALGATE_BUILD/tools/sealctl" verify voucher-twin.pdf --audit-cert "$AUDIT_CERT"
expect_fail "a receipt of the same signed attributes but another signature value fails"
expect_out "not of this signature value" "and says so"
head -c 64 /dev/urandom >sig-x.bin
run receipt_for sig-x.bin
expect_out '"error": "no_signature"' "a receipt for a signature value the application never made is refused"
# --- a policy's image for the seal (image:): drawn instead of the round
# seal. A PNG red in its left half and an SVG red in its right half: the
# page is red in that half of the seal's box only (the round seal would
# be red in both).
python3 - <<'PY'
import struct, zlib
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
rows = b"".join(b"\0" + (b"\xff\x00\x00\xff" * 50 + b"\x00\x00\x00\x00" * 50) for _ in range(100))
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100, 100, 8, 6, 0, 0, 0)) +
       chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
open("left-red.png", "wb").write(png)
open("right-red.svg", "w").write('<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
                                 '<rect x="50" y="0" width="50" height="100" fill="#ff0000"/></svg>')
PY
policy_image() { # file: the contract seal's image and its SHA-256, the policy reloaded
	local sum
	sum=$(sha256sum "$W/$1" | cut -d' ' -f1)
	sed -i '/^    image: /d; /^    image_sha256: /d; s|^    kind: contract$|    kind: contract\n    image: '"$W/$1"'\n    image_sha256: '"$sum"'|' \
		"$E2E_SITE/policy.yaml"
	kill -HUP "$(cat "$E2E_SITE/sealgated.pid")"
	sleep 1
}
# The seal's box at --at 300,400: 240.5..359.5 across, 340.5..459.5 up.
stamp_image() { # pdf-name
	make_pdf "$1.pdf" "Acme Trading Co. - Sales contract $1"
	local id
	id=$(authorize alice contract 1 bob --type contract --amount 1000 --scope sales --doc "$1.pdf")
	run sealctl_as alice stamp --seal contract --in "$1.pdf" --out "$1-stamped.pdf" \
		--application "$id" --page 1 --at 300,400
	pdftoppm -r 72 -f 1 -l 1 "$1-stamped.pdf" "$1"
}
policy_image left-red.png
stamp_image png
expect_ok "alice stamps with the policy's PNG for the Contract Seal"
run python3 "$HERE/redbox.py" png-1.ppm 240.5 340.5 301 459.5
read -r IN OUTSIDE <<<"$OUT"
check "the PNG's red is in the left half of the seal's box ($IN pixels)" test "${IN:-0}" -gt 2000
check "and nowhere else, the right half included ($OUTSIDE pixels)" test "${OUTSIDE:-1}" = 0
policy_image right-red.svg
stamp_image svg
expect_ok "alice stamps with the policy's SVG for the Contract Seal"
run python3 "$HERE/redbox.py" svg-1.ppm 299 340.5 359.5 459.5
read -r IN OUTSIDE <<<"$OUT"
check "the SVG's red is in the right half of the seal's box ($IN pixels)" test "${IN:-0}" -gt 2000
check "and nowhere else, the left half included ($OUTSIDE pixels)" test "${OUTSIDE:-1}" = 0
run pdfsig svg-stamped.pdf
expect_out "Signature Validation: Signature is Valid." "pdfsig: the stamp with the SVG is valid"
# The SVG changed under the same name (red on the left now), the policy's
# text not: the reload is refused and recorded, and the stamp still draws
# the image the policy in force names (docs/stamp.md, "A PNG or SVG named
# in the policy").
cp right-red.svg right-red.svg.orig
sed -i 's|<rect x="50"|<rect x="0"|' right-red.svg
kill -HUP "$(cat "$E2E_SITE/sealgated.pid")"
sleep 1
expect_audit 1 "action='policy_reload' AND outcome='error' AND reason LIKE '%right-red.svg is not the image this policy names%'" \
	"a reload over the SVG changed under the same name is refused and recorded"
stamp_image svg-changed
expect_ok "alice stamps after the refused reload"
run python3 "$HERE/redbox.py" svg-changed-1.ppm 299 340.5 359.5 459.5
read -r IN OUTSIDE <<<"$OUT"
check "the stamp still has the SVG the policy names, red on the right ($IN pixels)" test "${IN:-0}" -gt 2000
check "not the changed file's left half ($OUTSIDE pixels)" test "${OUTSIDE:-1}" = 0
finish
