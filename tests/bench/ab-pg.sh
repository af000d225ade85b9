#!/bin/sh
# Two gateways side by side on PostgreSQL: each on a cluster of its own
# (tests/lib/pg.sh) with the bench's fixture (fixture.sh), sealbench
# alternating between them round by round (each first in turn), so that
# the machine's other load falls on both alike. For a change to the sign
# path: build the gateway before it somewhere else and compare.
#
#   SEALGATE_BUILD=BUILD tests/bench/ab-pg.sh GATEWAY_A GATEWAY_B [THREADS [N [ROUNDS]]]
#
# GATEWAY_A/B are sealgated binaries (the module and sealbench are
# BUILD's); THREADS (default 8) × N (500) P-256 signatures a round,
# ROUNDS (6). Prints sealbench's rows (-o format, the module named a or
# b) and then, per gateway, the median ops/s and gateway CPU µs/op.
# Exits 77 when PostgreSQL is not installed; stops its clusters however
# it ends.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 GATEWAY_A GATEWAY_B [THREADS [N [ROUNDS]]]" >&2; exit 2; }
ga=$1 gb=$2 threads=${3:-8} n=${4:-500} rounds=${5:-6}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${SEALGATE_BUILD:?SEALGATE_BUILD not set}" && pwd)
export SEALGATE_BUILD=$build SEALGATE_SOURCE=$src
m=$build/module/sealgate-pkcs11.so
sealbench=$build/tools/sealbench
# shellcheck source=tests/lib/pg.sh
. "$src/tests/lib/pg.sh"

dir=$(mktemp -d)
trap 'for x in a b; do sh "$here/fixture.sh" stop "$dir/$x" >/dev/null 2>&1 || true; pg_down "$dir/db$x"; done; rm -rf "$dir"' EXIT INT TERM
chmod o+x "$dir"
for x in a b; do
	mkdir -p "$dir/db$x"
	rc=0
	pg_up "$dir/db$x" >/dev/null || rc=$?
	[ $rc = 0 ] || exit $rc
done
for x in a b; do
	g=$ga; [ $x = b ] && g=$gb
	SEALGATE_GATEWAY=$g \
	SG_BENCH_STORE="postgresql:///sealgate?host=$dir/db$x/pg/run&port=5432&user=sealgate&passfile=$dir/db$x/pg/pgpass" \
		sh "$here/fixture.sh" up "$dir/$x" >/dev/null
done
export SEALGATE_USER=bench
# untimed: the clusters' first WAL segments, the gateways' caches
for x in a b; do
	SEALGATE_SOCKET=$dir/$x/sealgated.sock "$sealbench" -q -m ec -t "$threads" -n "$n" -r 1 \
		"w=$m,pin=bench-password" >/dev/null
done
r=0
while [ $r -lt "$rounds" ]; do
	order="a b"; [ $((r % 2)) = 1 ] && order="b a"
	for x in $order; do
		SEALGATE_SOCKET=$dir/$x/sealgated.sock "$sealbench" -q -m ec -t "$threads" -n "$n" -r 1 \
			-o "$dir/ab.tsv" "$x=$m,pin=bench-password,cpu-pid=$(cat "$dir/$x/sealgated.pid")" >/dev/null
	done
	r=$((r + 1))
done
cat "$dir/ab.tsv"
for x in a b; do
	for col in 4 8; do
		awk -F'\t' -v x=$x -v c=$col '$3 == x { print $c }' "$dir/ab.tsv" | sort -g |
			awk '{ v[NR] = $1 } END { printf "%s ", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
	done | awk -v x=$x '{ printf "%s\tmedian ops/s %.0f\tgateway CPU µs/op %.0f\n", x, $1, $2 }'
done
