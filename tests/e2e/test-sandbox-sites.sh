#!/usr/bin/env bash
# e2e: tools/sandbox --sites, a group of sites on one PostgreSQL cluster
# (docs/sandbox.md, "A group of sites").
#  - up: one gateway per site, each on its own token, each saying its site;
#    the exports name every site's socket.
#  - The gateways' database role adds to and reads the audit log but can
#    change none of it, and creates nothing: the owner role migrated.
#  - Alice applies at hq for the Shanghai Contract Seal, Bob approves at
#    hq, Alice signs at shanghai through the module with
#    SEALGATE_SOCKET_SHANGHAI; hq sees the use spent; the seal is nowhere
#    else; with the cluster stopped no signature and no use, once it is
#    back the gateway reconnects by itself; each site's audit chain
#    verifies, the signatures in shanghai's.
#  - down leaves no gateway and no cluster running; up again restarts
#    them all (same exports) and the second use signs; down again.
# Skipped (77) without PostgreSQL; the cluster is stopped however it ends.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/lib/pg.sh
. "$SEALGATE_SOURCE/tests/lib/pg.sh"

need pkcs11-tool softhsm2-util openssl oathtool psql
[ -x "$(_pg_bindir)/initdb" ] || { log "SKIP: PostgreSQL is not installed"; exit 77; }
[ -x "$SEALGATE_BUILD/gateway/sealgated" ] || { log "FAIL: sealgated not built"; exit 1; }
SEALCTL=$SEALGATE_BUILD/tools/sealctl
SEALGATED=$SEALGATE_BUILD/gateway/sealgated

E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sg-sites.XXXXXX")
# The cluster's user (as root, another one) reaches DIR/pg through it.
chmod 0711 "$E2E_TMP"
G=$E2E_TMP/g
W=$E2E_TMP/work
mkdir -p "$W"

cleanup() {
	local rc=$? f pid
	set +e
	if [ -d "$G" ]; then
		"$SANDBOX" --quiet down "$G" >/dev/null 2>&1
		if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
			for f in "$G"/sites/*/sealgated.log; do
				[ -f "$f" ] || continue
				log "---- last lines of $f ----"
				tail -n 20 "$f" >&2
			done
		fi
		# Whatever down could not stop (it failed, or never got that far).
		for f in "$G"/sites/*/sealgated.pid; do
			pid=$(cat "$f" 2>/dev/null) && kill -KILL "$pid" 2>/dev/null
		done
		pg_down "$G" || rc=1
	fi
	if [ -z "${E2E_KEEP:-}" ]; then rm -rf "$E2E_TMP"; else log "kept $E2E_TMP (E2E_KEEP)"; fi
	exit "$rc"
}
trap cleanup EXIT

as() { # user command...: sealctl as that person, with their password
	local who=$1 v
	shift
	v=SEALGATE_PASS_$(printf '%s' "$who" | tr 'a-z-' 'A-Z_')
	env SEALGATE_USER="$who" SEALGATE_PASSWORD="${!v}" "$SEALCTL" "$@"
}
# A program that is not ours loading our module (pkcs11-tool): in an ASan
# build the sanitizer's runtime must come first, and leaks are the module
# tests' business, not this program's (as tests/integration/lib.sh).
foreign() {
	case ${SEALGATE_SANITIZE:-} in
	*address*) LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 "$@" ;;
	*) "$@" ;;
	esac
}
# The group's own processes: its gateways, its cluster's postmaster.
group_gateways() { pgrep -f "^$SEALGATED --config $G/sites/" || true; }
group_cluster() { pgrep -f "postgres -D $G/pg/data" || true; }

# ---- up
run "$SANDBOX" --quiet --build "$SEALGATE_BUILD" --sites hq,shanghai,shenzhen up "$G"
expect_ok "sandbox --sites hq,shanghai,shenzhen up"
[ "$RC" = 0 ] || exit 1
envlines=$OUT
eval "$envlines"
for s in HQ SHANGHAI SHENZHEN; do
	v=SEALGATE_SOCKET_$s
	check "up exports $v" test -S "${!v:-/nonexistent}"
done
check "SEALGATE_SOCKET is headquarters'" test "$SEALGATE_SOCKET" = "$SEALGATE_SOCKET_HQ"
check "up exports the people's passwords and TOTP secrets" \
	test -n "${SEALGATE_PASS_ALICE:-}" -a -n "${SEALGATE_TOTP_BOB:-}"
check "three gateways of the group run" test "$(group_gateways | wc -l)" = 3
check "the group's cluster runs" test -n "$(group_cluster)"
for s in hq shanghai shenzhen; do
	v=SEALGATE_SOCKET_$(printf '%s' "$s" | tr '[:lower:]' '[:upper:]')
	run as alice --socket "${!v}" status
	expect_ok "$s: sealctl status"
	expect_out "site:     $s," "the gateway at $s serves site $s"
done
check "each site has a token of its own" test "$(cat "$G"/sites/*/token.pin | sort -u | wc -l)" = 3

# ---- the gateways' role: INSERT and SELECT on the audit log, no more
conn="host=$G/pg/run port=5432 dbname=sealgate user=sealgate passfile=$G/pg/pgpass"
run psql -X "$conn" -Atc "SELECT count(*) FROM audit"
expect_ok "the gateway role reads the audit log"
for sql in "UPDATE audit SET actor = 'mallory'" "DELETE FROM audit" "TRUNCATE audit" \
	"UPDATE audit_checkpoints SET seq = 0" "DELETE FROM audit_checkpoints" \
	"DELETE FROM policy_versions"; do
	run psql -X "$conn" -v ON_ERROR_STOP=1 -c "$sql"
	expect_fail "the gateway role may not: $sql"
	expect_out "permission denied" "$sql: refused by its rights"
done
run psql -X "$conn" -v ON_ERROR_STOP=1 -c "CREATE TABLE mine (a int)"
expect_fail "the gateway role creates no table"
run psql -X "$conn" -Atc "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
check "every table is the owner role's" test "$OUT" = sealgate_owner

# ---- apply and approve at headquarters, sign at the branch
run as alice --socket "$SEALGATE_SOCKET_HQ" apply --seal contract-shanghai --type contract \
	--amount 20000 --scope sales --uses 3 --reason "Supplier contract, Shanghai office"
expect_ok "alice applies at hq for the Shanghai Contract Seal"
app=$(sed -n 's/^#\([0-9]*\) .*/\1/p' <<<"$OUT" | head -n1)
check "the application has a number" test -n "$app"
run env SEALGATE_CODE="$(oathtool --totp -b "$SEALGATE_TOTP_BOB")" SEALGATE_USER=bob \
	SEALGATE_PASSWORD="$SEALGATE_PASS_BOB" "$SEALCTL" --socket "$SEALGATE_SOCKET_HQ" \
	approve "$app" --comment "Checked at headquarters"
expect_ok "bob approves it at hq"
run as alice --socket "$SEALGATE_SOCKET_SHANGHAI" show "$app"
expect_out "authorized" "shanghai sees the approval given at hq"

printf 'Supply contract 2026-SH-17\n' >"$W/doc.txt"
export SEALGATE_USER=alice
run foreign env SEALGATE_SOCKET="$SEALGATE_SOCKET_HQ" pkcs11-tool --module "$SEALGATE_MODULE" -O
expect_no_out "Shanghai Contract Seal" "the module at hq has no object for shanghai's seal"
run foreign env SEALGATE_SOCKET="$SEALGATE_SOCKET_SHENZHEN" pkcs11-tool --module "$SEALGATE_MODULE" -O
expect_no_out "Shanghai Contract Seal" "the module at shenzhen has no object for shanghai's seal"

sign_at_shanghai() { # output file, what
	run foreign env SEALGATE_SOCKET="$SEALGATE_SOCKET_SHANGHAI" pkcs11-tool --module "$SEALGATE_MODULE" \
		--login --pin "$SEALGATE_PASS_ALICE" --sign -m SHA256-RSA-PKCS \
		--label "Shanghai Contract Seal" -i "$W/doc.txt" -o "$1"
	expect_ok "$2: alice signs at shanghai through the module"
	run openssl dgst -sha256 -verify "$W/shanghai.pub" -signature "$1" "$W/doc.txt"
	expect_out "Verified OK" "$2: the signature verifies with the Shanghai Contract Seal"
}
run foreign env SEALGATE_SOCKET="$SEALGATE_SOCKET_SHANGHAI" pkcs11-tool --module "$SEALGATE_MODULE" \
	--read-object --type cert --label "Shanghai Contract Seal" -o "$W/shanghai.der"
expect_ok "the module at shanghai gives the Shanghai Contract Seal's certificate"
openssl x509 -inform DER -in "$W/shanghai.der" -out "$W/shanghai.pem" 2>/dev/null || true
run openssl verify -CAfile "$SEALGATE_CA" "$W/shanghai.pem"
expect_out "OK" "the Shanghai seal's certificate chains to the group's CA"
openssl x509 -in "$W/shanghai.pem" -pubkey -noout >"$W/shanghai.pub" 2>/dev/null || true
sign_at_shanghai "$W/sig1" "first use"
run as alice --socket "$SEALGATE_SOCKET_HQ" show "$app"
expect_out "2 of 3 uses left" "hq sees the use spent at shanghai"

# ---- the store away: refused, nothing spent; back: the gateway reconnects
check "the cluster stops (its files kept)" pg_stop "$G"
run foreign env SEALGATE_SOCKET="$SEALGATE_SOCKET_SHANGHAI" pkcs11-tool --module "$SEALGATE_MODULE" \
	--login --pin "$SEALGATE_PASS_ALICE" --sign -m SHA256-RSA-PKCS \
	--label "Shanghai Contract Seal" -i "$W/doc.txt" -o "$W/sig-down"
expect_fail "no signature while the store is away"
expect_out "CKR_DEVICE_ERROR" "the module says the device failed"
check "no signature was written" test ! -s "$W/sig-down"
check "the cluster starts again" pg_start "$G"
run as alice --socket "$SEALGATE_SOCKET_SHANGHAI" show "$app"
expect_out "2 of 3 uses left" "no use was spent while the store was away"
sign_at_shanghai "$W/sig2" "once the store is back"

# ---- the audit, site by site
for s in hq shanghai shenzhen; do
	d=$G/sites/$s
	run env SOFTHSM2_CONF="$d/softhsm2.conf" "$SEALGATED" --config "$d/sealgated.yaml" --verify-audit
	expect_ok "$s: sealgated --verify-audit"
	expect_out "audit log intact" "$s: its chain is intact"
	v=SEALGATE_SOCKET_$(printf '%s' "$s" | tr '[:lower:]' '[:upper:]')
	run as grace --socket "${!v}" audit verify --ca "$SEALGATE_CA"
	expect_ok "$s: sealctl audit verify --ca (checkpoints by its own audit key)"
done
run as grace --socket "$SEALGATE_SOCKET_SHANGHAI" audit query --action sign --seal contract-shanghai
expect_out "contract-shanghai $app" "the signature is in shanghai's chain"
run psql -X "$conn" -Atc "SELECT site, action, outcome FROM audit WHERE seal = 'contract-shanghai' ORDER BY site, seq"
expect_out "hq|application_create|ok" "the application is in hq's chain"
expect_out "hq|application_approve|ok" "the approval is in hq's chain"
expect_out "shanghai|sign|ok" "the signature is in shanghai's chain"
expect_no_out "shenzhen|" "nothing of it is in shenzhen's chain"

# ---- down, up again, down
run "$SANDBOX" --build "$SEALGATE_BUILD" down "$G"
expect_ok "sandbox down"
check "down leaves no gateway of the group running" test -z "$(group_gateways)"
check "down leaves the cluster stopped" test -z "$(group_cluster)"
check "down leaves no pid file" test -z "$(ls "$G"/sites/*/sealgated.pid 2>/dev/null)"

run "$SANDBOX" --quiet --build "$SEALGATE_BUILD" up "$G"
expect_ok "up again (the sites found in DIR)"
check "the second up prints the same exports" test "$OUT" = "$envlines"
check "three gateways run again" test "$(group_gateways | wc -l)" = 3
sign_at_shanghai "$W/sig3" "third use, after a restart of the group"
run "$SANDBOX" --build "$SEALGATE_BUILD" --sites hq,shanghai up "$G"
expect_fail "up with another list of sites on the group's DIR"

run "$SANDBOX" --quiet --build "$SEALGATE_BUILD" down "$G"
expect_ok "sandbox down again"
check "no gateway of the group left" test -z "$(group_gateways)"
check "no cluster left" test -z "$(group_cluster)"
# (an ASan build's gateways report to their logs, not to the test)
check "no sanitizer report in a gateway's log" \
	test -z "$(grep -l "Sanitizer\|runtime error" "$G"/sites/*/sealgated.log)"
finish
