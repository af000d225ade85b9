#!/bin/sh
# Runs an audit integration test binary against a fresh audit fixture
# (fixture.sh) and removes it afterwards. usage: run.sh TEST-BINARY [args...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/sg-audit-it-XXXXXX)
chmod 755 "$dir"
# A failed full-disk test may leave its tmpfs mounted under DIR.
trap 'sh "$here/fixture.sh" stop "$dir"; umount -l "$dir/small" 2>/dev/null || true
      sh "$here/fixture.sh" down "$dir"' EXIT
sh "$here/fixture.sh" up "$dir"
export SG_IT_DIR="$dir"
export SG_IT_FIXTURE="$here/fixture.sh"
export SEALGATE_SOCKET="$dir/sealgated.sock"
unset SEALGATE_USER SEALGATE_PASSWORD
status=0
"$@" || status=$?
if [ $status -ne 0 ]; then
	echo "--- sealgated.log (tail) ---"
	tail -40 "$dir/sealgated.log" || true
fi
exit $status
