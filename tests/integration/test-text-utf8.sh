#!/usr/bin/env bash
# Integration: text that is not UTF-8 on its way to the store (on either
# backend; SG_TEST_STORE=pg runs it on PostgreSQL, which refuses such text).
#  - A program run from a path with the byte 0xff in its name: its records
#    are written, the path hex-escaped (\xff) as the record's exe, and the
#    records of others written after it too; the chain verifies.
#  - A request with a string that is not UTF-8 is refused at the protocol
#    (bad_request, "malformed JSON"; the stream is then closed, as for any
#    malformed frame), and the gateway goes on answering others.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$(dirname "$0")/lib.sh" text-utf8

fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
sock=$W/sealgated.sock
printf 'alice-password\n' >"$W/pw-alice"

# ---- an exe path that is not UTF-8 ----
weird=$W/b$(printf '\377')in
mkdir "$weird"
cp "$ctl" "$weird/sealctl"
before=$(audit_count "action = 'application_create' AND outcome = 'ok'")
rc=0
"$weird/sealctl" --socket "$sock" --user alice --password-file "$W/pw-alice" \
	apply --seal approved --amount 10 --reason "from a path not in UTF-8" >"$W/apply.out" 2>&1 || rc=$?
[ $rc = 0 ] && pass "a program at a path with 0xff applies" ||
	{ fail "apply from the 0xff path (exit $rc)"; cat "$W/apply.out"; tail -5 "$W/sealgated.log"; }
n=$(audit_count "action = 'application_create' AND outcome = 'ok' AND exe = '$W/b\\xffin/sealctl'")
[ "$n" = 1 ] && pass "its record names the path hex-escaped ($W/b\\xffin/sealctl)" ||
	{ fail "records with the escaped exe: $n"; store_sql "SELECT seq, action, exe FROM audit ORDER BY seq DESC LIMIT 3"; }
# Others' records after it are written (on PostgreSQL a refused text
# used to fail the whole batch with it, and every record after).
rc=0
"$ctl" --socket "$sock" --user alice --password-file "$W/pw-alice" \
	apply --seal approved --amount 20 --reason "from sealctl's own path" >"$W/apply2.out" 2>&1 || rc=$?
[ $rc = 0 ] || { fail "apply from the plain path (exit $rc)"; cat "$W/apply2.out"; }
n=$(audit_count "action = 'application_create' AND outcome = 'ok'")
[ "$n" = $((before + 2)) ] && pass "both applications are recorded" ||
	{ fail "application_create records: $n, expected $((before + 2))"; }
rc=0
"$gw" --config "$W/sealgated.yaml" --verify-audit >"$W/verify.out" 2>&1 || rc=$?
[ $rc = 0 ] && pass "the chain verifies" || { fail "--verify-audit (exit $rc)"; cat "$W/verify.out"; }

# ---- a client string that is not UTF-8 ----
python3 - "$sock" >"$W/proto.out" 2>&1 <<'PY' && pass "a string that is not UTF-8 is refused at the protocol" ||
import json, socket, struct, sys
def call(body):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.sendall(struct.pack(">I", len(body)) + body)
    n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
    return json.loads(s.recv(n, socket.MSG_WAITALL))
r = call(b'{"v":1,"op":"login","user":"al\xffice","password":"x"}')
print(r)
assert r.get("ok") is False and r.get("error") == "bad_request", r
assert "malformed JSON" in r.get("message", ""), r
r = call(b'{"v":1,"op":"status"}')
print(r)
assert r.get("ok") is True, r
PY
	{ fail "a string that is not UTF-8"; cat "$W/proto.out"; }

finish
