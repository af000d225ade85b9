#!/usr/bin/env bash
# Integration: requests that wait inside the gateway, and a stop while one
# does (docs/operations.md, "Stopping"). A signature of an
# out_of_band_confirm seal waits for `sealctl confirm` longer than the
# frame and idle limits (1 s here) and is not cut: confirmed, it signs.
# A second one is waiting when SIGTERM comes: the gateway wakes it, its
# client gets a "stopping" error and no signature, nothing is spent, the
# refusal and gateway_stop are recorded, and the gateway exits 0 without
# waiting out the confirmation (50 s) or its own 10 s. Behind a token
# that hangs on demand (hangsign.so): a reload held in the token does not
# keep the gateway from answering and signing; a C_Sign hung at the stop
# makes the gateway leave without freeing what that thread uses (no
# C_Finalize under it), say so, record it, and exit 1.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$(dirname "$0")/lib.sh" front-stop

fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
fixture stop
cat >>"$W/policy.yaml" <<'EOP'
  - id: confirmed
    name: Confirmed Seal
    kind: contract
    key: "pkcs11:object=contract-seal;type=private"
    holder: hq
    users: { people: [bob] }
    quotas: { per_day: 5 }
    approval: none
    mfa: out_of_band_confirm
EOP
printf 'confirm_timeout: 50\nframe_timeout: 1\nclient_idle_timeout: 1\n' >>"$W/sealgated.yaml"

# Started here, not by the fixture, so that its exit status can be read.
start() {
	: >"$W/sealgated.log"
	SOFTHSM2_CONF=$W/softhsm2.conf SEALGATE_TEST_CLOCK=$W/clock SG_HANG_FILE=$W/hang \
		"$gw" --config "$W/sealgated.yaml" --foreground >>"$W/sealgated.log" 2>&1 &
	gwpid=$!
	echo $gwpid >"$W/sealgated.pid"
	for _ in $(seq 300); do
		"$ctl" --socket "$W/sealgated.sock" status >/dev/null 2>&1 && break
		sleep 0.05
	done
}
start

ctl_bob() { "$ctl" --socket "$W/sealgated.sock" --user bob "$@"; }
# a code of bob's from a TOTP step not used yet (the test clock moves on)
fresh_code() {
	t=$(($(cat "$W/clock") + 30))
	echo $t >"$W/clock.new" && mv "$W/clock.new" "$W/clock"
	oathtool --totp -b --now "@$t" "$(cat "$W/totp-bob.b32")"
}
printf 'bob-password\n' >"$W/pw-bob"
ctl_bob -p "$W/pw-bob" login --code "$(fresh_code)" >"$W/login.out" 2>&1 ||
	{ fail "bob's signing window: $(cat "$W/login.out")"; finish; }

# A signature over the wire, its reply to FILE as JSON: bob's with the
# confirmed seal (a PIN-less login inside his window), or USER SEAL PIN.
# usage: sign_bg FILE [USER SEAL PIN]
sign_bg() {
	python3 - "$W/sealgated.sock" "${2:-bob}" "${3:-confirmed}" "${4:-}" >"$1" 2>&1 <<'PY' &
import base64, json, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
user, seal, pin = sys.argv[2:5]
def call(msg):
    body = json.dumps(dict(v=1, **msg)).encode()
    s.sendall(struct.pack(">I", len(body)) + body)
    hdr = b""
    while len(hdr) < 4:
        b = s.recv(4 - len(hdr))
        if not b:
            raise SystemExit("closed without a reply")
        hdr += b
    n, = struct.unpack(">I", hdr)
    data = b""
    while len(data) < n:
        b = s.recv(n - len(data))
        if not b:
            raise SystemExit("closed in a reply")
        data += b
    return json.loads(data)
r = call(dict(op="login", user=user, **(dict(pin=pin) if pin else dict(protected=True))))
if not r.get("ok"):
    raise SystemExit("login: %r" % r)
r = call(dict(op="sign", session=r["session"], seal=seal, mechanism=1,
              data=base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()))
print(json.dumps(r))
PY
	echo $!
}
waiting() {
	for _ in $(seq 100); do
		ctl_bob confirm --list 2>&1 | grep -q "waiting: #" && return 0
		sleep 0.1
	done
	return 1
}
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$@"; }
sql() { store_sql "$1" | head -1; }

# 1. A wait longer than the frame and idle limits is not cut.
p1=$(sign_bg "$W/sign1.json")
if waiting; then pass "a signature waits for its confirmation"; else fail "no signature waiting"; fi
sleep 3
if ctl_bob confirm --list 2>&1 | grep -q "waiting: #"; then
	pass "still waiting after three times the frame and idle limits"
else
	fail "the waiting signature went away: $(cat "$W/sign1.json")"
fi
ctl_bob confirm --wait 15 --code "$(fresh_code)" >"$W/confirm.out" 2>&1 || fail "sealctl confirm: $(cat "$W/confirm.out")"
wait "$p1" || true
if [ "$(field "$W/sign1.json" ok)" = True ] && [ -n "$(field "$W/sign1.json" signature)" ]; then
	pass "confirmed after the wait, it signs"
else
	fail "the confirmed signature: $(cat "$W/sign1.json")"
fi

# 2. SIGTERM while the next one waits.
p2=$(sign_bg "$W/sign2.json")
if waiting; then pass "a second signature waits"; else fail "no second signature waiting"; fi
kill -TERM "$gwpid"
rc=0
wait "$gwpid" || rc=$?
rm -f "$W/sealgated.pid"
wait "$p2" || true
if [ $rc = 0 ]; then pass "the gateway exits 0"; else fail "the gateway exited $rc"; tail -20 "$W/sealgated.log"; fi
if [ "$(field "$W/sign2.json" ok)" = False ] && [ "$(field "$W/sign2.json" error)" = stopping ] &&
	[ -z "$(field "$W/sign2.json" signature)" ]; then
	pass "the waiting client is told the gateway is stopping, and gets no signature"
else
	fail "the waiting client got: $(cat "$W/sign2.json")"
fi
n=$(sql "SELECT count(*) FROM audit WHERE action = 'sign' AND outcome = 'denied' AND seal = 'confirmed' AND reason LIKE '%gateway is stopping%'")
[ "$n" = 1 ] && pass "the refusal is recorded" || fail "sign refusals recorded for the stop: $n"
n=$(sql "SELECT count(*) FROM audit WHERE action = 'sign' AND outcome = 'ok' AND seal = 'confirmed'")
[ "$n" = 1 ] && pass "one signature made in all" || fail "signatures with the confirmed seal: $n"
n=$(sql "SELECT coalesce(sum(used), 0) FROM quota_use WHERE seal = 'confirmed'")
[ "$n" = 1 ] && pass "the refused one spent nothing (one quota unit used)" || fail "quota units used: $n"
n=$(sql "SELECT action FROM audit ORDER BY seq DESC LIMIT 1")
[ "$n" = gateway_stop ] && pass "gateway_stop is the last record" || fail "last record: $n"
if grep -q "still busy" "$W/sealgated.log"; then fail "threads were left busy at the stop"; else pass "no thread left busy"; fi

# 3. A token hung inside C_Sign (hangsign.so) when SIGTERM comes: that
# thread still uses the gateway's state, so the gateway does not free it
# under it: after its 10 s it says so, records gateway_stop with the
# count, and exits 1 at once (no crash, no C_Finalize under the thread).
sed -i "s|^backend_module: .*|backend_module: $SEALGATE_BUILD/tests/integration/hangsign.so|" "$W/sealgated.yaml"
start

# (first) A reload held in the token (its key lookups wait in
# C_FindObjectsInit): meanwhile the gateway accepts, answers and signs.
touch "$W/hang.find"
: >"$W/sealgated.log"
kill -HUP "$gwpid"
for _ in $(seq 100); do [ -e "$W/hang.find.in" ] && break; sleep 0.1; done
if [ -e "$W/hang.find.in" ]; then pass "a reload hangs in the token"; else fail "the reload did not reach the token"; fi
if timeout 30 "$ctl" --socket "$W/sealgated.sock" status >/dev/null 2>&1; then
	pass "the gateway answers during the hung reload"
else
	fail "no answer during the hung reload"
fi
sign_bg "$W/sign4.json" alice contract alice-password >/dev/null
for _ in $(seq 300); do [ -s "$W/sign4.json" ] && break; sleep 0.1; done
if [ "$(field "$W/sign4.json" ok)" = True ]; then pass "and signs"; else fail "signature during the hung reload: $(cat "$W/sign4.json")"; fi
rm -f "$W/hang.find"
for _ in $(seq 100); do grep -q "policy reloaded" "$W/sealgated.log" && break; sleep 0.1; done
grep -q "policy reloaded" "$W/sealgated.log" && pass "the reload completes once the token answers" || fail "the reload did not complete"

touch "$W/hang"
p3=$(sign_bg "$W/sign3.json" alice contract alice-password)
for _ in $(seq 100); do [ -e "$W/hang.in" ] && break; sleep 0.1; done
if [ -e "$W/hang.in" ]; then pass "a signature hangs in the token"; else fail "no signature reached C_Sign: $(cat "$W/sign3.json")"; fi
kill -TERM "$gwpid"
rc=0
wait "$gwpid" || rc=$?
rm -f "$W/sealgated.pid" "$W/hang"
wait "$p3" || true
if [ $rc = 1 ]; then pass "the gateway exits 1"; else fail "the gateway exited $rc"; tail -20 "$W/sealgated.log"; fi
if grep -q "1 threads still busy 10 s after the stop (a backend call that does not return?): leaving without closing what they use" "$W/sealgated.log"; then
	pass "the log says a thread was left busy"
else
	fail "the log does not say so: $(tail -5 "$W/sealgated.log")"
fi
n=$(sql "SELECT detail FROM audit WHERE action = 'gateway_stop' ORDER BY seq DESC LIMIT 1")
[ "$n" = '{"busy":1}' ] && pass "gateway_stop records the busy thread" || fail "gateway_stop detail: $n"
if grep -q "ERROR: AddressSanitizer\|runtime error" "$W/sealgated.log"; then fail "sanitizer: $(grep -m3 "ERROR\|runtime error" "$W/sealgated.log")"; fi
if [ -e "$W/hang.finalized" ]; then fail "the token was closed under the hung signature"; else pass "the token was not closed under it"; fi
if grep -q '"signature"' "$W/sign3.json"; then fail "the hung signature was released: $(cat "$W/sign3.json")"; else pass "and no signature left it"; fi

finish
