#!/usr/bin/env bash
# e2e: the approval workflow of the demo company with real clients.
# A 5,000,000 contract needs bob (head of Sales) and then carol (executive):
# carol before bob is refused, alice cannot approve her own application,
# and pkcs11-tool signs only once both approved. A document-bound approval
# signs that document and refuses another. svc-billing signs invoices with
# no approval until the Invoice Seal's daily quota is reached (the quota is
# lowered to 3 by a policy reload for the test).
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
need oathtool
e2e_setup
cd "$W"

ALICE=$(password_of alice)
printf 'Supply contract No. 2026-77\nAmount: 5,000,000 CNY\n' >big.txt
printf 'Contract A: 10 tons of steel\n' >a.txt
printf 'Contract B: 99 tons of gold\n' >b.txt
export SEALGATE_USER=alice
CONTRACT_ID=$(seal_id "Contract Seal")

approve_as() { # approver id
	SEALGATE_CODE=$(totp_of "$1") sealctl_as "$1" approve "$2"
}

# --- two levels, in order
run sealctl_as alice apply --seal contract --type contract --amount 5000000 --scope sales \
	--reason "supply contract" --uses 1
expect_ok "alice applies for a 5,000,000 contract"
expect_out "waiting for level 1 of 2" "the application waits for level 1 of 2"
BIG=$(sed -n '1s/^#\([0-9][0-9]*\).*/\1/p' <<<"$OUT")
run approve_as carol "$BIG"
expect_fail "carol (executive) cannot approve before bob (level 1)"
run approve_as alice "$BIG"
expect_fail "alice cannot approve her own application"
run p11 --login --pin "$ALICE" --sign -m SHA256-RSA-PKCS --id "$CONTRACT_ID" -i big.txt -o big-early.sig
expect_fail "no signature while level 2 is open"
run approve_as bob "$BIG"
expect_ok "bob approves level 1"
run p11 --login --pin "$ALICE" --sign -m SHA256-RSA-PKCS --id "$CONTRACT_ID" -i big.txt -o big-early2.sig
expect_fail "still no signature: level 2 is open"
run sealctl_as alice why
expect_out "waiting for level 2 of 2: an executive (carol)" "sealctl why names the missing level and carol"

# --- a document-bound approval, applied for now
run sealctl_as alice apply --seal contract --type contract --amount 1000 --scope sales \
	--reason "contract A only" --doc a.txt
expect_ok "alice applies for contract A, bound to its SHA-256"
DOC=$(sed -n '1s/^#\([0-9][0-9]*\).*/\1/p' <<<"$OUT")

# A TOTP code counts once per account: carol and bob approve again in the
# next 30-second step.
sleep $((31 - $(date +%s) % 30))
run approve_as carol "$BIG"
expect_ok "carol approves level 2"
expect_out "authorized" "the application is authorized"
run approve_as bob "$DOC"
expect_ok "bob approves the bound application"

run p11 --login --pin "$ALICE" --sign -m SHA256-RSA-PKCS --id "$CONTRACT_ID" -i big.txt -o big.sig
expect_ok "alice signs the big contract with pkcs11-tool"
run p11 --login --pin "$ALICE" --sign -m SHA256-RSA-PKCS --id "$CONTRACT_ID" -i big.txt -o big2.sig
expect_fail "a second signature of the big contract is refused (one use)"

run p11 --login --pin "$ALICE" --sign -m SHA256-RSA-PKCS --id "$CONTRACT_ID" -i b.txt -o b.sig
expect_fail "contract B is refused under contract A's approval"
run sealctl_as alice why
expect_out "bound to another document" "why says the approval is bound to another document"
run p11 --login --pin "$ALICE" --sign -m SHA256-RSA-PKCS --id "$CONTRACT_ID" -i a.txt -o a.sig
expect_ok "contract A is signed"
openssl x509 -inform DER -in <(p11 --read-object --type cert --id "$CONTRACT_ID" 2>/dev/null) \
	-pubkey -noout >contract.pub
run openssl dgst -sha256 -verify contract.pub -signature a.sig a.txt
expect_out "Verified OK" "the signature over contract A verifies"

# --- svc-billing: no approval, a daily quota (lowered to 3 for the test)
sed -i 's/quotas: { per_day: 1000 }/quotas: { per_day: 3 }/' "$E2E_SITE/policy.yaml"
kill -HUP "$(cat "$E2E_SITE/sealgated.pid")"
sleep 1
export SEALGATE_USER=svc-billing
BILLING=$(password_of svc-billing)
INVOICE_ID=$(seal_id "Invoice Seal")
check "svc-billing sees the Invoice Seal" test -n "$INVOICE_ID"
ok=0
for i in 1 2 3 4; do
	printf 'Invoice %d\n' "$i" >inv$i.txt
	openssl dgst -sha256 -binary inv$i.txt >inv$i.sha256
	if p11 --login --pin "$BILLING" --sign -m ECDSA --id "$INVOICE_ID" -i inv$i.sha256 -o inv$i.sig >/dev/null 2>&1; then
		ok=$((ok + 1))
	fi
done
check "svc-billing signed exactly 3 invoices under a daily quota of 3 ($ok)" test "$ok" = 3
run sealctl_as svc-billing why
expect_out "daily quota" "why names the daily quota"

finish
