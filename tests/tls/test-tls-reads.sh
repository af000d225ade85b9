#!/usr/bin/env bash
# tls: what a round trip costs the module in system calls (docs/performance.md,
# "Over TLS"): after a request it polls for the answer (no recv that says
# EAGAIN first), and it reads a record whole (read-ahead: a recv of the
# buffer's size, never its 5-byte header alone, then its body). Watched
# with strace on the desktop's p11client, 1 signature against 21. (A reply
# larger than a TCP segment may take two receives: the counts are of the
# calls' kind, not of receives per reply.) Skipped (77) without strace.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE, SEALGATE_MODULE, SG_P11CLIENT
set -euo pipefail
command -v strace >/dev/null 2>&1 || { echo "1..0 # SKIP strace is not installed"; exit 77; }
. "$(dirname "$0")/lib.sh" tls-reads
tls_up
URL=tls://$GWIP:$PORT

desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person dave >/dev/null 2>&1 || true
admin approve 1 >"$W/approve.out" 2>&1 &&
	desk "$ctl" device enroll --gateway "$URL" --ca "$PKI/site-ca.pem" --person dave >/dev/null 2>&1 &&
	pass "device 1 enrolled" || { fail "enrollment"; cat "$W/approve.out"; }

# COUNT: "REQUESTS RECV_FIRST HEADER_READS" of a run of COUNT signatures
# (strace of the desktop's p11client): its sends, the sends whose next
# socket call was a recv rather than the poll for the answer, and the
# receives of a record's 5-byte header alone.
calls() {
	desk env SG_PIN=dave-password SG_LABEL="Quota Seal" SG_ECDSA=1 SG_COUNT="$1" \
		strace -f -qq -o "$W/strace.$1" -e trace=recvfrom,sendto,poll,ppoll \
		"$P11CLIENT" "$MODULE" signs >"$W/signs.$1" 2>&1 || { cat "$W/signs.$1"; return 1; }
	awk '/ sendto\(/ { s++; sent[$1] = 1; next }
		/ recvfrom\(/ { if (sent[$1]) f++; sent[$1] = 0; if ($0 ~ /, 5, 0, NULL, NULL\) = /) h++; next }
		/ p?poll\(/ { sent[$1] = 0 }
		END { print s + 0, f + 0, h + 0 }' "$W/strace.$1"
}
read -r s1 f1 h1 < <(calls 1) || fail "1 signature under strace"
read -r s2 f2 h2 < <(calls 21) || fail "21 signatures under strace"
echo "# 1 signature: $s1 sends, $f1 a recv first, $h1 header reads; 21: $s2, $f2, $h2"
[ "$(audit_count "action = 'sign' AND outcome = 'ok' AND seal = 'quota' AND exe LIKE 'device 1 sha256:%'")" = 22 ] &&
	pass "22 signatures over TLS, recorded with the device" || fail "the signatures' records"
[ $((s2 - s1)) -ge 20 ] && [ "$f2" = "$f1" ] &&
	pass "the module polls for each answer before it reads: $((s2 - s1)) requests more, no recv more tried first" ||
	fail "a recv tried before the poll: $((f2 - f1)) for $((s2 - s1)) requests"
[ "$h1" = 0 ] && [ "$h2" = 0 ] &&
	pass "no record's header is read alone (read-ahead)" ||
	fail "records read header first: $h1 and $h2 header reads"
finish
