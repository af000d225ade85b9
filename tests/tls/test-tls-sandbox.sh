#!/usr/bin/env bash
# tls: `tools/sandbox --tls up DIR` starts the TLS front, enrolls one demo
# desktop (alice's, approved by frank) and prints what a desktop needs
# (SEALGATE_CONF, no socket): sealctl status and a login through the module
# then go over TLS, and the login's record names the device. The device CA's
# key is on the sandbox's token (no key file; the gateway's log says so).
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE, SEALGATE_MODULE
set -euo pipefail
build=${SEALGATE_BUILD:?} src=${SEALGATE_SOURCE:?}
D=$(mktemp -d /tmp/sg-sbtls.XXXXXX)
fails=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }
trap '"$src/tools/sandbox" --quiet down "$D" >/dev/null 2>&1 || true; rm -rf "$D"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env -u SEALGATE_SOCKET -u SEALGATE_CONF SEALGATE_TLS_PORT="$port" \
	"$src/tools/sandbox" --build "$build" --tls up "$D" >"$D.env" 2>"$D.err" ||
	{ cat "$D.err"; exit 1; }
mv "$D.env" "$D/env"; mv "$D.err" "$D/sandbox.err"
grep -q "^unset SEALGATE_SOCKET$" "$D/env" && grep -q "^export SEALGATE_CONF='$D/desktop/sealgate/sealgate.conf'$" "$D/env" &&
	pass "the export lines name the desktop's sealgate.conf, not the socket" || { fail "env"; cat "$D/env"; }
grep -q "^gateway = tls://127.0.0.1:$port$" "$D/desktop/sealgate/sealgate.conf" &&
	[ "$(stat -c %a "$D/desktop/sealgate/device.key")" = 600 ] &&
	pass "the demo desktop's sealgate.conf names the TLS gateway; its key is 0600" || fail "desktop files"
# The device CA's key is on the sandbox's token (docs/deployment.md), not a file.
[ ! -e "$D/tls/device-ca.key" ] && grep -q '^tls_device_ca_token_label: "sealgate device CA"$' "$D/sealgated.yaml" &&
	! grep -q '^tls_device_ca_key:' "$D/sealgated.yaml" &&
	pass "no device CA key file; sealgated.yaml names the key on the token" ||
	{ fail "the device CA's key"; ls -l "$D/tls"; grep '^tls_device' "$D/sealgated.yaml"; }
grep -q "device CA key 'sealgate device CA' generated on the backend token" "$D/sealgated.log" &&
	grep -q "device CA certificate $D/tls/device-ca.pem made, its key 'sealgate device CA' on the backend token" "$D/sealgated.log" &&
	pass "the gateway's start generated the device CA's key on the token and made its certificate" ||
	{ fail "the gateway's log of the device CA"; grep -i "device CA" "$D/sealgated.log"; }
n=$(SOFTHSM2_CONF="$D/softhsm2.conf" pkcs11-tool --module "${SEALGATE_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}" \
	--token-label sealgate-demo --login --pin "$(cat "$D/token.pin")" --list-objects --type privkey 2>/dev/null |
	grep -c "label: *sealgate device CA$" || true)
[ "$n" = 1 ] && pass "the token holds the device CA's private key" || fail "device CA keys on the token: $n"
eval "$(cat "$D/env")"
out=$("$build/tools/sealctl" status 2>&1) || true
printf '%s\n' "$out" | grep -q "reachable at tls://127.0.0.1:$port" && printf '%s\n' "$out" | grep -q "^account:  alice" &&
	pass "sealctl status goes over TLS, as alice (sealgate.conf's user)" || { fail "status"; printf '%s\n' "$out"; }
# (in an ASan build pkcs11-tool needs the sanitizer's runtime first)
asan=()
case ${SEALGATE_SANITIZE:-} in
*address*) asan=(LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0) ;;
esac
n=$(env "${asan[@]}" pkcs11-tool --module "$SEALGATE_MODULE" --login --pin "$SEALGATE_PASS_ALICE" --list-objects --type privkey 2>/dev/null |
	grep -c "^Private Key Object" || true)
[ "$n" -ge 1 ] && pass "alice logs in through the module over TLS ($n private keys)" || fail "login over TLS: $n keys"
n=$(sqlite3 "file:$D/sealgate.db?mode=ro" "SELECT count(*) FROM audit WHERE action = 'login' AND outcome = 'ok' AND actor = 'alice' AND exe LIKE 'device 1 sha256:%pkcs11-tool%'")
[ "$n" -ge 1 ] && pass "the login's record names device 1 and pkcs11-tool as reported" || fail "login record: $n"
echo "$fails failed"
[ "$fails" = 0 ]
