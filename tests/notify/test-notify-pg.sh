#!/usr/bin/env bash
# Two gateways on one PostgreSQL store (tests/lib/pg.sh), sites hq and
# shanghai (a management gateway without a token), both with notify: and
# the same SMTP sink: ten applications (at both) while the relay is down
# make ten notices in the group's outbox that wait for their retries;
# once it is back both senders claim from it, and each mail arrives once,
# each notice has one notice_sent record in all (whichever site's chain
# holds it), nothing is left in the outbox. Skipped (77) without
# PostgreSQL; the cluster is stopped however the test ends.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$SEALGATE_SOURCE/tests/integration/lib.sh" notify-pg
. "$SEALGATE_SOURCE/tests/lib/gateway.sh"
. "$SEALGATE_SOURCE/tests/lib/pg.sh"
py=/usr/bin/python3
sink=$SEALGATE_SOURCE/tests/lib/smtpsink.py
export SOFTHSM2_CONF=$W/softhsm2.conf
sink_pid=
cleanup() {
	st=$?
	sg_gw_stop "$W/a" || true
	sg_gw_stop "$W/b" || true
	[ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null || true
	pg_down "$W" || { echo "not ok - the PostgreSQL cluster is still running"; st=1; }
	fixture down || true
	exit $st
}
trap cleanup EXIT
$py -c 'import aiosmtpd' 2>/dev/null || { echo "python3-aiosmtpd is not installed"; exit 77; }

rc=0
pg_up "$W" >"$W/conninfo" 2>"$W/pg_up.err" || rc=$?
if [ $rc = 77 ]; then
	echo "ok - # SKIP PostgreSQL is not installed"
	exit 77
elif [ $rc != 0 ]; then
	cat "$W/pg_up.err"
	exit 1
fi
fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
fixture stop
url="postgresql:///sealgate?host=$W/pg/run&port=5432&user=sealgate&passfile=$W/pg/pgpass"
pgsql() { psql -X -q -A -t "$(cat "$W/conninfo")" -c "$1"; }

mkdir -p "$W/sink"
$py "$sink" serve "$W/sink" >>"$W/sink.log" 2>&1 &
sink_pid=$!
for _ in $(seq 100); do [ -s "$W/sink/port" ] && break; sleep 0.1; done
sport=$(cat "$W/sink/port")

# The fixture's policy as a group's: every seal at hq; bob has an address.
$py - "$W/policy.yaml" "$W/policy-sites.yaml" <<'PY'
import sys
out = []
for line in open(sys.argv[1]).read().splitlines(keepends=True):
    if line == "seals:\n":
        out.append("sites:\n  - { id: hq, name: Headquarters }\n  - { id: shanghai, name: Shanghai }\n")
    out.append(line.replace("{ id: bob, name: Bob,", "{ id: bob, name: Bob, email: bob@example.test,"))
    if line.startswith("  - id: "):
        out.append("    site: hq\n")
open(sys.argv[2], "w").write("".join(out))
PY
# args: DIR SITE [token|none]
gateway_dir() {
	mkdir -p "$1"
	{
		if [ "${3:-token}" = none ]; then
			echo "backend_token: none"
		else
			echo "backend_module: /usr/lib/softhsm/libsofthsm2.so"
			echo "backend_token: \"pkcs11:token=sg-it\""
			echo "token_pin_file: $W/token.pin"
		fi
		cat <<EOC
socket_path: $1/sealgated.sock
store: "$url"
site: $2
policy_path: $W/policy-sites.yaml
backend_sessions: 2
notify:
  web_url: https://seal.example.test
  from: "Sealgate <sealgate@example.test>"
  smtp: { url: "smtp://127.0.0.1:$sport" }
  retry_initial: 1
  retry_max: 2
  timeout: 5
  lease: 20
  poll: 1
EOC
	} >"$1/sealgated.yaml"
}
gateway_dir "$W/a" hq
gateway_dir "$W/b" shanghai none
for u in alice bob; do
	printf '%s-password\n' "$u" | "$gw" --config "$W/a/sealgated.yaml" --set-password "$u" \
		--password-file - >>"$W/setup.out" 2>&1 || { cat "$W/setup.out"; exit 1; }
done
sg_gw_start "$W/a" || { fail "the hq gateway starts"; exit 1; }
sg_gw_start "$W/b" || { fail "the shanghai gateway starts"; exit 1; }
pass "two gateways (hq, shanghai) on one PostgreSQL store, both sending notices"

# The relay down first: every notice fails and waits for its retry, so
# that both senders find the same due notices when it is back.
kill "$sink_pid"; wait "$sink_pid" 2>/dev/null || true
printf 'alice-password\n' >"$W/pw-alice"
for i in $(seq 10); do
	g=a; [ $((i % 2)) = 0 ] && g=b
	"$ctl" --socket "$W/$g/sealgated.sock" --user alice --password-file "$W/pw-alice" \
		apply --seal approved --amount "$i" --reason "application $i" >"$W/apply.out" 2>&1 ||
		{ fail "alice applies ($i, at $g)"; cat "$W/apply.out"; }
done
n=0
for _ in $(seq 300); do
	n=$(pgsql "SELECT count(DISTINCT detail::jsonb->>'notice') FROM audit WHERE action = 'notice_failed'")
	[ "$n" = 10 ] && break
	sleep 0.1
done
[ "$n" = 10 ] && pass "the relay down: each of the ten notices failed a try" || fail "notices that failed a try: $n"
$py "$sink" serve "$W/sink" --port "$sport" >>"$W/sink.log" 2>&1 &
sink_pid=$!
n=0
for _ in $(seq 600); do
	n=$($py "$sink" count "$W/sink" bob@example.test)
	[ "$n" -ge 10 ] && break
	sleep 0.1
done
[ "$n" = 10 ] && pass "bob gets ten mails" || fail "bob's mails: $n"
n=0
for _ in $(seq 300); do
	n=$(pgsql "SELECT count(*) FROM outbox WHERE state = 'sent'")
	[ "$n" = 10 ] && break
	sleep 0.1
done
[ "$n" = 10 ] && pass "the outbox: ten notices, all sent" ||
	fail "sent notices: $n: $(pgsql "SELECT id, state, tries, claimed_by FROM outbox")"
# Stopped, so that every record is in (and nothing is claimed any more).
sg_gw_stop "$W/a"
sg_gw_stop "$W/b"
n=$(pgsql "SELECT count(*) FROM audit WHERE action = 'notice_sent'")
[ "$n" = 10 ] && pass "ten notice_sent records in all" ||
	fail "notice_sent records: $n: $(pgsql "SELECT site, seq, detail FROM audit WHERE action LIKE 'notice_%'")"
n=$(pgsql "SELECT count(*) FROM (SELECT detail::jsonb->>'notice' FROM audit WHERE action = 'notice_sent' GROUP BY 1 HAVING count(*) > 1) AS twice")
[ "$n" = 0 ] && pass "no notice was sent twice" || fail "notices sent twice: $n"
n=$($py - "$W/sink" <<'PY'
import glob, re, sys
ids = []
for f in glob.glob(sys.argv[1] + "/mail/*.eml"):
    m = re.search(rb"^Message-ID: <notice-(\d+)\.", open(f, "rb").read(), re.M)
    ids.append(m.group(1) if m else b"?")
print(len(ids) - len(set(ids)))
PY
)
[ "$n" = 0 ] && pass "and no Message-ID came twice" || fail "repeated Message-IDs: $n"
echo "# sites that sent: $(pgsql "SELECT site || ':' || count(*) FROM audit WHERE action = 'notice_sent' GROUP BY site ORDER BY site" | tr '\n' ' ')"
finish
