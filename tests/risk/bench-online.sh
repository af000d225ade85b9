#!/bin/sh
# What the online rules cost (docs/risk.md, "Performance online") at two
# sizes of history: gen-activity's 56 days and a year with the billing
# service turned up to about SG_BENCH_RISK_ONLINE_RECORDS records (default
# 1,000,000), each through bench-risk-online (the hand-off's copy and
# gw_risk_add_record a record; one evaluation of the whole-history rules at
# a tenth, half and all of the history). CPU time of one thread. It
# measures and prints; it fails only when something does not work.
#
#   bench-online.sh GEN BENCH-RISK-ONLINE
# env: SEALGATE_SOURCE; SG_BENCH_RISK_ONLINE_RECORDS; SG_BENCH_OUT keeps the
# numbers (risk-online.md).
set -eu
gen=$1
bench=$2
src=${SEALGATE_SOURCE:?}
n=${SG_BENCH_RISK_ONLINE_RECORDS:-1000000}
out=${SG_BENCH_OUT:-${SEALGATE_BUILD:-.}/bench-results}
mkdir -p "$out"
dir=$(mktemp -d /tmp/sg-bench-risk-online-XXXXXX)
trap 'rm -rf "$dir"' EXIT
sed -e 's/@OS_USER@/bench/' -e 's/quotas: { per_day: 1000 }/quotas: { per_day: 1000000 }/' \
	"$src/softhsm-config/acme-policy.yaml.in" >"$dir/policy.yaml"
"$gen" --days 56 -o "$dir/small.jsonl" >/dev/null
"$gen" --days 365 --billing $(( (n - 365 * 25) / 261 )) -o "$dir/year.jsonl" >/dev/null
for e in small year; do
	echo "== $e"
	"$bench" "$dir/policy.yaml" "$dir/$e.jsonl"
done | tee "$out/risk-online.md"
