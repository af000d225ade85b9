#!/usr/bin/env bash
# e2e: poppler 22.12's pdfsig signs PDFs with EC seals through
# sealgate-pkcs11.so: N PDFs (100 unless E2E_PDFSIG_EC_TRIES says) with the
# Finance Seal (P-256) and N with a P-384 seal added to this site's token
# and policy. poppler keeps the probe's signature length and accepts only a
# real signature of exactly that length, and NSS DER-encodes ECDSA's r||s,
# whose length varies: the gateway gives the probe a placeholder of a
# chosen DER length and the real signature that length (docs/workflow.md,
# "Size probes"). Every PDF must be signed, verify (pdfsig and openssl cms)
# and spend exactly one use; every probe none.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
need certutil modutil pdfsig sqlite3 oathtool perl
TRIES=${E2E_PDFSIG_EC_TRIES:-100}
e2e_setup
cd "$W"

# ---- the P-384 seal: a key on the backend token, its certificate, a seal
# in the policy (the demo site has P-256 seals only), and a reload.
backend() {
	SOFTHSM2_CONF=$E2E_SITE/softhsm2.conf pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so \
		--token-label sealgate-demo --login --pin "$(cat "$E2E_SITE/token.pin")" "$@"
}
run backend --keypairgen --key-type EC:secp384r1 --id 38 --label ledger-seal --usage-sign
expect_ok "a P-384 key generated on the backend token"
# pkcs11-tool 0.23 cannot --read-object a P-384 public key ("cannot create
# EVP_PKEY"): its SubjectPublicKeyInfo from the EC_POINT it printed (a DER
# OCTET STRING 0x04 0x61 around the 97-byte uncompressed point).
point=$(sed -n 's/^ *EC_POINT: *0461\(04[0-9a-f]\{192\}\)$/\1/p' <<<"$OUT")
unhex "3076301006072a8648ce3d020106052b81040022036200$point" >ledger.pub.der
openssl pkey -pubin -inform DER -in ledger.pub.der -out ledger.pub.pem
cat >ext.cnf <<'EOF'
[seal]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = emailProtection,1.3.6.1.5.5.7.3.36
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl x509 -new -force_pubkey ledger.pub.pem -subj "/C=CN/O=Acme Trading Co./OU=Finance/CN=Acme Trading Co. Ledger Seal" \
	-CA "$E2E_SITE/ca/ca.pem" -CAkey "$E2E_SITE/ca/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
	-days 30 -sha384 -extfile ext.cnf -extensions seal -outform DER -out ledger.der
run backend --write-object ledger.der --type cert --id 38 --label ledger-seal
expect_ok "its certificate on the backend token"
cat >>"$E2E_SITE/policy.yaml" <<'EOF'

  - id: ledger
    name: Ledger Seal
    kind: finance
    mfa: none
    key: "pkcs11:object=ledger-seal;type=private"
    holder: finance
    users:
      departments: [finance]
    approval:
      rules:
        - levels:
            - { role: executive, quorum: 1 }
EOF
reloads=$(audit_count "action='policy_reload' AND outcome='ok'")
kill -HUP "$(cat "$E2E_SITE/sealgated.pid")"
for _ in $(seq 50); do
	[ "$(audit_count "action='policy_reload'")" -gt "$reloads" ] && break
	sleep 0.2
done
expect_audit $((reloads + 1)) "action='policy_reload' AND outcome='ok'" "the policy with the Ledger Seal is loaded"

DB=sql:$W/nssdb
export SEALGATE_USER=dave
DAVE=$(password_of dave)
nss_db_with_sealgate "$W/nssdb"
make_pdf in.pdf "Acme Trading Co. - Payment voucher 2024-0815"

# The CMS SignedData of a signed PDF (its /Contents) and the bytes it signs
# (its /ByteRange), for openssl cms -verify.
split_pdf() { # pdf cms-out content-out
	perl -e '
		binmode STDIN;
		$_ = do { local $/; <STDIN> };
		/\/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]/ or die "no ByteRange\n";
		my ($a, $b, $c, $d) = ($1, $2, $3, $4);
		my $hex = substr($_, $b, $c - $b);
		$hex =~ s/^<|>$//g;
		open my $o, ">", $ARGV[0] or die; binmode $o; print $o pack("H*", $hex); close $o;
		open my $t, ">", $ARGV[1] or die; binmode $t; print $t substr($_, $a, $b) . substr($_, $c, $d); close $t;
	' "$2" "$3" <"$1"
}

# N PDFs with one seal: counts what failed at each step.
sign_many() { # seal-id seal-name approver
	local seal=$1 name=$2 app i bad_sign=0 bad_verify=0 bad_cms=0 before_ok before_probe
	if app=$(authorize dave "$seal" "$TRIES" "$3" --type payment); then
		pass "dave's application #$app for $TRIES uses of the $name is authorized"
	else
		fail "dave's application for the $name was not authorized"
		return
	fi
	before_ok=$(audit_count "action='sign' AND outcome='ok' AND seal='$seal'")
	before_probe=$(audit_count "action='sign_probe' AND seal='$seal'")
	for ((i = 1; i <= TRIES; i++)); do
		rm -f out.pdf
		set +e
		OUT=$(pdfsig -add-signature -nssdir "$DB" -nss-pwd "$DAVE" -kpw "$DAVE" \
			-nick "$TOKEN_LABEL:$name" -reason "voucher $i" in.pdf out.pdf 2>&1)
		RC=$?
		set -e
		if [ "$RC" != 0 ] || [ ! -s out.pdf ]; then
			bad_sign=$((bad_sign + 1))
			[ "$bad_sign" -gt 3 ] || log "$name PDF #$i: pdfsig exit $RC: $OUT"
			continue
		fi
		OUT=$(pdfsig -nssdir "$DB" out.pdf 2>&1) || true
		if ! grep -qF "Signature Validation: Signature is Valid." <<<"$OUT"; then
			bad_verify=$((bad_verify + 1))
			[ "$bad_verify" -gt 3 ] || log "$name PDF #$i does not verify: $OUT"
		fi
		if ! split_pdf out.pdf sig.cms signed.bin ||
			! openssl cms -verify -binary -inform DER -in sig.cms -content signed.bin \
				-CAfile "$SEALGATE_CA" -purpose any -out /dev/null 2>cms.err; then
			bad_cms=$((bad_cms + 1))
			[ "$bad_cms" -gt 3 ] || log "$name PDF #$i: openssl cms -verify: $(cat cms.err)"
		fi
	done
	check "$name: all $TRIES PDFs signed ($bad_sign failed)" test "$bad_sign" = 0
	check "$name: all $TRIES verify in pdfsig ($bad_verify did not)" test "$bad_verify" = 0
	check "$name: all $TRIES verify in openssl cms ($bad_cms did not)" test "$bad_cms" = 0
	check "$name: $TRIES PDFs spent all $TRIES uses, one each" test "$(uses_left dave "$app")" = 0
	expect_audit $((before_ok + TRIES)) "action='sign' AND outcome='ok' AND seal='$seal'" \
		"$name: one sign record per PDF"
	expect_audit $((before_probe + TRIES)) "action='sign_probe' AND seal='$seal'" \
		"$name: one sign_probe per PDF"
	expect_audit "$TRIES" "action='sign' AND outcome='ok' AND seal='$seal' AND detail LIKE '{\"token_signatures\":%'" \
		"$name: each sign record says how many token signatures it took"
	log "$name: token signatures per PDF: $(e2e_sql \
		"SELECT n || ' x' || c FROM (SELECT json_extract(detail, '\$.token_signatures') AS n, count(*) AS c
		 FROM audit WHERE action='sign' AND outcome='ok' AND seal='$seal' GROUP BY n ORDER BY n) AS t" | paste -sd,)"
}

sign_many finance "Finance Seal" erin
sign_many ledger "Ledger Seal" carol   # not erin: a TOTP code is taken once

finish
