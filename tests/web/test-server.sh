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
. "$(dirname "$0")/../lib/sysuser.sh"
sg_sysuser "$front"
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
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

# PDF.js and Chart.js from javascript_dir (Debian's /usr/share/javascript):
# the three files the console loads (web/console/vendor.js), nothing else
# of it, no way out of it. A made-up tree, so the bytes are known.
J=$W/js
mkdir -p "$J/pdf/build" "$J/pdf/web" "$J/chart.js" "$W/outside" "$W/console2"
printf 'pdf.js of the test\n' >"$J/pdf/build/pdf.js"
printf 'chart.min.js of the test\n' >"$J/chart.js/chart.min.js"
printf 'not served\n' >"$J/pdf/web/viewer.html"
printf 'not served\n' >"$J/pdf/build/pdf.sandbox.js"
printf 'outside\n' >"$W/outside/secret.txt"
ln -s ../../../outside/secret.txt "$J/pdf/build/pdf.worker.js"
printf '<!doctype html><title>console</title>\n' >"$W/console2/index.html"
chmod o+x "$W"
chmod -R o+rX "$J" "$W/outside" "$W/console2"
printf 'listen: 127.0.0.1:%s\ngateway_socket: %s/none.sock\nconsole_dir: %s\njavascript_dir: %s\nconnections_per_address: 2\n' \
	"$port" "$W" "$W/console2" "$J" >"$W/js.yaml"
"$web" --config "$W/js.yaml" --user "$front" >"$W/js.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
	python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$port" 2>/dev/null && break
	sleep 0.05
done
get() {  # RAW-PATH: "STATUS CONTENT-TYPE BODY" (the path sent as it is)
	python3 - "$port" "$1" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.putrequest("GET", sys.argv[2], skip_accept_encoding=True)
c.endheaders()
r = c.getresponse()
print(r.status, r.getheader("Content-Type"), r.read().decode(errors="replace").strip())
PY
}
out=$(get /javascript/pdf/build/pdf.js)
if [ "$out" = "200 text/javascript; charset=utf-8 pdf.js of the test" ]; then pass "PDF.js is served from javascript_dir"
else fail "/javascript/pdf/build/pdf.js: $out"; fi
out=$(get /javascript/chart.js/chart.min.js)
if [ "$out" = "200 text/javascript; charset=utf-8 chart.min.js of the test" ]; then pass "Chart.js is served from javascript_dir"
else fail "/javascript/chart.js/chart.min.js: $out"; fi
for path in /javascript/pdf/build/pdf.worker.js /javascript/pdf/build/../../../outside/secret.txt \
	/javascript/pdf/build/%2e%2e/%2e%2e/%2e%2e/outside/secret.txt /javascript/chart.js/../../outside/secret.txt \
	/javascript/pdf/web/viewer.html /javascript/pdf/build/pdf.sandbox.js /javascript/ /javascript/pdf/build/pdf.js/ \
	/javascript//pdf/build/pdf.js /console2/../js/pdf/build/pdf.js /../js/pdf/build/pdf.js; do
	out=$(get "$path")
	if [[ $out == "404 "* ]] && [[ $out != *outside* ]] && [[ $out != *"not served"* ]]; then
		pass "$path is not served"
	else fail "$path: $out"; fi
done

# connections_per_address: 2: a third connection from 127.0.0.1 is closed
# unanswered while two are open; when one ends, a new one is answered.
out=$(python3 - "$port" <<'PY'
import socket, sys
port = int(sys.argv[1])
def ask(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        data = s.recv(4096)
    except OSError:
        data = b""
    return data.split(b"\r\n")[0].decode() or "closed"
held = [socket.create_connection(("127.0.0.1", port), 5) for _ in range(2)]
for s in held:
    s.settimeout(10)
print("first:", ask(held[0]))
third = socket.create_connection(("127.0.0.1", port), 5)
third.settimeout(10)
print("third:", ask(third))
held[0].close()
third.close()
import time
for _ in range(100):   # the server sees the close a moment later
    again = socket.create_connection(("127.0.0.1", port), 5)
    again.settimeout(10)
    r = ask(again)
    again.close()
    if r != "closed":
        break
    time.sleep(0.05)
print("after:", r)
PY
)
if [ "$out" = $'first: HTTP/1.1 200 OK\nthird: closed\nafter: HTTP/1.1 200 OK' ]; then
	pass "connections_per_address caps one address's connections"
else fail "connections_per_address 2: $(echo $out)"; fi
echo "$fails failed"
[ "$fails" = 0 ]
