#!/bin/sh
# Turns DIR/tls.tsv of tests/bench/run.sh (one line per sealbench run over
# each transport, the Unix socket and TLS alternately) into the markdown of
# docs/performance.md's "Over TLS" numbers: medians of the runs, the ratio
# TLS ÷ Unix socket, and the goal. usage: report-tls.sh DIR
set -eu
d=$1
val() { awk -F'\t' -v k="$2" '$1 == k { print $2; exit }' "$d/$1" 2>/dev/null; }
med() {
	awk -F'\t' -v m="$1" -v t="$2" -v s="$3" -v n="$4" '$1 == m && $2 == t && $3 == s { print $n }' "$d/tls.tsv" |
		sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
runs() { awk -F'\t' -v m="$1" -v t="$2" -v s="$3" '$1 == m && $2 == t && $3 == s { printf "%s%.0f", n++ ? ", " : "", $4 }' "$d/tls.tsv"; }
errs() { awk -F'\t' '{ e += $10 + $11 } END { print e + 0 }' "$d/tls.tsv"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }

echo "Measured $(val machine.tsv date) on $(val machine.tsv cpu), sealgate $(val machine.tsv sealgate), build type $(val machine.tsv buildtype), OpenSSL $(val machine.tsv pkg_libssl3); TLS 1.3 on loopback (127.0.0.1), one device, the module's connection pool with session resumption, TCP_NODELAY both ends, one write per frame."
echo "Load average before/after: $(val machine.tsv load_before) / $(val machine.tsv load_after). Runs of each transport: $(awk -F'\t' '$1 == "ec" && $2 == 8 && $3 == "unix"' "$d/tls.tsv" | wc -l), alternately and in turn first; signatures failed or not verified: $(errs); signatures over TLS recorded with the device: $(val tls-misc.tsv tls_signatures_recorded)."
echo
echo "| mechanism | threads | Unix socket ops/s | TLS ops/s | TLS ÷ Unix | p50 µs Unix / TLS | p99 µs Unix / TLS | gateway CPU µs/op Unix / TLS | ops/s of each run, Unix; TLS |"
echo "| --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |"
awk -F'\t' '{ print $1 "\t" $2 }' "$d/tls.tsv" | sort -u | while IFS='	' read -r m t; do
	u=$(med "$m" "$t" unix 4) s=$(med "$m" "$t" tls 4)
	printf '| %s | %s | %.0f | %.0f | %s | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f | %s; %s |\n' "$m" "$t" "${u:-0}" "${s:-0}" \
		"$(ratio "$s" "$u")" "$(med "$m" "$t" unix 5)" "$(med "$m" "$t" tls 5)" \
		"$(med "$m" "$t" unix 6)" "$(med "$m" "$t" tls 6)" \
		"$(med "$m" "$t" unix 8)" "$(med "$m" "$t" tls 8)" "$(runs "$m" "$t" unix)" "$(runs "$m" "$t" tls)"
done
echo
e8=$(ratio "$(med ec 8 tls 4)" "$(med ec 8 unix 4)")
r8=$(ratio "$(med rsa 8 tls 4)" "$(med rsa 8 unix 4)")
v() { awk -v x="$1" 'BEGIN { if (x == "-") print "not measured"; else print (x + 0 >= 0.9 ? "**met**" : "**not met**") }'; }
echo "| goal | measured | verdict |"
echo "| --- | --- | --- |"
echo "| P-256, 8 client threads, TLS ≥ 0.9× the Unix socket | $e8 | $(v "$e8") |"
echo "| RSA-2048, 8 client threads, TLS ≥ 0.9× the Unix socket | $r8 | $(v "$r8") |"
