#!/usr/bin/env bash
# Online and offline give the same alerts over the generator's months:
# for ordinary activity and each misuse seeded alone (gen-activity), the
# rules evaluated as the online engine does every few records, each alert
# kept under its key, against one scan of the whole export (risk-replay).
# usage: replay.sh GEN-ACTIVITY RISK-REPLAY
set -euo pipefail
gen=$1
replay=$2
src=${SEALGATE_SOURCE:?}
dir=$(mktemp -d /tmp/sg-risk-replay-XXXXXX)
trap 'rm -rf "$dir"' EXIT
sed 's/@OS_USER@/sgtest/' "$src/softhsm-config/acme-policy.yaml.in" >"$dir/policy.yaml"
fails=0
for m in none splitting rubber-fast rubber-ratio volume unusual-hour new-host new-exe dormant \
         probe-refusals probe-wrong probe-lockout probe-size quota checkpoint-owed \
         off-hours-restart off-hours-token clock-backwards; do
	if [ "$m" = none ]; then
		"$gen" --days 56 --seed 2 -o "$dir/m.jsonl" 2>/dev/null
	else
		"$gen" --days 56 --misuse "$m" -o "$dir/m.jsonl" 2>/dev/null
	fi
	# (every 7 records: evaluations land inside bursts, splits and hours)
	if out=$("$replay" "$dir/policy.yaml" "$dir/m.jsonl" 7); then
		echo "ok - $m: $(tail -1 <<<"$out")"
	else
		echo "not ok - $m:"; echo "$out" | sed 's/^/    /'
		fails=$((fails + 1))
	fi
done
echo "$fails failed"
[ "$fails" = 0 ]
