# shellcheck shell=bash disable=SC2034  # (variables are the test scripts')
# Shared by the tls suite's shell tests (bash, sourced): the integration
# fixture's gateway and token, a site CA with the gateway's certificate, a
# device CA whose key the gateway holds, another CA, and two network
# namespaces joined by a veth pair (the gateway in one, the "desktop" in
# the other, so only TCP crosses) when `ip netns` works, else loopback
# (said in the output).
#
#   tls_up             all of that, the gateway started with its TLS front
#   in_gw CMD / in_desk CMD   run in the gateway's / the desktop's network
#   desk CMD           in the desktop's network, as the desktop's user files
#                      ($DESK/config/sealgate) see it, no SEALGATE_* of ours
#   GWIP, DESKIP, PORT, EPORT  the gateway's and desktop's addresses, device
#                      port, enrollment port
#   totp_code USER     a fresh code for USER (the test clock moves on 60 s)
#
# usage: . "$(dirname "$0")/lib.sh" NAME
# shellcheck source=tests/integration/lib.sh
. "$SEALGATE_SOURCE/tests/integration/lib.sh" "$1"
MODULE=${SEALGATE_MODULE:?SEALGATE_MODULE not set}
P11CLIENT=${SG_P11CLIENT:?SG_P11CLIENT not set}
PROBE="python3 $SEALGATE_SOURCE/tests/tls/probe.py"
DESK=$W/desk
PKI=$W/pki
NS_GW='' NS_DESK='' VETH=''
IN_GW=() IN_DESK=()
BG_PIDS=()          # background probes, stopped at exit

tls_down() {
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	if [ -n "${SG_KEEP:-}" ]; then echo "# kept: $W"; return; fi
	fixture down || true
	if [ -n "$NS_GW" ]; then
		ip netns del "$NS_GW" 2>/dev/null || true
		ip netns del "$NS_DESK" 2>/dev/null || true
	fi
}
trap tls_down EXIT

in_gw() { "${IN_GW[@]}" "$@"; }
in_desk() { "${IN_DESK[@]}" "$@"; }
# (in an ASan build, programs not ours that load the module need the
# sanitizer's runtime first, as integration/lib.sh's foreign does)
desk() {
	local asan=()
	case ${SEALGATE_SANITIZE:-} in
	*address*) asan=(LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0) ;;
	esac
	env -u SEALGATE_SOCKET -u SEALGATE_USER -u SEALGATE_CONF -u SEALGATE_GATEWAY \
		HOME="$DESK" XDG_CONFIG_HOME="$DESK/config" "${asan[@]}" "${IN_DESK[@]}" "$@"
}

net_up() {
	local n=$(($$ % 250 + 1))
	NS_GW=sg-gw-$$ NS_DESK=sg-desk-$$ VETH=sgv$$
	if ip netns add "$NS_GW" 2>/dev/null && ip netns add "$NS_DESK" 2>/dev/null &&
	   ip link add "${VETH}g" type veth peer name "${VETH}d" 2>/dev/null &&
	   ip link set "${VETH}g" netns "$NS_GW" && ip link set "${VETH}d" netns "$NS_DESK" &&
	   ip -n "$NS_GW" addr add "10.77.$n.1/24" dev "${VETH}g" &&
	   ip -n "$NS_DESK" addr add "10.77.$n.2/24" dev "${VETH}d" &&
	   ip -n "$NS_GW" link set lo up && ip -n "$NS_DESK" link set lo up &&
	   ip -n "$NS_GW" link set "${VETH}g" up && ip -n "$NS_DESK" link set "${VETH}d" up; then
		GWIP=10.77.$n.1 DESKIP=10.77.$n.2
		IN_GW=(ip netns exec "$NS_GW")
		IN_DESK=(ip netns exec "$NS_DESK")
		PORT=8443 EPORT=8444
		echo "# gateway in network namespace $NS_GW ($GWIP), desktop in $NS_DESK: only TCP crosses"
	else
		ip netns del "$NS_GW" 2>/dev/null || true
		ip netns del "$NS_DESK" 2>/dev/null || true
		NS_GW='' NS_DESK=''
		GWIP=127.0.0.1 DESKIP=127.0.0.1
		PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
		EPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
		echo "# network namespaces cannot be made here (no CAP_NET_ADMIN?): gateway and desktop on loopback"
	fi
}

# An EC P-256 key and a certificate: NAME SUBJECT ISSUER(self|CA-NAME) EXTENSIONS
cert() {
	local name=$1 subj=$2 issuer=$3 ext=$4
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key" 2>/dev/null
	chmod 600 "$PKI/$name.key"
	printf '%b\n' "$ext" >"$PKI/$name.ext"
	if [ "$issuer" = self ]; then
		openssl req -x509 -new -key "$PKI/$name.key" -subj "$subj" -days 30 \
			-extensions v3 -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n[v3]\n%b\n' "$ext") \
			-out "$PKI/$name.pem" 2>/dev/null
	else
		openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
		openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$issuer.pem" -CAkey "$PKI/$issuer.key" \
			-CAcreateserial -days 30 -extfile "$PKI/$name.ext" -out "$PKI/$name.pem" 2>/dev/null
	fi
}

pki_up() {
	mkdir -p "$PKI"
	local ca='basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash'
	cert site-ca "/CN=Integration Site CA" self "$ca"
	cert gateway "/CN=seals.test" site-ca \
		"subjectAltName=DNS:seals.test,IP:$GWIP\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE"
	cert device-ca "/CN=Integration Device CA" self "$ca"
	cert other-ca "/CN=Another CA" self "$ca"
	cert intruder "/CN=intruder" other-ca "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE"
	cert impostor "/CN=seals.test" self "subjectAltName=DNS:seals.test,IP:$GWIP\nbasicConstraints=CA:FALSE"
}

tls_up() {
	net_up
	fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
	fixture stop
	pki_up
	cat >>"$W/sealgated.yaml" <<EOF
tls_listen: "$GWIP:$PORT"
tls_enroll_listen: "$GWIP:$EPORT"
tls_cert: $PKI/gateway.pem
tls_key: $PKI/gateway.key
tls_device_ca: $PKI/device-ca.pem
tls_device_ca_key: $PKI/device-ca.key
tls_devices: $W/devices
tls_connections_per_device: 4
frame_timeout: 2
client_idle_timeout: 3
EOF
	if [ -n "$NS_GW" ]; then
		printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$NS_GW" "$gw" >"$W/sealgated-ns"
		chmod 755 "$W/sealgated-ns"
		export SEALGATE_GATEWAY=$W/sealgated-ns
	fi
	fixture start >>"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; tail -20 "$W/sealgated.log"; exit 1; }
	mkdir -p "$DESK/config"
	# frank, the seal admin, gets a TOTP secret: approving a device needs it.
	(umask 077; python3 -c 'import base64, os; print(base64.b32encode(os.urandom(20)).decode(), end="")' \
		>"$W/totp-frank.b32")
	printf 'frank-password\n' >"$W/pw-frank"
	"$ctl" --socket "$W/sealgated.sock" --user frank --password-file "$W/pw-frank" user totp-enroll \
		--secret-file "$W/totp-frank.b32" --code "$(totp_code frank)" >/dev/null
}

totp_code() {
	local t
	t=$(($(cat "$W/clock") + 60))
	echo "$t" >"$W/clock"
	oathtool --totp -b --now "@$t" "$(cat "$W/totp-$1.b32")"
}

# A seal admin's device command: frank with password and a fresh code.
admin() {
	SEALGATE_CODE=$(totp_code frank) "$ctl" --socket "$W/sealgated.sock" --user frank \
		--password-file "$W/pw-frank" device "$@"
}
