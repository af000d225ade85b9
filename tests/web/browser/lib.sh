# shellcheck shell=bash
# tests/web/browser/lib.sh — what every browser test needs before it runs:
# node and Debian's chromium (else skip, 77), and playwright-core installed
# into tests/web/browser/node_modules from the committed package-lock.json
# (npm ci; never a browser download: the tests drive /usr/bin/chromium).
# Sourced by the test-*.sh scripts of the web-browser suite.

BROWSER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${SG_CHROMIUM:=/usr/bin/chromium}"
export SG_CHROMIUM

browser_log() { printf '# %s\n' "$*" >&2; }

# Exits with 77 (meson: skipped) and the reason when a tool is missing.
browser_need() {
	command -v node >/dev/null || { browser_log "SKIP: node not installed (tools/install-deps: nodejs)"; exit 77; }
	command -v npm >/dev/null || { browser_log "SKIP: npm not installed (tools/install-deps: npm)"; exit 77; }
	[ -x "$SG_CHROMIUM" ] || { browser_log "SKIP: $SG_CHROMIUM not installed (tools/install-deps: chromium)"; exit 77; }
	[ -f /usr/share/javascript/pdf/build/pdf.js ] || { browser_log "SKIP: libjs-pdf not installed"; exit 77; }
	[ -f /usr/share/javascript/chart.js/chart.min.js ] || { browser_log "SKIP: libjs-chart.js not installed"; exit 77; }
}

# playwright-core at the locked version, installed once per tree: npm ci
# under a lock, so two tests never install into the same directory at
# once, and skipped when the installed copy already is the locked one.
browser_install() {
	local want have
	want=$(node -e 'console.log(require(process.argv[1]).packages["node_modules/playwright-core"].version)' \
		"$BROWSER_DIR/package-lock.json")
	(
		flock 9
		have=$(node -e 'try { console.log(require(process.argv[1]).version) } catch (e) { }' \
			"$BROWSER_DIR/node_modules/playwright-core/package.json" 2>/dev/null || true)
		if [ "$have" != "$want" ]; then
			browser_log "npm ci: playwright-core $want into $BROWSER_DIR/node_modules"
			cd "$BROWSER_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2
		fi
	) 9>"$BROWSER_DIR/.install.lock" || { browser_log "FAIL: npm ci of playwright-core failed"; exit 1; }
}

# Where the test's screenshots are kept: the build dir's meson-logs.
browser_shots() {
	SG_SHOTS=${SEALGATE_BUILD:-$BROWSER_DIR/../../../build}/meson-logs/web-browser/$1
	rm -rf "$SG_SHOTS"
	mkdir -p "$SG_SHOTS"
	export SG_SHOTS
	browser_log "screenshots in $SG_SHOTS"
}
