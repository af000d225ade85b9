#!/bin/sh
# Test fixture: a real SoftHSM2 token in DIR with seal keys generated ON the
# token, a throw-away test CA, and one CA-signed certificate per key written
# back to the token under the key's CKA_ID. Reused by the backend, integration
# and e2e suites.
#
# usage: mktoken.sh DIR LABEL PIN SPEC...
#   SPEC = label:id:keytype    e.g.  rsa-seal:01:rsa:2048
#                                    ec-seal:02:EC:prime256v1
#                                    ed-seal:03:EC:edwards25519
#   (keytype is anything pkcs11-tool --key-type accepts; it may contain ':')
# env: SG_SOFTHSM_MODULE (default /usr/lib/softhsm/libsofthsm2.so),
#      SG_SO_PIN (default 5678), SG_ORG (certificate O=, default "sealgate test"),
#      SG_SEAL_EKU (an extendedKeyUsage for the seal certificates, default none;
#      emailProtection makes NSS offer them for signing, as pdfsig needs)
# outputs: DIR/softhsm2.conf, DIR/tokens/, DIR/ca.pem, DIR/ca.key,
#          DIR/<label>.crt.pem, DIR/<label>.crt.der, DIR/<label>.pub.pem
# Use it with: export SOFTHSM2_CONF=DIR/softhsm2.conf
set -eu

if [ $# -lt 3 ]; then
	echo "usage: $0 DIR LABEL PIN label:id:keytype..." >&2
	exit 2
fi
dir=$1 label=$2 pin=$3
shift 3
module=${SG_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
so_pin=${SG_SO_PIN:-5678}
org=${SG_ORG:-sealgate test}

umask 077
mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
cat >"$dir/softhsm2.conf" <<EOF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
SOFTHSM2_CONF=$dir/softhsm2.conf
export SOFTHSM2_CONF

p11() { pkcs11-tool --module "$module" --token-label "$label" "$@"; }

softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$so_pin" >/dev/null

if [ ! -f "$dir/ca.key" ]; then
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
	openssl req -x509 -new -key "$dir/ca.key" -subj "/O=$org/CN=$org test CA" \
		-days 3650 -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign -out "$dir/ca.pem"
fi

serial=$(date +%s)
for spec in "$@"; do
	klabel=${spec%%:*}
	rest=${spec#*:}
	kid=${rest%%:*}
	ktype=${rest#*:}
	if [ -z "$klabel" ] || [ -z "$kid" ] || [ "$ktype" = "$rest" ]; then
		echo "$0: bad spec '$spec' (want label:id:keytype)" >&2
		exit 2
	fi
	p11 --login --pin "$pin" --keypairgen --key-type "$ktype" \
		--label "$klabel" --id "$kid" >/dev/null
	# pkcs11-tool writes DER for RSA/EC and PEM for Ed25519; openssl
	# pkey detects either.
	p11 --read-object --type pubkey --id "$kid" -o "$dir/$klabel.pub.raw" >/dev/null 2>&1
	openssl pkey -pubin -in "$dir/$klabel.pub.raw" -out "$dir/$klabel.pub.pem"
	rm -f "$dir/$klabel.pub.raw"
	serial=$((serial + 1))
	openssl x509 -new -subj "/O=$org/CN=$klabel" -force_pubkey "$dir/$klabel.pub.pem" \
		-CA "$dir/ca.pem" -CAkey "$dir/ca.key" -set_serial "$serial" -days 825 \
		-extfile /dev/stdin -out "$dir/$klabel.crt.pem" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,nonRepudiation
${SG_SEAL_EKU:+extendedKeyUsage=$SG_SEAL_EKU}
EOF
	openssl x509 -in "$dir/$klabel.crt.pem" -outform DER -out "$dir/$klabel.crt.der"
	p11 --login --pin "$pin" --write-object "$dir/$klabel.crt.der" --type cert \
		--id "$kid" --label "$klabel" >/dev/null
done
