#!/bin/sh
# Two gateways in turn on the bench's fixture (fixture.sh, SQLite store):
# P-256 at 1 and then 2 client threads with each, gateway A first in
# every turn, so that the machine's other load falls on both alike; the
# gateway's context switches per signature (perf stat over the run, when
# perf is there) beside sealbench's row. For a change to the audit writer
# or the sign path: build the gateway before it somewhere else and compare
# (docs/performance.md, "Group commit at low concurrency").
#
#   SEALGATE_BUILD=BUILD tests/bench/ab-sqlite.sh GATEWAY_A GATEWAY_B [N [TURNS]]
#
# GATEWAY_A/B are sealgated binaries (the module and sealbench are
# BUILD's); N (800) P-256 signatures a thread a run, TURNS (6). Prints
# "GATEWAY THREADS CS_PER_SIGNATURE" and sealbench's row per run.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 GATEWAY_A GATEWAY_B [N [TURNS]]" >&2; exit 2; }
ga=$1 gb=$2 n=${3:-800} turns=${4:-6}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${SEALGATE_BUILD:?SEALGATE_BUILD not set}" && pwd)
export SEALGATE_BUILD=$build SEALGATE_SOURCE=$src
m=$build/module/sealgate-pkcs11.so
sealbench=$build/tools/sealbench
warm=20

dir=$(mktemp -d)
trap 'sh "$here/fixture.sh" down "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT INT TERM
sh "$here/fixture.sh" up "$dir" >/dev/null
sh "$here/fixture.sh" stop "$dir"
export SEALGATE_SOCKET=$dir/sealgated.sock SEALGATE_USER=bench
for turn in $(seq 1 "$turns"); do
	for g in a b; do
		if [ $g = a ]; then gw=$ga; else gw=$gb; fi
		SEALGATE_GATEWAY=$gw sh "$here/fixture.sh" start "$dir"
		pid=$(cat "$dir/sealgated.pid")
		for t in 1 2; do
			cs=-
			pp=
			if command -v perf >/dev/null; then
				perf stat -x, -e context-switches -p "$pid" -o "$dir/perf" 2>/dev/null &
				pp=$!
				sleep 0.2
			fi
			row=$("$sealbench" -q -m ec -t $t -n "$n" -r 1 -w $warm "$g=$m,pin=bench-password,cpu-pid=$pid" | grep '^ec ')
			if [ -n "$pp" ]; then
				kill -INT "$pp"
				wait "$pp" 2>/dev/null || true
				cs=$(awk -F, -v s=$((t * (n + warm))) '/context-switches/ { printf "%.2f", $1 / s }' "$dir/perf")
			fi
			echo "$g $t $cs $row"
		done
		sh "$here/fixture.sh" stop "$dir"
	done
done
