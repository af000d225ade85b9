#!/usr/bin/env bash
# Integration: TOTP secrets usable at every site (docs/authentication.md,
# "Across sites"): two real gateways, sites a and b, each with its own
# SoftHSM2 token, on one PostgreSQL store (a cluster of the test's own,
# tests/lib/pg.sh, stopped however it ends; skipped, 77, without
# PostgreSQL).
#  - bob enrols at site a; his code is accepted at site b, whose token
#    opens its own copy (a's token is never reached from b).
#  - A code used at site b is refused at site a (one step counter for the
#    group), and the next code is accepted there.
#  - The store alone (a dump of the whole database) holds the secret
#    neither in base32 nor as its raw bytes.
#  - A management gateway (site hq, no token) with the pins enrols frank
#    for sites a and b; it checks no code itself (refused, saying why),
#    and site b accepts frank's code.
#  - A public key of site b substituted in the store is refused: an
#    enrolment at site a that would seal to it fails, saying why.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$(dirname "$0")/lib.sh" totp-sites-pg
. "$SEALGATE_SOURCE/tests/lib/gateway.sh"
. "$SEALGATE_SOURCE/tests/lib/pg.sh"
export SOFTHSM2_CONF=$W/softhsm2.conf

cleanup() {
	st=$?
	sg_gw_stop "$W/a" || true
	sg_gw_stop "$W/b" || true
	sg_gw_stop "$W/m" || true
	pg_down "$W" || { echo "not ok - the PostgreSQL cluster is still running"; st=1; }
	fixture down || true
	exit $st
}
trap cleanup EXIT

rc=0
pg_up "$W" >"$W/conninfo" 2>"$W/pg_up.err" || rc=$?
if [ $rc = 77 ]; then
	echo "ok - # SKIP PostgreSQL is not installed"
	exit 77
elif [ $rc != 0 ]; then
	cat "$W/pg_up.err"
	exit 1
fi
# The fixture's token (site a's) and policy; its own SQLite gateway is not used.
fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
fixture stop
# Site b's token: another SoftHSM2 token with the same label and PIN (so
# that only SOFTHSM2_CONF tells them apart) and its own keys.
SG_ORG="Integration Co." sh "$SEALGATE_SOURCE/tests/backend/mktoken.sh" "$W/tok-b" sg-it 1234 \
	contract-seal:01:rsa:2048 >/dev/null
run=$W/pg/run
url="postgresql:///sealgate?host=$run&port=5432&user=sealgate&passfile=$W/pg/pgpass"
sql() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$url" "$@"; }

# The fixture's policy as a group's: the contract seal at site b, every
# other seal at site a.
python3 - "$W/policy.yaml" "$W/policy-sites.yaml" <<'PY'
import sys
out = []
for line in open(sys.argv[1]).read().splitlines(keepends=True):
    if line == "seals:\n":
        out.append("sites:\n  - { id: a, name: Site A }\n  - { id: b, name: Site B }\n"
                   "  - { id: hq, name: Headquarters }\n")
    out.append(line)
    if line.startswith("  - id: "):
        seal = line.split(":", 1)[1].strip()
        out.append("    site: %s\n" % ("b" if seal == "contract" else "a"))
open(sys.argv[2], "w").write("".join(out))
PY
echo 1700000000 >"$W/clock"

# args: DIR SITE [PINS-FILE [token|none]]
gateway_dir() {
	mkdir -p "$1"
	{
		if [ "${4:-token}" = none ]; then
			echo "backend_token: none"
		else
			echo "backend_module: /usr/lib/softhsm/libsofthsm2.so"
			echo "backend_token: \"pkcs11:token=sg-it\""
			echo "token_pin_file: $W/token.pin"
		fi
		echo "socket_path: $1/sealgated.sock"
		echo "store: \"$url\""
		echo "site: $2"
		echo "policy_path: $W/policy-sites.yaml"
		echo "backend_sessions: 2"
		echo "test_clock: true"
		[ -z "${3:-}" ] || echo "totp_site_keys: $3"
	} >"$1/sealgated.yaml"
}
start_a() { sg_gw_start "$W/a" SEALGATE_TEST_CLOCK="$W/clock" SOFTHSM2_CONF="$W/softhsm2.conf"; }
start_b() { sg_gw_start "$W/b" SEALGATE_TEST_CLOCK="$W/clock" SOFTHSM2_CONF="$W/tok-b/softhsm2.conf"; }
# The key hash a gateway says it seals to, from its log.
fingerprint() {
	sed -n "s/.*totp: site $2 seals TOTP secrets to its key sha256:\([0-9a-f]*\).*/\1/p" \
		"$1/sealgated.log" | tail -1
}

gateway_dir "$W/a" a
gateway_dir "$W/b" b
for u in alice bob carol frank; do
	printf '%s-password\n' "$u" >"$W/pw-$u"
	"$gw" --config "$W/a/sealgated.yaml" --set-password "$u" \
		--password-file "$W/pw-$u" >>"$W/setup.out" 2>&1 || { cat "$W/setup.out"; exit 1; }
done

# ---- each site publishes its key; the operators pin both ----
start_a || { fail "site a's gateway did not start"; exit 1; }
start_b || { fail "site b's gateway did not start"; exit 1; }
fa=$(fingerprint "$W/a" a)
fb=$(fingerprint "$W/b" b)
n=$(sql -c "SELECT count(*) FROM totp_site_keys")
if [ ${#fa} = 64 ] && [ ${#fb} = 64 ] && [ "$fa" != "$fb" ] && [ "$n" = 2 ]; then
	pass "each site publishes its own TOTP key and names its hash"
else
	fail "site keys: a '$fa', b '$fb', $n in the store"; tail -5 "$W/a/sealgated.log" "$W/b/sealgated.log"
	exit 1
fi
sg_gw_stop "$W/a"
sg_gw_stop "$W/b"
printf '# the TOTP keys of the group'"'"'s sites\na sha256:%s\nb sha256:%s\n' "$fa" "$fb" >"$W/pins"
gateway_dir "$W/a" a "$W/pins"
gateway_dir "$W/b" b "$W/pins"
start_a || { fail "site a's gateway did not start with pins"; exit 1; }
start_b || { fail "site b's gateway did not start with pins"; exit 1; }

# ---- bob enrols at site a: one copy per site ----
python3 -c 'import base64, os; print(base64.b32encode(os.urandom(20)).decode(), end="")' \
	>"$W/totp-bob.b32"
code() { oathtool --totp -b --now "@$(cat "$W/clock")" "$(cat "$W/totp-bob.b32")"; }
next_step() { echo $(($(cat "$W/clock") + 30)) >"$W/clock.new" && mv "$W/clock.new" "$W/clock"; }
rc=0
"$ctl" --socket "$W/a/sealgated.sock" --user bob --password-file "$W/pw-bob" user totp-enroll \
	--secret-file "$W/totp-bob.b32" --code "$(code)" --no-qr >"$W/enroll.out" 2>&1 || rc=$?
sites=$(sql -c "SELECT string_agg(site, ',' ORDER BY site) FROM auth_totp_sites WHERE account = 'bob'")
if [ $rc = 0 ] && [ "$sites" = "a,b" ]; then
	pass "bob enrols at site a: a copy of his secret for each site (a,b)"
else
	fail "enrolment at a (exit $rc, copies for '$sites')"; cat "$W/enroll.out"
fi

# ---- his code at site b; the same code at site a is refused ----
next_step
for i in 1 2; do
	"$ctl" --socket "$W/a/sealgated.sock" --user alice --password-file "$W/pw-alice" \
		apply --seal approved --amount 5000 --reason "contract $i" >>"$W/apply.out" 2>&1 ||
		{ fail "apply $i"; cat "$W/apply.out"; }
done
c=$(code)
rc=0
SEALGATE_CODE=$c "$ctl" --socket "$W/b/sealgated.sock" --user bob --password-file "$W/pw-bob" \
	approve 1 >"$W/approve-b.out" 2>&1 </dev/null || rc=$?
if [ $rc = 0 ]; then
	pass "bob's code is accepted at site b (enrolled at a)"
else
	fail "approve at b with bob's code (exit $rc)"; cat "$W/approve-b.out"; tail -5 "$W/b/sealgated.log"
fi
rc=0
SEALGATE_CODE=$c "$ctl" --socket "$W/a/sealgated.sock" --user bob --password-file "$W/pw-bob" \
	approve 2 >"$W/approve-a.out" 2>&1 </dev/null || rc=$?
state=$(sql -c "SELECT state FROM applications WHERE id = 2")
if [ $rc != 0 ] && grep -qi "already used\|used once\|replay" "$W/approve-a.out" && [ "$state" != approved ]; then
	pass "the code used at site b is refused at site a, saying so (application 2: $state)"
else
	fail "the same code at a (exit $rc, application 2 $state)"; cat "$W/approve-a.out"
fi
next_step
rc=0
SEALGATE_CODE=$(code) "$ctl" --socket "$W/a/sealgated.sock" --user bob --password-file "$W/pw-bob" \
	approve 2 >"$W/approve-a2.out" 2>&1 </dev/null || rc=$?
[ $rc = 0 ] && pass "the next code is accepted at site a" ||
	{ fail "the next code at a (exit $rc)"; cat "$W/approve-a2.out"; }

# ---- the store alone holds no secret ----
b32=$(cat "$W/totp-bob.b32")
hex=$(python3 -c 'import base64, sys; print(base64.b32decode(sys.argv[1]).hex())' "$b32")
pg_dump_bin=$(_pg_bindir)/pg_dump
[ -x "$pg_dump_bin" ] || pg_dump_bin=pg_dump
"$pg_dump_bin" --data-only "$url" >"$W/dump.sql"
rows=$(grep -c "" "$W/dump.sql")
copies=$(sql -c "SELECT count(*) FROM auth_totp_sites")
if [ "$rows" -gt 10 ] && [ "$copies" = 2 ] && grep -q "totp_site_keys" "$W/dump.sql" &&
   ! grep -qiF "$b32" "$W/dump.sql" && ! grep -qiF "$hex" "$W/dump.sql" &&
   ! grep -qiF "${hex:0:16}" "$W/dump.sql"; then
	pass "a dump of the store holds bob's secret neither in base32 nor as bytes"
else
	fail "the dump ($rows lines, $copies copies) shows the secret"
fi

# ---- a management gateway enrols for the pinned sites, checks no code ----
gateway_dir "$W/m" hq "$W/pins" none
sg_gw_start "$W/m" SEALGATE_TEST_CLOCK="$W/clock" SOFTHSM2_CONF=/nonexistent ||
	{ fail "the management gateway did not start"; exit 1; }
python3 -c 'import base64, os; print(base64.b32encode(os.urandom(20)).decode(), end="")' \
	>"$W/totp-frank.b32"
fcode() { oathtool --totp -b --now "@$(cat "$W/clock")" "$(cat "$W/totp-frank.b32")"; }
rc=0
"$ctl" --socket "$W/m/sealgated.sock" --user frank --password-file "$W/pw-frank" user totp-enroll \
	--secret-file "$W/totp-frank.b32" --code "$(fcode)" --no-qr >"$W/enroll-m.out" 2>&1 || rc=$?
sites=$(sql -c "SELECT string_agg(site, ',' ORDER BY site) FROM auth_totp_sites WHERE account = 'frank'")
if [ $rc = 0 ] && [ "$sites" = "a,b" ]; then
	pass "the management gateway enrols frank for the pinned sites (a,b), none for itself"
else
	fail "enrolment at the management gateway (exit $rc, copies for '$sites')"; cat "$W/enroll-m.out"
fi
next_step
rc=0
SEALGATE_CODE=$(fcode) "$ctl" --socket "$W/m/sealgated.sock" --user frank --password-file "$W/pw-frank" \
	user unlock alice >"$W/unlock-m.out" 2>&1 </dev/null || rc=$?
[ $rc != 0 ] && grep -q "cannot be checked at a management gateway" "$W/unlock-m.out" &&
	pass "a code is not checked at the management gateway: $(head -1 "$W/unlock-m.out")" ||
	{ fail "a code at the management gateway (exit $rc)"; cat "$W/unlock-m.out"; }
rc=0
SEALGATE_CODE=$(fcode) "$ctl" --socket "$W/b/sealgated.sock" --user frank --password-file "$W/pw-frank" \
	user unlock alice >"$W/unlock-b.out" 2>&1 </dev/null || rc=$?
[ $rc = 0 ] && pass "frank's code (enrolled at the management gateway) is accepted at site b" ||
	{ fail "frank's code at b (exit $rc)"; cat "$W/unlock-b.out"; tail -3 "$W/b/sealgated.log"; }
sg_gw_stop "$W/m"

# ---- a substituted key of site b is refused ----
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$W/evil.key" 2>/dev/null
openssl pkey -in "$W/evil.key" -pubout -outform DER -out "$W/evil.der"
sql -c "UPDATE totp_site_keys SET pub = decode('$(xxd -p "$W/evil.der" | tr -d '\n')', 'hex') WHERE site = 'b'"
python3 -c 'import base64, os; print(base64.b32encode(os.urandom(20)).decode(), end="")' \
	>"$W/totp-carol.b32"
rc=0
"$ctl" --socket "$W/a/sealgated.sock" --user carol --password-file "$W/pw-carol" user totp-enroll \
	--secret-file "$W/totp-carol.b32" --no-qr \
	--code "$(oathtool --totp -b --now "@$(cat "$W/clock")" "$(cat "$W/totp-carol.b32")")" \
	>"$W/enroll-carol.out" 2>&1 || rc=$?
n=$(sql -c "SELECT count(*) FROM auth_totp_sites WHERE account = 'carol'")
if [ $rc != 0 ] && grep -q "site b .*not the one pinned" "$W/a/sealgated.log" && [ "$n" = 0 ]; then
	pass "a substituted key of site b is refused: the enrolment fails, nothing is sealed"
else
	fail "enrolment beside a substituted key (exit $rc, $n copies)"; cat "$W/enroll-carol.out"
fi
finish
