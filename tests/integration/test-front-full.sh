#!/usr/bin/env bash
# Integration: the gateway's own records on a full disk — recorded or
# refused (docs/operations.md). The store lives on a small tmpfs the test
# mounts (root only: skipped otherwise) and fills: a reload whose
# policy_reload record cannot be written is not applied, and applied once
# there is room again; a start whose gateway_start record cannot be
# written does not serve and exits non-zero, saying why.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: needs root to mount a tmpfs"
	exit 77
fi
. "$(dirname "$0")/lib.sh" front-full

mnt=$W/full
cleanup() {
	fixture stop || true
	umount "$mnt" 2>/dev/null || true
	fixture down || true
}
trap cleanup EXIT
sqlite_only "the SQLite files moved to a full tmpfs"

fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
fixture stop
mkdir "$mnt"
# the store's files and 2 MiB to spare
need=$(du -sk "$W"/sealgate.db* | awk '{ s += $1 } END { print s + 2048 }')
if ! mount -t tmpfs -o size=${need}k,mode=0755 tmpfs "$mnt"; then
	echo "SKIP: cannot mount a tmpfs here"
	exit 77
fi
mv "$W"/sealgate.db* "$mnt/"
sed -i "s|^store_path: .*|store_path: $mnt/sealgate.db|" "$W/sealgated.yaml"
fixture start >>"$W/fixture.out" 2>&1 || { fail "start on the tmpfs"; tail "$W/sealgated.log"; finish; }

seals() { "$ctl" --socket "$W/sealgated.sock" status 2>/dev/null | grep -c "^seal: " || true; }
fill() { dd if=/dev/zero of="$mnt/filler" bs=4k 2>/dev/null || true; sync; }
# a policy without the Ed seal
cp "$W/policy.yaml" "$W/policy.full"
python3 - "$W/policy.yaml" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
s = re.sub(r"  - id: ed\n(    .*\n)+", "", s, count=1)
open(p, "w").write(s)
PY
before=$(seals)
[ "$before" -gt 0 ] || fail "sealctl status lists no seals"

# 1. Disk full: the reload is refused.
fill
: >"$W/sealgated.log"
kill -HUP "$(cat "$W/sealgated.pid")"
for _ in $(seq 100); do
	grep -q "reload not applied\|policy reloaded" "$W/sealgated.log" && break
	sleep 0.1
done
if grep -q "reload not applied, the running policy stays in force: its audit record could not be written" "$W/sealgated.log"; then
	pass "a reload without its record is not applied, and the log says why"
else
	fail "reload on a full disk: $(tail -5 "$W/sealgated.log")"
fi
rm -f "$mnt/filler"
if [ "$(seals)" = "$before" ]; then pass "the running policy stays"; else fail "seals after the refused reload: $(seals), before $before"; fi

# 2. Room again: the same reload is applied.
: >"$W/sealgated.log"
kill -HUP "$(cat "$W/sealgated.pid")"
for _ in $(seq 100); do
	grep -q "reload not applied\|policy reloaded" "$W/sealgated.log" && break
	sleep 0.1
done
if [ "$(seals)" = $((before - 1)) ]; then pass "with room again the reload is applied"; else fail "seals after the reload: $(seals), expected $((before - 1))"; fi
n=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True).execute(sys.argv[2]).fetchone()[0])' \
	"$mnt/sealgate.db" "SELECT count(*) FROM audit WHERE action = 'policy_reload' AND outcome = 'ok'")
[ "$n" -ge 1 ] && pass "and recorded" || fail "policy_reload ok records: $n"
cp "$W/policy.full" "$W/policy.yaml"
fixture stop

# 3. Starts with a little more room each time (0 to 256 KiB, in 8 KiB
# steps), until one serves: each either does not serve and exits non-zero,
# or serves with its gateway_start record durable; one of them is refused
# for want of that record (the others fail earlier, opening the store, or
# not at all).
q() {
	python3 -c 'import sqlite3, sys; print(sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True).execute(sys.argv[2]).fetchone()[0])' \
		"$mnt/sealgate.db" "$1"
}
starts0=$(q "SELECT count(*) FROM audit WHERE action = 'gateway_start'")
refused_for_record=0 served=0 bad=0
for free in $(seq 0 8 256); do
	fill
	sz=$(stat -c %s "$mnt/filler")
	truncate -s $((sz > free * 1024 ? sz - free * 1024 : 0)) "$mnt/filler"
	: >"$W/sealgated.log"
	SOFTHSM2_CONF=$W/softhsm2.conf SEALGATE_TEST_CLOCK=$W/clock \
		"$gw" --config "$W/sealgated.yaml" --foreground >>"$W/sealgated.log" 2>&1 &
	pid=$!
	for _ in $(seq 300); do
		kill -0 $pid 2>/dev/null || break
		if "$ctl" --socket "$W/sealgated.sock" status >/dev/null 2>&1; then served=1; break; fi
		sleep 0.05
	done
	[ $served = 1 ] && kill -TERM $pid
	rc=0
	wait $pid || rc=$?
	rm -f "$mnt/filler"
	starts=$(q "SELECT count(*) FROM audit WHERE action = 'gateway_start'")
	if [ $served = 1 ]; then
		if [ "$starts" -gt "$starts0" ]; then
			pass "with $free KiB free it serves, its gateway_start recorded"
		else
			fail "with $free KiB free it served without a gateway_start record"
			bad=1
		fi
		break
	fi
	if grep -q "listening on" "$W/sealgated.log" || [ $rc = 0 ]; then
		fail "with $free KiB free: exit $rc without serving, or it listened: $(tail -3 "$W/sealgated.log")"
		bad=1
	fi
	if grep -q "not starting: the gateway_start record could not be written" "$W/sealgated.log"; then
		refused_for_record=$((refused_for_record + 1))
	fi
	starts0=$starts
done
[ $bad = 0 ] && pass "no start served without its record; the others exited non-zero"
if [ $refused_for_record -gt 0 ]; then
	pass "$refused_for_record starts refused, saying the gateway_start record could not be written"
else
	fail "no start reached the gateway_start record (the store failed first each time)"
fi
[ $served = 1 ] || fail "no start served even with 256 KiB free"

finish
