#!/usr/bin/env bash
# stamp: documents in the gateway (docs/stamp.md). alice applies with a
# 1.3 MB file (three doc_put chunks); show reports it stored; bob (whose
# approval it waits for) and grace (auditor) read back the same bytes;
# dave and erin, who have no part in it, are refused and recorded; an
# upload whose SHA-256 is not the announced one, one that skips ahead and
# one over document_max_size are refused (the first two recorded) and
# nothing is stored.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../e2e/lib.sh"
need python3 sqlite3
RAW=$(cd "$(dirname "$0")" && pwd)/sgraw.py
e2e_setup
cd "$W"

raw_as() { # account: requests on stdin, replies on stdout
	python3 "$RAW" "$SEALGATE_SOCKET" "$1" "$(password_of "$1")"
}

head -c 1300000 /dev/urandom >contract.pdf
SHA=$(sha256sum contract.pdf | cut -d' ' -f1)
run sealctl_as alice apply --seal contract --type contract --amount 1000 --scope sales \
	--reason "contract with its document" --doc contract.pdf
expect_ok "alice applies with contract.pdf"
ID=$(sed -n '1s/^#\([0-9][0-9]*\).*/\1/p' <<<"$OUT")
expect_audit 1 "action='document_store' AND outcome='ok' AND actor='alice' AND lower(hex(doc_digest))='$SHA'" \
	"the upload is recorded with the document's SHA-256"
run sealctl_as alice show "$ID"
expect_out "contract.pdf, 1300000 bytes, sha256 $SHA (stored)" "show says the document is stored"
run sealctl_as alice --json show "$ID"
expect_out '"stored": true' "show --json has document.stored"

run sealctl_as bob doc get "$SHA" --out bob.pdf
expect_ok "bob, the approver it waits for, reads the document"
check "bob read the very bytes alice applied with" cmp -s contract.pdf bob.pdf
run sealctl_as grace doc get "$SHA" --out grace.pdf
expect_ok "grace (auditor) reads the document"
check "grace read the same bytes" cmp -s contract.pdf grace.pdf
expect_audit 2 "action='document_read' AND outcome='ok' AND lower(hex(doc_digest))='$SHA'" \
	"each reading is recorded once"

for who in dave erin; do
	run sealctl_as "$who" doc get "$SHA" --out "$who.pdf"
	expect_fail "$who, who has no part in the application, may not read it"
	expect_out "no document that $who may read" "$who is told there is no document for them"
	expect_audit 1 "action='document_read' AND outcome='denied' AND actor='$who'" \
		"$who's refusal is recorded"
done
check "dave got no bytes" test ! -s dave.pdf

ZERO=$(printf '0%.0s' $(seq 64))
run raw_as dave <<<'{"op":"doc_put","sha256":"'"$ZERO"'","size":1,"offset":0,"data":"eA=="}'
expect_out '"error": "digest_mismatch"' "an upload whose SHA-256 is not the announced one is refused"
expect_audit 1 "action='document_store' AND outcome='denied' AND actor='dave'" "and recorded"
XSHA=$(printf 'x' | sha256sum | cut -d' ' -f1)
run raw_as dave <<<'{"op":"doc_put","sha256":"'"$XSHA"'","size":2,"offset":1,"data":"eA=="}'
expect_out '"error": "bad_offset"' "a chunk past what this session uploaded is refused"
run raw_as dave <<<'{"op":"doc_put","sha256":"'"$XSHA"'","size":33554433,"offset":0,"data":"eA=="}'
expect_out '"error": "too_large"' "a document over 32 MiB is refused"
expect_audit 2 "action='document_store' AND outcome='denied' AND actor='dave'" "and recorded"
run sqlite3 -readonly "$E2E_SITE/sealgate.db" "SELECT count(*) FROM documents"
check "only alice's document is stored" test "$OUT" = 1

# A session's upload is its own: another session of the same person cannot
# go on with it.
head -c 700000 /dev/urandom >two.bin
head -c 524288 two.bin >two.1
tail -c +524289 two.bin >two.2
TSHA=$(sha256sum two.bin | cut -d' ' -f1)
run raw_as dave <<<'{"op":"doc_put","sha256":"'"$TSHA"'","size":700000,"offset":0,"data":"$FILE:two.1"}'
expect_out '"stored": false' "the first chunk of an upload is taken"
run raw_as dave <<<'{"op":"doc_put","sha256":"'"$TSHA"'","size":700000,"offset":524288,"data":"$FILE:two.2"}'
expect_out '"error": "bad_offset"' "another session cannot finish it"
run raw_as dave <<EOF2
{"op":"doc_put","sha256":"$TSHA","size":700000,"offset":0,"data":"\$FILE:two.1"}
{"op":"doc_put","sha256":"$TSHA","size":700000,"offset":524288,"data":"\$FILE:two.2"}
EOF2
expect_out '"stored": true' "one session's chunks in order store it"
run raw_as dave <<<'{"op":"doc_get","sha256":"'"$TSHA"'"}'
expect_out '"error": "no_document"' "the uploader of a document bound to no application of theirs may not read it back"
finish
