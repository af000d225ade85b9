#!/usr/bin/env bash
# The audit of a group of sites (docs/audit.md, "Chains per site"; docs/
# sites.md, "What headquarters sees"): gateways of sites a and b, each on
# its own SoftHSM2 token signing seals and checkpoints with its own audit
# key, and a management gateway hq (no token), on one PostgreSQL cluster
# of the test's own.
#  - at hq, sealctl audit verify --all-sites: a line a site, a and b
#    intact with their checkpoints; --ca with both sites' CAs passes, with
#    a's CA alone site b fails; query --site b shows b's rows only, each
#    with its site; --all-sites shows both; export --site b verifies
#    offline, export --all-sites is refused;
#  - one record of site b changed behind the gateways (the tables' owner,
#    triggers off): verify --all-sites at hq and sealgated --verify-audit
#    --all-sites say site b broke at that seq and site a is intact, and
#    exit non-zero; every record of b removed: b is still named (a site of
#    the policy), NOT intact.
# Skipped (77) when PostgreSQL is not installed; the cluster and the
# gateways are stopped however it ends.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE, SEALGATE_MODULE, SG_CROSS_SIGNER; SG_CROSS_KEEP=1
# keeps the directory after a pass
set -euo pipefail
build=${SEALGATE_BUILD:?}
src=${SEALGATE_SOURCE:?}
gw=$build/gateway/sealgated
ctl=$build/tools/sealctl
signer=${SG_CROSS_SIGNER:?}
. "$src/tests/lib/gateway.sh"
. "$src/tests/lib/pg.sh"
W=$(mktemp -d /tmp/sg-siteaudit.XXXXXX)
fails=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; fails=$((fails + 1)); }

cleanup() {
	st=$?
	for s in a b hq; do sg_gw_stop "$W/$s" || true; done
	for s in a b hq; do
		if grep -q "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" "$W/$s/sealgated.log" 2>/dev/null; then
			echo "not ok - a sanitizer report in gateway $s's log"; st=1
		fi
	done
	pg_down "$W" || { echo "not ok - the PostgreSQL cluster is still running"; st=1; }
	if { [ $st = 0 ] || [ $st = 77 ]; } && [ -z "${SG_CROSS_KEEP:-}" ]; then rm -rf "$W"; else echo "(files kept in $W)"; fi
	exit $st
}
trap cleanup EXIT

rc=0
conn=$(pg_up "$W" 2>"$W/pg_up.err") || rc=$?
if [ $rc = 77 ]; then
	echo "ok - # SKIP PostgreSQL is not installed"
	exit 77
elif [ $rc != 0 ]; then
	cat "$W/pg_up.err"
	exit 1
fi
url="postgresql:///sealgate?host=$W/pg/run&port=5432&user=sealgate&passfile=$W/pg/pgpass"
sql() { psql -X -q -At -d "$conn" -c "$1"; }

me=$(id -un)
cat >"$W/policy.yaml" <<EOP
version: 1
sites:
  - { id: a, name: Site A }
  - { id: b, name: Site B }
  - { id: hq, name: Headquarters }
organization:
  name: Audit Co.
  timezone: UTC
  departments:
    - { id: ops, name: Operations }
  people:
    - { id: s1, name: Signer, department: ops, roles: [employee] }
    - { id: au, name: Auditor, department: ops, roles: [auditor] }
  act_as:
    - { os_login: "$me", accounts: all }
seals:
  - { id: sa, name: SA Seal, kind: invoice, site: a, key: "pkcs11:object=sa-seal;type=private", holder: ops, users: { departments: [ops] }, approval: none, mfa: none }
  - { id: sb, name: SB Seal, kind: invoice, site: b, key: "pkcs11:object=sb-seal;type=private", holder: ops, users: { departments: [ops] }, approval: none, mfa: none }
EOP
# args: SITE TOKEN-LABEL KEY-SPECS... (the site's audit key is audit-SITE)
site_up() {
	local s=$1 label=$2
	shift 2
	mkdir -p "$W/$s"
	SG_ORG="Audit Co." sh "$src/tests/backend/mktoken.sh" "$W/$s" "$label" 1234 "$@" >/dev/null
	(umask 077; printf '1234\n' >"$W/$s/token.pin")
	cat >"$W/$s/sealgated.yaml" <<EOC
backend_module: /usr/lib/softhsm/libsofthsm2.so
backend_token: "pkcs11:token=$label"
token_pin_file: $W/$s/token.pin
audit_key: "pkcs11:object=audit-$s;type=private"
socket_path: $W/$s/sealgated.sock
store: "$url"
site: $s
policy_path: $W/policy.yaml
backend_sessions: 2
EOC
}
site_up a sg-a sa-seal:01:EC:prime256v1 audit-a:09:EC:prime256v1
site_up b sg-b sb-seal:11:EC:prime256v1 audit-b:19:EC:prime256v1
mkdir -p "$W/hq"
cat >"$W/hq/sealgated.yaml" <<EOC
backend_token: none
socket_path: $W/hq/sealgated.sock
store: "$url"
site: hq
policy_path: $W/policy.yaml
EOC
for p in s1 au; do
	printf '%s-password\n' "$p" | "$gw" --config "$W/a/sealgated.yaml" --set-password "$p" --password-file - >/dev/null
done
sg_gw_start "$W/a" SOFTHSM2_CONF="$W/a/softhsm2.conf" || { echo "not ok - gateway a did not start"; exit 1; }
sg_gw_start "$W/b" SOFTHSM2_CONF="$W/b/softhsm2.conf" || { echo "not ok - gateway b did not start"; exit 1; }
sg_gw_start "$W/hq" || { echo "not ok - gateway hq did not start"; exit 1; }

ctl_as() { # site person args...
	local s=$1 p=$2
	shift 2
	SEALGATE_USER=$p SEALGATE_PASSWORD=$p-password "$ctl" --socket "$W/$s/sealgated.sock" "$@"
}
sign() { # site label count
	SEALGATE_SOCKET=$W/$1/sealgated.sock SEALGATE_USER=s1 "$signer" s1-password "$2" "$3" >"$W/sign-$1.out" 2>&1
}
# Signatures and signed checkpoints at each site, twice over.
for round in 1 2; do
	sign a "SA Seal" 3
	sign b "SB Seal" 3
	ctl_as a au audit checkpoint >/dev/null
	ctl_as b au audit checkpoint >/dev/null
done
signed_a=$(sql "SELECT count(*) FROM audit WHERE site = 'a' AND action = 'sign' AND outcome = 'ok'")
cps_b=$(sql "SELECT count(*) FROM audit_checkpoints WHERE site = 'b'")
if [ "$signed_a" = 6 ] && [ "$cps_b" -ge 2 ]; then
	pass "sites a and b sign and checkpoint on one store"
else
	fail "set-up: $signed_a signatures at a, $cps_b checkpoints of b"; cat "$W"/sign-*.out
fi

# ---- every site from headquarters, intact ----
# (a group pins its sites' certificates with one file of their CAs)
cat "$W/a/ca.pem" "$W/b/ca.pem" >"$W/group-ca.pem"
rc=0
ctl_as hq au audit verify --all-sites --ca "$W/group-ca.pem" >"$W/v1.out" 2>&1 || rc=$?
if [ $rc = 0 ] && grep -Eq '^site a: intact, [0-9]+ records, [1-9][0-9]* signed checkpoints' "$W/v1.out" &&
   grep -Eq '^site b: intact, [0-9]+ records, [1-9][0-9]* signed checkpoints' "$W/v1.out" &&
   grep -q '^site hq: intact' "$W/v1.out"; then
	pass "verify --all-sites at hq: a line a site, each intact with its checkpoints, the sites' CAs checked"
else
	fail "verify --all-sites at hq (exit $rc)"; cat "$W/v1.out"
fi
rc=0
ctl_as hq au audit verify --all-sites --ca "$W/a/ca.pem" >"$W/v2.out" 2>&1 || rc=$?
if [ $rc = 1 ] && grep -q '^site a: intact' "$W/v2.out" &&
   grep -q '^site b: NOT intact: the audit certificate is not issued by' "$W/v2.out"; then
	pass "with site a's CA alone, site b's checkpoints are refused"
else
	fail "verify --all-sites --ca of a only (exit $rc)"; cat "$W/v2.out"
fi
rc=0
ctl_as hq au audit verify --site a --cert "$W/a/audit-a.crt.pem" >"$W/v7.out" 2>&1 || rc=$?
rc2=0
ctl_as hq au audit verify --site b --cert "$W/a/audit-a.crt.pem" >"$W/v8.out" 2>&1 || rc2=$?
vrec=$(sql "SELECT detail FROM audit WHERE site = 'hq' AND action = 'audit_verify' AND detail LIKE '%\"site\":\"a\"%' ORDER BY seq DESC LIMIT 1")
if [ $rc = 0 ] && grep -q '^site a: intact' "$W/v7.out" && [ $rc2 = 1 ] && grep -q '^site b: NOT intact' "$W/v8.out" &&
   [ "$vrec" = '{"cert":"pinned","op":"audit_verify","site":"a"}' ]; then
	pass "--site with --cert: a's certificate pins a, and refuses b's checkpoints"
else
	fail "verify --site --cert (exit $rc, $rc2; recorded $vrec)"; cat "$W/v7.out" "$W/v8.out"
fi
rc=0
ctl_as hq au audit verify --all-sites --cert "$W/a/audit-a.crt.pem" >"$W/v9.out" 2>&1 || rc=$?
[ $rc = 2 ] && pass "--cert with --all-sites is refused" || { fail "--cert with --all-sites (exit $rc)"; cat "$W/v9.out"; }

# ---- rows of one site, of every site ----
nb=$(sql "SELECT count(*) FROM audit WHERE site = 'b'")
ctl_as hq au audit query --site b --limit 1000 >"$W/qb.out" 2>&1 || true
rows=$(grep -Ev '^#|^site ' "$W/qb.out" | grep -c . || true)
notb=$(grep -Ev '^#|^site ' "$W/qb.out" | grep -vc '^b ' || true)
if [ "$rows" = "$nb" ] && [ "$notb" = 0 ] && grep -q '^# .*site: b$' "$W/qb.out"; then
	pass "query --site b at hq: b's $nb rows, each saying site b"
else
	fail "query --site b: $rows rows of $nb, $notb not of b"; head -5 "$W/qb.out"
fi
ctl_as hq au audit query --all-sites --action sign --limit 1000 >"$W/qall.out" 2>&1 || true
if [ "$(grep -c '^a .* sign ' "$W/qall.out" || true)" = 6 ] && [ "$(grep -c '^b .* sign ' "$W/qall.out" || true)" = 6 ]; then
	pass "query --all-sites: the signatures of a and of b, each row with its site"
else
	fail "query --all-sites"; cat "$W/qall.out"
fi
# Paged across sites: two rows a page never loses the other site's row of
# the seq a page stopped at.
after=0
: >"$W/paged.out"
for page in $(seq 1 20); do
	python3 "$src/tests/integration/sgcall.py" "$W/hq/sealgated.sock" au au-password \
		"{\"op\":\"audit_query\",\"site\":\"*\",\"action\":\"sign\",\"limit\":3,\"after\":$after}" >"$W/page.json" || break
	python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); [print(x["site"], x["seq"]) for x in r["records"]]; print("next", r.get("next", 0), file=sys.stderr)' \
		"$W/page.json" >>"$W/paged.out" 2>"$W/next.out"
	after=$(cut -d' ' -f2 "$W/next.out")
	[ "$after" != 0 ] || break
done
want=$(sql "SELECT site || ' ' || seq FROM audit WHERE action = 'sign' ORDER BY seq, site" | sort)
if [ "$(sort "$W/paged.out")" = "$want" ]; then
	pass "query of every site in pages of 3: each site's signatures once, none lost at a page's end"
else
	fail "paged query of every site"; diff <(echo "$want") <(sort "$W/paged.out") || true
fi
rc=0
ctl_as hq au audit export --site b -o "$W/b.jsonl" >"$W/eb.out" 2>&1 || rc=$?
rc2=0
"$ctl" audit verify --from-export "$W/b.jsonl" --ca "$W/b/ca.pem" >"$W/eb-v.out" 2>&1 || rc2=$?
if [ $rc = 0 ] && [ $rc2 = 0 ] && grep -q '"site":"b"' <(head -1 "$W/b.jsonl") &&
   [ "$(grep -c '"type":"record"' "$W/b.jsonl")" -ge "$nb" ]; then
	pass "export --site b at hq verifies offline against b's CA"
else
	fail "export --site b (exit $rc, verify exit $rc2)"; cat "$W/eb.out" "$W/eb-v.out"
fi
rc=0
ctl_as hq au audit export --all-sites -o "$W/all.jsonl" >"$W/eall.out" 2>&1 || rc=$?
if [ $rc = 2 ] && grep -q "one site's chain" "$W/eall.out"; then
	pass "export --all-sites is refused, saying why"
else
	fail "export --all-sites (exit $rc)"; cat "$W/eall.out"
fi

# ---- one record of site b changed behind the gateways ----
bad=$(sql "SELECT seq FROM audit WHERE site = 'b' AND action = 'sign' ORDER BY seq LIMIT 1 OFFSET 1")
sql "ALTER TABLE audit DISABLE TRIGGER USER; UPDATE audit SET actor = 'mallory' WHERE site = 'b' AND seq = $bad; ALTER TABLE audit ENABLE TRIGGER USER"
rc=0
ctl_as hq au audit verify --all-sites >"$W/v3.out" 2>&1 || rc=$?
if [ $rc = 1 ] && grep -q '^site a: intact' "$W/v3.out" &&
   grep -Eq "^site b: NOT intact \\([0-9]+ problems?\\): seq $bad\\b" "$W/v3.out"; then
	pass "verify --all-sites: site b broke at seq $bad, site a intact, exit 1"
else
	fail "verify --all-sites after b's seq $bad changed (exit $rc)"; cat "$W/v3.out"
fi
rc=0
ctl_as a au audit verify --site b >"$W/v4.out" 2>&1 || rc=$?
rc2=0
ctl_as a au audit verify --site a >"$W/v5.out" 2>&1 || rc2=$?
if [ $rc = 1 ] && grep -q "^site b: NOT intact .*seq $bad" "$W/v4.out" && [ $rc2 = 0 ] &&
   grep -q '^site a: intact' "$W/v5.out"; then
	pass "verify --site at site a: b broken, a intact"
else
	fail "verify --site at a (exit $rc, $rc2)"; cat "$W/v4.out" "$W/v5.out"
fi
rc=0
"$gw" --config "$W/hq/sealgated.yaml" --verify-audit --all-sites >"$W/v6.out" 2>&1 || rc=$?
if [ $rc = 1 ] && grep -q '^site a: intact' "$W/v6.out" && grep -q "^site b: NOT intact .*seq $bad" "$W/v6.out"; then
	pass "sealgated --verify-audit --all-sites: b broken at seq $bad, a intact, exit 1"
else
	fail "sealgated --verify-audit --all-sites (exit $rc)"; cat "$W/v6.out"
fi

# ---- every record of site b removed: b is still named, by the policy ----
sql "ALTER TABLE audit DISABLE TRIGGER USER; DELETE FROM audit WHERE site = 'b'; ALTER TABLE audit ENABLE TRIGGER USER"
rc=0
ctl_as hq au audit verify --all-sites >"$W/v10.out" 2>&1 || rc=$?
if [ $rc = 1 ] && grep -q '^site a: intact' "$W/v10.out" && grep -q '^site b: NOT intact' "$W/v10.out"; then
	pass "verify --all-sites: a site left with no record is named, NOT intact (its checkpoints speak)"
else
	fail "verify --all-sites with b's records removed (exit $rc)"; cat "$W/v10.out"
fi

[ $fails = 0 ]
