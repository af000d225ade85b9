#!/usr/bin/env bash
# stamp-tsa: sealctl stamp --tsa (docs/stamp.md, "The timestamp"). A real
# TSA — openssl ts -reply with a TSA certificate made here (critical
# extended key usage timeStamping) behind tests/stamp/tsa.py on loopback.
# A stamp with --tsa is still valid for pdfsig; its token, extracted,
# verifies with openssl ts -verify over the signature value; sealctl verify
# prints the TSA's time and name, checked against --tsa-ca or said not to
# be. Refused, with no OUT.pdf and the message saying the signature was
# recorded: a TSA that is down, one answering another nonce or another
# imprint, a rejection, a token signed by a certificate that is not a
# TSA's, a token too large for its room, an answer that is no timestamp
# reply, a TSA that does not answer within the timeout. A token edited or from another
# stamp fails sealctl verify.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/../e2e/lib.sh"
need pdfsig python3 openssl oathtool sqlite3
HERE=$(cd "$(dirname "$0")" && pwd)
SEALCTL=$SEALGATE_BUILD/tools/sealctl
e2e_setup
cd "$W"

# --- the TSA: a CA, and its TSA certificate for timestamping only
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tsa-ca.key \
	-subj "/O=Example Time Authority/CN=Example TSA Root" -days 2 -out tsa-ca.pem \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tsa.key \
	-subj "/O=Example Time Authority/CN=Example TSA 1" -out tsa.csr 2>/dev/null
printf '%s\n' "extendedKeyUsage=critical,timeStamping" "keyUsage=critical,digitalSignature" \
	"basicConstraints=CA:FALSE" >tsa.ext
openssl x509 -req -in tsa.csr -CA tsa-ca.pem -CAkey tsa-ca.key -CAcreateserial -days 2 \
	-extfile tsa.ext -out tsa.pem 2>/dev/null
# and a certificate of the same CA for anything but timestamping
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout noeku.key \
	-subj "/O=Example Time Authority/CN=Not a TSA" -out noeku.csr 2>/dev/null
printf '%s\n' "extendedKeyUsage=emailProtection" "keyUsage=critical,digitalSignature" >noeku.ext
openssl x509 -req -in noeku.csr -CA tsa-ca.pem -CAkey tsa-ca.key -CAcreateserial -days 2 \
	-extfile noeku.ext -out noeku.pem 2>/dev/null
# 20 copies of the CA in the token: over 8 KiB of certificates
for _ in $(seq 1 20); do cat tsa-ca.pem; done >big-chain.pem
echo 01 >tsa.serial
cat >tsa.cnf <<CNF
[ tsa ]
default_tsa = tsa_main
[ tsa_main ]
serial = $W/tsa.serial
crypto_device = builtin
signer_cert = $W/tsa.pem
certs = $W/tsa-ca.pem
signer_key = $W/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
[ tsa_big ]
serial = $W/tsa.serial
crypto_device = builtin
signer_cert = $W/tsa.pem
certs = $W/big-chain.pem
signer_key = $W/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256
[ tsa_sha1 ]
serial = $W/tsa.serial
crypto_device = builtin
signer_cert = $W/tsa.pem
signer_key = $W/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha1
CNF
python3 "$HERE/tsa.py" serve "$W/tsa.cnf" "$W/tsa.port" 2>tsa.log &
TSA_PID=$!
# The TSA goes with the test, whatever way it ends (e2e_cleanup keeps the
# exit code; tsa.py also leaves when this shell is gone).
trap 'rc=$?; set +e; kill "$TSA_PID" 2>/dev/null; wait "$TSA_PID" 2>/dev/null; (exit $rc); e2e_cleanup' EXIT
for _ in $(seq 1 100); do [ -s tsa.port ] && break; sleep 0.1; done
check "the TSA listens" test -s tsa.port
TSA=http://127.0.0.1:$(cat tsa.port)

make_pdf contract.pdf "Acme Trading Co. - Sales contract No. 2026-31"
ID=$(authorize alice contract 15 bob --type contract --amount 1000 --scope sales --doc contract.pdf)
check "alice's application of 15 uses bound to contract.pdf is authorized" test -n "$ID"
stamp() { # out [extra args]
	local out=$1
	shift
	run sealctl_as alice stamp --seal contract --in contract.pdf --out "$out" \
		--application "$ID" --page 1 --at 420,200 "$@"
}

# --- a good timestamp
stamp stamped.pdf --tsa "$TSA/tsa"
expect_ok "alice stamps the contract with a timestamp"
run pdfsig stamped.pdf
expect_out "Signature Validation: Signature is Valid." "pdfsig: the timestamped stamp is valid"
expect_out "Total document signed" "pdfsig: it covers the whole file"
contents_hex() { python3 -c 'import re, sys
print(len(re.findall(rb"/Contents <([0-9A-Fa-f]*)>", open(sys.argv[1], "rb").read())[-1]))' "$1"; }
check "--tsa reserves 8 KiB more of /Contents: 24 KiB of DER, 49152 hex digits" \
	test "$(contents_hex stamped.pdf)" = 49152
python3 "$HERE/pdfedit.py" tst-token stamped.pdf token.tst
python3 "$HERE/pdfedit.py" sig-value stamped.pdf sig.bin >/dev/null
run openssl ts -verify -token_in -in token.tst -data sig.bin -CAfile tsa-ca.pem -untrusted tsa.pem
expect_ok "openssl ts -verify: the token is a timestamp of the signature value"
expect_out "Verification: OK" "and openssl says so"
run openssl ts -reply -token_in -in token.tst -text -token_out
TSA_TIME=$(sed -n 's/^Time stamp: *//p' <<<"$OUT")
check "the token has a time ($TSA_TIME)" test -n "$TSA_TIME"
WANT_TIME=$(date -u -d "$TSA_TIME" '+%Y-%m-%d %H:%M:%S UTC')
run "$SEALCTL" verify stamped.pdf --ca "$SEALGATE_CA" --audit-cert "$E2E_SITE/certs/audit.pem" \
	--tsa-ca tsa-ca.pem
expect_ok "sealctl verify --tsa-ca: the stamp, its receipt and its timestamp hold"
expect_out "timestamp: $WANT_TIME by /O=Example Time Authority/CN=Example TSA 1" \
	"sealctl verify prints the TSA's time and name"
expect_out "the TSA's certificate from --tsa-ca" "and that the TSA is checked against --tsa-ca"
run "$SEALCTL" verify stamped.pdf --ca "$SEALGATE_CA" --audit-cert "$E2E_SITE/certs/audit.pem"
expect_ok "sealctl verify without --tsa-ca holds as well"
expect_out "timestamp: $WANT_TIME" "and prints the time"
expect_out "TSA not checked against a CA" "and says plainly the TSA is not checked"
run "$SEALCTL" verify stamped.pdf --audit-cert "$E2E_SITE/certs/audit.pem" --tsa-ca "$SEALGATE_CA"
expect_fail "a timestamp checked against another CA than the TSA's fails"
expect_out "timestamp: NOT VALID (it does not verify against the TSA CA" "and says so"
python3 "$HERE/pdfedit.py" edit-tst stamped.pdf edited-tst.pdf
run pdfsig edited-tst.pdf
expect_out "Signature Validation: Signature is Valid." "the token edited changes no signed byte of the file"
run "$SEALCTL" verify edited-tst.pdf --audit-cert "$E2E_SITE/certs/audit.pem"
expect_fail "a token edited (its serial number) fails sealctl verify"
expect_out "timestamp: NOT VALID (its signature does not verify" "and says so"

# SEALGATE_TSA_URL in place of --tsa; a second stamp's token in the first
# stamp's file is another signature value's.
SEALGATE_TSA_URL=$TSA/tsa stamp env.pdf
expect_ok "SEALGATE_TSA_URL stamps with a timestamp"
run "$SEALCTL" verify env.pdf --audit-cert "$E2E_SITE/certs/audit.pem" --tsa-ca tsa-ca.pem
expect_out "timestamp: 20" "the timestamp is there"
python3 "$HERE/pdfedit.py" swap-receipt env.pdf stamped.pdf swapped.pdf
run "$SEALCTL" verify swapped.pdf --audit-cert "$E2E_SITE/certs/audit.pem" --tsa-ca tsa-ca.pem
expect_fail "another stamp's timestamp (and receipt) fails"
expect_out "timestamp: NOT VALID (its message imprint is not the SHA-256 of this signature value)" \
	"and says the imprint is another signature value's"
stamp plain.pdf
run "$SEALCTL" verify plain.pdf --audit-cert "$E2E_SITE/certs/audit.pem"
expect_ok "a stamp without --tsa holds"
expect_out "timestamp: none" "and verify says it has no timestamp"
check "its /Contents is the 16 KiB of DER it always was" test "$(contents_hex plain.pdf)" = 32768

# --- TSAs that fail: the stamp fails, says the signature was recorded,
# and leaves no file. Each attempt spends a use (the signature is made
# before the TSA is asked).
refused() { # path description message
	local signs out=refused-${1#/}.pdf
	signs=$(audit_count "action='sign' AND outcome='ok' AND application=$ID")
	stamp "$out" --tsa "$TSA$1"
	expect_fail "$2: the stamp fails"
	expect_out "$3" "$2: said"
	expect_out "no stamped file is written (the gateway has made and recorded the signature already" \
		"$2: the message says the signature is recorded"
	check "$2: no $out" test ! -e "$out"
	check "$2: nor a temporary file beside it ($out.XXXXXX)" test -z "$(compgen -G "$out.*" || true)"
	expect_audit $((signs + 1)) "action='sign' AND outcome='ok' AND application=$ID" \
		"$2: the signature was recorded all the same"
}
refused /bad-nonce "a TSA answering with another nonce" "its nonce is not the request's"
refused /bad-imprint "a TSA timestamping another digest" \
	"its message imprint is not the SHA-256 of this signature value"
refused /rejected "a TSA that rejects the request" "the TSA refused the request (status 2)"
refused /no-eku "a token signed by a certificate not for timestamping" \
	"the TSA's certificate is not for timestamping"
refused /big "a token larger than the room reserved for it" "more than the 8192 reserved for it"
refused /html "a web page in place of a TSA" "not application/timestamp-reply"
# A port nobody listens on: the TSA is down.
DOWN=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
stamp down.pdf --tsa "http://127.0.0.1:$DOWN/tsa"
expect_fail "a TSA that is down: the stamp fails"
expect_out "cannot be reached" "and says the TSA cannot be reached"
expect_out "recorded the signature already" "and that the signature is recorded"
check "no down.pdf" test ! -e down.pdf
refused /slow "a TSA that does not answer" "did not answer within 15 s"
finish
