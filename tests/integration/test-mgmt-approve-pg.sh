#!/usr/bin/env bash
# Integration: approvals at a management gateway without a token
# (docs/sites.md, "Approvals at a management gateway"): headquarters (site
# hq, backend_token: none, its TOTP key pair in totp_key_file) and a branch
# (site a, its SoftHSM2 token) on one PostgreSQL store (a cluster of the
# test's own, tests/lib/pg.sh, stopped however it ends; skipped, 77,
# without PostgreSQL).
#  - hq's key is published and pinned like a site's; bob enrols at a, and
#    his secret gets a copy for hq.
#  - bob approves at hq with his code; alice signs at a with the approval.
#  - A wrong code and a replayed code (used at a first) are refused at hq,
#    recorded, and leave the application pending; with a stopped, hq
#    still checks codes (it needs no site for it).
#  - hq without totp_key_file refuses a code as mfa_unavailable, recorded.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$(dirname "$0")/lib.sh" mgmt-approve-pg
. "$SEALGATE_SOURCE/tests/lib/gateway.sh"
. "$SEALGATE_SOURCE/tests/lib/pg.sh"
export SOFTHSM2_CONF=$W/softhsm2.conf

cleanup() {
	st=$?
	sg_gw_stop "$W/a" || true
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
run=$W/pg/run
url="postgresql:///sealgate?host=$run&port=5432&user=sealgate&passfile=$W/pg/pgpass"
sql() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$url" "$@"; }

# The fixture's policy as a group's: every seal at site a.
python3 - "$W/policy.yaml" "$W/policy-sites.yaml" <<'PY'
import sys
out = []
for line in open(sys.argv[1]).read().splitlines(keepends=True):
    if line == "seals:\n":
        out.append("sites:\n  - { id: a, name: Site A }\n  - { id: hq, name: Headquarters }\n")
    out.append(line)
    if line.startswith("  - id: "):
        out.append("    site: a\n")
open(sys.argv[2], "w").write("".join(out))
PY
echo 1700000000 >"$W/clock"

# args: DIR SITE [PINS-FILE [token|none [KEY-FILE]]]
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
		[ -z "${5:-}" ] || echo "totp_key_file: $5"
	} >"$1/sealgated.yaml"
}
start_a() { sg_gw_start "$W/a" SEALGATE_TEST_CLOCK="$W/clock" SOFTHSM2_CONF="$W/softhsm2.conf"; }
start_m() { sg_gw_start "$W/m" SEALGATE_TEST_CLOCK="$W/clock" SOFTHSM2_CONF=/nonexistent; }
fingerprint() {
	sed -n "s/.*totp: site $2 seals TOTP secrets to its key sha256:\([0-9a-f]*\).*/\1/p" \
		"$1/sealgated.log" | tail -1
}
# Records at site hq: args: action outcome [reason pattern]
hq_records() {
	sql -c "SELECT count(*) FROM audit WHERE site = 'hq' AND action = '$1' AND outcome = '$2'
	        AND coalesce(reason, '') LIKE '${3:-%}'"
}

gateway_dir "$W/a" a
for u in alice bob; do
	printf '%s-password\n' "$u" >"$W/pw-$u"
	"$gw" --config "$W/a/sealgated.yaml" --set-password "$u" \
		--password-file "$W/pw-$u" >>"$W/setup.out" 2>&1 || { cat "$W/setup.out"; exit 1; }
done
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$W/hq-totp.pem" 2>/dev/null
chmod 600 "$W/hq-totp.pem"

# ---- each publishes its key; both are pinned ----
start_a || { fail "site a's gateway did not start"; exit 1; }
gateway_dir "$W/m" hq "" none "$W/hq-totp.pem"
start_m || { fail "the management gateway did not start with its key file"; exit 1; }
fa=$(fingerprint "$W/a" a)
fm=$(fingerprint "$W/m" hq)
n=$(sql -c "SELECT count(*) FROM totp_site_keys")
if [ ${#fa} = 64 ] && [ ${#fm} = 64 ] && [ "$fa" != "$fm" ] && [ "$n" = 2 ]; then
	pass "the management gateway publishes the key of its key file and names its hash"
else
	fail "site keys: a '$fa', hq '$fm', $n in the store"; tail -5 "$W/a/sealgated.log" "$W/m/sealgated.log"
	exit 1
fi
sg_gw_stop "$W/a"
sg_gw_stop "$W/m"
printf 'a sha256:%s\nhq sha256:%s\n' "$fa" "$fm" >"$W/pins"
gateway_dir "$W/a" a "$W/pins"
gateway_dir "$W/m" hq "$W/pins" none "$W/hq-totp.pem"
start_a || { fail "site a's gateway did not start with pins"; exit 1; }
start_m || { fail "the management gateway did not start with pins"; exit 1; }

# ---- bob enrols at a: a copy for hq too ----
python3 -c 'import base64, os; print(base64.b32encode(os.urandom(20)).decode(), end="")' \
	>"$W/totp-bob.b32"
code() { oathtool --totp -b --now "@$(cat "$W/clock")" "$(cat "$W/totp-bob.b32")"; }
next_step() { echo $(($(cat "$W/clock") + 30)) >"$W/clock.new" && mv "$W/clock.new" "$W/clock"; }
rc=0
"$ctl" --socket "$W/a/sealgated.sock" --user bob --password-file "$W/pw-bob" user totp-enroll \
	--secret-file "$W/totp-bob.b32" --code "$(code)" --no-qr >"$W/enroll.out" 2>&1 || rc=$?
sites=$(sql -c "SELECT string_agg(site, ',' ORDER BY site) FROM auth_totp_sites WHERE account = 'bob'")
if [ $rc = 0 ] && [ "$sites" = "a,hq" ]; then
	pass "bob enrols at site a: a copy of his secret for a and for hq"
else
	fail "enrolment at a (exit $rc, copies for '$sites')"; cat "$W/enroll.out"
fi
for i in 1 2 3 4; do
	"$ctl" --socket "$W/m/sealgated.sock" --user alice --password-file "$W/pw-alice" \
		apply --seal approved --amount 5000 --reason "contract $i" >>"$W/apply.out" 2>&1 ||
		{ fail "apply $i at hq"; cat "$W/apply.out"; }
done
approve_at() {   # SOCKET-DIR APPLICATION CODE OUT
	local rc=0
	SEALGATE_CODE=$3 "$ctl" --socket "$1/sealgated.sock" --user bob --password-file "$W/pw-bob" \
		approve "$2" >"$4" 2>&1 </dev/null || rc=$?
	return $rc
}
state() { sql -c "SELECT state FROM applications WHERE id = $1"; }

# ---- the right code at hq authorizes the signature at a ----
next_step
rc=0
approve_at "$W/m" 1 "$(code)" "$W/approve-1.out" || rc=$?
st1=$(state 1)
printf 'Sales contract 2026-1203 with Initech.' >"$W/doc.txt"
p11a() {
	SEALGATE_SOCKET=$W/a/sealgated.sock SEALGATE_USER=alice \
		foreign pkcs11-tool --module "$build/module/sealgate-pkcs11.so" --login \
		--pin alice-password "$@"
}
# pkcs11-tool takes the first private key for --sign whatever --label
# says: the seal is picked by its certificate's CKA_ID (as tests/e2e/lib.sh).
id=$(p11a --list-objects --type cert 2>/dev/null | awk '
	/^  label:/ { sub(/^  label: */, ""); label = $0 }
	/^  ID:/    { if (label == "Approved Seal") { print $2; exit } }')
src=0
p11a --sign -m SHA256-RSA-PKCS --id "$id" -i "$W/doc.txt" -o "$W/doc.sig" >"$W/sign.out" 2>&1 || src=$?
if [ $rc = 0 ] && [ "$st1" = authorized ] && [ "$(state 1)" = used_up ] && [ $src = 0 ] && [ -s "$W/doc.sig" ] &&
   [ "$(hq_records application_approve ok)" = 1 ] &&
   [ "$(sql -c "SELECT count(*) FROM audit WHERE site = 'a' AND action = 'sign' AND outcome = 'ok' AND seal = 'approved' AND application = 1")" = 1 ]; then
	pass "bob's code at hq approves application 1 (recorded at hq); alice signs with it at a"
else
	fail "approval at hq (exit $rc, state $st1 then $(state 1), $(hq_records application_approve ok) records at hq), signature at a (exit $src, $(stat -c %s "$W/doc.sig" 2>/dev/null) bytes)"
	cat "$W/approve-1.out" "$W/sign.out"; sql -c "SELECT site, action, outcome, seal, application FROM audit WHERE action = 'sign'"
fi

# ---- a wrong code is refused and recorded ----
next_step
good=$(code)
wrong=$(printf '%06d' $(((10#$good + 1) % 1000000)))
rc=0
approve_at "$W/m" 2 "$wrong" "$W/approve-wrong.out" || rc=$?
if [ $rc != 0 ] && [ "$(state 2)" = pending ] && grep -q "wrong code" "$W/approve-wrong.out" &&
   [ "$(sql -c "SELECT count(*) FROM audit WHERE site = 'hq' AND outcome <> 'ok' AND actor = 'bob'")" -ge 1 ]; then
	pass "a wrong code at hq is refused and recorded: $(head -1 "$W/approve-wrong.out")"
else
	fail "a wrong code at hq (exit $rc, state $(state 2))"; cat "$W/approve-wrong.out"
fi

# ---- a code used at a is refused at hq, recorded ----
before=$(sql -c "SELECT count(*) FROM audit WHERE site = 'hq' AND outcome <> 'ok'")
rc=0
approve_at "$W/a" 4 "$good" "$W/approve-a.out" || rc=$?
[ $rc = 0 ] && [ "$(state 4)" = authorized ] ||
	{ fail "bob's code at a (exit $rc, state $(state 4))"; cat "$W/approve-a.out"; }
rc=0
approve_at "$W/m" 2 "$good" "$W/approve-replay.out" || rc=$?
after=$(sql -c "SELECT count(*) FROM audit WHERE site = 'hq' AND outcome <> 'ok'")
if [ $rc != 0 ] && [ "$(state 2)" = pending ] &&
   grep -qi "already used\|used once\|replay" "$W/approve-replay.out" && [ "$after" -gt "$before" ]; then
	pass "a code used at a is refused at hq and recorded: $(head -1 "$W/approve-replay.out")"
else
	fail "a replayed code at hq (exit $rc, state $(state 2), refusals $before -> $after)"
	cat "$W/approve-replay.out"
fi

# ---- with a stopped, hq checks codes alone ----
sg_gw_stop "$W/a"
next_step
rc=0
approve_at "$W/m" 2 "$(code)" "$W/approve-2.out" || rc=$?
[ $rc = 0 ] && [ "$(state 2)" = authorized ] &&
	pass "with site a stopped, a code at hq still approves (hq needs no site to check it)" ||
	{ fail "approval at hq with a stopped (exit $rc, state $(state 2))"; cat "$W/approve-2.out"; }

# ---- hq without its key file: mfa_unavailable, recorded ----
sg_gw_stop "$W/m"
gateway_dir "$W/m" hq "$W/pins" none
start_m || { fail "the management gateway did not start without its key file"; exit 1; }
next_step
before=$(sql -c "SELECT count(*) FROM audit WHERE site = 'hq' AND outcome <> 'ok'")
rc=0
approve_at "$W/m" 3 "$(code)" "$W/approve-3.out" || rc=$?
after=$(sql -c "SELECT count(*) FROM audit WHERE site = 'hq' AND outcome <> 'ok'")
if [ $rc != 0 ] && [ "$(state 3)" = pending ] && grep -q "cannot be checked at a management gateway" "$W/approve-3.out" &&
   grep -q "mfa_unavailable" "$W/m/sealgated.log" "$W/approve-3.out" && [ "$after" -gt "$before" ]; then
	pass "hq without totp_key_file refuses a code (mfa_unavailable), recorded: $(head -1 "$W/approve-3.out")"
else
	fail "a code at hq without its key file (exit $rc, state $(state 3), refusals $before -> $after)"
	cat "$W/approve-3.out"; grep -i "mfa\|approve" "$W/m/sealgated.log" | tail -3
fi
finish
