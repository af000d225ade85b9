#!/bin/sh
# Runs an integration test binary against a fresh fixture (fixture.sh) and
# removes it afterwards. usage: run.sh TEST-BINARY [args...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/sg-it-XXXXXX)
# Other uids must reach the socket (tests switch uid); the PIN file stays 0600.
chmod 755 "$dir"
trap 'sh "$here/fixture.sh" down "$dir"' EXIT
sh "$here/fixture.sh" up "$dir"
export SG_IT_DIR="$dir"
export SG_IT_FIXTURE="$here/fixture.sh"
export SEALGATE_SOCKET="$dir/sealgated.sock"
unset SEALGATE_USER
status=0
"$@" || status=$?
if [ $status -ne 0 ]; then
	echo "--- sealgated.log (tail) ---"
	tail -40 "$dir/sealgated.log" || true
fi
exit $status
