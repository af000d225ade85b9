# Shared by the tests that need a real PostgreSQL 15 (POSIX sh, sourced): a
# cluster of their own in one directory, reached only through a Unix socket
# in that directory (no TCP), with a database and a role for sealgate.
#
#   pg_up DIR     initdb + pg_ctl start in DIR/pg, create role and database
#                 `sealgate`; print the libpq conninfo on stdout (0), or say
#                 why on stderr (1; 77 when PostgreSQL is not installed, the
#                 code meson counts as skipped).
#   pg_down DIR   stop that cluster (fast, then KILL of its own postmaster
#                 if it will not go) and wait until none of its processes
#                 is left. Safe to call twice or after a failed pg_up.
#   pg_stop DIR   stop the cluster pg_up made (fast: its sessions are ended)
#                 and keep its files, for a test of a server going away.
#   pg_start DIR  start it again (waits until it takes connections).
#
# PostgreSQL refuses to run as root, so as root the cluster runs as a
# dedicated unprivileged system user, $SG_PG_USER (default sealgate-pg,
# created when missing: no home, no shell); as anyone else it runs as that
# user. Its files are DIR/pg/data (the cluster, 0700), DIR/pg/run (the
# socket, 0700: only the cluster's user and root connect), DIR/pg/log, and
# DIR/pg/pgpass (0600, the role's random password; the conninfo names it as
# passfile, so no password is on a command line). DIR itself is made
# traversable (o+x) for the cluster's user.
#
# env: SG_PG_BINDIR (default: pg_config --bindir, else
# /usr/lib/postgresql/15/bin).

SG_PG_USER=${SG_PG_USER:-sealgate-pg}

_pg_bindir() {
	if [ -n "${SG_PG_BINDIR:-}" ]; then
		echo "$SG_PG_BINDIR"
	elif [ -x /usr/lib/postgresql/15/bin/initdb ]; then
		echo /usr/lib/postgresql/15/bin
	elif command -v pg_config >/dev/null 2>&1; then
		pg_config --bindir
	else
		echo /usr/lib/postgresql/15/bin
	fi
}

# The user the cluster runs as: ourselves, unless we are root.
_pg_owner() {
	if [ "$(id -u)" = 0 ]; then echo "$SG_PG_USER"; else id -un; fi
}

# Run a command as the cluster's user.
_pg_as() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u "$SG_PG_USER" -- "$@"
	else
		"$@"
	fi
}

_pg_user_ensure() {
	[ "$(id -u)" = 0 ] || return 0
	getent passwd "$SG_PG_USER" >/dev/null 2>&1 && return 0
	. "${SEALGATE_SOURCE:?SEALGATE_SOURCE not set}/tests/lib/sysuser.sh"
	sg_sysuser "$SG_PG_USER" --user-group || {
		echo "pg_up: cannot create the system user $SG_PG_USER" >&2
		return 1
	}
}

pg_up() {
	_pd=$1
	_pb=$(_pg_bindir)
	if [ ! -x "$_pb/initdb" ] || [ ! -x "$_pb/pg_ctl" ] || ! command -v psql >/dev/null 2>&1; then
		echo "pg_up: PostgreSQL is not installed (no $_pb/initdb or psql): apt-get install postgresql" >&2
		return 77
	fi
	[ -d "$_pd" ] || { echo "pg_up: $_pd is not a directory" >&2; return 1; }
	_pd=$(cd "$_pd" && pwd)
	_pg_user_ensure || return 1
	_po=$(_pg_owner)
	# The cluster's user must reach DIR/pg: DIR is usually a 0700 mktemp.
	chmod o+x "$_pd"
	mkdir -p "$_pd/pg"
	chmod 0755 "$_pd/pg"
	if ! _pg_as test -x "$_pd/pg"; then
		echo "pg_up: $SG_PG_USER cannot reach $_pd (a parent directory is not traversable)" >&2
		return 1
	fi
	install -d -m 0700 -o "$_po" "$_pd/pg/data" "$_pd/pg/run" || return 1
	install -m 0600 -o "$_po" /dev/null "$_pd/pg/log" || return 1
	# A Unix socket path is at most 107 bytes (sun_path).
	if [ ${#_pd} -gt 80 ]; then
		echo "pg_up: $_pd is too long for a socket path; use a shorter directory" >&2
		return 1
	fi

	_pg_as "$_pb/initdb" -D "$_pd/pg/data" -U postgres --auth-local=peer --auth-host=reject \
		-E UTF8 --locale=C.UTF-8 >>"$_pd/pg/log" 2>&1 || {
		echo "pg_up: initdb failed:" >&2; tail -20 "$_pd/pg/log" >&2; return 1; }
	# Only the socket: no TCP listener at all. The role signs in with its
	# password (scram); the superuser only by peer, as the cluster's user.
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$_pd/pg/run'"
		echo "unix_socket_permissions = 0700"
		echo "port = 5432"
		echo "password_encryption = 'scram-sha-256'"
		echo "synchronous_commit = on"
		echo "fsync = on"
		echo "shared_buffers = 16MB"
		echo "max_connections = 50"
	} | _pg_as tee -a "$_pd/pg/data/postgresql.conf" >/dev/null
	{
		echo "local all postgres peer map=owner"
		echo "local sealgate sealgate scram-sha-256"
	} | _pg_as tee "$_pd/pg/data/pg_hba.conf" >/dev/null
	echo "owner $_po postgres" | _pg_as tee "$_pd/pg/data/pg_ident.conf" >/dev/null

	_pg_as "$_pb/pg_ctl" -D "$_pd/pg/data" -l "$_pd/pg/log" -w -t 60 start >/dev/null 2>&1 || {
		echo "pg_up: the cluster did not start:" >&2; tail -20 "$_pd/pg/log" >&2; return 1; }

	# The role's password: random, in a 0600 passfile owned by whoever runs
	# the tests (libpq refuses a passfile others can read).
	_pw=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
	( umask 077; echo "*:*:sealgate:sealgate:$_pw" >"$_pd/pg/pgpass" )
	printf "CREATE ROLE sealgate LOGIN PASSWORD '%s';\nCREATE DATABASE sealgate OWNER sealgate;\n" "$_pw" |
		_pg_as psql -X -q -v ON_ERROR_STOP=1 -h "$_pd/pg/run" -U postgres -d postgres >>"$_pd/pg/log" 2>&1 || {
		echo "pg_up: cannot create the sealgate role and database:" >&2; tail -20 "$_pd/pg/log" >&2; return 1; }
	unset _pw
	echo "host=$_pd/pg/run port=5432 dbname=sealgate user=sealgate passfile=$_pd/pg/pgpass"
}

pg_down() {
	_pd=$1
	[ -d "$_pd/pg/data" ] || return 0
	_pd=$(cd "$_pd" && pwd)
	_pb=$(_pg_bindir)
	_pid=
	[ -f "$_pd/pg/data/postmaster.pid" ] && _pid=$(head -1 "$_pd/pg/data/postmaster.pid")
	if [ -n "$_pid" ] && kill -0 "$_pid" 2>/dev/null; then
		# Its children (checkpointer, walwriter, backends) rename
		# themselves: take their pids now, to wait for every one.
		_kids=$(pgrep -P "$_pid" | tr '\n' ' ')
		_pg_as "$_pb/pg_ctl" -D "$_pd/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 || {
			echo "pg_down: pg_ctl stop failed; killing postmaster $_pid" >&2
			kill -KILL "$_pid" 2>/dev/null || true
		}
		_i=0
		while [ $_i -lt 100 ]; do
			_left=
			for _p in $_pid $_kids; do
				kill -0 "$_p" 2>/dev/null && _left="$_left $_p"
			done
			[ -z "$_left" ] && break
			sleep 0.1
			_i=$((_i + 1))
		done
		[ -z "$_left" ] || { echo "pg_down: still running:$_left" >&2; return 1; }
	fi
	return 0
}

pg_stop() {
	_pd=$(cd "$1" && pwd) || return 1
	_pg_as "$(_pg_bindir)/pg_ctl" -D "$_pd/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 || {
		echo "pg_stop: the cluster did not stop:" >&2; tail -5 "$_pd/pg/log" >&2; return 1; }
}

pg_start() {
	_pd=$(cd "$1" && pwd) || return 1
	_pg_as "$(_pg_bindir)/pg_ctl" -D "$_pd/pg/data" -l "$_pd/pg/log" -w -t 60 start >/dev/null 2>&1 || {
		echo "pg_start: the cluster did not start:" >&2; tail -5 "$_pd/pg/log" >&2; return 1; }
}
