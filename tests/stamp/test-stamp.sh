#!/usr/bin/env bash
# stamp: sealctl stamp on a document-bound application (docs/stamp.md).
# alice applies with contract.pdf, bob approves, alice stamps it: pdfsig
# says the signature is valid, qpdf --check finds no error, and the page
# rendered by pdftoppm has the seal's red in the box asked for and nowhere
# else. A second stamp (on an application bound to the stamped file)
# leaves both valid. Refused and recorded, with nothing spent (the uses
# and the quota as they were): another document, the document changed
# after approval, an application already used, a seal the person may not
# use.
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
expect_audit 3 "action='stamp_prepare' AND outcome='denied' AND application=$ID2 AND reason LIKE 'not a stamp%'" \
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
finish
