# Shared by the integration shell tests (bash, sourced): a temp directory
# with a fixture gateway in it, torn down at exit, and TAP-style lines.
#
#   W                 the test's directory (mktemp /tmp/sg-NAME.XXXXXX)
#   fixture CMD ...   tests/integration/fixture.sh CMD "$W" ...
#   pass MSG / fail MSG, and finish at the end (exit 1 when any failed)
#   audit_count WHERE how many audit records match an SQL condition
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
audit_count() {
	python3 - "$W/sealgate.db" "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
print(db.execute("SELECT count(*) FROM audit WHERE " + sys.argv[2]).fetchone()[0])
PY
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
