#!/bin/sh
# Audit fixture: a real SoftHSM2 token with two seal keys AND the audit
# checkpoint key (EC P-256 with a certificate), a policy with an auditor, a
# seal admin and department heads, and a real sealgated signing checkpoints.
#
#   fixture.sh up DIR             create everything (once) and start the gateway
#   fixture.sh start DIR          start the gateway (waits until it answers)
#   fixture.sh stop DIR [SIGNAL]  stop it (default TERM; KILL for a crash)
#   fixture.sh store DIR PATH     move the store to PATH (fresh; passwords set again)
#   fixture.sh down DIR           stop and remove DIR
#
# env: SEALGATE_BUILD (build dir), SEALGATE_SOURCE (source dir).
set -eu
cmd=$1 dir=$2
build=${SEALGATE_BUILD:?SEALGATE_BUILD not set}
src=${SEALGATE_SOURCE:?SEALGATE_SOURCE not set}
gw=${SEALGATE_GATEWAY:-$build/gateway/sealgated}
# shellcheck source=tests/lib/gateway.sh
. "$src/tests/lib/gateway.sh"

start() { sg_gw_start "$dir" SOFTHSM2_CONF="$dir/softhsm2.conf"; }

stop() { sg_gw_stop "$dir" "${1:-TERM}"; }

passwords() {
	for u in alice bob carol dave erin frank grace; do
		printf '%s-password\n' "$u" | "$gw" --config "$dir/sealgated.yaml" \
			--set-password "$u" --password-file - >/dev/null
	done
}

up() {
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [ ! -f "$dir/sealgated.yaml" ]; then
		SG_ORG="Audit Co." sh "$src/tests/backend/mktoken.sh" "$dir" sg-audit 1234 \
			contract-seal:01:rsa:2048 finance-seal:03:EC:prime256v1 \
			sealgate-audit:a0:EC:prime256v1 >/dev/null
		(umask 077; printf '1234\n' >"$dir/token.pin")
		me=$(id -un)
		cat >"$dir/policy.yaml" <<EOP
version: 1
organization:
  name: Audit Co.
  timezone: Asia/Shanghai
  departments:
    - { id: hq, name: Headquarters, head: carol }
    - { id: sales, name: Sales, parent: hq, head: bob }
    - { id: finance, name: Finance, parent: hq, head: erin }
  people:
    - { id: alice, name: Alice, department: sales, roles: [employee] }
    - { id: bob, name: Bob, department: sales, roles: [department_head] }
    - { id: carol, name: Carol, department: hq, roles: [executive] }
    - { id: dave, name: Dave, department: finance, roles: [employee] }
    - { id: erin, name: Erin, department: finance, roles: [department_head] }
    - { id: frank, name: Frank, department: hq, roles: [seal_admin] }
    - { id: grace, name: Grace, department: hq, roles: [auditor] }
  act_as:
    - { os_login: "$me", accounts: all }
seals:
  - id: contract
    name: Contract Seal
    kind: contract
    key: "pkcs11:object=contract-seal;type=private"
    holder: hq
    users: { departments: [sales] }
    approval: none
    mfa: none
  - id: finance
    name: Finance Seal
    kind: finance
    key: "pkcs11:object=finance-seal;type=private"
    holder: finance
    timezone: Europe/Berlin
    users: { departments: [finance, sales] }
    approval: none
    mfa: none
EOP
		storeconf=$(sg_store_conf "$dir")
		cat >"$dir/sealgated.yaml" <<EOC
backend_module: /usr/lib/softhsm/libsofthsm2.so
backend_token: "pkcs11:token=sg-audit"
token_pin_file: $dir/token.pin
socket_path: $dir/sealgated.sock
$storeconf
policy_path: $dir/policy.yaml
token_label: Audit Co.
audit_key: "pkcs11:object=sealgate-audit;type=private"
backend_sessions: 4
EOC
		passwords
	fi
	start
}

store() {
	sed -i "s|^store_path: .*|store_path: $1|" "$dir/sealgated.yaml"
	passwords
}

case $cmd in
up) up ;;
start) start ;;
stop) stop "${3:-TERM}" ;;
store) store "$3" ;;
down) stop TERM; sg_store_down "$dir"; rm -rf "$dir" ;;
*) echo "usage: $0 up|start|stop|store|down DIR" >&2; exit 2 ;;
esac
