#!/bin/sh
# The store's disk use under a signing storm (docs/operations.md, "Disk
# use"): a real sealgated on a SoftHSM2 token (tests/bench/fixture.sh: the
# full sign path, quotas counted, a durable audit record each), COUNT
# EC P-256 signatures from 8 threads (tools/sealbench), and the sizes of
# sealgate.db, its -wal and its .redo sampled while they run. Fails when
# WAL + redo log ever reach LIMIT bytes, when the database takes more than
# BYTES_PER_RECORD per record, or when a WAL grown by an older gateway is
# not shrunk at the next start.
#
# With SG_TEST_STORE=pg (the integration fixture's way: tests/lib/gateway.sh
# sg_store_conf, a PostgreSQL cluster of the test's own, stopped however it
# ends; skipped, 77, when PostgreSQL is not installed) the store is that
# cluster's database, and the checks are the ones that mean something
# there: every signature has its record, the seal's quota counters equal
# the records, the server's WAL directory stays bounded (max_wal_size set
# to PG_WAL_MAX for the run) and is after a CHECKPOINT, and the gateway's
# connections (pg_stat_activity) are as many after the storm as before
# it. The wall time of the storm is printed on both.
#
#   storm.sh [COUNT]     (default $SG_STORM_COUNT, or 200000; 50000 in a
#                        sanitizer build; on pg 50000 and 20000)
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE (set by meson); SG_STORM_THREADS (8);
# SG_TEST_STORE (sqlite or pg).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=${SEALGATE_SOURCE:-$(cd "$here/../.." && pwd)}
build=${SEALGATE_BUILD:?SEALGATE_BUILD not set (the meson build directory)}
export SEALGATE_SOURCE=$src SEALGATE_BUILD=$build
# Under the sanitizers everything is several times slower: a smaller storm,
# the same bounds.
store=${SG_TEST_STORE:-sqlite}
case ${SEALGATE_SANITIZE:-none}:$store in
none:sqlite|:sqlite) dflt=200000 ;;
*:sqlite) dflt=50000 ;;
none:pg|:pg) dflt=50000 ;;
*:pg) dflt=20000 ;;
*) echo "storm: SG_TEST_STORE is sqlite or pg, not $store" >&2; exit 1 ;;
esac
count=${1:-${SG_STORM_COUNT:-$dflt}}
threads=${SG_STORM_THREADS:-8}
limit=$((64 * 1024 * 1024))     # WAL + redo log, at every sample
per_record=2048                 # database bytes per audit record, at the end
fixture=$src/tests/bench/fixture.sh

pg_wal_max=64                   # MB: max_wal_size of the pg run
dir=$(mktemp -d /tmp/sg-storm-XXXXXX)
benchpid=
cleanup() {
	[ -n "$benchpid" ] && kill "$benchpid" 2>/dev/null || true
	sh "$fixture" stop "$dir" >/dev/null 2>&1 || true
	# (the cluster after the gateway, before its files go)
	if [ "$store" = pg ]; then
		sg_store_down "$dir" || echo "storm: the PostgreSQL cluster is still running" >&2
	fi
	[ -n "${SG_STORM_KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

size() { stat -c %s "$1" 2>/dev/null || echo 0; }
records() { sqlite3 "file:$dir/sealgate.db?mode=ro" "SELECT COUNT(*) FROM audit" 2>/dev/null || echo 0; }
fail() { echo "FAIL: $*" >&2; tail -20 "$dir/sealgated.log" >&2 || true; exit 1; }

if [ "$store" = pg ]; then
	# shellcheck source=tests/lib/gateway.sh
	. "$src/tests/lib/gateway.sh"
	# shellcheck source=tests/lib/pg.sh
	. "$src/tests/lib/pg.sh"
	rc=0
	conf=$(SG_STORE_OWNER=$$ sg_store_conf "$dir") || rc=$?
	if [ $rc = 77 ]; then
		echo "storm: PostgreSQL is not installed: skipped" >&2
		exit 77
	fi
	[ $rc = 0 ] || fail "cannot start PostgreSQL for the storm"
	SG_BENCH_STORE=$(echo "$conf" | sed -n 's/^store: "\(.*\)"$/\1/p')
	export SG_BENCH_STORE
	conninfo=$(cat "$dir/store/conninfo")
	pgdir=$(cd "$dir/store" && pwd -P)
	sql() { psql -X -q -At -d "$conninfo" -c "$1"; }
	# A WAL bound small enough to mean something at this COUNT; the
	# superuser only by peer, as the cluster's user (tests/lib/pg.sh).
	su_sql() { _pg_as psql -X -q -At -h "$pgdir/pg/run" -U postgres -d postgres -c "$1"; }
	su_sql "ALTER SYSTEM SET max_wal_size = '${pg_wal_max}MB'" >/dev/null
	su_sql "ALTER SYSTEM SET min_wal_size = '32MB'" >/dev/null
	su_sql "SELECT pg_reload_conf()" >/dev/null
	wal_dir=$pgdir/pg/data/pg_wal
	# max_wal_size is a soft bound: a checkpoint in progress may leave
	# a few segments more (16 MB each).
	limit=$(( (pg_wal_max + 4 * 16) * 1024 * 1024 ))
	wal() { du -sb "$wal_dir" 2>/dev/null | cut -f1; }
	conns() {
		sql "SELECT count(*) FROM pg_stat_activity WHERE datname = 'sealgate' AND pid <> pg_backend_pid()"
	}
	records() { sql "SELECT count(*) FROM audit WHERE action = 'sign' AND outcome = 'ok'" 2>/dev/null || echo 0; }
fi
sh "$fixture" up "$dir" >/dev/null
db=$dir/sealgate.db
per=$(( (count + threads - 1) / threads ))
echo "storm: $threads threads × $per EC signatures through the module" >&2
SEALGATE_SOCKET=$dir/sealgated.sock SEALGATE_USER=bench \
	"$build/tools/sealbench" -q -m ec -t "$threads" -n "$per" -r 1 -w 0 \
	"sealgate=$build/module/sealgate-pkcs11.so,pin=bench-password" >"$dir/bench.out" 2>&1 &
benchpid=$!
t0=$(date +%s)
if [ "$store" = pg ]; then
	conns0=$(conns)
	max_conns=$conns0 max_wal=0 samples=0
	while kill -0 "$benchpid" 2>/dev/null; do
		samples=$((samples + 1))
		if [ $((samples % 5)) = 0 ]; then
			w=$(wal) c=$(conns)
			[ "$w" -gt "$max_wal" ] && max_wal=$w
			[ "$c" -gt "$max_conns" ] && max_conns=$c
			[ "$w" -lt "$limit" ] || fail "the server's WAL directory holds $w bytes during the storm (max_wal_size ${pg_wal_max} MB)"
		fi
		sleep 0.2
	done
	rc=0
	wait "$benchpid" || rc=$?
	benchpid=
	t1=$(date +%s)
	[ $rc = 0 ] || { cat "$dir/bench.out" >&2; fail "sealbench failed ($rc)"; }
	n=$(records)
	echo "storm on PostgreSQL: $((per * threads)) signatures in $((t1 - t0)) s; $n sign records" >&2
	[ "$n" = $((per * threads)) ] || fail "$n sign records for $((per * threads)) signatures"
	# The seal's counters (per_day, per_month, per_person_per_day): each
	# kind summed over its periods (a storm may cross midnight) is the
	# number of signatures recorded.
	for q in "period LIKE 'd:%' AND person = ''" "period LIKE 'm:%' AND person = ''" \
		"period LIKE 'd:%' AND person <> ''"; do
		u=$(sql "SELECT coalesce(sum(used), 0) FROM quota_use WHERE seal = 'ec' AND $q")
		[ "$u" = "$n" ] || fail "quota counters ($q) say $u for $n records: $(sql "SELECT * FROM quota_use WHERE seal = 'ec'")"
	done
	su_sql "CHECKPOINT" >/dev/null
	w=$(wal) c=$(conns)
	echo "after $n records: WAL directory $w bytes after a checkpoint, at most $max_wal during" \
		"the storm; the gateway's connections $conns0 before, $c after, at most $max_conns during;" \
		"audit table $(sql "SELECT pg_total_relation_size('audit')") bytes" >&2
	[ "$w" -lt "$limit" ] || fail "the WAL directory holds $w bytes after a checkpoint"
	[ "$c" = "$conns0" ] || fail "the gateway has $c connections after the storm, $conns0 before"
	echo "storm ok on PostgreSQL: $n signatures in $((t1 - t0)) s, WAL at most $max_wal bytes" \
		"(< $limit), connections $conns0 → $c" >&2
	exit 0
fi
max_wal=0 max_redo=0 max_sum=0 samples=0
# Sampled until the load generator ends (no time limit of our own: meson's
# timeout is the bound).
while kill -0 "$benchpid" 2>/dev/null; do
	w=$(size "$db-wal") r=$(size "$db.redo")
	[ "$w" -gt "$max_wal" ] && max_wal=$w
	[ "$r" -gt "$max_redo" ] && max_redo=$r
	[ $((w + r)) -gt "$max_sum" ] && max_sum=$((w + r))
	samples=$((samples + 1))
	if [ $((w + r)) -ge "$limit" ]; then
		fail "WAL $w + redo $r bytes reached $limit during the storm"
	fi
	# The database grows with the records, not faster (every 5 s or so).
	if [ $((samples % 25)) = 0 ]; then
		n=$(records) d=$(size "$db")
		[ "$d" -le $((n * per_record + 1048576)) ] ||
			fail "the database takes $d bytes for $n records during the storm"
	fi
	sleep 0.2
done
rc=0
wait "$benchpid" || rc=$?
benchpid=
t1=$(date +%s)
[ $rc = 0 ] || { cat "$dir/bench.out" >&2; fail "sealbench failed ($rc)"; }
echo "storm on SQLite: $((per * threads)) signatures in $((t1 - t0)) s" >&2
n=$(records)
dbsize=$(size "$db")
w=$(size "$db-wal") r=$(size "$db.redo")
echo "after $n records: db $dbsize, wal $w, redo $r bytes; largest during the storm:" \
	"wal $max_wal, redo $max_redo, wal+redo $max_sum ($samples samples)" >&2
[ "$n" -ge "$count" ] || fail "only $n audit records for $count signatures"
[ $((w + r)) -lt "$limit" ] || fail "WAL $w + redo $r bytes at the end"
[ "$dbsize" -le $((n * per_record + 1048576)) ] ||
	fail "the database takes $dbsize bytes for $n records (more than $per_record a record)"

# A WAL grown by a gateway that never checkpointed (an older sealgated):
# stopped, the WAL made to hold the database's pages many times over, and
# the next start shrinks it.
sh "$fixture" stop "$dir"
# (sqlite3 is killed at the end: a clean close would checkpoint and remove
# the WAL.)
{
	echo "PRAGMA wal_autocheckpoint=0; CREATE TABLE IF NOT EXISTS storm_pad (b BLOB);"
	i=0
	while [ $i -lt 80 ]; do
		echo "INSERT INTO storm_pad VALUES (randomblob(1048576)); DELETE FROM storm_pad;"
		i=$((i + 1))
	done
	echo '.shell kill -9 $PPID'
} >"$dir/grow.sql"
(sqlite3 "$db" <"$dir/grow.sql" >/dev/null 2>&1 || true) 2>/dev/null
grown=$(size "$db-wal")
[ "$grown" -ge "$limit" ] || fail "could not grow the WAL for the restart check ($grown bytes)"
sh "$fixture" start "$dir"
shrunk=$(size "$db-wal")
echo "restart: a WAL of $grown bytes left by a gateway that never checkpointed is $shrunk after the start" >&2
[ "$shrunk" -lt "$limit" ] || fail "the WAL is still $shrunk bytes after a restart"
echo "storm ok: $count signatures, WAL + redo at most $max_sum bytes (< $limit)," \
	"$((dbsize / n)) database bytes per record" >&2
