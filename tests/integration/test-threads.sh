#!/usr/bin/env bash
# Integration: sealgated's threads carry names an operator can read in
# `ps -L` / `top -H` (docs/operations.md, "Threads"): the audit writer and
# the WAL checkpointer from the start, no other unnamed thread than the
# main one, and one sg-conn per client connection while it is open.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$(dirname "$0")/lib.sh" threads

fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
pid=$(cat "$W/sealgated.pid")
names() { cat /proc/"$pid"/task/*/comm | sort | tr '\n' ' '; }
count() { cat /proc/"$pid"/task/*/comm | grep -cx "$1" || true; }

# (sg-walckpt checkpoints SQLite's WAL: there is none on PostgreSQL)
walckpt=sg-walckpt
[ "${SG_TEST_STORE:-sqlite}" = pg ] && walckpt=
# (two audit writers: one commits a batch while the other's is flushed)
if [ "$(count sg-audit)" = 2 ]; then pass "two sg-audit threads"; else fail "sg-audit: threads are: $(names)"; fi
for t in $walckpt; do
	if [ "$(count $t)" = 1 ]; then pass "one $t thread"; else fail "$t: threads are: $(names)"; fi
done
# (sg-ticker runs only with signed checkpoints, audit_key; the fixture has none)
# (a ThreadSanitizer build has one more: the sanitizer's own background thread)
unnamed=1
[ "${SEALGATE_GATEWAY_SANITIZE:-}" = thread ] && unnamed=2
if [ "$(count sealgated)" = $unnamed ]; then pass "only the main thread is unnamed"; else fail "unnamed threads: $(names)"; fi
if [ "$(count sg-conn)" = 0 ]; then pass "no sg-conn without clients"; else fail "sg-conn without clients: $(names)"; fi

# Two clients connected: two sg-conn threads; gone again when they leave.
python3 - "$W/sealgated.sock" "$pid" <<'PY' && pass "one sg-conn per open connection" || fail "sg-conn per connection: $(names)"
import glob, socket, sys, time
path, pid = sys.argv[1], sys.argv[2]
def conns():
    n = 0
    for f in glob.glob("/proc/%s/task/*/comm" % pid):
        try:
            n += open(f).read().strip() == "sg-conn"
        except OSError:
            pass
    return n
socks = []
for _ in range(2):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    socks.append(s)
for _ in range(200):
    if conns() == 2:
        break
    time.sleep(0.01)
assert conns() == 2, conns()
for s in socks:
    s.close()
for _ in range(200):
    if conns() == 0:
        break
    time.sleep(0.01)
assert conns() == 0, conns()
PY

finish
