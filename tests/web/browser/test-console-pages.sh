#!/usr/bin/env bash
# web-browser: the console's pages in Debian's chromium with their real
# files and API replies given by the test (console-pages.mjs). Runs
# without sealgate-web; the same pages against a real one:
# test-console-e2e.sh.
set -euo pipefail
# shellcheck source=tests/web/browser/lib.sh
. "$(dirname "$0")/lib.sh"
: "${SEALGATE_SOURCE:=$(cd "$BROWSER_DIR/../../.." && pwd)}"
export SEALGATE_SOURCE
# No page builds HTML from a string (docs/console.md): outside comments,
# none of the HTML-parsing sinks appears in the console's scripts.
if sinks=$(grep -rnE 'innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment' \
	"$SEALGATE_SOURCE/web/console" --include='*.js' --include='*.html' | grep -vE '^[^:]+:[0-9]+:[[:space:]]*//'); then
	browser_log "FAIL: the console parses HTML from strings:"
	printf '%s\n' "$sinks" >&2
	exit 1
fi
browser_log "ok: no HTML-parsing sink in web/console"
browser_need
browser_install
browser_shots console-pages
cd "$BROWSER_DIR"
exec node console-pages.mjs
