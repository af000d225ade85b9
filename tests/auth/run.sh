#!/bin/sh
# Runs an authentication test binary against a fresh fixture (fixture.sh)
# and removes it afterwards. usage: run.sh TEST-BINARY [args...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/sg-auth-XXXXXX)
chmod 755 "$dir"     # the test switches to uid nobody for one case
trap 'sh "$here/fixture.sh" down "$dir"' EXIT
sh "$here/fixture.sh" up "$dir"
export SG_AUTH_DIR="$dir"
export SEALGATE_SOCKET="$dir/sealgated.sock"
unset SEALGATE_USER SEALGATE_PASSWORD SEALGATE_CODE
status=0
"$@" || status=$?
if [ $status -ne 0 ]; then
	echo "--- sealgated.log (tail) ---"
	tail -40 "$dir/sealgated.log" || true
fi
exit $status
