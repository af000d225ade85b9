# sg_sysuser NAME [useradd options]: makes the system user NAME (no home,
# no shell) unless it exists. Tests run side by side and several make the
# same user (sealgate-web, the PostgreSQL clusters' owner): useradd takes
# /etc/passwd's lock and fails at once when another holds it, so every
# test takes one lock of ours around the check and the creation.
sg_sysuser() {
	_su_name=$1; shift
	id "$_su_name" >/dev/null 2>&1 && return 0
	flock /tmp/sealgate-useradd.lock sh -c 'n=$1; shift
		id "$n" >/dev/null 2>&1 ||
			useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$@" "$n"' \
		sh "$_su_name" "$@"
}
