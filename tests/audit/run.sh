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
# A test killed (meson's timeout: TERM) still goes through the EXIT trap,
# which stops the gateway and the fixture's PostgreSQL cluster: the test
# runs in the background so that the trap runs at once (the shell defers
# it until a foreground command ends), and takes the test with it. The
# fixture's watcher covers a SIGKILL (tests/lib/gateway.sh).
child=
trap '[ -z "$child" ] || kill -TERM "$child" 2>/dev/null; exit 143' TERM
trap '[ -z "$child" ] || kill -TERM "$child" 2>/dev/null; exit 130' INT
trap '[ -z "$child" ] || kill -TERM "$child" 2>/dev/null; exit 129' HUP
export SG_STORE_OWNER=$$
sh "$here/fixture.sh" up "$dir"
export SG_IT_DIR="$dir"
export SG_IT_FIXTURE="$here/fixture.sh"
export SEALGATE_SOCKET="$dir/sealgated.sock"
unset SEALGATE_USER SEALGATE_PASSWORD
status=0
"$@" &
child=$!
wait "$child" || status=$?
child=
if [ $status -ne 0 ]; then
	echo "--- sealgated.log (tail) ---"
	tail -40 "$dir/sealgated.log" || true
fi
exit $status
