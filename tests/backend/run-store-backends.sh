#!/usr/bin/env bash
# Runs test-store-backends against both backends: SQLite in its own temp
# dirs, PostgreSQL on a cluster of its own (tests/lib/pg.sh) named to it in
# SG_TEST_PG_URL. The cluster is stopped however the test ends, and a
# cluster that will not stop fails the test. Without PostgreSQL installed
# only the SQLite half runs (the pg tests skip).
#
# usage: run-store-backends.sh TEST-BINARY [ARGS…]
# env: SEALGATE_SOURCE. The binary gets SG_TEST_PG_DIR too (the cluster's
# directory, for pg_stop / pg_start of tests/lib/pg.sh).
set -euo pipefail
. "${SEALGATE_SOURCE:-$(dirname "$0")/../..}/tests/lib/pg.sh"

bin=$1
shift
W=$(mktemp -d /tmp/sg-sb.XXXXXX)
cleanup() {
	st=$?
	pg_down "$W" || { echo "not ok - the PostgreSQL cluster is still running"; st=1; }
	rm -rf "$W"
	exit $st
}
trap cleanup EXIT

rc=0
conn=$(pg_up "$W") || rc=$?
if [ $rc = 77 ]; then
	echo "PostgreSQL is not installed: the pg tests skip"
	unset SG_TEST_PG_URL
elif [ $rc != 0 ]; then
	echo "pg_up failed ($rc)"
	exit 1
else
	# The harness's conninfo as a URL: the store takes postgresql://.
	# The passfile holds the password; the URL does not.
	SG_TEST_PG_URL="postgresql:///sealgate?host=$W/pg/run&port=5432&user=sealgate&passfile=$W/pg/pgpass"
	SG_TEST_PG_DIR=$W
	export SG_TEST_PG_URL SG_TEST_PG_DIR
	echo "conninfo: $conn"
fi
"$bin" "$@"
