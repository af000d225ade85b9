# Shared by the integration shell tests (bash, sourced): a temp directory
# with a fixture gateway in it, torn down at exit, and TAP-style lines.
#
#   W                 the test's directory (mktemp /tmp/sg-NAME.XXXXXX)
#   fixture CMD ...   tests/integration/fixture.sh CMD "$W" ...
#   pass MSG / fail MSG, and finish at the end (exit 1 when any failed)
#   audit_count WHERE how many audit records match an SQL condition
#   store_sql SQL     the rows of a query on the fixture's store, SQLite or
#                     PostgreSQL (SG_TEST_STORE=pg; tests/lib/sgsql.py)
#   sqlite_only WHY   end the whole test on a PostgreSQL store (its point
#                     is SQLite itself) with a skip line "[SKIP] WHY (by
#                     design: SQLite store only)", which tools/test counts
#                     as a skip by design (a bare exit 77 would be a skip
#                     CI fails)
#   foreign CMD ...   run a program that is not ours but loads our module
#
# usage: . "$(dirname "$0")/lib.sh" NAME
build=${SEALGATE_BUILD:?SEALGATE_BUILD not set}
gw=${SEALGATE_GATEWAY:-$build/gateway/sealgated}
ctl=$build/tools/sealctl
W=$(mktemp -d "/tmp/sg-$1.XXXXXX")
fails=0

fixture() { sh "$(dirname "${BASH_SOURCE[0]}")/fixture.sh" "$1" "$W" "${@:2}"; }
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }
finish() {
	echo "$fails failed"
	[ "$fails" = 0 ]
}
store_sql() { python3 "$SEALGATE_SOURCE/tests/lib/sgsql.py" "$W" "$1"; }
audit_count() { store_sql "SELECT count(*) FROM audit WHERE $1"; }
sqlite_only() {
	[ "${SG_TEST_STORE:-sqlite}" = pg ] || return 0
	echo "[SKIP] $1 (by design: SQLite store only)"
	exit 0
}
# A program that is not ours loading our module (pkcs11-tool): in an ASan
# build the sanitizer's runtime must come first, and leaks are the module
# tests' business (valgrind), not this program's.
foreign() {
	case ${SEALGATE_SANITIZE:-} in
	*address*) LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 "$@" ;;
	*) "$@" ;;
	esac
}
trap 'fixture down || true' EXIT
export SG_STORE_OWNER=$$
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP
