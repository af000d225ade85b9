#!/usr/bin/env bash
# e2e: what sealctl says when it cannot reach the gateway or the gateway
# does not know the caller. An unset SEALGATE_SOCKET (the default path), a
# path where no socket is, a socket file nobody listens on and a socket
# this OS user may not open: each names the socket tried, where the path
# came from, the errno and what to do. An OS login without an account or
# act_as entry: `sealctl status` and `sealctl why` say so, and why asks for
# no password. The site owner without SEALGATE_USER is told to set it.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
need python3
e2e_setup
cd "$W"
SEALCTL=$SEALGATE_BUILD/tools/sealctl
unset SEALGATE_USER SEALGATE_PASSWORD

# --- SEALGATE_SOCKET unset: the default path, named as the default
default=$("$SEALCTL" --help | sed -n 's/.*default \(\/[^)]*\.sock\)).*/\1/p')
check "sealctl --help names the default socket ($default)" test -n "$default"
if [ -e "$default" ]; then
	log "note: $default exists on this machine; the unset-SEALGATE_SOCKET case is not checked"
else
	run env -u SEALGATE_SOCKET "$SEALCTL" status
	expect_rc 3 "status without SEALGATE_SOCKET and no gateway at the default"
	expect_out "cannot reach the gateway at $default (the default: SEALGATE_SOCKET is not set): ENOENT" \
		"it names the default socket, that SEALGATE_SOCKET is unset, and ENOENT"
	expect_out "set SEALGATE_SOCKET (or --socket)" "it says how to point sealctl elsewhere"
fi

# --- a path where nothing is
run env SEALGATE_SOCKET="$W/nowhere.sock" "$SEALCTL" status
expect_rc 3 "status with SEALGATE_SOCKET pointing nowhere"
expect_out "cannot reach the gateway at $W/nowhere.sock (from SEALGATE_SOCKET): ENOENT (No such file or directory): no gateway is listening there" \
	"it names the socket tried, its source and the reason"
expect_out "start sealgated" "it says to start the gateway"

# --- a socket file that no gateway listens on (a gateway that crashed)
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$W/stale.sock"
run "$SEALCTL" --socket "$W/stale.sock" status
expect_rc 3 "status on a socket nobody listens on"
expect_out "at $W/stale.sock (from --socket): ECONNREFUSED" "it names the socket, --socket and ECONNREFUSED"
expect_out "no gateway accepts on it" "it says the socket is stale"

# --- the owner of the site: act_as, but no SEALGATE_USER
run "$SEALCTL" --socket "$SEALGATE_SOCKET" status
expect_ok "status as the site owner without SEALGATE_USER"
expect_out "account:  NONE: OS login '$(id -un)' is not a sealgate account; set SEALGATE_USER" \
	"status says the owner's login must pick an account with SEALGATE_USER"
run env SEALGATE_USER=alice "$SEALCTL" --socket "$SEALGATE_SOCKET" status
expect_out "account:  alice" "with SEALGATE_USER=alice status names the account"
run env SEALGATE_USER=zed "$SEALCTL" --socket "$SEALGATE_SOCKET" status
expect_out "acting as 'zed' (SEALGATE_USER or --user): there is no sealgate account 'zed'" \
	"an account that does not exist is named"

# --- another OS user: no account, no act_as entry (needs root to be one)
# shellcheck disable=SC2317 # called through run
as_nobody() { setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups "$@"; }
if [ "$(id -u)" != 0 ] || ! id nobody >/dev/null 2>&1; then
	log "note: not root (or no user nobody): the other-OS-user cases are not checked"
else
	# The site is 0711 for other logins; the test's own directory must be too.
	chmod 0711 "$E2E_TMP"
	run as_nobody "$SEALCTL" --socket "$SEALGATE_SOCKET" status
	expect_ok "status as an OS user the policy does not know (the gateway and token are fine)"
	expect_out "account:  NONE: OS login 'nobody' is not a sealgate account and no act_as entry names it; ask the seal admin" \
		"status says what is missing"
	run as_nobody "$SEALCTL" --socket "$SEALGATE_SOCKET" why </dev/null
	expect_rc 1 "why as an OS user without an account"
	expect_out "OS login 'nobody' is not a sealgate account and no act_as entry names it; ask the seal admin" \
		"why says what is missing"
	expect_no_out "password" "why asks for no password first"

	# --- a socket this OS user may not open
	chmod 0600 "$SEALGATE_SOCKET"
	run as_nobody "$SEALCTL" --socket "$SEALGATE_SOCKET" status
	chmod 0666 "$SEALGATE_SOCKET"
	expect_rc 3 "status on a socket this OS user may not open"
	expect_out "at $SEALGATE_SOCKET (from --socket): EACCES (Permission denied): permission denied" \
		"it names the socket and EACCES"
	expect_out "(OS user nobody) ask the gateway's administrator" "it says whom to ask"
fi

finish
