#!/bin/sh
# Turns DIR/pg.tsv of tests/bench/run.sh (one line per sealbench run of
# each store, SQLite and PostgreSQL alternately) into the markdown of
# docs/performance.md's "On PostgreSQL" numbers: medians of the runs, the
# ratio PostgreSQL ÷ SQLite, and the goal. usage: report-pg.sh DIR
set -eu
d=$1
val() { awk -F'\t' -v k="$2" '$1 == k { print $2; exit }' "$d/$1" 2>/dev/null; }
# median of column N of the runs of (mech, threads, store)
med() {
	awk -F'\t' -v m="$1" -v t="$2" -v s="$3" -v n="$4" '$1 == m && $2 == t && $3 == s { print $n }' "$d/pg.tsv" |
		sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
runs() { awk -F'\t' -v m="$1" -v t="$2" -v s="$3" '$1 == m && $2 == t && $3 == s { printf "%s%.0f", n++ ? ", " : "", $4 }' "$d/pg.tsv"; }
errs() { awk -F'\t' '{ e += $10 + $11 } END { print e + 0 }' "$d/pg.tsv"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }

echo "Measured $(val machine.tsv date) on $(val machine.tsv cpu), sealgate $(val machine.tsv sealgate), build type $(val machine.tsv buildtype), PostgreSQL $(pg_config --version 2>/dev/null | sed 's/^PostgreSQL //' || echo '?') (a cluster of the run's own: synchronous_commit on, fsync on, Unix socket)."
echo "Load average before/after: $(val machine.tsv load_before) / $(val machine.tsv load_after). fdatasync p50 $(awk -F'\t' '$1 == "fdatasync_us" { print $2 }' "$d/machine.tsv") µs; socket round trip p50 $(awk -F'\t' '$1 == "socket_round_trip_us" { print $2 }' "$d/machine.tsv") µs."
echo "Runs of each store: $(awk -F'\t' '$1 == "ec" && $2 == 8 && $3 == "sqlite"' "$d/pg.tsv" | wc -l), alternately and in turn first; signatures failed or not verified: $(errs)."
echo
echo "| mechanism | threads | SQLite ops/s | PostgreSQL ops/s | PostgreSQL ÷ SQLite | p50 µs SQLite / PostgreSQL | gateway CPU µs/op SQLite / PostgreSQL | ops/s of each run, SQLite; PostgreSQL |"
echo "| --- | ---: | ---: | ---: | ---: | --- | --- | --- |"
awk -F'\t' '{ print $1 "\t" $2 }' "$d/pg.tsv" | sort -u | while IFS='	' read -r m t; do
	s=$(med "$m" "$t" sqlite 4) p=$(med "$m" "$t" postgresql 4)
	printf '| %s | %s | %.0f | %.0f | %s | %.0f / %.0f | %.0f / %.0f | %s; %s |\n' "$m" "$t" "${s:-0}" "${p:-0}" \
		"$(ratio "$p" "$s")" "$(med "$m" "$t" sqlite 5)" "$(med "$m" "$t" postgresql 5)" \
		"$(med "$m" "$t" sqlite 8)" "$(med "$m" "$t" postgresql 8)" "$(runs "$m" "$t" sqlite)" "$(runs "$m" "$t" postgresql)"
done
echo
srv=$(awk -F'\t' '$1 == "pg_server_cpu_us_ec8" { print $2 }' "$d/pg-cpu.tsv" 2>/dev/null | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')
echo "The PostgreSQL server's own CPU per P-256 signature at 8 threads (its processes' CPU time over the run ÷ signatures; not in the gateway CPU column): median ${srv:-?} µs, runs: $(awk -F'\t' '$1 == "pg_server_cpu_us_ec8" { printf "%s%s", n++ ? ", " : "", $2 }' "$d/pg-cpu.tsv" 2>/dev/null)."
echo
e8=$(ratio "$(med ec 8 postgresql 4)" "$(med ec 8 sqlite 4)")
ok=$(awk -v x="$e8" 'BEGIN { if (x == "-") print "not measured"; else print (x + 0 >= 0.8 ? "**met**" : "**not met**") }')
echo "| goal | measured | verdict |"
echo "| --- | --- | --- |"
echo "| P-256, 8 client threads, PostgreSQL ≥ 0.8× SQLite | $e8 | $ok |"
