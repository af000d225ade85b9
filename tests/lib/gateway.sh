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
#
# needs: $build (the build directory).

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
