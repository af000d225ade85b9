#!/bin/sh
# What one P-256 signature costs on a PostgreSQL store, counted rather than
# timed: a cluster of its own (tests/lib/pg.sh) with log_statement = all,
# the bench's gateway on it (fixture.sh), sealbench with T threads × N
# signatures each, and per signature: the statements the server ran (its
# log), the round trips (the server's sends: one per answered pipeline or
# statement, perf's sendto tracepoint), the commits (COMMITs in the log), and
# the context switches of the gateway and of the server's processes (perf
# stat). The log and perf slow the server a little: batches are a little
# larger than in the bench. Then the floor that bounds it: pgbench
# committing a one-row INSERT on the same cluster, from 1 and 8 clients.
#
#   SEALGATE_BUILD=BUILD tests/bench/count-pg.sh [THREADS [N]]
#
# Exits 77 when PostgreSQL or perf (linux-perf) is not installed; stops
# its cluster however it ends. Prints one line per figure.
set -eu
command -v perf >/dev/null 2>&1 || { echo "count-pg.sh: perf is not installed (linux-perf)" >&2; exit 77; }
threads=${1:-8} n=${2:-200}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${SEALGATE_BUILD:?SEALGATE_BUILD not set}" && pwd)
export SEALGATE_BUILD=$build SEALGATE_SOURCE=$src
sealbench=$build/tools/sealbench
module=$build/module/sealgate-pkcs11.so
# shellcheck source=tests/lib/pg.sh
. "$src/tests/lib/pg.sh"

dir=$(mktemp -d)
trap 'sh "$here/fixture.sh" stop "$dir/fx" >/dev/null 2>&1 || true; pg_down "$dir/db"; rm -rf "$dir"' EXIT INT TERM
chmod o+x "$dir"
mkdir -p "$dir/db"
rc=0
pg_up "$dir/db" >/dev/null || rc=$?
[ $rc = 0 ] || exit $rc
psql_q() { _pg_as psql -X -q -t -A -h "$dir/db/pg/run" -U postgres -d sealgate -c "$1"; }
url="postgresql:///sealgate?host=$dir/db/pg/run&port=5432&user=sealgate&passfile=$dir/db/pg/pgpass"
SG_BENCH_STORE=$url sh "$here/fixture.sh" up "$dir/fx" >/dev/null
gwpid=$(cat "$dir/fx/sealgated.pid")
pm=$(head -1 "$dir/db/pg/data/postmaster.pid")
export SEALGATE_SOCKET=$dir/fx/sealgated.sock SEALGATE_USER=bench
# warm: the first WAL segments, the gateway's caches
"$sealbench" -q -m ec -t "$threads" -n "$n" -r 1 "pg=$module,pin=bench-password" >/dev/null

psql_q "ALTER SYSTEM SET log_statement = 'all'" >/dev/null
psql_q "SELECT pg_reload_conf()" >/dev/null
sleep 1
lines0=$(wc -l <"$dir/db/pg/log")
pids=$(pgrep -d, -P "$pm")
perf stat -x, -e context-switches -p "$gwpid" -o "$dir/perf-gw" &
pgw=$!
perf stat -x, -e context-switches,syscalls:sys_enter_sendto -p "$pm,$pids" -o "$dir/perf-pg" &
ppg=$!
sleep 1
"$sealbench" -q -m ec -t "$threads" -n "$n" -r 1 "pg=$module,pin=bench-password" >/dev/null
sleep 1
kill -INT $pgw $ppg
wait $pgw $ppg 2>/dev/null || true
psql_q "ALTER SYSTEM RESET log_statement" >/dev/null
psql_q "SELECT pg_reload_conf()" >/dev/null
lines1=$(wc -l <"$dir/db/pg/log")
# sealbench signs 10 untimed signatures a thread besides the N
sigs=$((threads * (n + 10)))
sed -n "$((lines0 + 1)),${lines1}p" "$dir/db/pg/log" >"$dir/log"
stm=$(grep -c 'LOG:  \(statement\|execute\)' "$dir/log" || true)
echo "signatures	$sigs"
commits=$(grep -c 'LOG:  [a-z]*[^:]*: COMMIT$' "$dir/log" || true)
awk -v a="$stm" -v c="$commits" -v s="$sigs" 'BEGIN {
	printf "statements_per_sig\t%.2f\ncommits_per_sig\t%.3f\n", a / s, c / s }'
awk -F, -v s="$sigs" '/context-switches/ { printf "context_switches_gateway_per_sig\t%.2f\n", $1 / s }' "$dir/perf-gw"
awk -F, -v s="$sigs" '/context-switches/ { printf "context_switches_server_per_sig\t%.2f\n", $1 / s }
	/sendto/ { printf "round_trips_per_sig\t%.2f\n", $1 / s }' "$dir/perf-pg"
# The floor: a one-row INSERT committed (synchronous_commit on, fsync on)
# by pgbench on the same cluster, from 1 client and from 8 (the server
# flushes the WAL of commits that queue together once).
psql_q "CREATE TABLE floor_rows (id bigserial PRIMARY KEY, v text NOT NULL)" >/dev/null
printf "INSERT INTO floor_rows (v) VALUES ('x');\n" >"$dir/floor.sql"
chmod 0644 "$dir/floor.sql"
for c in 1 8; do
	_pg_as pgbench -n -M prepared -h "$dir/db/pg/run" -U postgres -d sealgate -f "$dir/floor.sql" \
		-c $c -j $c -T 5 2>/dev/null |
		awk -v c=$c '/^latency average/ { printf "floor_commit_latency_us_%d\t%.0f\n", c, $4 * 1000 }
			/^tps/ { printf "floor_commits_per_s_%d\t%.0f\n", c, $3 }'
done
grep 'LOG:  \(statement\|execute\)' "$dir/log" |
	sed 's/.*LOG:  [a-z]*[^:]*: //' | cut -c1-60 | sort | uniq -c | sort -rn | head -12 >&2
