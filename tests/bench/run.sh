#!/bin/sh
# The performance comparison of docs/performance.md, on this machine:
# sealgate (module → sealgated → SoftHSM2, full sign path) against SoftHSM2
# loaded directly and against p11-kit's remoting (p11-kit server +
# p11-kit-client.so) of the same keys, alternating round by round; then the
# footprint (idle RSS, 256 connections, module load), the policy decision
# micro-benchmark and the audit log at size. It measures and reports; it
# never fails on a number (only when something does not work).
#
#   tests/bench/run.sh [--quick] [--no-doc]
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE (set by meson); SG_BENCH_ROUNDS (3),
# SG_BENCH_RSA_OPS (300 per thread), SG_BENCH_EC_OPS (1000 per thread),
# SG_BENCH_AUDIT_RECORDS (1000000). --quick: 1 round, fewer operations,
# 100,000 audit records. Results go to $SG_BENCH_OUT (default
# BUILD/bench-results) and, unless --no-doc, replace the part of
# docs/performance.md between the "bench:begin" and "bench:end" marks.
set -eu
quick=0 doc=1
for a in "$@"; do
	case $a in
	--quick) quick=1 ;;
	--no-doc) doc=0 ;;
	*) echo "usage: $0 [--quick] [--no-doc]" >&2; exit 2 ;;
	esac
done
here=$(cd "$(dirname "$0")" && pwd)
src=${SEALGATE_SOURCE:-$(cd "$here/../.." && pwd)}
build=${SEALGATE_BUILD:?SEALGATE_BUILD not set (the meson build directory)}
export SEALGATE_SOURCE=$src SEALGATE_BUILD=$build
rounds=${SG_BENCH_ROUNDS:-3}
rsa_ops=${SG_BENCH_RSA_OPS:-300}
ec_ops=${SG_BENCH_EC_OPS:-1000}
audit_n=${SG_BENCH_AUDIT_RECORDS:-1000000}
if [ $quick = 1 ]; then
	rounds=1 rsa_ops=60 ec_ops=300 audit_n=${SG_BENCH_AUDIT_RECORDS:-100000}
fi
out=${SG_BENCH_OUT:-$build/bench-results}
softhsm=/usr/lib/softhsm/libsofthsm2.so
p11client=$(for d in /usr/lib/x86_64-linux-gnu/pkcs11 /usr/lib/*/pkcs11 /usr/lib/pkcs11; do
	[ -f "$d/p11-kit-client.so" ] && echo "$d/p11-kit-client.so" && break; done || true)
module=$build/module/sealgate-pkcs11.so
sealbench=$build/tools/sealbench
bdir=$build/tests/bench

dir=$(mktemp -d /tmp/sg-bench-XXXXXX)
p11pid=
cleanup() {
	[ -n "$p11pid" ] && kill "$p11pid" 2>/dev/null || true
	sh "$here/fixture.sh" down "$dir" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
mkdir -p "$out"
rm -f "$out"/*.tsv "$out"/*.txt
log() { echo "== $*" >&2; }

# ---- the machine ----
{
	echo "date	$(date -u +%Y-%m-%dT%H:%MZ)"
	echo "cpu	$(nproc) × $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "memory	$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "kernel	$(uname -r)"
	echo "os	$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
	for p in softhsm2 p11-kit libsqlite3-0 libssl3 libjansson4; do
		echo "pkg_$p	$(dpkg-query -W -f '${Version}' "$p" 2>/dev/null || echo '?')"
	done
	echo "sealgate	$(git -C "$src" describe --always --dirty 2>/dev/null || echo '?')"
	echo "buildtype	$(grep -o '"name": "buildtype", "value": "[a-z]*"' "$build/meson-info/intro-buildoptions.json" 2>/dev/null | sed 's/.*"value": "//; s/"$//')"
	echo "load_before	$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.tsv"

log "fixture: token (RSA-2048, P-256, Ed25519), policy, sealgated"
sh "$here/fixture.sh" up "$dir"
gwpid=$(cat "$dir/sealgated.pid")
"$bdir/bench-conns" fsync "$dir" >>"$out/machine.tsv"
"$bdir/bench-conns" pingpong >>"$out/machine.tsv"
echo "cores	$(nproc)" >>"$out/machine.tsv"
echo "gateway_rss_kib_idle_start	$(awk '/VmRSS/ { print $2 }' /proc/$gwpid/status)" >>"$out/footprint.tsv"

# ---- p11-kit's remoting of the same keys ----
p11spec=
if [ -n "$p11client" ] && command -v p11-kit >/dev/null; then
	mkdir -p "$dir/run" && chmod 700 "$dir/run"
	XDG_RUNTIME_DIR=$dir/run SOFTHSM2_CONF=$dir/p11kit/softhsm2.conf \
		p11-kit server -f -s --provider "$softhsm" "pkcs11:token=sg-bench" >"$dir/p11kit.env" 2>"$dir/p11kit.log" &
	p11pid=$!
	i=0
	while ! grep -q P11_KIT_SERVER_ADDRESS "$dir/p11kit.env" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	addr=$(sed -n 's/^P11_KIT_SERVER_ADDRESS=\([^;]*\);.*/\1/p' "$dir/p11kit.env")
	if [ -n "$addr" ]; then
		export P11_KIT_SERVER_ADDRESS=$addr
		p11spec="p11kit=$p11client,pin=1234,cpu-pid=$p11pid"
	else
		log "p11-kit server did not start; comparing with SoftHSM2 directly only"
		cat "$dir/p11kit.log" >&2
	fi
fi

# ---- signing: sealgate vs p11-kit vs direct ----
export SEALGATE_SOCKET=$dir/sealgated.sock SEALGATE_USER=bench
export SOFTHSM2_CONF=$dir/direct/softhsm2.conf
sg="sealgate=$module,pin=bench-password,cpu-pid=$gwpid"
direct="direct=$softhsm,pin=1234"
status=0
log "RSA-2048: $rounds rounds × threads 1,2,8 × $rsa_ops signatures"
"$sealbench" -q -m rsa -t 1,2,8 -n "$rsa_ops" -r "$rounds" -o "$out/sign.tsv" $sg $p11spec $direct || status=1
log "P-256: $rounds rounds × threads 1,2,8 × $ec_ops signatures"
"$sealbench" -q -m ec -t 1,2,8 -n "$ec_ops" -r "$rounds" -o "$out/sign.tsv" $sg $p11spec $direct || status=1
log "Ed25519 (p11-kit cannot remote CKM_EDDSA): threads 1,2"
"$sealbench" -q -m ed25519 -t 1,2 -n "$ec_ops" -r "$rounds" -o "$out/sign.tsv" $sg $direct || status=1
"$build/tools/sealctl" --socket "$SEALGATE_SOCKET" status >/dev/null 2>&1 || true

# ---- footprint ----
# (the gateway gives memory back a second after its last client left)
sleep 3
echo "gateway_rss_kib_idle_after_load	$(awk '/VmRSS/ { print $2 }' /proc/$gwpid/status)" >>"$out/footprint.tsv"
echo "gateway_rss_kib_peak	$(awk '/VmHWM/ { print $2 }' /proc/$gwpid/status)" >>"$out/footprint.tsv"
log "256 concurrent connections"
"$bdir/bench-conns" conns "$SEALGATE_SOCKET" 256 "$gwpid" >>"$out/footprint.tsv" || status=1
log "module load RSS"
for m in "sealgate $module" "softhsm2 $softhsm" "p11-kit-client $p11client"; do
	set -- $m
	[ -n "${2:-}" ] || continue
	printf '%s\t' "$1" >>"$out/loadrss.tsv"
	"$bdir/bench-conns" loadrss "$2" >>"$out/loadrss.tsv" || echo "failed" >>"$out/loadrss.tsv"
done

# ---- policy decisions at size ----
log "policy: 10,000 people, 1,000 seals"
"$bdir/bench-policy" >"$out/policy.tsv" || status=1

# ---- the audit log at size, and gateway start over it ----
log "audit: $audit_n records (store API), query, verify"
"$bdir/bench-audit" "$dir/audit.db" "$audit_n" >"$out/audit.tsv" 2>"$dir/bench-audit.log" || { status=1; cat "$dir/bench-audit.log" >&2; }
sh "$here/fixture.sh" stop "$dir"
sed "s|^store_path:.*|store_path: $dir/audit.db|" "$dir/sealgated.yaml" >"$dir/big.yaml"
for run in 1 2 3; do
	rm -f "$dir/sealgated.sock"
	t0=$(date +%s%N)
	SOFTHSM2_CONF=$dir/gw/softhsm2.conf "$build/gateway/sealgated" --config "$dir/big.yaml" --foreground \
		>>"$dir/big.log" 2>&1 &
	pid=$!
	i=0
	until "$build/tools/sealctl" --socket "$dir/sealgated.sock" status >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 2000 ] || ! kill -0 $pid 2>/dev/null; then status=1; break; fi
		sleep 0.005
	done
	t1=$(date +%s%N)
	echo "gateway_start_ms	$(( (t1 - t0) / 1000000 ))	$(sed -n 's/^records\t//p' "$out/audit.tsv") records" >>"$out/audit.tsv"
	kill -TERM $pid; wait $pid 2>/dev/null || true
done
echo "load_after	$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.tsv"

# ---- report ----
sh "$here/report.sh" "$out" >"$out/report.md"
cat "$out/report.md"
if [ $doc = 1 ] && [ -w "$src/docs/performance.md" ] && grep -q '^<!-- bench:begin -->$' "$src/docs/performance.md"; then
	awk -v rep="$out/report.md" '
		/^<!-- bench:begin -->$/ { print; while ((getline l < rep) > 0) print l; skip = 1; next }
		/^<!-- bench:end -->$/ { skip = 0 }
		!skip' "$src/docs/performance.md" >"$out/performance.md.new"
	cp "$out/performance.md.new" "$src/docs/performance.md"
	log "docs/performance.md updated"
fi
exit $status
