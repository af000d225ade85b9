#!/bin/sh
# Turns the result files of tests/bench/run.sh (DIR/*.tsv) into the
# markdown of docs/performance.md's measured part, with each goal of the
# performance issue next to its number. usage: report.sh DIR
set -eu
d=$1
val() { awk -F'\t' -v k="$2" '$1 == k { print $2; exit }' "$d/$1" 2>/dev/null; }
field() { awk -F'\t' -v k="$2" -v n="$3" '$1 == k { print $n; exit }' "$d/$1" 2>/dev/null; }
# ops/s of (mech, threads, module) in sign.tsv
ops() { awk -F'\t' -v m="$1" -v t="$2" -v mod="$3" '$1 == m && $2 == t && $3 == mod { print $4; exit }' "$d/sign.tsv"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }
verdict() { awk -v x="$1" -v goal="$2" -v dir="$3" 'BEGIN {
	if (x == "" || x == "-") { print "not measured"; exit }
	ok = dir == "ge" ? x + 0 >= goal + 0 : x + 0 < goal + 0
	print ok ? "**met**" : "**not met**" }'; }

echo "Measured $(val machine.tsv date) on $(val machine.tsv cpu), $(val machine.tsv memory), Linux $(val machine.tsv kernel), $(val machine.tsv os)."
echo "SoftHSM2 $(val machine.tsv pkg_softhsm2), p11-kit $(val machine.tsv pkg_p11-kit), SQLite $(val machine.tsv pkg_libsqlite3-0), OpenSSL $(val machine.tsv pkg_libssl3); sealgate $(val machine.tsv sealgate), build type $(val machine.tsv buildtype)."
echo "Load average before/after: $(val machine.tsv load_before) / $(val machine.tsv load_after)."
echo "fdatasync after a 4 KiB append on the store's disk: p50 $(field machine.tsv fdatasync_us 2) µs, p99 $(field machine.tsv fdatasync_us 3) µs."
echo "A one-byte request and answer between two processes over a Unix socket: p50 $(field machine.tsv socket_round_trip_us 2) µs, p99 $(field machine.tsv socket_round_trip_us 3) µs."
echo
echo "### Signing (medians of the rounds; ratio = ops/s ÷ SoftHSM2 direct, same thread count)"
echo
echo "| mechanism | threads | module | ops/s | p50 µs | p99 µs | client CPU µs/op | server CPU µs/op | ratio | ops/s of each round |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
awk -F'\t' '{ srv = $8 < 0 ? "-" : $8; err = ($10 + $11) ? sprintf(" (%d errors, %d bad)", $10, $11) : "";
	printf "| %s | %s | %s | %.0f | %.0f | %.0f | %.0f | %s | %.2f%s | %s |\n", $1, $2, $3, $4, $5, $6, $7, srv, $9, err, $12 }' "$d/sign.tsv"
echo
r1=$(ratio "$(ops rsa 1 sealgate)" "$(ops rsa 1 direct)")
r2=$(ratio "$(ops rsa 2 sealgate)" "$(ops rsa 2 direct)")
e1=$(ratio "$(ops ec 1 sealgate)" "$(ops ec 1 direct)")
e8=$(ratio "$(ops ec 8 sealgate)" "$(ops ec 2 direct)")
rss_idle=$(val footprint.tsv gateway_rss_kib_idle_after_load)
rss_mib=$(awk -v k="$rss_idle" 'BEGIN { printf "%.1f", k / 1024 }')
load_kib=$(awk -F'\t' '$1 == "sealgate" { print $3; exit }' "$d/loadrss.tsv")
load_mib=$(awk -v k="$load_kib" 'BEGIN { printf "%.2f", k / 1024 }')
conns=$(field footprint.tsv conns_answered 3)
dec=$(awk -F'\t' '$1 == "sign_decision_us" || $1 == "match_rule_us" || $1 == "may_use_us" { if ($2 > m) m = $2 } END { printf "%.2f", m }' "$d/policy.tsv")
lvl=$(field policy.tsv level_approvers_us 4)
q=$(awk -F'\t' '$1 == "query_seal_month_ms" { v = $2 } END { print v }' "$d/audit.tsv")
ver=$(val audit.tsv verify_records_per_s)
start=$(awk -F'\t' '$1 == "gateway_start_ms" { print $2 }' "$d/audit.tsv" | sort -n | sed -n 2p)
nrec=$(val audit.tsv records)
echo "### Goals"
echo
echo "| goal | measured | verdict |"
echo "| --- | --- | --- |"
echo "| RSA-2048, 1 thread ≥ 0.95× direct | $r1 | $(verdict "$r1" 0.95 ge) |"
echo "| RSA-2048, 2 threads ≥ 0.90× direct | $r2 | $(verdict "$r2" 0.90 ge) |"
echo "| P-256, 1 thread ≥ 0.45× direct | $e1 | $(verdict "$e1" 0.45 ge) |"
echo "| P-256, 8 client threads ≥ 0.75× direct's 2-thread throughput | $e8 | $(verdict "$e8" 0.75 ge) |"
echo "| 256 concurrent connections held | $conns of 256 answered twice while all open | $(verdict "$conns" 256 ge) |"
echo "| gateway idle RSS < 20 MiB | $rss_mib MiB after the load ($(val footprint.tsv gateway_rss_kib_idle_start) KiB at start, peak $(val footprint.tsv gateway_rss_kib_peak) KiB, $(val footprint.tsv gateway_rss_kib_with_conns) KiB with 256 connections) | $(verdict "$rss_mib" 20 lt) |"
echo "| loading the module adds < 2 MiB | $load_mib MiB | $(verdict "$load_mib" 2 lt) |"
echo "| policy decision < 10 µs (10,000 people, 1,000 seals) | $dec µs (sign path: may_use, window, mechanism, rule match) | $(verdict "$dec" 10 lt) |"
echo "| … approvers of a role level < 10 µs | $lvl µs | $(verdict "$lvl" 10 lt) |"
echo "| audit query, one seal and one month < 100 ms | $q ms over $nrec records ($(field audit.tsv query_seal_month_ms 3)) | $(verdict "$q" 100 lt) (at $nrec records) |"
echo "| audit verification ≥ 500,000 records/s | $ver records/s | $(verdict "$ver" 500000 ge) |"
echo "| gateway start < 2 s | $start ms with $nrec records (median of 3) | $(verdict "$start" 2000 lt) (at $nrec records) |"
echo
# What each signing goal leaves per signature, from direct's numbers of
# this run; what this machine charges before sealgate does anything (the
# floor); and what sealgate spends now.
col() { awk -F'\t' -v m="$1" -v t="$2" -v mod="$3" -v n="$4" '$1 == m && $2 == t && $3 == mod { print $n; exit }' "$d/sign.tsv"; }
calc() { awk "BEGIN { $1 }" 2>/dev/null; }
cores=$(val machine.tsv cores)
rtt=$(field machine.tsv socket_round_trip_us 2)
flush=$(field machine.tsv fdatasync_us 2)
# the lowest client CPU per signature of the remoting modules (sealgate's, p11-kit's)
minclient() { awk -F'\t' -v m="$1" -v t="$2" '$1 == m && $2 == t && $3 != "direct" && (v == "" || $7 < v) { v = $7 } END { print v }' "$d/sign.tsv"; }
budget_row() { # goal, budget, what it covers, floor, what the floor is, sealgate now
	awk -v g="$1" -v b="$2" -v bw="$3" -v f="$4" -v fw="$5" -v now="$6" 'BEGIN {
		if (b == "" || f == "") { printf "| %s | not measured | | | |\n", g; exit }
		left = b - f
		printf "| %s | %.0f µs %s | %.0f µs: %s | %s | %s |\n", g, b, bw, f, fw,
			(left > 0 ? sprintf("%.0f µs", left) : "nothing"),
			(now == "" ? "-" : sprintf("%.0f µs", now)) }'
}
d_rsa1=$(ops rsa 1 direct) d_rsa2=$(ops rsa 2 direct) d_ec1=$(ops ec 1 direct) d_ec2=$(ops ec 2 direct)
s_rsa1=$(ops rsa 1 sealgate) s_ec1=$(ops ec 1 sealgate)
b_rsa1=$(calc "if ($d_rsa1 + 0 > 0) printf \"%.1f\", 1e6 / (0.95 * $d_rsa1) - 1e6 / $d_rsa1")
b_rsa2=$(calc "if ($d_rsa2 + 0 > 0 && $cores + 0 > 0) printf \"%.1f\", $cores * 1e6 / (0.90 * $d_rsa2) - $(col rsa 2 direct 7)")
b_ec1=$(calc "if ($d_ec1 + 0 > 0) printf \"%.1f\", 1e6 / (0.45 * $d_ec1)")
b_ec8=$(calc "if ($d_ec2 + 0 > 0 && $cores + 0 > 0) printf \"%.1f\", $cores * 1e6 / (0.75 * $d_ec2)")
f_rsa2=$(minclient rsa 2)
f_ec1=$(calc "printf \"%.1f\", $flush + $rtt")
f_ec8=$(calc "printf \"%.1f\", $(col ec 2 direct 7) + $(minclient ec 8)")
n_rsa1=$(calc "if ($s_rsa1 + 0 > 0) printf \"%.1f\", 1e6 / $s_rsa1 - 1e6 / $d_rsa1")
n_rsa2=$(calc "printf \"%.1f\", $(col rsa 2 sealgate 7) + $(col rsa 2 sealgate 8) - $(col rsa 2 direct 7)")
n_ec1=$(calc "if ($s_ec1 + 0 > 0) printf \"%.1f\", 1e6 / $s_ec1")
n_ec8=$(calc "printf \"%.1f\", $(col ec 8 sealgate 7) + $(col ec 8 sealgate 8)")
echo "### What the signing goals leave per signature on this machine"
echo
echo "Each signing goal turned into time per signature with direct's numbers of this run; the least a remoted, durably recorded signature costs on this machine (the floor: a socket round trip, a flush, the client side of a remoting, measured in this run; for the client side the lower of sealgate's module and p11-kit's client); what that leaves for everything else sealgate does (read and check the request, identify the user, policy, quotas, the record, hand-offs between threads); and what sealgate spends on the same now."
echo
echo "| goal | budget per signature | floor on this machine | left for sealgate's own work | sealgate now |"
echo "| --- | --- | --- | --- | --- |"
budget_row "RSA-2048, 1 thread ≥ 0.95×" "$b_rsa1" "of latency over direct's signature" "$rtt" "one socket round trip between two processes (p50)" "$n_rsa1"
budget_row "RSA-2048, 2 threads ≥ 0.90×" "$b_rsa2" "of CPU besides the signature itself ($cores cores)" "$f_rsa2" "client CPU per signature of a remoting module" "$n_rsa2"
budget_row "P-256, 1 thread ≥ 0.45×" "$b_ec1" "from call to signature" "$f_ec1" "one flush of the record (p50) plus one socket round trip" "$n_ec1"
budget_row "P-256, 8 threads ≥ 0.75× direct's 2 threads" "$b_ec8" "of CPU for everything ($cores cores)" "$f_ec8" "the ECDSA signature's CPU plus the client CPU of a remoting module" "$n_ec8"
echo
echo "### Footprint"
echo
echo "| measurement | value |"
echo "| --- | --- |"
awk -F'\t' '{ v = $2; for (i = 3; i <= NF; i++) v = v " " $i; printf "| %s | %s |\n", $1, v }' "$d/footprint.tsv"
awk -F'\t' '{ printf "| module load RSS, %s | %s KiB at dlopen, %s KiB after C_Initialize + token info |\n", $1, $3, $4 }' "$d/loadrss.tsv"
echo
echo "### Policy decisions (µs per call unless named)"
echo
echo "| measurement | value |"
echo "| --- | --- |"
awk -F'\t' '{ v = $2; for (i = 3; i <= NF; i++) v = v " " $i; printf "| %s | %s |\n", $1, v }' "$d/policy.tsv"
echo
echo "### Audit log at size"
echo
echo "| measurement | value |"
echo "| --- | --- |"
awk -F'\t' '{ v = $2; for (i = 3; i <= NF; i++) v = v " " $i; printf "| %s | %s |\n", $1, v }' "$d/audit.tsv"
