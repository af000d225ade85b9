#!/bin/sh
# Runs the card test binary against a fresh card fixture (fixture.sh) and
# removes it afterwards. usage: run.sh TEST-BINARY [args...]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/sg-card-XXXXXX)
trap 'sh "$here/fixture.sh" down "$dir"' EXIT
# A killed run (meson's timeout sends TERM first) still takes everything
# down, the PostgreSQL cluster of SG_TEST_STORE=pg included.
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP
export SG_STORE_OWNER=$$
status=0
sh "$here/fixture.sh" up "$dir" || status=$?
if [ $status -ne 0 ]; then
	[ $status -eq 77 ] && echo "SKIP: the smartcard stack (or PostgreSQL, SG_TEST_STORE=pg) cannot run here"
	exit $status
fi
. "$dir/env"
export PCSCLITE_CSOCK_NAME
export SG_CARD_DIR="$dir"
export SG_CARD_FIXTURE="$here/fixture.sh"
export SEALGATE_SOCKET="$dir/sealgated.sock"
unset SEALGATE_USER
"$@" || status=$?
if [ $status -ne 0 ]; then
	echo "--- sealgated.log (tail) ---"
	tail -40 "$dir/sealgated.log" || true
	echo "--- pcscd.log (tail) ---"
	tail -20 "$dir/pcscd/pcscd.log" || true
fi
exit $status
