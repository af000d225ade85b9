#!/usr/bin/env bash
# sealgate-web's own start: root is refused without --user, plain HTTP on
# an address that is not loopback is refused, and with the site's
# certificate it speaks TLS 1.2 and 1.3 only, as its own user, holding
# no file of the gateway's. No gateway is needed for these.
#
# env: SEALGATE_BUILD. Root.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "[SKIP] needs root (sealgate-web drops to its own user)"; exit 77; }
build=${SEALGATE_BUILD:?}
web=$build/web/sealgate-web
front=sealgate-web
id "$front" >/dev/null 2>&1 ||
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$front"
W=$(mktemp -d /tmp/sg-webserver.XXXXXX)
pid=
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$W"' EXIT
fails=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

printf 'listen: 127.0.0.1:%s\ngateway_socket: %s/none.sock\nconsole_dir: %s\n' "$port" "$W" "$W" >"$W/plain.yaml"
rc=0; "$web" --config "$W/plain.yaml" >"$W/root.out" 2>&1 || rc=$?
if [ $rc != 0 ] && grep -q "refusing to run as root" "$W/root.out"; then pass "root without --user is refused"
else fail "as root: rc $rc $(cat "$W/root.out")"; fi

printf 'listen: 0.0.0.0:%s\ngateway_socket: %s/none.sock\nconsole_dir: %s\n' "$port" "$W" "$W" >"$W/open.yaml"
rc=0; timeout 10 "$web" --config "$W/open.yaml" --user "$front" >"$W/open.out" 2>&1 || rc=$?
if [ $rc = 1 ] && grep -q "plain HTTP is for a loopback address only" "$W/open.out"; then
	pass "plain HTTP on a non-loopback address is refused"
else fail "plain HTTP on 0.0.0.0: rc $rc $(cat "$W/open.out")"; fi

printf 'listen: 127.0.0.1:%s\nbody_max: 5\n' "$port" >"$W/bad.yaml"
rc=0; "$web" --config "$W/bad.yaml" --user "$front" >"$W/bad.out" 2>&1 || rc=$?
if [ $rc = 1 ] && grep -q "bad.yaml:2:.*body_max" "$W/bad.out"; then pass "a bad setting is named with its line"
else fail "body_max 5: rc $rc $(cat "$W/bad.out")"; fi

# The site certificate: the key stays root's (read before the drop).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
	-days 2 -keyout "$W/web.key" -out "$W/web.crt" 2>/dev/null
chmod 600 "$W/web.key"
printf 'listen: 127.0.0.1:%s\ngateway_socket: %s/none.sock\nconsole_dir: %s\ntls_cert: %s\ntls_key: %s\n' \
	"$port" "$W" "$W" "$W/web.crt" "$W/web.key" >"$W/tls.yaml"
"$web" --config "$W/tls.yaml" --user "$front" >"$W/tls.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
	python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$port" 2>/dev/null && break
	sleep 0.05
done
if [ "$(stat -c %U "/proc/$pid")" = "$front" ] && [ "$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")" != 0 ]; then
	pass "it runs as $front"
else fail "sealgate-web runs as $(stat -c %U "/proc/$pid")"; fi
probe() {  # MIN MAX: prints the version agreed, or "refused"
	python3 - "$port" "$1" "$2" "$W/web.crt" <<'PY'
import socket, ssl, sys
port, lo, hi, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.check_hostname = False
ctx.set_ciphers("ALL:@SECLEVEL=0")
ctx.minimum_version = getattr(ssl.TLSVersion, lo)
ctx.maximum_version = getattr(ssl.TLSVersion, hi)
try:
    with socket.create_connection(("127.0.0.1", port), 5) as s, ctx.wrap_socket(s) as t:
        t.sendall(b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = t.recv(4096)
            if not chunk:
                break
            data += chunk
        print(t.version(), data.split(b"\r\n")[0].decode())
except (ssl.SSLError, OSError) as e:
    print("refused")
PY
}
out=$(probe TLSv1_3 TLSv1_3)
if [[ $out == "TLSv1.3 HTTP/1.1 401"* ]]; then pass "TLS 1.3, and the API answers"; else fail "TLS 1.3: $out"; fi
out=$(probe TLSv1_2 TLSv1_2)
if [[ $out == "TLSv1.2 HTTP/1.1 401"* ]]; then pass "TLS 1.2"; else fail "TLS 1.2: $out"; fi
out=$(probe TLSv1 TLSv1_1)
if [ "$out" = refused ]; then pass "TLS 1.1 and 1.0 are refused"; else fail "TLS 1.1: $out"; fi
h=$(python3 - "$port" "$W/web.crt" <<'PY'
import http.client, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.check_hostname = False
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=5)
c.request("GET", "/api/v1/me"); r = c.getresponse()
print(r.getheader("Strict-Transport-Security"))
PY
)
if [ "$h" = "max-age=31536000" ]; then pass "HSTS over TLS"; else fail "Strict-Transport-Security: $h"; fi
echo "$fails failed"
[ "$fails" = 0 ]
