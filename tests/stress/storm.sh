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
#   storm.sh [COUNT]     (default $SG_STORM_COUNT, or 200000; 50000 in a
#                        sanitizer build)
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE (set by meson); SG_STORM_THREADS (8).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=${SEALGATE_SOURCE:-$(cd "$here/../.." && pwd)}
build=${SEALGATE_BUILD:?SEALGATE_BUILD not set (the meson build directory)}
export SEALGATE_SOURCE=$src SEALGATE_BUILD=$build
# Under the sanitizers everything is several times slower: a smaller storm,
# the same bounds.
case ${SEALGATE_SANITIZE:-none} in
none|'') dflt=200000 ;;
*) dflt=50000 ;;
esac
count=${1:-${SG_STORM_COUNT:-$dflt}}
threads=${SG_STORM_THREADS:-8}
limit=$((64 * 1024 * 1024))     # WAL + redo log, at every sample
per_record=2048                 # database bytes per audit record, at the end
fixture=$src/tests/bench/fixture.sh

dir=$(mktemp -d /tmp/sg-storm-XXXXXX)
benchpid=
cleanup() {
	[ -n "$benchpid" ] && kill "$benchpid" 2>/dev/null || true
	sh "$fixture" down "$dir" >/dev/null 2>&1 || true
	[ -n "${SG_STORM_KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT INT TERM

size() { stat -c %s "$1" 2>/dev/null || echo 0; }
records() { sqlite3 "file:$dir/sealgate.db?mode=ro" "SELECT COUNT(*) FROM audit" 2>/dev/null || echo 0; }
fail() { echo "FAIL: $*" >&2; tail -20 "$dir/sealgated.log" >&2 || true; exit 1; }

sh "$fixture" up "$dir" >/dev/null
db=$dir/sealgate.db
per=$(( (count + threads - 1) / threads ))
echo "storm: $threads threads × $per EC signatures through the module" >&2
SEALGATE_SOCKET=$dir/sealgated.sock SEALGATE_USER=bench \
	"$build/tools/sealbench" -q -m ec -t "$threads" -n "$per" -r 1 -w 0 \
	"sealgate=$build/module/sealgate-pkcs11.so,pin=bench-password" >"$dir/bench.out" 2>&1 &
benchpid=$!
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
[ $rc = 0 ] || { cat "$dir/bench.out" >&2; fail "sealbench failed ($rc)"; }
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
