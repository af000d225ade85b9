#!/bin/sh
# What a P-256 signature costs over TLS against the Unix socket, counted
# rather than timed (counts hold on a loaded machine where seconds do not):
# the bench's gateway with its TLS front on loopback and one enrolled
# desktop (tls.sh's tls_setup), then for each transport sealbench with T
# threads twice, N1 and N2 signatures a thread, and per signature the
# difference of the two runs over T × (N2 - N1), so that start-up, login and
# the connections' set-up cancel out:
#   - system calls and context switches of the gateway (perf stat -p) and
#     of sealbench with the module (perf stat on the command), all calls
#     and the reads, receives, sends, polls and futex waits apart, and
#     their CPU time in user space and in the kernel (µs; the gateway's
#     from /proc in clock ticks, sealbench's from its rusage, perf's own
#     included), and the TCP segments sent on loopback (data and ACKs);
#   - with --callgrind, the instructions of each (sealgated and sealbench
#     under callgrind, one thread; the gateway is restarted for each run and
#     counted in its connections' threads), the files kept in
#     $SG_BENCH_OUT/count-tls (default BUILD/bench-results) for
#     callgrind_annotate.
#
#   SEALGATE_BUILD=BUILD tests/bench/count-tls.sh [--callgrind] [THREADS [N1 [N2]]]
#                                                    (8, 200, 700)
#
# Exits 77 when perf (linux-perf), openssl or oathtool is not installed
# (valgrind too with --callgrind). Prints "TRANSPORT<TAB>FIGURE<TAB>per
# signature" lines. It measures and prints; it never fails on a number.
set -eu
cg=0
if [ "${1:-}" = --callgrind ]; then
	cg=1
	shift
fi
threads=${1:-8} n1=${2:-200} n2=${3:-700}
for p in perf openssl oathtool; do
	command -v $p >/dev/null 2>&1 || { echo "count-tls.sh: $p is not installed" >&2; exit 77; }
done
if [ $cg = 1 ]; then
	command -v valgrind >/dev/null 2>&1 || { echo "count-tls.sh: valgrind is not installed" >&2; exit 77; }
fi
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${SEALGATE_BUILD:?SEALGATE_BUILD not set}" && pwd)
export SEALGATE_BUILD=$build SEALGATE_SOURCE=$src
sealbench=$build/tools/sealbench
module=$build/module/sealgate-pkcs11.so
log() { echo "== $*" >&2; }
status=0
# shellcheck source=tests/bench/tls.sh
. "$here/tls.sh"

dir=$(mktemp -d /tmp/sg-count-tls-XXXXXX)
trap 'sh "$here/fixture.sh" down "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
trap 'exit 1' INT TERM HUP
sh "$here/fixture.sh" up "$dir" >/dev/null
tls_setup || exit 1

events=context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_poll,syscalls:sys_enter_futex

# TRANSPORT THREADS N [WRAPPER…]: one sealbench run on that transport.
bench() {
	tr=$1 th=$2 n=$3
	shift 3
	if [ "$tr" = unix ]; then
		SEALGATE_SOCKET=$dir/sealgated.sock SEALGATE_USER=bench "$@" "$sealbench" -q -m ec \
			-t "$th" -n "$n" -r 1 "unix=$module,pin=bench-password" >/dev/null
	else
		env -u SEALGATE_SOCKET -u SEALGATE_USER SEALGATE_CONF="$conf" "$@" "$sealbench" -q -m ec \
			-t "$th" -n "$n" -r 1 "tls=$module,pin=bench-password" >/dev/null
	fi
}

# FILE: "event<TAB>count" of a perf stat -x, output, and of cpu files.
counts() { awk -F, '$3 != "" && $1 ~ /^[0-9]+$/ { print $3 "\t" $1 }' "$1"; }

# PID: "cpu_user_us<TAB>N" and "cpu_system_us<TAB>N" of a process so far
# (its threads', /proc/PID/stat, in clock ticks).
proc_cpu() {
	hz=$(getconf CLK_TCK)
	sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$hz" '{
		printf "cpu_user_us\t%.0f\ncpu_system_us\t%.0f\n", $12 * 1e6 / hz, $13 * 1e6 / hz }'
}
# "tcp_segments<TAB>N": TCP segments sent in this network namespace so far
# (/proc/net/snmp's OutSegs, both directions of loopback; other programs'
# TCP here counts too)
tcp_segs() { awk '$1 == "Tcp:" && $12 ~ /^[0-9]+$/ { print "tcp_segments\t" $12 }' /proc/net/snmp; }
# cpu-of FILE COMMAND…: runs COMMAND, then writes its CPU (with its
# children's) to FILE as proc_cpu does (a program, for env to run).
cat >"$dir/cpu-of" <<'EOP'
#!/usr/bin/env python3
import os, sys
r = os.fork()
if r == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, st, ru = os.wait4(r, 0)
with open(sys.argv[1], "w") as f:
    f.write("cpu_user_us\t%.0f\ncpu_system_us\t%.0f\n" % (ru.ru_utime * 1e6, ru.ru_stime * 1e6))
sys.exit(os.waitstatus_to_exitcode(st))
EOP
chmod +x "$dir/cpu-of"

# WHO TRANSPORT FILE1 FILE2 SIGS: per signature between the two runs.
per_sig() {
	{ counts "$3"; cat "$3.cpu"; } >"$dir/c1"
	{ counts "$4"; cat "$4.cpu"; } >"$dir/c2"
	awk -F '\t' -v who="$1" -v tr="$2" -v s="$5" '
		NR == FNR { a[$1] = $2; next }
		{ ev = $1; sub(/^(raw_)?syscalls:sys_enter_?/, "", ev)
		  if (ev == "") ev = "syscalls"
		  printf "%s\t%s_%s\t%.2f\n", tr, who, ev, ($2 - a[$1]) / s }' "$dir/c1" "$dir/c2"
}

for tr in unix tls; do
	bench "$tr" "$threads" 100   # warm: connections, sessions, the gateway's caches
	for n in "$n1" "$n2"; do
		perf stat -x, -e "$events" -p "$gwpid" -o "$dir/gw.$tr.$n" &
		pp=$!
		sleep 1
		proc_cpu "$gwpid" >"$dir/gw0"
		tcp_segs >>"$dir/gw0"
		bench "$tr" "$threads" "$n" "$dir/cpu-of" "$dir/cl.$tr.$n.cpu" perf stat -x, -e "$events" \
			-o "$dir/cl.$tr.$n"
		proc_cpu "$gwpid" >"$dir/gw1"
		tcp_segs >>"$dir/gw1"
		awk -F '\t' 'NR == FNR { a[$1] = $2; next } { print $1 "\t" $2 - a[$1] }' \
			"$dir/gw0" "$dir/gw1" >"$dir/gw.$tr.$n.cpu"
		kill -INT $pp
		wait $pp 2>/dev/null || true
	done
	sigs=$((threads * (n2 - n1)))
	per_sig gateway "$tr" "$dir/gw.$tr.$n1" "$dir/gw.$tr.$n2" "$sigs"
	per_sig client "$tr" "$dir/cl.$tr.$n1" "$dir/cl.$tr.$n2" "$sigs"
done

[ $cg = 1 ] || exit 0
# ---- instructions: both sides under callgrind, one thread ----
# (the gateway's counted inside its connections' threads (conn_main:
# reading, dispatch, the sign path up to the record's hand-over, the reply),
# where the transports differ; the audit writer's and the online risk
# rules' threads are the same for both, the rules' on a clock besides)
# (a file's "totals:" and "summary:" lines say the same: the last one read)
total() { sed -n 's/^\(totals\|summary\): *\([0-9]*\).*/\2/p' "$1" | tail -1; }
out=${SG_BENCH_OUT:-$build/bench-results}/count-tls
rm -rf "$out"
mkdir -p "$out"
printf '#!/bin/sh\nexec valgrind -q --tool=callgrind --collect-atstart=no --toggle-collect=conn_main --callgrind-out-file=%s/gw.%%p "%s" "$@"\n' \
	"$out" "$build/gateway/sealgated" >"$dir/cg-sealgated"
chmod +x "$dir/cg-sealgated"
for tr in unix tls; do
	for n in "$n1" "$n2"; do
		log "$tr: sealgated and sealbench under callgrind, $n signatures"
		sh "$here/fixture.sh" stop "$dir"
		SEALGATE_GATEWAY=$dir/cg-sealgated sh "$here/fixture.sh" start "$dir"
		gwpid=$(cat "$dir/sealgated.pid")
		bench "$tr" 1 "$n" valgrind -q --tool=callgrind --callgrind-out-file="$out/client.$tr.$n"
		sh "$here/fixture.sh" stop "$dir"
		mv "$out/gw.$gwpid" "$out/gateway.$tr.$n"
	done
	for who in gateway client; do
		a=$(total "$out/$who.$tr.$n1") b=$(total "$out/$who.$tr.$n2")
		echo "$tr	${who}_instructions	$(( (b - a) / (n2 - n1) ))"
	done
done
sh "$here/fixture.sh" start "$dir"
