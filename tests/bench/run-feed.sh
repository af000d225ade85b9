#!/usr/bin/env bash
# bench-feed on a PostgreSQL cluster of its own (tests/lib/pg.sh), stopped
# however it ends. Prints the numbers; skips (77) without PostgreSQL.
#
# usage: run-feed.sh BENCH-FEED-BINARY [N]
# env: SEALGATE_SOURCE
set -euo pipefail
. "${SEALGATE_SOURCE:-$(dirname "$0")/../..}/tests/lib/pg.sh"

W=$(mktemp -d /tmp/sg-bf.XXXXXX)
cleanup() {
	st=$?
	pg_down "$W" || { echo "the PostgreSQL cluster is still running"; st=1; }
	rm -rf "$W"
	exit $st
}
trap cleanup EXIT
rc=0
pg_up "$W" >/dev/null || rc=$?
if [ $rc = 77 ]; then
	echo "PostgreSQL is not installed: nothing measured"
	exit 77
elif [ $rc != 0 ]; then
	echo "pg_up failed ($rc)"
	exit 1
fi
"$1" "postgresql:///sealgate?host=$W/pg/run&port=5432&user=sealgate&passfile=$W/pg/pgpass" "${2:-200}"
