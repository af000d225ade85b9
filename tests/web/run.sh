#!/usr/bin/env bash
# The web suite's fixture: the integration fixture's gateway (a real
# SoftHSM2 token) with web_front set, and real sealgate-web servers on
# loopback as their own user: one with the usual timeouts, one whose
# sessions end after seconds (the expiry test). Then TEST (a python3
# script) runs with their URLs in the environment. Root (the front's user).
#
# usage: run.sh TEST.py   env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "[SKIP] needs root (sealgate-web drops to its own user)"; exit 77; }
test=$1
build=${SEALGATE_BUILD:?}
src=${SEALGATE_SOURCE:?}
front=sealgate-web
id "$front" >/dev/null 2>&1 ||
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$front"
W=$(mktemp -d /tmp/sg-web.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	sh "$src/tests/integration/fixture.sh" down "$W" || true
}
trap cleanup EXIT
export SG_STORE_OWNER=$$
trap 'exit 143' TERM
trap 'exit 130' INT
chmod o+x "$W"
sh "$src/tests/integration/fixture.sh" up "$W" >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
sh "$src/tests/integration/fixture.sh" stop "$W"
printf 'web_front: { user: %s }\nauth_max_failures: 3\n' "$front" >>"$W/sealgated.yaml"
sh "$src/tests/integration/fixture.sh" start "$W" >"$W/start.out" 2>&1 || { cat "$W/start.out"; exit 1; }

# frank, a seal admin, gets a TOTP secret too (unlocking needs a code).
(umask 077; head -c 20 /dev/urandom | base32 | tr -dc 'A-Z2-7' >"$W/totp-frank.b32")
printf 'frank-password\n' >"$W/pw-frank"
"$build/tools/sealctl" --socket "$W/sealgated.sock" --user frank --password-file "$W/pw-frank" \
	user totp-enroll --secret-file "$W/totp-frank.b32" \
	--code "$(oathtool --totp -b --now "@$(cat "$W/clock")" "$(cat "$W/totp-frank.b32")")" >/dev/null
rm -f "$W/pw-frank"

# The console's files: a page of this test's own (web/console/ is served
# the same way).
mkdir -p "$W/console/js"
printf '<!doctype html><title>sealgate</title><script src="js/app.js"></script>\n' >"$W/console/index.html"
printf 'console.log("sealgate");\n' >"$W/console/js/app.js"
printf 'secret\n' >"$W/console/.hidden"
chmod -R o+rX "$W/console"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_web() {  # NAME PORT MORE-CONFIG
	printf 'listen: 127.0.0.1:%s\ngateway_socket: %s\nconsole_dir: %s\n%s' "$2" "$W/sealgated.sock" \
		"$W/console" "$3" >"$W/$1.yaml"
	"$build/web/sealgate-web" --config "$W/$1.yaml" --user "$front" >>"$W/$1.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 1 100); do
		python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$2" \
			2>/dev/null && return 0
		sleep 0.05
	done
	echo "sealgate-web $1 did not start:"; cat "$W/$1.log"; exit 1
}
p1=$(free_port)
start_web web "$p1" ""
p2=$(free_port)
start_web short "$p2" $'session_idle: 2\nsession_max: 4\n'
export SG_WEB_URL=http://127.0.0.1:$p1 SG_WEB_SHORT_URL=http://127.0.0.1:$p2 SG_WEB_DIR=$W
rc=0
python3 "$test" || rc=$?
[ $rc = 0 ] || { echo "--- sealgate-web log"; tail -20 "$W/web.log"; }
# Stopped here, so that what a sanitizer says at exit (leaks) is seen.
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
if grep -l "Sanitizer" "$W/web.log" "$W/short.log" 2>/dev/null; then
	echo "not ok - a sanitizer spoke in sealgate-web:"
	grep -h -A30 "Sanitizer" "$W/web.log" "$W/short.log" | head -60
	rc=1
fi
exit $rc
