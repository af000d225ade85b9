#!/usr/bin/env bash
# The pg store with two roles (docs/operations.md, "Roles and rights"): an
# owner role owns the database and runs the migrations; the gateways' role
# only uses the tables, with INSERT and SELECT alone on the audit log.
#  - The gateways' role cannot migrate an empty database (it may create
#    nothing): the open fails, naming the refusal.
#  - Migrated by the owner and granted, the gateways' role opens the
#    current schema (fails when the open tries CREATE TABLE IF NOT EXISTS
#    schema_version, which needs the right to create even when the table
#    is there), and writes: a password with its audit record.
#  - It can change no audit record, remove none, create no table.
# A cluster of its own (tests/lib/pg.sh), stopped however it ends; skipped
# (77) without PostgreSQL.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
: "${SEALGATE_SOURCE:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${SEALGATE_BUILD:=$SEALGATE_SOURCE/build}"
. "$SEALGATE_SOURCE/tests/lib/pg.sh"
gw=$SEALGATE_BUILD/gateway/sealgated

W=$(mktemp -d /tmp/sg-pgroles.XXXXXX)
cleanup() {
	st=$?
	pg_down "$W" || { echo "not ok - the PostgreSQL cluster is still running"; st=1; }
	rm -rf "$W"
	exit $st
}
trap cleanup EXIT

fails=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }

rc=0
pg_up "$W" >"$W/conninfo" 2>"$W/pg_up.err" || rc=$?
[ $rc = 77 ] && { echo "ok - # SKIP PostgreSQL is not installed"; exit 77; }
[ $rc = 0 ] || { cat "$W/pg_up.err"; exit 1; }
run=$W/pg/run

super() { _pg_as psql -X -q -v ON_ERROR_STOP=1 -h "$run" -U postgres -d sealgate "$@"; }
# The owner: the database is its, and nobody else may create in it.
pw=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
( umask 077; echo "*:*:sealgate:sealgate_owner:$pw" >"$W/owner.pgpass" )
# (the password through stdin, on no command line)
printf "CREATE ROLE sealgate_owner LOGIN PASSWORD '%s';\nALTER DATABASE sealgate OWNER TO sealgate_owner;\nREVOKE CREATE ON SCHEMA public FROM PUBLIC;\n" \
	"$pw" | super >/dev/null
unset pw
echo "local sealgate sealgate_owner scram-sha-256" | _pg_as tee -a "$W/pg/data/pg_hba.conf" >/dev/null
super -c "SELECT pg_reload_conf()" >/dev/null

# A management gateway's configuration (no token) on the store as ROLE.
sed "/^#/!s|@OS_USER@|$(id -un)|g" "$SEALGATE_SOURCE/softhsm-config/acme-policy.yaml.in" >"$W/policy.yaml"
config() { # role passfile
	cat >"$W/$1.yaml" <<EOC
backend_token: none
store: "postgresql:///sealgate?host=$run&port=5432&user=$1&passfile=$2"
site: main
socket_path: $W/sealgated.sock
policy_path: $W/policy.yaml
EOC
}
config sealgate "$W/pg/pgpass"
config sealgate_owner "$W/owner.pgpass"
as_gw() { psql -X -v ON_ERROR_STOP=1 "$(cat "$W/conninfo")" "$@"; }

# ---- the gateways' role cannot migrate
if "$gw" --config "$W/sealgate.yaml" --verify-audit >"$W/gw0.out" 2>&1; then
	fail "the gateways' role migrated a database it may create nothing in"
elif grep -q "permission denied" "$W/gw0.out"; then
	pass "the gateways' role cannot migrate: the open fails, saying why"
else
	fail "the gateways' role on an empty database"; cat "$W/gw0.out"
fi

# ---- the owner migrates; the grants
if "$gw" --config "$W/sealgate_owner.yaml" --verify-audit >"$W/own.out" 2>&1; then
	pass "the owner's --verify-audit migrates the database"
else
	fail "the owner's migrations"; cat "$W/own.out"
fi
super >/dev/null <<'EOS'
SET ROLE sealgate_owner;
GRANT SELECT ON schema_version TO sealgate;
GRANT SELECT, INSERT, UPDATE, DELETE ON accounts, store_meta, auth_lockout, auth_totp,
	applications, approvals, quota_use, site_meta, auth_totp_sites, sessions TO sealgate;
GRANT SELECT, INSERT, UPDATE ON risk_alerts TO sealgate;
GRANT SELECT, INSERT ON audit, audit_checkpoints, policy_versions TO sealgate;
GRANT SELECT, INSERT, UPDATE ON audit_checkpoint_ids, totp_site_keys, outbox TO sealgate;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO sealgate;
EOS
owners=$(as_gw -Atc "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
[ "$owners" = sealgate_owner ] && pass "every table is the owner's" || fail "table owners: $owners"

# ---- the gateways' role opens the current schema and writes
if "$gw" --config "$W/sealgate.yaml" --verify-audit >"$W/gw1.out" 2>&1 &&
	grep -q "audit log intact" "$W/gw1.out"; then
	pass "the gateways' role opens the migrated store (--verify-audit)"
else
	fail "the gateways' role cannot open the migrated store"; cat "$W/gw1.out"
fi
if printf 'correct horse battery staple\n' |
	"$gw" --config "$W/sealgate.yaml" --set-password frank --password-file - >"$W/pw.out" 2>&1; then
	pass "the gateways' role sets a password (accounts and its audit record)"
else
	fail "--set-password as the gateways' role"; cat "$W/pw.out"
fi
n=$(as_gw -Atc "SELECT count(*) FROM audit WHERE action = 'password_set' AND actor IS NOT NULL")
[ "$n" = 1 ] && pass "its password_set record is in the audit log" || fail "password_set records: $n"

# ---- and changes nothing of the audit log
for sql in "UPDATE audit SET actor = 'mallory'" "DELETE FROM audit" "TRUNCATE audit" \
	"UPDATE audit_checkpoints SET seq = 0" "DELETE FROM audit_checkpoints" \
	"UPDATE policy_versions SET author = 'mallory'" "CREATE TABLE mine (a int)"; do
	if as_gw -c "$sql" >"$W/sql.out" 2>&1; then
		fail "the gateways' role may: $sql"
	elif grep -q "permission denied" "$W/sql.out"; then
		pass "the gateways' role may not: $sql"
	else
		fail "$sql: $(cat "$W/sql.out")"
	fi
done
n=$(as_gw -Atc "SELECT count(*) FROM audit")
[ "$n" -ge 1 ] && pass "the audit log is still there ($n records)" || fail "audit records: $n"

[ $fails = 0 ] || exit 1
