#!/usr/bin/env bash
# The PostgreSQL harness (tests/lib/pg.sh) on a real PostgreSQL 15: pg_up
# starts a cluster of its own in a temporary directory as the unprivileged
# cluster user, reachable by the sealgate role through its Unix socket only;
# a query runs with psql as that role; pg_down stops it and leaves none of
# its processes running.
#
# env: SEALGATE_SOURCE
set -euo pipefail
. "${SEALGATE_SOURCE:-$(dirname "$0")/../..}/tests/lib/pg.sh"

W=$(mktemp -d /tmp/sg-pg.XXXXXX)
cleanup() { pg_down "$W" || true; rm -rf "$W"; }
trap cleanup EXIT

failed=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; failed=1; }

rc=0
conn=$(pg_up "$W") || rc=$?
[ $rc = 77 ] && { echo "skip: PostgreSQL is not installed"; exit 77; }
[ $rc = 0 ] || { echo "pg_up failed ($rc)"; exit 1; }
echo "conninfo: $conn"

pid=$(head -1 "$W/pg/data/postmaster.pid")
kids=$(pgrep -P "$pid" | tr '\n' ' ')

# 1. The postmaster runs as the cluster's user, never as root.
owner=$(ps -o user= -p "$pid" | tr -d ' ')
if [ "$(id -u)" = 0 ]; then want=$SG_PG_USER; else want=$(id -un); fi
[ "$owner" = "$want" ] && pass "the postmaster runs as $owner" ||
	fail "the postmaster runs as '$owner', expected $want"

# 2. A query as the sealgate role, in its own database: it may create its
# tables there.
out=$(psql -X -At -v ON_ERROR_STOP=1 "$conn" -c "SELECT current_user, current_database(), current_setting('server_version_num')::int / 10000")
[ "$out" = "sealgate|sealgate|15" ] && pass "psql as the sealgate role: $out" ||
	fail "psql answered '$out', expected sealgate|sealgate|15"
out=$(psql -X -At -v ON_ERROR_STOP=1 "$conn" \
	-c "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY, v text)" \
	-c "INSERT INTO t (v) VALUES ('a'), ('b')" -c "SELECT count(*), max(id) FROM t")
[ "$(echo "$out" | tail -1)" = "2|2" ] && pass "the role creates and fills a table" ||
	fail "table as the role: '$out'"

# The role owns its database and nothing more: no superuser, no roles, no
# other database (pg_hba lets it into sealgate only).
out=$(psql -X -At "$conn" -c "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user")
[ "$out" = "f|f|f" ] && pass "the role is no superuser and makes no roles or databases" ||
	fail "the role's rights: '$out', expected f|f|f"
# With its password given outright: the passfile names database sealgate only.
pw=$(cut -d: -f5 "$W/pg/pgpass")
if PGPASSWORD=$pw psql -X -At "host=$W/pg/run port=5432 dbname=postgres user=sealgate" -c 'SELECT 1' >/dev/null 2>&1; then
	fail "the role reaches the postgres database"
else
	pass "the role cannot reach another database"
fi

# 3. No TCP: nothing listens, and a password is needed on the socket.
out=$(psql -X -At "$conn" -c "SHOW listen_addresses")
[ -z "$out" ] && pass "listen_addresses is empty" || fail "listen_addresses = '$out'"
# The postmaster's own sockets against the kernel's TCP tables (no tool
# needed): none of its socket inodes may be a TCP socket.
tcp=
for fd in /proc/"$pid"/fd/*; do
	l=$(readlink "$fd" 2>/dev/null) || continue
	case $l in socket:\[*\]) ;; *) continue ;; esac
	ino=${l#socket:[}
	ino=${ino%]}
	if awk -v i="$ino" 'NR > 1 && $10 == i { f = 1 } END { exit !f }' /proc/net/tcp /proc/net/tcp6; then
		tcp="$tcp $ino"
	fi
done
[ -z "$tcp" ] && pass "the postmaster has no TCP socket" ||
	fail "the postmaster has TCP sockets (inodes$tcp)"
if PGPASSWORD=wrong psql -X -At "host=$W/pg/run port=5432 dbname=sealgate user=sealgate passfile=/dev/null" -c 'SELECT 1' >/dev/null 2>&1; then
	fail "a wrong password was accepted"
else
	pass "a wrong password is refused"
fi
perm=$(stat -c %a "$W/pg/pgpass")
[ "$perm" = 600 ] && pass "the passfile is 0600" || fail "the passfile is $perm"

# 4. pg_down leaves nothing running: not the postmaster, not one child.
pg_down "$W" || fail "pg_down failed"
left=
for p in $pid $kids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
[ -z "$left" ] && pass "pg_down stopped the postmaster and its children (${kids% })" ||
	fail "still running after pg_down:$left"
if pgrep -f -- "$W/pg/data" >/dev/null; then
	fail "a process still names the cluster: $(pgrep -af -- "$W/pg/data")"
else
	pass "pgrep finds no process of the cluster"
fi
if psql -X -At "$conn" -c 'SELECT 1' >/dev/null 2>&1; then
	fail "psql still connects after pg_down"
else
	pass "psql no longer connects"
fi
# Twice is harmless.
pg_down "$W" && pass "a second pg_down is a no-op" || fail "a second pg_down failed"

exit $failed
