#!/bin/sh
# Instructions per P-256 signature in the server process, counted with
# callgrind (stable where seconds on a shared machine are not): sealgated
# with the full sign path (logged-in user, policy, quota counters, durable
# hash-chained record before release) against p11-kit's server remoting the
# same SoftHSM2 token (a copy of the same keys). Both servers run under
# callgrind; each is driven by sealbench (one thread) twice, N1 and N2
# signatures, and the figure is the difference of the two runs' counts
# over N2 - N1, so that start-up, login and session set-up cancel out.
# It measures and prints; it never fails on a number.
#
#   SEALGATE_BUILD=BUILD tests/bench/callgrind.sh [N1 [N2]]   (200, 1200)
#
# Prints "NAME<TAB>instructions per signature" lines (sealgated: its threads
# but the online risk rules' one; risk: that thread; p11kit; ratio:
# sealgated ÷ p11kit; ratio_with_risk: both of sealgate's ÷ p11kit) after "object<TAB>NAME<TAB>ELF object<TAB>its own instructions per
# signature" lines (where they go: libcrypto, libc, SQLite …), and writes the raw callgrind files to $SG_BENCH_OUT (default
# BUILD/bench-results/callgrind) for callgrind_annotate.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=${SEALGATE_SOURCE:-$(cd "$here/../.." && pwd)}
build=${SEALGATE_BUILD:?SEALGATE_BUILD not set (the meson build directory)}
export SEALGATE_SOURCE=$src SEALGATE_BUILD=$build
n1=${1:-200} n2=${2:-1200}
out=${SG_BENCH_OUT:-$build/bench-results}/callgrind
softhsm=/usr/lib/softhsm/libsofthsm2.so
p11client=$(for d in /usr/lib/x86_64-linux-gnu/pkcs11 /usr/lib/*/pkcs11 /usr/lib/pkcs11; do
	[ -f "$d/p11-kit-client.so" ] && echo "$d/p11-kit-client.so" && break; done || true)
module=$build/module/sealgate-pkcs11.so
sealbench=$build/tools/sealbench
log() { echo "== $*" >&2; }

for p in valgrind callgrind_annotate p11-kit; do
	command -v $p >/dev/null || { echo "callgrind.sh: $p is not installed" >&2; exit 77; }
done
[ -n "$p11client" ] || { echo "callgrind.sh: p11-kit-client.so is not installed" >&2; exit 77; }

dir=$(mktemp -d /tmp/sg-cg-XXXXXX)
p11pid=
cleanup() {
	[ -n "$p11pid" ] && kill "$p11pid" 2>/dev/null && wait "$p11pid" 2>/dev/null || true
	sh "$here/fixture.sh" down "$dir" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
rm -rf "$out"
mkdir -p "$out"

# The total Ir of a callgrind output file (its "totals:" or "summary:" line).
cg_total() {
	sed -n 's/^\(totals\|summary\): *\([0-9]*\).*/\2/p' "$1" | tail -1
}
# Self instructions per ELF object of callgrind files: "object<TAB>Ir".
# (A call's line after "calls=" is its inclusive cost, the callee's own.)
cg_objects() {
	for f in "$@"; do
		awk '
		function obname(s,   id, rest) {
			if (match(s, /^\([0-9]+\)/)) {
				id = substr(s, 1, RLENGTH); rest = substr(s, RLENGTH + 2)
				if (rest != "") name[id] = rest
				return name[id]
			}
			return s
		}
		/^ob=/ { ob = obname(substr($0, 4)); next }
		/^cob=/ { obname(substr($0, 5)); next }
		/^calls=/ { skip = 1; next }
		/^[0-9+*-]/ { if (skip) { skip = 0; next } if (split($0, c, " ") >= 2) cost[ob] += c[2]; next }
		END { for (o in cost) print o "\t" cost[o] }' "$f"
	done | awk -F '\t' '{ s[$1] += $2 } END { for (o in s) print o "\t" s[o] }'
}
# NAME DIR1-OR-FILE1 DIR2-OR-FILE2: the objects' instructions per signature
# between the two runs (those of 500 or more), most first.
per_object() {
	cg_objects $2 >"$dir/obj1"
	cg_objects $3 >"$dir/obj2"
	awk -F '\t' -v n="$(( n2 - n1 ))" -v who="$1" '
		NR == FNR { a[$1] = $2; next }
		{ d = ($2 - a[$1]) / n; if (d >= 500) printf "%s\t%s\t%d\n", who, $1, d }' \
		"$dir/obj1" "$dir/obj2" | sort -t "$(printf '\t')" -k3,3nr
}
# NAME FILE1 FILE2: instructions per signature between the two runs.
per_sig() {
	a=$(cg_total "$2") b=$(cg_total "$3")
	echo "$1	$(( (b - a) / (n2 - n1) ))"
}

log "fixture: token (P-256), policy, passwords (sealgated without callgrind)"
sh "$here/fixture.sh" up "$dir" >/dev/null
sh "$here/fixture.sh" stop "$dir"

# ---- sealgated under callgrind, restarted for each run ----
# (a run's count is the gateway's whole life: start, one sealbench run,
# stop; the start-up and the final checkpoint are alike in both runs)
# (a file per thread: the online risk rules' thread evaluates on a clock,
# so its count follows the run's wall time, not the signatures; it is
# reported apart)
printf '#!/bin/sh\nexec valgrind -q --tool=callgrind --separate-threads=yes --callgrind-out-file=%s/sealgated.%%p "%s" "$@"\n' \
	"$out" "$build/gateway/sealgated" >"$dir/cg-sealgated"
chmod +x "$dir/cg-sealgated"
export SEALGATE_SOCKET=$dir/sealgated.sock SEALGATE_USER=bench
for n in "$n1" "$n2"; do
	log "sealgated under callgrind: $n P-256 signatures"
	SEALGATE_GATEWAY=$dir/cg-sealgated sh "$here/fixture.sh" start "$dir"
	pid=$(cat "$dir/sealgated.pid")
	"$sealbench" -q -m ec -t 1 -n "$n" -r 1 "sealgate=$module,pin=bench-password" >/dev/null
	sh "$here/fixture.sh" stop "$dir"
	mkdir -p "$out/sealgated.n$n"
	mv "$out/sealgated.$pid"-* "$out/sealgated.n$n/"
	rm -f "$out/sealgated.$pid"
	# The risk engine's thread: the file where start_thread calls
	# online.c's thread_main (a name is given once, at its first use in
	# the run's files, "cfi=(id) name", and by its id after that).
	for f in $(awk '
		function nm(s, t,   id, rest) {
			if (!match(s, /^\([0-9]+\)/)) return s
			id = substr(s, 1, RLENGTH); rest = substr(s, RLENGTH + 2)
			if (rest != "") names[t, id] = rest
			return names[t, id]
		}
		/^(cfi|cfl)=/ { cfi = nm(substr($0, 5), "fl"); next }
		/^(fl|fi|fe)=/ { nm(substr($0, 4), "fl"); next }
		/^fn=/ { nm(substr($0, 4), "fn"); next }
		/^cfn=/ { if (nm(substr($0, 5), "fn") == "thread_main" && cfi ~ /risk\/online\.c$/) print FILENAME }' \
		"$out/sealgated.n$n"/* | sort -u); do
		mkdir -p "$out/risk.n$n"
		mv "$f" "$out/risk.n$n/"
	done
done

# ---- p11-kit server under callgrind ----
mkdir -p "$dir/run" && chmod 700 "$dir/run"
for n in "$n1" "$n2"; do
	log "p11-kit server under callgrind: $n P-256 signatures"
	rm -f "$dir/p11kit.env"
	# (p11-kit runs its subcommands as programs of their own)
	XDG_RUNTIME_DIR=$dir/run SOFTHSM2_CONF=$dir/p11kit/softhsm2.conf \
		valgrind -q --tool=callgrind --trace-children=yes --callgrind-out-file="$out/p11kit.%p" \
		p11-kit server -f -s --provider "$softhsm" "pkcs11:token=sg-bench" >"$dir/p11kit.env" 2>"$dir/p11kit.log" &
	p11pid=$!
	i=0
	while ! grep -q P11_KIT_SERVER_ADDRESS "$dir/p11kit.env" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
	addr=$(sed -n 's/^P11_KIT_SERVER_ADDRESS=\([^;]*\);.*/\1/p' "$dir/p11kit.env")
	[ -n "$addr" ] || { echo "callgrind.sh: p11-kit server did not start" >&2; cat "$dir/p11kit.log" >&2; exit 1; }
	P11_KIT_SERVER_ADDRESS=$addr "$sealbench" -q -m ec -t 1 -n "$n" -r 1 "p11kit=$p11client,pin=1234" >/dev/null
	# p11-kit server serves each connection in a child of its own
	# (p11-kit-remote), which writes its counts when it exits: after
	# the client left, before the listener is stopped.
	i=0
	while pgrep -P "$p11pid" >/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
	kill "$p11pid"
	wait "$p11pid" 2>/dev/null || true
	p11pid=
	# The sum of every file (the listener and its children) is the server's.
	cat "$out"/p11kit.[0-9]* | awk '/^totals:/ { s += $2 } END { print "totals: " s }' >"$out/p11kit-sum.n$n"
	mkdir -p "$out/p11kit.n$n"
	mv "$out"/p11kit.[0-9]* "$out/p11kit.n$n/"
done

for w in sealgated risk; do
	for n in "$n1" "$n2"; do
		cat "$out/$w.n$n"/* 2>/dev/null | awk '/^totals:/ { s += $2 } END { print "totals: " s + 0 }' >"$out/$w-sum.n$n"
	done
done
sg=$(per_sig sealgated "$out/sealgated-sum.n$n1" "$out/sealgated-sum.n$n2")
rk=$(per_sig risk "$out/risk-sum.n$n1" "$out/risk-sum.n$n2")
pk=$(per_sig p11kit "$out/p11kit-sum.n$n1" "$out/p11kit-sum.n$n2")
per_object sealgated "$out/sealgated.n$n1/*" "$out/sealgated.n$n2/*" | sed 's/^/object	/'
per_object p11kit "$out/p11kit.n$n1/*" "$out/p11kit.n$n2/*" | sed 's/^/object	/'
echo "$sg"
echo "$rk"
echo "$pk"
echo "ratio	$(echo "$sg $pk" | awk '{ printf "%.2f", $2 / $4 }')"
echo "ratio_with_risk	$(echo "$sg $rk $pk" | awk '{ printf "%.2f", ($2 + $4) / $6 }')"
