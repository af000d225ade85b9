#!/bin/sh
# Card fixture: the NSS database that vpcd-bridge turns into a virtual CAC
# card. Keys are generated inside the database (they never exist as files),
# certificates come from a throw-away test CA. The database password is the
# card PIN (4-8 characters, as on a real CAC).
#
# usage: mkcard.sh DIR PIN NICK:BITS[:CN]...  e.g. mkcard.sh card-a 12345678 seal-a:2048
#   (at most 3 keys, RSA up to 3072 bits; the card shows them with CKA_ID
#    00 01, 00 02, 00 03 in this order; CN defaults to NICK, and the first
#    certificate's CN becomes the card's token label)
# env: SG_ORG (certificate O=, default "sealgate test"), SG_CA_DIR (reuse the
#      CA in that directory, e.g. to give two cards the same issuer)
# outputs: DIR/nssdb/, DIR/ca.pem, DIR/ca.key, DIR/<nick>.crt.pem, DIR/<nick>.crt.der,
#          DIR/certs (the nicknames, one a line, for vpcd-bridge)
set -eu

if [ $# -lt 3 ]; then
	echo "usage: $0 DIR PIN NICK:BITS..." >&2
	exit 2
fi
dir=$1 pin=$2
shift 2
org=${SG_ORG:-sealgate test}
case ${#pin} in
4|5|6|7|8) ;;
*) echo "$0: a CAC PIN has 4 to 8 characters" >&2; exit 2 ;;
esac
[ $# -le 3 ] || { echo "$0: a CAC card holds at most 3 keys" >&2; exit 2; }

umask 077
mkdir -p "$dir/nssdb"
dir=$(cd "$dir" && pwd)
db=sql:$dir/nssdb
printf '%s\n' "$pin" >"$dir/pwfile"
head -c 64 /dev/urandom >"$dir/noise"
certutil -N -d "$db" -f "$dir/pwfile"

ca=${SG_CA_DIR:-$dir}
if [ ! -f "$ca/ca.key" ]; then
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$ca/ca.key" 2>/dev/null
	openssl req -x509 -new -key "$ca/ca.key" -subj "/O=$org/CN=$org card CA" \
		-days 3650 -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign -out "$ca/ca.pem"
fi
[ "$ca" = "$dir" ] || cp "$ca/ca.pem" "$dir/ca.pem"

: >"$dir/certs"
for spec in "$@"; do
	nick=${spec%%:*}
	rest=${spec#*:}
	[ "$rest" != "$spec" ] || rest=2048
	bits=${rest%%:*}
	cn=${rest#*:}
	[ "$cn" != "$rest" ] || cn=$nick
	certutil -R -d "$db" -f "$dir/pwfile" -z "$dir/noise" -k rsa -g "$bits" \
		-s "O=$org,CN=$cn" -o "$dir/$nick.csr" >/dev/null 2>&1
	openssl x509 -req -inform DER -in "$dir/$nick.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" \
		-set_serial "0x$(openssl rand -hex 8)" -days 825 -extfile /dev/stdin -outform DER \
		-out "$dir/$nick.crt.der" 2>/dev/null <<EOX
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,nonRepudiation
EOX
	openssl x509 -inform DER -in "$dir/$nick.crt.der" -out "$dir/$nick.crt.pem"
	certutil -A -d "$db" -f "$dir/pwfile" -n "$nick" -t ",," -i "$dir/$nick.crt.der"
	rm -f "$dir/$nick.csr"
	echo "$nick" >>"$dir/certs"
done
rm -f "$dir/noise" "$dir/pwfile"
