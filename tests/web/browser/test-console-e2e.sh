#!/usr/bin/env bash
# web-browser: the console against a real sealgate-web and a real gateway
# on SoftHSM2 (a sandbox site, tests/e2e/lib.sh) whose notices go by email
# to a real SMTP sink (tests/lib/smtpsink.py, which the sandbox starts for
# this test's site: notify: in its sealgated.yaml): alice applies with a
# PDF, bob receives the email and opens its link, logs in with password
# and TOTP, sees the PDF drawn and approves with a comment and a code,
# alice signs the PDF through the module (sealctl stamp where sealctl has
# it, else pdfsig: console-e2e.mjs, signPdf), the headquarters page shows
# that signature in its live feed, and alice receives the email that her
# application was authorized. The signed PDF is then verified here with
# pdfsig.
set -euo pipefail
# shellcheck source=tests/web/browser/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/e2e/lib.sh
. "$BROWSER_DIR/../../e2e/lib.sh"
browser_need
need certutil modutil pdfsig oathtool
# bob's email: the sandbox starts its SMTP sink with Debian's python3's
# aiosmtpd only.
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null ||
	{ log "SKIP: python3-aiosmtpd not installed (the SMTP sink bob's email goes to)"; exit 77; }
# sealgate-web (web/, libmicrohttpd) serves the console and the API; the
# sandbox starts it on loopback and exports its URL (SEALGATE_WEB_URL).
[ -x "$SEALGATE_BUILD/web/sealgate-web" ] || { log "SKIP: $SEALGATE_BUILD/web/sealgate-web not built"; exit 77; }
# The story's application carries its PDF: the gateway must store
# documents (doc_put, issue 19), which sealctl's doc command stands for.
docs_help=$("$SEALGATE_BUILD/tools/sealctl" doc --help 2>&1 || true)
if grep -q 'unknown command' <<<"$docs_help"; then
	log "SKIP: this gateway stores no documents yet (doc_put: sealctl doc, issue 19)"
	exit 77
fi
browser_install
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The sandbox's sealgate-web on a port of this test's (8443 is also the
# tls suite's); the notices' links name it (notify: web_url).
SEALGATE_WEB_PORT=$(free_port)
export SEALGATE_WEB_PORT
e2e_setup
# The front's user reaches the site's socket under this test's directory
# (mktemp's is the owner's alone), whichever sealgate-web serves.
chmod o+x "$E2E_TMP"
browser_shots console-e2e
if ! grep -q '^notify:' "$E2E_SITE/sealgated.yaml" || [ ! -s "$E2E_SITE/smtp/port" ]; then
	log "FAIL: the sandbox configured no notifications to its SMTP sink"
	exit 1
fi
export SG_MAIL_DIR=$E2E_SITE/smtp SG_SMTPSINK=$SEALGATE_SOURCE/tests/lib/smtpsink.py

WEB_PID=
web_cleanup() {
	local rc=$?
	# (errexit off: the (exit "$rc") that hands the status on to
	# e2e_cleanup would end the trap there, leaving the site running)
	set +e
	if [ -n "$WEB_PID" ]; then
		kill "$WEB_PID" 2>/dev/null || true
		wait "$WEB_PID" 2>/dev/null || true
	fi
	if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
		log "---- last lines of sealgate-web's log ----"
		tail -n 20 "$E2E_TMP/sealgate-web.log" "$E2E_SITE/sealgate-web.log" 2>/dev/null >&2 || true
	fi
	(exit "$rc")
	e2e_cleanup
}
trap web_cleanup EXIT

# A sealgate-web that serves the console with Debian's PDF.js and
# Chart.js under /javascript/ (docs/console.md): the sandbox's, which
# serves them from /usr/share/javascript. Else (an older sealgate-web,
# without javascript_dir) this test runs its own on
# loopback as the front's user, with a console_dir of web/console/ and
# copies of the three files under javascript/ (what an installation puts
# there while sealgate-web does not map /javascript/ itself), for the
# front the sandbox named (sealgate-web runs as a user of its own: root
# only).
web_serves_console() {
	[ -n "${SEALGATE_WEB_URL:-}" ] &&
		curl -fsS -o /dev/null "$SEALGATE_WEB_URL/javascript/pdf/build/pdf.js" 2>/dev/null &&
		curl -fsS -o /dev/null "$SEALGATE_WEB_URL/javascript/chart.js/chart.min.js" 2>/dev/null
}
web_up() {
	local front=sealgate-web port c=$E2E_TMP/console i
	[ "$(id -u)" = 0 ] || { log "SKIP: starting sealgate-web here needs root (it drops to its own user)"; exit 77; }
	if [ -s "$E2E_SITE/sealgate-web.pid" ]; then
		i=$(cat "$E2E_SITE/sealgate-web.pid")
		kill "$i" 2>/dev/null || true
		rm -f "$E2E_SITE/sealgate-web.pid"
		# Its port is this one's: wait for it to let go.
		for _ in $(seq 1 100); do kill -0 "$i" 2>/dev/null || break; sleep 0.1; done
	fi
	# The sandbox names the front in sealgated.yaml when it runs as root
	# with sealgate-web built, as here.
	grep -q '^web_front:' "$E2E_SITE/sealgated.yaml" ||
		{ log "FAIL: the sandbox's gateway names no web_front"; exit 1; }
	mkdir -p "$c/javascript/pdf/build" "$c/javascript/chart.js"
	cp -R "$SEALGATE_SOURCE/web/console/." "$c/"
	cp /usr/share/javascript/pdf/build/pdf.js /usr/share/javascript/pdf/build/pdf.worker.js "$c/javascript/pdf/build/"
	cp /usr/share/javascript/chart.js/chart.min.js "$c/javascript/chart.js/"
	chmod -R o+rX "$c"
	chmod o+x "$E2E_TMP"
	# The port the notices' links name (the sandbox's, now free).
	port=$SEALGATE_WEB_PORT
	printf 'listen: 127.0.0.1:%s\ngateway_socket: %s\nconsole_dir: %s\n' "$port" "$SEALGATE_SOCKET" "$c" \
		>"$E2E_TMP/sealgate-web.yaml"
	"$SEALGATE_BUILD/web/sealgate-web" --config "$E2E_TMP/sealgate-web.yaml" --user "$front" \
		>>"$E2E_TMP/sealgate-web.log" 2>&1 &
	WEB_PID=$!
	for i in $(seq 1 100); do
		curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break
		kill -0 "$WEB_PID" 2>/dev/null || { log "FAIL: sealgate-web exited"; cat "$E2E_TMP/sealgate-web.log" >&2; exit 1; }
		sleep 0.1
	done
	export SEALGATE_WEB_URL=http://127.0.0.1:$port
}
web_serves_console || web_up
log "sealgate-web at $SEALGATE_WEB_URL"
cd "$W"

make_pdf in.pdf "Acme Trading Co. - Sales contract No. 2026-17"
nss_db_with_sealgate "$W/nssdb"
export SG_NSSDB=sql:$W/nssdb SG_NICK="$TOKEN_LABEL:Contract Seal" SG_PDF_IN=$W/in.pdf SG_PDF_OUT=$W/out.pdf

run node "$BROWSER_DIR/console-e2e.mjs"
expect_ok "the console's story in the browser"
# What the gateway said of alice's last refused signature, if any.
run sealctl_as alice why

run pdfsig -nssdir "$SG_NSSDB" out.pdf
expect_out "Signature Validation: Signature is Valid." "the PDF alice signed is valid"
expect_out "Signer Certificate Common Name: Acme Trading Co. Contract Seal" "signed with the Contract Seal"
expect_audit 1 "action='application_approve' AND actor='bob' AND outcome='ok'" \
	"bob's one approval is on the record"
finish
