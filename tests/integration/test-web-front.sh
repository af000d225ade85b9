#!/usr/bin/env bash
# Integration: the gateway's web front (web_front in sealgated.yaml,
# docs/web.md). A peer with the front's uid logs people in by password
# (+ code) only, names the account, carries "via" on every request (the
# record's channel web:IP); approving through it needs a code in the
# request every time (a code used once is refused again); wrong passwords
# through it lock as any; "via" from anyone else, or the front's session
# shown by another uid, is refused.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE. Root (it runs as the front's user).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "[SKIP] needs root (runs as the web front's user)"; exit 77; }
. "$(dirname "$0")/lib.sh" web-front
front=sealgate-web
id "$front" >/dev/null 2>&1 ||
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$front"
chmod o+x "$W"

fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
fixture stop
printf 'web_front: { user: %s }\nauth_max_failures: 3\n' "$front" >>"$W/sealgated.yaml"
fixture start >"$W/start.out" 2>&1 || { cat "$W/start.out"; exit 1; }
sock=$W/sealgated.sock
call=$(dirname "$0")/webcall.py
as_front() { runuser -u "$front" -- python3 "$call" "$sock" "$@"; }
as_root() { python3 "$call" "$sock" "$@"; }
code() { oathtool --totp -b --now "@$(cat "$W/clock")" "$(cat "$W/totp-$1.b32")"; }
tick() { echo $(($(cat "$W/clock") + 30)) >"$W/clock"; }
# field LINE KEY[.KEY…]: a field of the LINE-th reply (0-based)
field() {
	python3 -c 'import json,sys
r = json.loads(sys.stdin.read().splitlines()[int(sys.argv[1])])
for k in sys.argv[2].split("."):
    r = r.get(k) if isinstance(r, dict) else None
print(r)' "$@"
}

# Identity by the front's word is not enough: every request says via.
out=$(as_front '{"op":"login","user":"alice","pin":"alice-password","via":null}')
if [ "$(echo "$out" | field 0 error)" = not_allowed ]; then pass "a front request without via is refused"
else fail "without via: $out"; fi
out=$(as_root '{"op":"login","user":"alice","pin":"alice-password"}')
if [ "$(echo "$out" | field 0 error)" = not_allowed ]; then pass "via from another uid is refused"
else fail "via from root: $out"; fi
# No OS identity: the account must be named.
out=$(as_front '{"op":"login","pin":"alice-password"}')
if [ "$(echo "$out" | field 0 error)" = not_allowed ]; then pass "a login naming no account is refused"
else fail "login without user: $out"; fi
out=$(as_front '{"op":"login","user":"alice","protected":true}')
if [ "$(echo "$out" | field 0 error)" = bad_request ]; then pass "no PIN-less login through the front"
else fail "protected login: $out"; fi

# alice applies through the front; the record's channel is web:IP.
out=$(as_front '{"op":"login","user":"alice","pin":"alice-password"}' \
	'{"op":"apply","session":"@","seal":"approved","reason":"<script>x</script>","uses":1,"amount":100}' \
	'{"op":"sign","session":"@","seal":"contract","mechanism":1,"data":"AA=="}')
id=$(echo "$out" | field 1 application.id)
if [ "$(echo "$out" | field 1 ok)" = True ] && [ "$id" != None ]; then pass "apply through the front"
else fail "apply: $out"; fi
if [ "$(echo "$out" | field 2 error)" = not_allowed ]; then pass "no signing through the front"
else fail "sign through the front: $out"; fi
n=$(audit_count "action = 'application_create' AND actor = 'alice' AND exe LIKE 'web:203.0.113.9 (front sealgate-web uid %' AND exe LIKE '%agent Mozilla/5.0 (test) ?quoted?'")
if [ "$n" = 1 ]; then pass "the record says web:IP and the agent, quotes replaced"
else fail "apply records from the web: $n ($(store_sql "SELECT exe FROM audit WHERE actor = 'alice' ORDER BY seq DESC LIMIT 1"))"; fi

# bob logs in with password and code; approving needs a code of its own.
tick   # (the fixture's enrolment spent the code of this step)
c1=$(code bob)
out=$(as_front "{\"op\":\"login\",\"user\":\"bob\",\"pin\":\"bob-password\",\"code\":\"$c1\"}" \
	"{\"op\":\"approve\",\"session\":\"@\",\"id\":$id,\"comment\":\"ok\"}" \
	"{\"op\":\"approve\",\"session\":\"@\",\"id\":$id,\"comment\":\"ok\",\"code\":\"$c1\"}")
if [ "$(echo "$out" | field 0 ok)" = True ]; then pass "bob logs in through the front with a code"
else fail "bob's login: $out"; fi
if [ "$(echo "$out" | field 1 error)" = mfa_required ]; then pass "approve without a code in the request is refused"
else fail "approve without code: $out"; fi
if [ "$(echo "$out" | field 2 error)" = replayed ]; then pass "the login's code is refused when given again"
else fail "approve with the login's code: $out"; fi
tick
c2=$(code bob)
out=$(as_front '{"op":"login","user":"bob","pin":"bob-password"}' \
	"{\"op\":\"approve\",\"session\":\"@\",\"id\":$id,\"comment\":\"<b>fine</b>\",\"code\":\"$c2\"}" \
	"{\"op\":\"reject\",\"session\":\"@\",\"id\":$id,\"comment\":\"again\",\"code\":\"$c2\"}" \
	"{\"op\":\"show\",\"session\":\"@\",\"id\":$id}")
if [ "$(echo "$out" | field 1 ok)" = True ]; then pass "approve with a fresh code in the request"
else fail "approve with a fresh code: $out"; fi
if [ "$(echo "$out" | field 2 error)" = replayed ]; then pass "a code used once is refused the second time"
else fail "a second decision with the same code: $out"; fi
if [ "$(echo "$out" | field 3 application.state)" = authorized ]; then pass "the application is authorized"
else fail "show: $out"; fi
n=$(audit_count "action IN ('approve', 'reject') AND outcome = 'denied' AND actor = 'bob' AND exe LIKE 'web:%' AND reason LIKE 'replayed code%'")
if [ "$n" = 2 ]; then pass "the replayed codes are recorded as refusals"
else fail "replayed-code refusals recorded: $n"; fi

# The front's session is bound to the front's uid.
tok=$(as_front '{"op":"login","user":"alice","pin":"alice-password"}' | field 0 session)
out=$(python3 "$call" "$sock" "{\"op\":\"list\",\"session\":\"$tok\",\"via\":null}")
if [ "$(echo "$out" | field 0 error)" = not_logged_in ]; then pass "the front's session means nothing to another uid"
else fail "front session from root: $out"; fi

# Wrong passwords through the front count for the lockout.
for _ in 1 2 3; do as_front '{"op":"login","user":"dave","pin":"wrong-password"}' >/dev/null; done
out=$(as_front '{"op":"login","user":"dave","pin":"dave-password"}')
if [ "$(echo "$out" | field 0 error)" = pin_locked ]; then pass "wrong passwords through the front lock"
else fail "after three wrong passwords: $out"; fi
finish
