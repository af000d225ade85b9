#!/bin/sh
# The offline risk scan at size (docs/performance.md, "Risk scan"): a year
# of the demo company's activity with the billing service turned up until
# the export holds about SG_BENCH_RISK_RECORDS records (default 10,000,000),
# then `sealctl risk scan` with verification (one pass: chain, checkpoint
# signatures and the rules) and with --no-verify (the rules alone). It
# measures and prints; it fails only when something does not work.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE; SG_BENCH_RISK_RECORDS; SG_BENCH_OUT
# (default BUILD/bench-results) keeps the numbers; the export is removed.
set -eu
gen=$1
build=${SEALGATE_BUILD:?}
src=${SEALGATE_SOURCE:?}
n=${SG_BENCH_RISK_RECORDS:-10000000}
out=${SG_BENCH_OUT:-$build/bench-results}
mkdir -p "$out"
dir=$(mktemp -d /tmp/sg-bench-risk-XXXXXX)
trap 'rm -rf "$dir"' EXIT
# The invoice seal's quota is raised so that the volume is ordinary.
sed -e 's/@OS_USER@/bench/' -e 's/quotas: { per_day: 1000 }/quotas: { per_day: 1000000 }/' \
	"$src/softhsm-config/acme-policy.yaml.in" >"$dir/policy.yaml"
# 261 working days; about 25 records a day besides the invoices.
billing=$(( (n - 365 * 25) / 261 ))
t0=$(date +%s.%N)
"$gen" --days 365 --billing "$billing" -o "$dir/export.jsonl"
t1=$(date +%s.%N)
records=$(($(grep -c '"type":"record"' "$dir/export.jsonl")))
size=$(stat -c %s "$dir/export.jsonl")
run() {   # run NAME ARGS...: wall and CPU seconds, peak RSS
	name=$1
	shift
	/usr/bin/time -f "%e %U %S %M" -o "$dir/time" "$build/tools/sealctl" risk scan \
		--from-export "$dir/export.jsonl" --policy "$dir/policy.yaml" "$@" >"$dir/$name.out" 2>/dev/null || {
		rc=$?
		[ $rc = 1 ] || { echo "bench-risk: scan $name failed ($rc)"; tail "$dir/$name.out"; exit 1; }
	}
	# (time puts "Command exited with non-zero status 1" first when alerts fired)
	read -r wall user sys rss <<EOT
$(tail -1 "$dir/time")
EOT
	awk -v name="$name" -v r="$records" -v w="$wall" -v u="$user" -v s="$sys" -v m="$rss" 'BEGIN {
		printf "| scan_%s_s | %.1f |\n| scan_%s_records_per_s | %.0f |\n| scan_%s_cpu_s | %.1f |\n| scan_%s_peak_rss_mib | %.0f |\n",
		       name, w, name, r / w, name, u + s, name, m / 1024 }'
}
{
	echo "| records | $records |"
	echo "| export_bytes | $size |"
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "| generate_s | %.1f |\n", b - a }'
	run verified
	run unverified --no-verify
	echo "| alerts | $(grep -c '^\[' "$dir/verified.out") |"
} | tee "$out/risk-scan.md"
