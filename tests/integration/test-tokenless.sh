#!/usr/bin/env bash
# Integration: a gateway whose token is away at start (a card not yet in
# the reader after a reboot; here the SoftHSM2 token directory moved aside)
# starts from the keys its store remembers, serves every seal as
# unavailable with the reason, and refuses what it cannot check without
# the token, takes the token when it comes back (SoftHSM2 initialized
# again) and signs with it; it never starts without a token it has not
# seen. (A card coming back, and a look-alike refused: tests/card.)
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$(dirname "$0")/lib.sh" tokenless

sql() { store_sql "$1" | head -1; }
# The keys known from the token: store_meta in SQLite, the site's rows of
# site_meta in PostgreSQL (the fixture's gateway is site main).
keys="store_meta WHERE name LIKE 'key:%'"
if [ "${SG_TEST_STORE:-sqlite}" = pg ]; then
	keys="site_meta WHERE site = 'main' AND name LIKE 'key:%'"
fi
start() { SG_GATEWAY_WAIT=answer SG_GATEWAY_ARGS="$*" fixture start >>"$W/fixture.out" 2>&1; }
stop() { fixture stop; }
check() { SOFTHSM2_CONF=$W/softhsm2.conf "$gw" --config "$W/sealgated.yaml" --check >"$W/check.out" 2>&1; }
# A start that must fail, and what its log must say. args: what, needle, [sealgated args]
start_refused() {
	: >"$W/sealgated.log"
	if start "${@:3}"; then
		fail "$1: it started"
		stop
	elif grep -q -- "$2" "$W/sealgated.log"; then
		pass "$1"
	else
		fail "$1: the log does not say \"$2\""
		cat "$W/sealgated.log"
	fi
}

# Made, bound, its keys remembered; stopped, and the token taken away.
fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
stop
n=$(sql "SELECT count(*) FROM $keys")
[ "$n" = 5 ] && pass "the store remembers the 5 seal keys found on the token" ||
	fail "known keys in the store: $n, expected 5"
mv "$W/tokens" "$W/tokens.away"
mkdir "$W/tokens"

# 1. --check passes, and says the token is not there.
if check && grep -q "5 seal keys are valid (the token is not present" "$W/check.out"; then
	pass "--check accepts the configuration without the token, and says so"
else
	fail "--check without the token"; cat "$W/check.out"
fi

# 2. It starts, says why every seal is unavailable, and the log says so.
: >"$W/sealgated.log"
if start; then pass "sealgated starts without its token"; else fail "start without the token"; cat "$W/sealgated.log"; exit 1; fi
rc=0
"$ctl" --socket "$W/sealgated.sock" status >"$W/status.out" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "(NOT PRESENT)" "$W/status.out" &&
	[ "$(grep -c 'UNAVAILABLE: not present since the gateway started' "$W/status.out")" = 5 ] &&
	pass "status: token not present, all 5 seals unavailable with the reason (exit 1)" ||
	{ fail "status without the token (exit $rc)"; cat "$W/status.out"; }
grep -q "starting without the token (serial" "$W/sealgated.log" &&
	pass "the log says it started without the token" || { fail "log"; cat "$W/sealgated.log"; }
n=$(sql "SELECT count(*) FROM audit WHERE action = 'gateway_start' AND detail LIKE '%\"token\":\"absent\"%'")
[ "$n" = 1 ] && pass "gateway_start is recorded with the token absent" || fail "gateway_start records with the token absent: $n"

# 3. Applications see no token, so nothing is offered to sign with.
rc=0
SEALGATE_SOCKET=$W/sealgated.sock SEALGATE_USER=alice \
	foreign pkcs11-tool --module "$build/module/sealgate-pkcs11.so" --list-slots >"$W/slots.out" 2>&1 || rc=$?
if [ $rc = 0 ] && grep -q "sealgate gateway" "$W/slots.out" && grep -q "token state:.*uninitialized\|(empty)" "$W/slots.out" &&
   ! grep -q "token label" "$W/slots.out"; then
	pass "the module shows its slot without a token"
else
	fail "the module's slot while the backend token is away (exit $rc)"; cat "$W/slots.out"
fi

# 4. A reload that names a key never seen on the token is refused (it
#    cannot be checked); the running policy stays.
cp "$W/policy.yaml" "$W/policy.yaml.orig"
sed -i 's|pkcs11:object=quota-seal;type=private|pkcs11:object=never-seen;type=private|' "$W/policy.yaml"
kill -HUP "$(cat "$W/sealgated.pid")"
for _ in $(seq 50); do grep -q "reload rejected" "$W/sealgated.log" && break; sleep 0.1; done
grep -q "reload rejected.*never found on it" "$W/sealgated.log" &&
	pass "a reload naming an unseen key is rejected, saying why" ||
	{ fail "reload with an unseen key"; tail -5 "$W/sealgated.log"; }
cp "$W/policy.yaml.orig" "$W/policy.yaml"

# 4b. The token arrives while the gateway runs: a client asking for it makes
#     the gateway look again (SoftHSM2 lists tokens only when it is
#     initialized, so the gateway initializes it again), checks it against
#     the binding, logs in, and the seals sign.
rmdir "$W/tokens"
mv "$W/tokens.away" "$W/tokens"
rc=1
for _ in $(seq 40); do
	rc=0
	"$ctl" --socket "$W/sealgated.sock" status >"$W/status.out" 2>&1 || rc=$?
	[ $rc = 0 ] && break
	sleep 0.25
done
[ $rc = 0 ] && ! grep -q UNAVAILABLE "$W/status.out" &&
	pass "the token that came back is taken: every seal available" ||
	{ fail "the token came back but status says (exit $rc)"; cat "$W/status.out"; tail -5 "$W/sealgated.log"; }
n=$(sql "SELECT count(*) FROM audit WHERE action = 'token_inserted'")
[ "$n" = 1 ] && pass "token_inserted is recorded" || fail "token_inserted records: $n"
printf 'Sales contract 2026-1128 with Globex Ltd.' >"$W/doc.txt"
if SEALGATE_SOCKET=$W/sealgated.sock SEALGATE_USER=alice \
	foreign pkcs11-tool --module "$build/module/sealgate-pkcs11.so" --login --pin alice-password \
	--sign -m SHA256-RSA-PKCS --label "Contract Seal" -i "$W/doc.txt" -o "$W/doc.sig" >"$W/sign.out" 2>&1 &&
   openssl dgst -sha256 -verify "$W/contract-seal.pub.pem" -signature "$W/doc.sig" "$W/doc.txt" >/dev/null 2>&1; then
	pass "a signature with a seal of the returned token verifies"
else
	fail "signing with the returned token"; cat "$W/sign.out"
fi
stop
mv "$W/tokens" "$W/tokens.away"
mkdir "$W/tokens"

# 5. --rebind needs the token.
start_refused "--rebind without the token is refused, saying why" \
	"--rebind binds the token found now: insert it first" --rebind

# 6. A store that knows no keys of its token (from before they were kept)
#    cannot start without it, and says so.
sql "DELETE FROM $keys" >/dev/null
start_refused "no known keys: refused, with the way out" "knows no keys of the token yet"

# 6b. A known key that does not read back (a damaged row): without the
#     token the gateway does not start, and says why; with it (7.) the
#     row is no obstacle.
if [ "${SG_TEST_STORE:-sqlite}" = pg ]; then
	sql "INSERT INTO site_meta (site, name, value) VALUES ('main', 'key:pkcs11:object=contract-seal;type=private', x'00')" >/dev/null
else
	sql "INSERT INTO store_meta (name, value) VALUES ('key:pkcs11:object=contract-seal;type=private', x'00')" >/dev/null
fi
start_refused "a damaged known key: refused without the token, saying why" \
	"the keys known from the token cannot be read"

# 7. The token back: a plain start serves every seal, and the keys are kept again.
rm -rf "$W/tokens"
mv "$W/tokens.away" "$W/tokens"
if fixture start >>"$W/fixture.out" 2>&1 &&
   "$ctl" --socket "$W/sealgated.sock" status >"$W/status.out" 2>&1 && ! grep -q UNAVAILABLE "$W/status.out"; then
	pass "with the token back every seal is available"
else
	fail "start with the token back"; cat "$W/status.out" "$W/sealgated.log"
fi
stop
n=$(sql "SELECT count(*) FROM $keys")
[ "$n" = 5 ] && pass "the keys are remembered again" || fail "known keys after the token came back: $n"
if "$gw" --config "$W/sealgated.yaml" --verify-audit >"$W/verify.out" 2>&1; then
	pass "the audit log verifies"
else
	fail "audit log verification"; cat "$W/verify.out"
fi

finish
