#!/bin/sh
# The performance comparison of docs/performance.md, on this machine:
# sealgate (module → sealgated → SoftHSM2, full sign path) against SoftHSM2
# loaded directly and against p11-kit's remoting (p11-kit server +
# p11-kit-client.so) of the same keys, alternating round by round; then the
# footprint (idle RSS, 256 connections, module load), the policy decision
# micro-benchmark and the audit log at size; and the same gateway with its
# store on PostgreSQL (a cluster of the run's own, tests/lib/pg.sh) against
# SQLite, run for run alternately. It measures and reports; it never fails
# on a number (only when something does not work).
#
#   tests/bench/run.sh [--quick] [--no-doc] [--no-pg | --pg-only] [--no-tls | --tls-only]
#
# --no-pg: no PostgreSQL part (it is left out, said so, when PostgreSQL is
# not installed). --pg-only: the PostgreSQL part alone (SQLite against
# PostgreSQL), which rewrites only the "pgbench" marks of the page.
# --no-tls: no TLS part (tests/bench/tls.sh: the Unix socket against TLS on
# loopback, SG_BENCH_TLS_ROUNDS runs each, default 2 × rounds). --tls-only:
# that part alone, which rewrites only the "tlsbench" marks.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE (set by meson); SG_BENCH_ROUNDS (3),
# SG_BENCH_RSA_OPS (300 per thread), SG_BENCH_EC_OPS (1000 per thread),
# SG_BENCH_AUDIT_RECORDS (1000000), SG_BENCH_PG_ROUNDS (the PostgreSQL
# comparison's runs of each store, default 2 × rounds). --quick: 1 round, fewer operations,
# 100,000 audit records. Results go to $SG_BENCH_OUT (default
# BUILD/bench-results) and, unless --no-doc, replace the part of
# docs/performance.md between the "bench:begin" and "bench:end" marks.
set -eu
quick=0 doc=1 pg=1 rest=1 tls=1
for a in "$@"; do
	case $a in
	--quick) quick=1 ;;
	--no-doc) doc=0 ;;
	--no-pg) pg=0 ;;
	--pg-only) rest=0 tls=0 ;;
	--no-tls) tls=0 ;;
	--tls-only) rest=0 pg=0 ;;
	*) echo "usage: $0 [--quick] [--no-doc] [--no-pg | --pg-only] [--no-tls | --tls-only]" >&2; exit 2 ;;
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
pg_rounds=${SG_BENCH_PG_ROUNDS:-$((2 * rounds))}
tls_rounds=${SG_BENCH_TLS_ROUNDS:-$((2 * rounds))}
out=${SG_BENCH_OUT:-$build/bench-results}
softhsm=/usr/lib/softhsm/libsofthsm2.so
p11client=$(for d in /usr/lib/x86_64-linux-gnu/pkcs11 /usr/lib/*/pkcs11 /usr/lib/pkcs11; do
	[ -f "$d/p11-kit-client.so" ] && echo "$d/p11-kit-client.so" && break; done || true)
module=$build/module/sealgate-pkcs11.so
sealbench=$build/tools/sealbench
bdir=$build/tests/bench

# shellcheck source=tests/lib/pg.sh
. "$src/tests/lib/pg.sh"
# shellcheck source=tests/bench/tls.sh
. "$here/tls.sh"

dir=$(mktemp -d /tmp/sg-bench-XXXXXX)
p11pid= pgup=0
cleanup() {
	[ -n "$p11pid" ] && kill "$p11pid" 2>/dev/null || true
	# (the cluster first: the fixture's down removes all of DIR)
	if [ $pgup = 1 ]; then
		sh "$here/fixture.sh" down "$dir/pgfx" >/dev/null 2>&1 || true
		pg_down "$dir/pgdb" || echo "the PostgreSQL cluster of the bench is still running" >&2
	fi
	sh "$here/fixture.sh" down "$dir" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
# Replaces the part of docs/performance.md between "NAME:begin" and
# "NAME:end" with FILE.
replace_marks() { # NAME FILE
	if [ -w "$src/docs/performance.md" ] && grep -q "^<!-- $1:begin -->\$" "$src/docs/performance.md"; then
		awk -v rep="$2" -v b="<!-- $1:begin -->" -v e="<!-- $1:end -->" '
			$0 == b { print; while ((getline l < rep) > 0) print l; skip = 1; next }
			$0 == e { skip = 0 }
			!skip' "$src/docs/performance.md" >"$out/performance.md.new"
		cp "$out/performance.md.new" "$src/docs/performance.md"
		log "docs/performance.md updated ($1)"
	fi
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

status=0
# ---- p11-kit's remoting of the same keys ----
p11spec=
if [ $rest = 1 ] && [ -n "$p11client" ] && command -v p11-kit >/dev/null; then
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

# ---- the same gateway with its store on PostgreSQL ----
# A second gateway (its own copy of the fixture) on a cluster of this
# run's own; each sealbench run signs with one of the two, SQLite and
# PostgreSQL alternately and in turn first, so that the other load on the
# machine falls on both alike. cpu-pid counts the gateway's CPU, not the
# PostgreSQL server's (its own processes).
if [ $pg = 1 ]; then
	chmod o+x "$dir"
	mkdir -p "$dir/pgdb"
	rc=0
	pgup=1
	pg_up "$dir/pgdb" >/dev/null 2>"$dir/pg_up.err" || rc=$?
	if [ $rc = 77 ]; then
		log "PostgreSQL is not installed: no PostgreSQL comparison"
		pgup=0
	elif [ $rc != 0 ]; then
		cat "$dir/pg_up.err" >&2
		status=1
	else
		log "fixture on PostgreSQL: a second sealgated, store: postgresql://"
		url="postgresql:///sealgate?host=$dir/pgdb/pg/run&port=5432&user=sealgate&passfile=$dir/pgdb/pg/pgpass"
		SG_BENCH_STORE=$url sh "$here/fixture.sh" up "$dir/pgfx"
		pgpid=$(cat "$dir/pgfx/sealgated.pid")
		pgpm=$(head -1 "$dir/pgdb/pg/data/postmaster.pid")
		# CPU ticks of the cluster's processes (the server's side of a
		# signature, which cpu-pid does not see).
		pg_ticks() {
			for p in "$pgpm" $(pgrep -P "$pgpm"); do
				awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null
			done | awk '{ s += $1 } END { print s + 0 }'
		}
		pg_bench() { # STORE SOCKET PID: one run of each signing case
			SEALGATE_SOCKET=$2 "$sealbench" -q -m ec -t 1 -n "$ec_ops" -r 1 -o "$out/pg.tsv" \
				"$1=$module,pin=bench-password,cpu-pid=$3" >/dev/null || status=1
			t0=$(pg_ticks)
			SEALGATE_SOCKET=$2 "$sealbench" -q -m ec -t 8 -n "$ec_ops" -r 1 -o "$out/pg.tsv" \
				"$1=$module,pin=bench-password,cpu-pid=$3" >/dev/null || status=1
			# (sealbench's 10 warm-up signatures a thread included)
			[ "$1" = sqlite ] || echo "pg_server_cpu_us_ec8	$(( ($(pg_ticks) - t0) * 1000000 / $(getconf CLK_TCK) / (8 * (ec_ops + 10)) ))" >>"$out/pg-cpu.tsv"
			SEALGATE_SOCKET=$2 "$sealbench" -q -m rsa -t 2 -n "$rsa_ops" -r 1 -o "$out/pg.tsv" \
				"$1=$module,pin=bench-password,cpu-pid=$3" >/dev/null || status=1
		}
		# Untimed first: a new cluster creates (and zero-fills) its WAL
		# segments and writes whole pages on their first change, which a
		# store in use has long done; the SQLite store is warmed alike.
		log "warm-up (not counted): 8 threads × $ec_ops P-256 signatures on each store"
		for s in "$SEALGATE_SOCKET:$gwpid" "$dir/pgfx/sealgated.sock:$pgpid"; do
			SEALGATE_SOCKET=${s%:*} "$sealbench" -q -m ec -t 8 -n "$ec_ops" -r 1 \
				"warm=$module,pin=bench-password,cpu-pid=${s##*:}" >/dev/null || status=1
		done
		log "SQLite against PostgreSQL: $pg_rounds runs each of P-256 (threads 1, 8) and RSA-2048 (threads 2)"
		i=0
		while [ $i -lt "$pg_rounds" ]; do
			if [ $((i % 2)) = 0 ]; then
				pg_bench sqlite "$SEALGATE_SOCKET" "$gwpid"
				pg_bench postgresql "$dir/pgfx/sealgated.sock" "$pgpid"
			else
				pg_bench postgresql "$dir/pgfx/sealgated.sock" "$pgpid"
				pg_bench sqlite "$SEALGATE_SOCKET" "$gwpid"
			fi
			i=$((i + 1))
		done
		sh "$here/fixture.sh" stop "$dir/pgfx"
	fi
fi
# ---- the same gateway over TLS (tests/bench/tls.sh) ----
if [ $tls = 1 ]; then
	if command -v oathtool >/dev/null && command -v openssl >/dev/null; then
		tls_bench
		sg="sealgate=$module,pin=bench-password,cpu-pid=$gwpid"
	else
		log "oathtool or openssl not installed: no TLS comparison"
	fi
fi
if [ $rest = 0 ]; then
	echo "load_after	$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.tsv"
	if [ -f "$out/tls.tsv" ]; then
		sh "$here/report-tls.sh" "$out" >"$out/report-tls.md"
		cat "$out/report-tls.md"
		[ $doc = 0 ] || replace_marks tlsbench "$out/report-tls.md"
	fi
	if [ -f "$out/pg.tsv" ]; then
		sh "$here/report-pg.sh" "$out" >"$out/report-pg.md"
		cat "$out/report-pg.md"
		[ $doc = 0 ] || replace_marks pgbench "$out/report-pg.md"
	fi
	exit $status
fi

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
[ $doc = 0 ] || replace_marks bench "$out/report.md"
if [ -f "$out/pg.tsv" ]; then
	sh "$here/report-pg.sh" "$out" >"$out/report-pg.md"
	cat "$out/report-pg.md"
	[ $doc = 0 ] || replace_marks pgbench "$out/report-pg.md"
fi
if [ -f "$out/tls.tsv" ]; then
	sh "$here/report-tls.sh" "$out" >"$out/report-tls.md"
	cat "$out/report-tls.md"
	[ $doc = 0 ] || replace_marks tlsbench "$out/report-tls.md"
fi
exit $status
