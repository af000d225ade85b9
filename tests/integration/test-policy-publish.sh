#!/usr/bin/env bash
# Integration: one policy for the group, published into the store through
# a real gateway on SQLite (docs/policy.md, "One policy for the group"). A
# policy the gateway cannot validate is refused with the parser's line and
# nothing changes; only a seal admin with password and code publishes; a
# valid one is stored as version 1 with its SHA-256 and its policy_publish
# record, and is in force at once (status, the seals' names); show gives
# back its bytes, history lists it; a restart keeps it and reports the
# policy_path file that differs; SIGHUP does not bring the file back; a
# second publish is version 2.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$(dirname "$0")/lib.sh" policy-publish

fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
export SOFTHSM2_CONF=$W/softhsm2.conf
sock=$W/sealgated.sock
ctl() { "$ctl" --socket "$sock" "$@"; }

# frank, the seal admin, gets a TOTP secret (as the fixture gives bob one).
python3 -c 'import base64, os; print(base64.b32encode(os.urandom(20)).decode(), end="")' \
	>"$W/totp-frank.b32"
printf 'frank-password\n' >"$W/pw-frank"
printf 'alice-password\n' >"$W/pw-alice"
# A fresh code each time: the gateway's test clock moves on one step, so
# no code is a replay of the one before.
code() {
	echo $(($(cat "$W/clock") + 30)) >"$W/clock"
	oathtool --totp -b --now "@$(cat "$W/clock")" "$(cat "$W/totp-frank.b32")"
}
ctl --user frank --password-file "$W/pw-frank" user totp-enroll \
	--secret-file "$W/totp-frank.b32" --code "$(code)" >/dev/null
as_frank() { SEALGATE_CODE=$(code) ctl --user frank --password-file "$W/pw-frank" "$@"; }

# 1. A policy with an error at line 5: refused with the parser's position.
sed 's/^  timezone: UTC$/  timezone: UTC\n  colour: blue/' "$W/policy.yaml" >"$W/bad.yaml"
grep -n "colour" "$W/bad.yaml" | grep -q "^5:" || { echo "bad.yaml: colour is not on line 5"; exit 1; }
rc=0
as_frank policy publish "$W/bad.yaml" >"$W/bad.out" 2>&1 || rc=$?
if [ $rc = 1 ] && grep -q "bad.yaml:5:[0-9]*: .*colour" "$W/bad.out"; then
	pass "an invalid policy is refused with the parser's file:line"
else
	fail "invalid policy: rc $rc: $(cat "$W/bad.out")"
fi
n=$(audit_count "action = 'policy_publish' AND outcome = 'denied' AND reason LIKE '%bad.yaml:5:%'")
[ "$n" = 1 ] && pass "and the refusal is recorded" || fail "policy_publish denied records: $n"

# 2. Only a seal admin, and only with a code.
rc=0
SEALGATE_CODE= ctl --user frank --password-file "$W/pw-frank" policy publish "$W/policy.yaml" \
	>"$W/nocode.out" 2>&1 || rc=$?
[ $rc != 0 ] && grep -qi "code" "$W/nocode.out" && pass "no code: refused" ||
	fail "publish without a code: rc $rc: $(cat "$W/nocode.out")"
rc=0
ctl --user alice --password-file "$W/pw-alice" policy publish "$W/policy.yaml" \
	>"$W/alice.out" 2>&1 || rc=$?
[ $rc != 0 ] && grep -q "only a seal admin" "$W/alice.out" && pass "not a seal admin: refused" ||
	fail "publish by alice: rc $rc: $(cat "$W/alice.out")"
n=$(audit_count "action = 'policy_publish' AND outcome = 'ok'")
[ "$n" = 0 ] && pass "nothing was published" || fail "policy_publish ok records: $n"
if ctl status | grep -q "no version published"; then pass "status: the file, nothing published"
else fail "status before a publish: $(ctl status)"; fi

# 3. A valid one: version 1, its hash, its record, in force at once.
sed 's/name: Contract Seal$/name: Contract Seal Two/' "$W/policy.yaml" >"$W/v1.yaml"
h1=$(sha256sum "$W/v1.yaml" | cut -d' ' -f1)
if as_frank policy publish "$W/v1.yaml" >"$W/v1.out" 2>&1 &&
	grep -q "as policy version 1 (sha256 $h1)" "$W/v1.out"; then
	pass "published as version 1 with the file's SHA-256"
else
	fail "publish v1: $(cat "$W/v1.out")"
fi
n=$(audit_count "action = 'policy_publish' AND outcome = 'ok' AND actor = 'frank' AND
	detail = '{\"version\":1,\"sha256\":\"$h1\"}'")
[ "$n" = 1 ] && pass "policy_publish recorded with version and hash" || fail "policy_publish records: $n"
n=$(audit_count "action = 'policy_reload' AND outcome = 'ok' AND detail LIKE '%\"sha256\":\"$h1\",\"version\":1,%'")
[ "$n" = 1 ] && pass "the version put in force is recorded" || fail "policy_reload records of v1: $n"
ctl status >"$W/status.out" || true
grep -q "^policy:   version 1, sha256 $h1$" "$W/status.out" && pass "status shows version 1 and its hash" ||
	fail "status: $(cat "$W/status.out")"
grep -q "Contract Seal Two" "$W/status.out" && pass "the published policy rules (the seal's new name)" ||
	fail "status seals: $(grep seal: "$W/status.out")"

# 4. show gives back the bytes; history lists the version.
as_frank policy show >"$W/show.out" 2>"$W/show.err" || fail "show: $(cat "$W/show.err")"
cmp -s "$W/show.out" "$W/v1.yaml" && pass "show: the bytes as published" || fail "show differs"
grep -q "policy version 1, sha256 $h1, published by frank" "$W/show.err" && pass "show: version, hash, who" ||
	fail "show header: $(cat "$W/show.err")"
as_frank policy history >"$W/hist.out" 2>&1 || true
if [ "$(wc -l <"$W/hist.out")" = 1 ] && grep -q "^ *1  $h1  frank .*in force$" "$W/hist.out"; then
	pass "history: one version, in force"
else
	fail "history: $(cat "$W/hist.out")"
fi
rc=0
as_frank policy show --version 2 >"$W/show2.out" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "no policy version 2" "$W/show2.out" && pass "show: no such version" ||
	fail "show --version 2: rc $rc: $(cat "$W/show2.out")"

# 5. A restart keeps version 1; the policy_path file that differs is said.
fixture stop
: >"$W/sealgated.log"
fixture start >>"$W/fixture.out" 2>&1 || { fail "restart"; cat "$W/sealgated.log"; }
ctl status | grep -q "^policy:   version 1, sha256 $h1$" && pass "a restart keeps the published version" ||
	fail "status after the restart: $(ctl status)"
grep -q "policy_path .* differs from the published version 1" "$W/sealgated.log" &&
	pass "the differing policy_path file is reported at start" || fail "log: $(cat "$W/sealgated.log")"
n=$(audit_count "action = 'gateway_start' AND detail LIKE '%\"sha256\":\"$h1\",\"version\":1,%' AND
	detail LIKE '%\"policy_path\":\"differs\"%'")
[ "$n" = 1 ] && pass "gateway_start records the version in force and the differing file" ||
	fail "gateway_start records with v1: $n"

# 6. SIGHUP with the file changed: the store still rules.
before=$(audit_count "action = 'policy_reload' AND outcome = 'ok'")
echo "# edited" >>"$W/policy.yaml"
kill -HUP "$(cat "$W/sealgated.pid")"
for _ in $(seq 100); do
	[ "$(audit_count "action = 'policy_reload' AND outcome = 'ok'")" -gt "$before" ] && break
	sleep 0.1
done
n=$(audit_count "action = 'policy_reload' AND outcome = 'ok' AND
	detail LIKE '%\"version\":1,%' AND detail LIKE '%\"policy_path\":\"differs\"%'")
[ "$n" -ge 2 ] && pass "SIGHUP re-reads the published version, not the file" ||
	fail "policy_reload records after SIGHUP: $n"
ctl status | grep -q "^policy:   version 1, sha256 $h1$" && pass "still version 1" ||
	fail "status after SIGHUP: $(ctl status)"

# 7. The file published: version 2, and the file no longer differs.
h2=$(sha256sum "$W/policy.yaml" | cut -d' ' -f1)
as_frank policy publish "$W/policy.yaml" >"$W/v2.out" 2>&1 && grep -q "as policy version 2" "$W/v2.out" &&
	pass "a second publish is version 2" || fail "publish v2: $(cat "$W/v2.out")"
ctl status | grep -q "^policy:   version 2, sha256 $h2$" && pass "status shows version 2" ||
	fail "status v2: $(ctl status)"
n=$(audit_count "action = 'policy_reload' AND detail LIKE '%\"version\":2,%' AND detail NOT LIKE '%differs%'")
[ "$n" = 1 ] && pass "version 2 in force, the file the same" || fail "policy_reload of v2: $n"
if "$gw" --config "$W/sealgated.yaml" --verify-audit >"$W/verify.out" 2>&1; then
	pass "the chain is intact"
else
	fail "verify-audit: $(cat "$W/verify.out")"
fi
finish
