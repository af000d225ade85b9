# shellcheck shell=bash
# tests/e2e/lib.sh — shared set-up of the real-client end-to-end tests:
# a fresh sandbox site per script (tools/sandbox), torn down on exit, and
# small assertions that print what they saw when they fail.
# Sourced by the test-*.sh scripts; meson passes SEALGATE_BUILD and
# SEALGATE_SOURCE (tests/meson.build).

: "${SEALGATE_SOURCE:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${SEALGATE_BUILD:=$SEALGATE_SOURCE/build}"
SANDBOX=$SEALGATE_SOURCE/tools/sandbox
export LC_ALL=C
# sg_store_conf / sg_store_down: the store of SG_TEST_STORE (pg: a cluster
# of the site's own), shared with the integration and card fixtures.
build=$SEALGATE_BUILD
# shellcheck source=tests/lib/gateway.sh
. "$SEALGATE_SOURCE/tests/lib/gateway.sh"

E2E_NAME=$(basename "$0" .sh)
E2E_FAILS=0
E2E_TMP=
E2E_SITE=

log() { printf '# %s\n' "$*" >&2; }

e2e_cleanup() {
	local rc=$?
	set +e
	if [ -n "$E2E_SITE" ] && [ -d "$E2E_SITE" ]; then
		"$SANDBOX" --quiet down "$E2E_SITE"
		# The gateway's log is the first thing to read when a test fails.
		if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ -f "$E2E_SITE/sealgated.log" ]; then
			log "---- last lines of sealgated.log ----"
			tail -n 40 "$E2E_SITE/sealgated.log" >&2
		fi
		# The site's PostgreSQL cluster (SG_TEST_STORE=pg), however the
		# test ended; one that will not stop fails the test.
		# (pg_ctl runs as the cluster's user, through DIR/store: a
		# sandbox that failed half-way left DIR 0700)
		[ ! -L "$E2E_SITE/store" ] || chmod o+x "$E2E_TMP" "$E2E_SITE"
		sg_store_down "$E2E_SITE" || { log "FAIL: the PostgreSQL cluster is still running"; [ "$rc" != 0 ] || rc=1; }
	fi
	if [ -n "$E2E_TMP" ] && [ -z "${E2E_KEEP:-}" ]; then
		rm -rf "$E2E_TMP"
	elif [ -n "$E2E_TMP" ]; then
		log "kept $E2E_TMP (E2E_KEEP)"
	fi
	exit "$rc"
}

# Exits with 77 (meson: skipped) when a client is not installed.
need() {
	local t
	for t in "$@"; do
		case "$t" in
		/*) [ -e "$t" ] || { log "SKIP: $t not installed"; exit 77; } ;;
		*) command -v "$t" >/dev/null || { log "SKIP: $t not installed"; exit 77; } ;;
		esac
	done
}

# Creates the work dir and a sandbox site, exports its environment
# (SEALGATE_MODULE, SEALGATE_SOCKET, SEALGATE_CA, SEALGATE_PASS_*). With
# SG_TEST_STORE=pg the site's store is a PostgreSQL cluster of its own
# (tests/lib/gateway.sh sg_store_conf, as the integration fixture's):
# the sandbox prepares the site, its sealgated.yaml gets the cluster's
# store: line in place of store_path:, and `up` then sets the passwords
# and starts the gateway on it. Skipped (77) without PostgreSQL.
e2e_setup() {
	need pkcs11-tool softhsm2-util openssl
	[ -x "$SEALGATE_BUILD/gateway/sealgated" ] || { log "FAIL: $SEALGATE_BUILD/gateway/sealgated not built"; exit 1; }
	[ -e "$SEALGATE_BUILD/module/sealgate-pkcs11.so" ] || { log "FAIL: $SEALGATE_BUILD/module/sealgate-pkcs11.so not built"; exit 1; }
	E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sg-$E2E_NAME.XXXXXX")
	E2E_SITE=$E2E_TMP/site
	trap e2e_cleanup EXIT
	# A killed test (meson's timeout sends TERM first) still runs the
	# cleanup that stops the gateway and the cluster.
	trap 'exit 143' TERM
	trap 'exit 130' INT
	trap 'exit 129' HUP
	export SG_STORE_OWNER=$$
	local envlines store rc=0
	if [ "${SG_TEST_STORE:-sqlite}" = pg ]; then
		"$SANDBOX" --quiet --build "$SEALGATE_BUILD" --prepare-only up "$E2E_SITE" >/dev/null
		# The cluster in a directory of /tmp's linked as DIR/store (which
		# sg_store_conf keeps and sg_store_down removes): the sandbox makes
		# DIR 0700 while it works, and the cluster's user (root's tests:
		# sealgate-pg) must reach its files all along.
		local pgdir
		chmod 0711 "$E2E_TMP"
		pgdir=$(mktemp -d /tmp/sgpg-XXXXXX)
		chmod 0755 "$pgdir"
		ln -s "$pgdir" "$E2E_SITE/store"
		store=$(sg_store_conf "$E2E_SITE") || rc=$?
		[ "$rc" = 77 ] && { log "SKIP: PostgreSQL is not installed (SG_TEST_STORE=pg)"; exit 77; }
		[ "$rc" = 0 ] || { log "FAIL: no PostgreSQL cluster for the site ($rc)"; exit 1; }
		# (& is sed's "the match": the URL's are literal)
		sed -i "s|^store_path: .*|${store//&/\\&}|" "$E2E_SITE/sealgated.yaml"
		grep -q '^store: "postgresql://' "$E2E_SITE/sealgated.yaml" ||
			{ log "FAIL: sealgated.yaml names no PostgreSQL store"; exit 1; }
		log "store: PostgreSQL ($E2E_SITE/store)"
	fi
	envlines=$("$SANDBOX" --quiet --build "$SEALGATE_BUILD" up "$E2E_SITE")
	eval "$envlines"
	# The SoftHSM2 backend must stay out of the clients' reach: they only
	# ever load our module.
	unset SOFTHSM2_CONF
	W=$E2E_TMP/work
	mkdir -p "$W"
	TOKEN_LABEL=$SEALGATE_TOKEN_LABEL
	log "site $E2E_SITE, token \"$TOKEN_LABEL\", module $SEALGATE_MODULE"
}

# Runs a command, keeps its combined output in $OUT and its exit code in
# $RC, never aborts the script. The output is echoed for the test log.
run() {
	log "\$ $*"
	set +e
	OUT=$("$@" 2>&1)
	RC=$?
	set -e
	[ -z "$OUT" ] || printf '%s\n' "$OUT" | sed 's/^/    /' >&2
	log "  -> exit $RC"
}

fail() {
	log "FAIL: $*"
	E2E_FAILS=$((E2E_FAILS + 1))
}
pass() { log "ok: $*"; }

check() { # description command...
	local what=$1
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}

expect_rc() { # expected description
	if [ "$RC" = "$1" ]; then pass "$2 (exit $RC)"; else fail "$2: exit $RC, expected $1"; fi
}
expect_ok() { expect_rc 0 "$1"; }
expect_fail() {
	if [ "$RC" != 0 ] && [ "$RC" -lt 128 ]; then pass "$1 (exit $RC)"
	elif [ "$RC" -ge 128 ]; then fail "$1: killed by signal $((RC - 128))"
	else fail "$1: succeeded, expected a failure"
	fi
}
expect_out() { # fixed-string description
	if grep -qF -- "$1" <<<"$OUT"; then pass "$2"; else fail "$2: output lacks \"$1\""; fi
}
expect_no_out() {
	if grep -qF -- "$1" <<<"$OUT"; then fail "$2: output has \"$1\""; else pass "$2"; fi
}

# Exit status of the script: 0 only when every assertion held.
finish() {
	if [ "$E2E_FAILS" -gt 0 ]; then
		log "$E2E_NAME: $E2E_FAILS assertion(s) failed"
		exit 1
	fi
	log "$E2E_NAME: all assertions held"
	exit 0
}

# The rows of a query on the site's store, SQLite or PostgreSQL
# (tests/lib/sgsql.py: SQLite's SQL, translated for PostgreSQL).
e2e_sql() { python3 "$SEALGATE_SOURCE/tests/lib/sgsql.py" "$E2E_SITE" "$1"; }

# Counts the audit records that match an SQL condition, read straight from
# the gateway's store (table `audit`, docs/audit.md). Empty output when the
# sqlite3 shell is not installed (SQLite store); expect_audit then only
# notes it.
audit_count() {
	if [ "${SG_TEST_STORE:-sqlite}" = pg ]; then
		e2e_sql "SELECT count(*) FROM audit WHERE $1"
		return
	fi
	command -v sqlite3 >/dev/null || return 0
	sqlite3 -readonly "$E2E_SITE/sealgate.db" "SELECT count(*) FROM audit WHERE $1"
}
expect_audit() { # expected-count condition description
	local n
	n=$(audit_count "$2")
	if [ -z "$n" ]; then log "note: sqlite3 not installed, not checked: $3"
	elif [ "$n" = "$1" ]; then pass "$3 (audit: $n record(s))"
	else
		fail "$3: $n audit record(s) where $2, expected $1"
		e2e_sql "SELECT seq, action, outcome, reason, actor, seal, exe, mechanism FROM audit ORDER BY seq" |
			sed 's/^/    /' >&2
	fi
}

# The sealgate password of a demo account (from the sandbox's exports).
password_of() {
	local var
	var=SEALGATE_PASS_$(printf '%s' "$1" | tr 'a-z-' 'A-Z_')
	printf '%s' "${!var}"
}

# sealctl acting as a demo account, with that account's password.
sealctl_as() { # account args...
	local who=$1
	shift
	SEALGATE_USER=$who SEALGATE_PASSWORD=$(password_of "$who") \
		"$SEALGATE_BUILD/tools/sealctl" --socket "$SEALGATE_SOCKET" "$@"
}

# The approval workflow before a signature: APPLICANT applies for USES uses
# of SEAL (extra sealctl apply arguments after the approvers), each of the
# comma-separated APPROVERS approves the level waiting for them in turn.
# Prints the application id once it is authorized.
authorize() { # applicant seal uses approvers [apply args...]
	local who=$1 seal=$2 uses=$3 approvers=$4 out id a
	shift 4
	log "$who applies for $uses use(s) of the $seal seal ($*), approved by $approvers"
	out=$(sealctl_as "$who" apply --seal "$seal" --reason "e2e test $E2E_NAME" --uses "$uses" "$@" 2>&1) ||
		{ log "sealctl apply failed: $out"; return 1; }
	id=$(sed -n '1s/^#\([0-9][0-9]*\).*/\1/p' <<<"$out")
	[ -n "$id" ] || { log "no application id in: $out"; return 1; }
	for a in ${approvers//,/ }; do
		# Approving needs the second factor: the approver's current code.
		out=$(SEALGATE_CODE=$(totp_fresh "$a") sealctl_as "$a" approve "$id" 2>&1) ||
			{ log "sealctl approve $id as $a failed: $out"; return 1; }
	done
	out=$(sealctl_as "$who" show "$id" 2>&1)
	grep -q "authorized" <<<"$out" || { log "application $id is not authorized: $out"; return 1; }
	printf '%s\n' "$id"
}

# The current TOTP code of a demo account (its secret from the sandbox).
totp_of() {
	local var
	var=SEALGATE_TOTP_$(printf '%s' "$1" | tr 'a-z-' 'A-Z_')
	oathtool --totp -b "${!var}"
}
# The code of the next 30-s step: fresh even when this step's code was
# just spent (the gateway accepts one step of drift, never a code twice).
totp_next() {
	local var
	var=SEALGATE_TOTP_$(printf '%s' "$1" | tr 'a-z-' 'A-Z_')
	oathtool --totp -b "${!var}" --now "$(date -u -d '+30 seconds' '+%Y-%m-%d %H:%M:%S UTC')"
}

# A code of ACCOUNT that authorize() has not spent yet: this step's, or the
# next one's (the gateway accepts one step of drift but never a step at or
# before one it accepted), waiting for the clock when both are spent, so a
# test can have one approver approve several applications in a row.
totp_fresh() {
	local var f=$E2E_TMP/.totp-step-$1 last step
	var=SEALGATE_TOTP_$(printf '%s' "$1" | tr 'a-z-' 'A-Z_')
	last=$(cat "$f" 2>/dev/null || echo 0)
	step=$(($(date +%s) / 30))
	[ "$step" -gt "$last" ] || step=$((last + 1))
	while [ "$step" -gt $(($(date +%s) / 30 + 1)) ]; do sleep 1; done
	echo "$step" >"$f"
	oathtool --totp -b "${!var}" -N "@$((step * 30))"
}

# "uses left N of M" of an application, as its applicant sees it.
uses_left() { # applicant id
	sealctl_as "$1" show "$2" 2>/dev/null | sed -n 's/^ *uses left *\([0-9][0-9]*\) of .*/\1/p'
}

# Percent-encodes a token label or object label for a PKCS#11 URI.
uri_enc() {
	local s=$1 out='' c i
	for ((i = 0; i < ${#s}; i++)); do
		c=${s:i:1}
		case "$c" in
		[A-Za-z0-9._~-]) out+=$c ;;
		*) out+=$(printf '%%%02X' "'$c") ;;
		esac
	done
	printf '%s' "$out"
}

# pkcs11-tool through our module, acting as SEALGATE_USER.
p11() { pkcs11-tool --module "$SEALGATE_MODULE" "$@"; }

# The CKA_ID (hex) of the seal certificate labelled $1, as SEALGATE_USER
# sees it. pkcs11-tool 0.23 ignores --label when it picks the key for
# --sign (it takes the first private key), so signing selects by --id.
seal_id() {
	p11 --list-objects --type cert 2>/dev/null | awk -v want="$1" '
		/^  label:/ { sub(/^  label: */, ""); label = $0 }
		/^  ID:/    { if (label == want) { print $2; exit } }'
}

# Writes the bytes of a hex string to stdout (perl is always on Debian).
unhex() { perl -e 'print pack("H*", $ARGV[0])' "$1"; }

# DigestInfo prefix of SHA-256 (RFC 8017 section 9.2 note 1).
# shellcheck disable=SC2034 # used by the test scripts
SHA256_DI_PREFIX=3031300d060960864801650304020105000420

# An NSS database in directory $1 (sql:$1) as a clerk would set it up:
# sealgate-pkcs11.so registered with modutil, the demo CA trusted.
nss_db_with_sealgate() {
	mkdir -p "$1"
	run certutil -N -d "sql:$1" --empty-password
	expect_ok "create the NSS database"
	# modutil asks for confirmation unless -force; stdin closed to be sure.
	run modutil -dbdir "sql:$1" -add sealgate -libfile "$SEALGATE_MODULE" -force </dev/null
	expect_ok "register sealgate-pkcs11.so with modutil"
	run certutil -A -d "sql:$1" -n demo-ca -t CT,C,C -i "$SEALGATE_CA"
	expect_ok "trust the demo CA in the NSS database"
}

# Writes a small, valid one-page PDF with a correct xref table to $1.
make_pdf() {
	local f=$1 text=${2:-Acme Trading Co. sales contract}
	local -a objs
	local content="BT /F1 18 Tf 72 720 Td ($text) Tj ET"
	objs[1]="<< /Type /Catalog /Pages 2 0 R >>"
	objs[2]="<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
	objs[3]="<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
	objs[4]="<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
	objs[5]="<< /Length ${#content} >>
stream
$content
endstream"
	# The second line's high bytes mark the file as binary (PDF 7.5.2).
	local body offsets=() i
	body=$'%PDF-1.7\n%\xe2\xe3\xcf\xd3\n'
	for i in 1 2 3 4 5; do
		offsets[i]=$(printf '%s' "$body" | wc -c)
		body+="$i 0 obj
${objs[i]}
endobj
"
	done
	local xref
	xref=$(printf '%s' "$body" | wc -c)
	{
		printf '%s' "$body"
		printf 'xref\n0 6\n0000000000 65535 f \n'
		for i in 1 2 3 4 5; do printf '%010d 00000 n \n' "${offsets[i]}"; done
		printf 'trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n' "$xref"
	} >"$f"
}
