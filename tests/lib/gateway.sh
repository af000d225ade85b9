# Shared by the test fixtures (POSIX sh, sourced): start and stop a real
# sealgated whose files live in one directory: DIR/sealgated.yaml (its
# configuration, naming DIR/sealgated.sock), DIR/sealgated.log (appended),
# DIR/sealgated.pid.
#
#   sg_gw_start DIR [NAME=VALUE...]   start it with those variables set (e.g.
#       SOFTHSM2_CONF=…); wait until `sealctl status` answers (0), or until it
#       exits or 15 s pass (1, with the log's tail on stderr).
#       SG_GATEWAY_ARGS: more arguments for sealgated (e.g. --rebind).
#       SG_GATEWAY_WAIT=answer: an answer without the token (status 1:
#       a gateway started while its token is away) is enough.
#   sg_gw_stop DIR [SIGNAL]           stop it (default TERM; KILL for a crash)
#       and wait until it is gone.
#   sg_store_conf DIR   the store lines of DIR/sealgated.yaml: SQLite's
#       DIR/sealgate.db, or with SG_TEST_STORE=pg a PostgreSQL 15 cluster
#       of DIR's own started now in DIR/store (tests/lib/pg.sh; its
#       conninfo in DIR/store/conninfo for tests/lib/sgsql.py). Fails 77
#       when PostgreSQL is not installed (meson counts that as skipped).
#   sg_store_down DIR   stop that cluster (nothing when there is none);
#       every fixture's down calls it, and a fixture's run.sh traps
#       TERM/INT/HUP into an exit so that down runs when a test is killed.
#       A watcher (sg_store_watch) stops the gateway and the cluster when
#       the test's runner ($SG_STORE_OWNER, else the fixture's parent) is
#       killed with no chance to (SIGKILL).
#
# needs: $build (the build directory), $SEALGATE_SOURCE for pg.

sg_gw_start() {
	_d=$1
	shift
	rm -f "$_d/sealgated.sock"
	# shellcheck disable=SC2086
	env "$@" "${SEALGATE_GATEWAY:-$build/gateway/sealgated}" --config "$_d/sealgated.yaml" --foreground \
		${SG_GATEWAY_ARGS:-} >>"$_d/sealgated.log" 2>&1 &
	echo $! >"$_d/sealgated.pid"
	_i=0
	while [ $_i -lt 300 ]; do
		if [ -S "$_d/sealgated.sock" ]; then
			_rc=0
			"$build/tools/sealctl" --socket "$_d/sealgated.sock" status >/dev/null 2>&1 || _rc=$?
			if [ $_rc = 0 ] || { [ $_rc = 1 ] && [ "${SG_GATEWAY_WAIT:-}" = answer ]; }; then
				return 0
			fi
		fi
		if ! kill -0 "$(cat "$_d/sealgated.pid")" 2>/dev/null; then
			echo "fixture: sealgated exited:" >&2
			tail -20 "$_d/sealgated.log" >&2
			rm -f "$_d/sealgated.pid"
			return 1
		fi
		sleep 0.05
		_i=$((_i + 1))
	done
	echo "fixture: sealgated did not answer in 15 s" >&2
	tail -20 "$_d/sealgated.log" >&2
	return 1
}

sg_gw_stop() {
	_d=$1
	[ -f "$_d/sealgated.pid" ] || return 0
	_pid=$(cat "$_d/sealgated.pid")
	kill -"${2:-TERM}" "$_pid" 2>/dev/null || true
	_i=0
	while kill -0 "$_pid" 2>/dev/null && [ $_i -lt 150 ]; do sleep 0.1; _i=$((_i + 1)); done
	rm -f "$_d/sealgated.pid"
}

sg_store_conf() {
	case ${SG_TEST_STORE:-sqlite} in
	sqlite) echo "store_path: $1/sealgate.db"; return 0 ;;
	pg) ;;
	*) echo "fixture: SG_TEST_STORE is sqlite or pg, not $SG_TEST_STORE" >&2; return 1 ;;
	esac
	# shellcheck source=tests/lib/pg.sh
	. "${SEALGATE_SOURCE:?SEALGATE_SOURCE not set}/tests/lib/pg.sh"
	_s=$1/store
	# The cluster's user (root's tests: sealgate-pg) passes through DIR.
	chmod o+x "$1"
	mkdir -p "$_s"
	# pg_up wants a short directory (its socket's path): a long one is
	# linked from one of /tmp's, which sg_store_down removes.
	_r=$(cd "$_s" && pwd -P)
	if [ ${#_r} -gt 60 ]; then
		_r=$(mktemp -d /tmp/sgpg-XXXXXX) || return 1
		chmod 0755 "$_r"
		rmdir "$_s" && ln -s "$_r" "$_s"
	fi
	_rc=0
	pg_up "$_r" >"$_r/conninfo.new" || _rc=$?
	[ $_rc = 0 ] || { rm -f "$_r/conninfo.new"; return $_rc; }
	mv "$_r/conninfo.new" "$_r/conninfo"
	sg_store_watch "$1" "${SG_STORE_OWNER:-$PPID}"
	echo "store: \"postgresql:///sealgate?host=$_r/pg/run&port=5432&user=sealgate&passfile=$_r/pg/pgpass\""
}

# A test killed outright (meson's timeout ends with SIGKILL of the test's
# process group) runs no trap, and the cluster (a session of its own) and
# the gateway would outlive it: a watcher in a session of its own, its
# output nowhere (a command substitution waits for every writer), stops
# both once the owner (the test's runner: SG_STORE_OWNER, else the
# fixture's parent) is gone, and leaves when the cluster is (down).
sg_store_watch() {
	(
		setsid sh -c '
			d=$1 owner=$2
			. "$SEALGATE_SOURCE/tests/lib/pg.sh"
			while kill -0 "$owner" 2>/dev/null; do
				[ -f "$d/store/pg/data/postmaster.pid" ] || exit 0
				sleep 1
			done
			[ -f "$d/sealgated.pid" ] && kill -KILL "$(cat "$d/sealgated.pid")" 2>/dev/null
			pg_down "$d/store"
		' sg-store-watch "$1" "$2" </dev/null >/dev/null 2>&1 &
	)
}

sg_store_down() {
	[ -e "$1/store" ] || return 0
	# shellcheck source=tests/lib/pg.sh
	. "${SEALGATE_SOURCE:?SEALGATE_SOURCE not set}/tests/lib/pg.sh"
	pg_down "$1/store" || return 1
	if [ -L "$1/store" ]; then
		rm -rf "$(readlink "$1/store")"
		rm -f "$1/store"
	fi
	return 0
}
