#!/bin/sh
# Benchmark fixture: one SoftHSM2 token with an RSA-2048, an EC P-256 and an
# Ed25519 seal key, copied three times so that sealgated, SoftHSM2 loaded
# directly and p11-kit's server each read their own copy of the same keys;
# a policy whose seals run the full sign path (authenticated user, policy,
# quotas counted, durable audit record), and a running sealgated.
#
#   fixture.sh up DIR      create everything (once) and start the gateway
#   fixture.sh start DIR   start the gateway (waits until it answers)
#   fixture.sh stop DIR    stop it
#   fixture.sh down DIR    stop and remove DIR
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE; SG_BENCH_SESSIONS (backend pool,
# default: the gateway's own default, 2 × cores); SG_BENCH_STORE (a
# postgresql:// URL: the gateway's store is that database, as site main,
# instead of DIR/sealgate.db).
set -eu
cmd=$1 dir=$2
build=${SEALGATE_BUILD:?SEALGATE_BUILD not set}
src=${SEALGATE_SOURCE:?SEALGATE_SOURCE not set}
gw=${SEALGATE_GATEWAY:-$build/gateway/sealgated}
# shellcheck source=tests/lib/gateway.sh
. "$src/tests/lib/gateway.sh"

start() { sg_gw_start "$dir" SOFTHSM2_CONF="$dir/gw/softhsm2.conf"; }

stop() { sg_gw_stop "$dir" "${1:-TERM}"; }

# Copy of the token for another process, with its own softhsm2.conf.
copy_token() {
	mkdir -p "$dir/$1"
	cp -a "$dir/gw/tokens" "$dir/$1/"
	sed "s|$dir/gw/tokens|$dir/$1/tokens|" "$dir/gw/softhsm2.conf" >"$dir/$1/softhsm2.conf"
}

up() {
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [ ! -f "$dir/sealgated.yaml" ]; then
		SG_ORG="Bench Co." sh "$src/tests/backend/mktoken.sh" "$dir/gw" sg-bench 1234 \
			rsa-seal:01:rsa:2048 ec-seal:02:EC:prime256v1 ed-seal:03:EC:edwards25519 >/dev/null
		copy_token direct
		copy_token p11kit
		(umask 077; printf '1234\n' >"$dir/token.pin")
		me=$(id -un)
		# quotas: large enough never to refuse, but counted on every
		# signature (seal per day, per month, per person per day).
		cat >"$dir/policy.yaml" <<EOP
version: 1
organization:
  name: Bench Co.
  timezone: UTC
  departments:
    - { id: hq, name: Headquarters, head: boss }
    - { id: ops, name: Operations, parent: hq, head: lead }
  people:
    - { id: boss, name: Boss, department: hq, roles: [executive] }
    - { id: lead, name: Lead, department: ops, roles: [department_head] }
    - { id: bench, name: Bench, department: ops, roles: [employee] }
    - { id: admin, name: Admin, department: hq, roles: [seal_admin] }
  act_as:
    - { os_login: "$me", accounts: all }
seals:
  - id: rsa
    name: RSA Seal
    kind: contract
    key: "pkcs11:object=rsa-seal;type=private"
    holder: hq
    users: { departments: [ops] }
    quotas: { per_day: 1000000000, per_month: 1000000000, per_person_per_day: 1000000000 }
    approval: none
    mfa: none
  - id: ec
    name: EC Seal
    kind: invoice
    key: "pkcs11:object=ec-seal;type=private"
    holder: hq
    users: { departments: [ops] }
    quotas: { per_day: 1000000000, per_month: 1000000000, per_person_per_day: 1000000000 }
    approval: none
    mfa: none
  - id: ed
    name: Ed Seal
    kind: official
    key: "pkcs11:object=ed-seal;type=private"
    holder: hq
    users: { departments: [ops] }
    quotas: { per_day: 1000000000, per_month: 1000000000, per_person_per_day: 1000000000 }
    approval: none
    mfa: none
EOP
		{
			cat <<EOC
backend_module: /usr/lib/softhsm/libsofthsm2.so
backend_token: "pkcs11:token=sg-bench"
token_pin_file: $dir/token.pin
socket_path: $dir/sealgated.sock
policy_path: $dir/policy.yaml
token_label: Bench Co.
EOC
			if [ -n "${SG_BENCH_STORE:-}" ]; then
				printf 'store: "%s"\nsite: main\n' "$SG_BENCH_STORE"
			else
				echo "store_path: $dir/sealgate.db"
			fi
			[ -n "${SG_BENCH_SESSIONS:-}" ] && echo "backend_sessions: $SG_BENCH_SESSIONS"
		} >"$dir/sealgated.yaml"
		for u in bench boss lead admin; do
			printf '%s-password\n' "$u" | SOFTHSM2_CONF=$dir/gw/softhsm2.conf "$gw" \
				--config "$dir/sealgated.yaml" --set-password "$u" --password-file -
		done
		# (admin approves the TLS row's desktop: tests/bench/tls.sh)
		(umask 077; printf 'admin-password\n' >"$dir/pw-admin")
	fi
	start
}

case $cmd in
up) up ;;
start) start ;;
stop) stop ;;
down) stop; rm -rf "$dir" ;;
*) echo "usage: $0 up|start|stop|down DIR" >&2; exit 2 ;;
esac
