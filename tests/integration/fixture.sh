#!/bin/sh
# Integration fixture: a real SoftHSM2 token with an RSA, an EC and an
# Ed25519 seal key, a small policy, passwords, and a real sealgated.
#
#   fixture.sh up DIR       create everything (once) and start the gateway
#   fixture.sh start DIR    start the gateway (waits until it answers)
#   fixture.sh stop DIR [SIGNAL]   stop it (default TERM; KILL for a crash)
#   fixture.sh retoken DIR  the token made anew: same label and keys' names,
#                           new serial, new keys and certificates
#   fixture.sh down DIR     stop and remove DIR
#
# env: SEALGATE_BUILD (build dir), SEALGATE_SOURCE (source dir).
set -eu
cmd=$1 dir=$2
build=${SEALGATE_BUILD:?SEALGATE_BUILD not set}
src=${SEALGATE_SOURCE:?SEALGATE_SOURCE not set}
gw=${SEALGATE_GATEWAY:-$build/gateway/sealgated}
# shellcheck source=tests/lib/gateway.sh
. "$src/tests/lib/gateway.sh"

make_token() {
	SG_ORG="Integration Co." sh "$src/tests/backend/mktoken.sh" "$dir" sg-it 1234 \
		contract-seal:01:rsa:2048 finance-seal:03:EC:prime256v1 \
		ed-seal:05:EC:edwards25519 workflow-seal:07:rsa:2048 \
		quota-seal:08:EC:prime256v1 >/dev/null
}

# SG_GATEWAY_ARGS: more arguments for sealgated (e.g. --rebind).
start() { sg_gw_start "$dir" SEALGATE_TEST_CLOCK="$dir/clock" SOFTHSM2_CONF="$dir/softhsm2.conf"; }

stop() { sg_gw_stop "$dir" "${1:-TERM}"; }

up() {
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [ ! -f "$dir/sealgated.yaml" ]; then
		make_token
		(umask 077; printf '1234\n' >"$dir/token.pin")
		me=$(id -un)
		cat >"$dir/policy.yaml" <<EOP
version: 1
organization:
  name: Integration Co.
  timezone: UTC
  departments:
    - { id: hq, name: Headquarters, head: carol }
    - { id: sales, name: Sales, parent: hq, head: bob }
    - { id: finance, name: Finance, parent: hq }
  people:
    - { id: alice, name: Alice, department: sales, roles: [employee] }
    - { id: bob, name: Bob, department: sales, roles: [department_head] }
    - { id: carol, name: Carol, department: hq, roles: [executive] }
    - { id: dave, name: Dave, department: finance, roles: [employee] }
    - { id: frank, name: Frank, department: hq, roles: [seal_admin] }
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
    users: { departments: [finance] }
    approval: none
    mfa: none
  - id: ed
    name: Ed Seal
    kind: official
    key: "pkcs11:object=ed-seal;type=private"
    holder: hq
    users: { people: [alice] }
    approval: none
    mfa: none
  - id: approved
    name: Approved Seal
    kind: contract
    key: "pkcs11:object=workflow-seal;type=private"
    holder: hq
    users: { departments: [sales] }
    approval:
      rules:
        - when: { amount_over: 1000000 }
          levels:
            - { head_of: applicant }
            - { role: executive }
        - levels:
            - { head_of: applicant }
    mfa: none
  - id: quota
    name: Quota Seal
    kind: invoice
    key: "pkcs11:object=quota-seal;type=private"
    holder: finance
    users: { people: [dave] }
    quotas: { per_day: 100 }
    approval: none
    mfa: none
EOP
		storeconf=$(sg_store_conf "$dir")
		cat >"$dir/sealgated.yaml" <<EOC
backend_module: /usr/lib/softhsm/libsofthsm2.so
backend_token: "pkcs11:token=sg-it"
token_pin_file: $dir/token.pin
socket_path: $dir/sealgated.sock
$storeconf
policy_path: $dir/policy.yaml
token_label: Integration Co.
backend_sessions: 4
test_clock: true
EOC
		# The gateway's TOTP clock (tests only): a fixed time the tests move on.
		echo 1700000000 >"$dir/clock"
		for u in alice bob carol dave frank; do
			printf '%s-password\n' "$u" | "$gw" --config "$dir/sealgated.yaml" \
				--set-password "$u" --password-file -
		done
		start
		# Approving needs password + code: bob and carol get TOTP secrets
		# (tests/integration/test_workflow.c computes their codes).
		for u in bob carol; do
			(umask 077; base32 </dev/urandom 2>/dev/null | tr -dc 'A-Z2-7' | head -c 32 >"$dir/totp-$u.b32")
			code=$(oathtool --totp -b --now "@$(cat "$dir/clock")" "$(cat "$dir/totp-$u.b32")")
			printf '%s-password\n' "$u" >"$dir/pw-$u"
			"$build/tools/sealctl" --socket "$dir/sealgated.sock" --user "$u" \
				--password-file "$dir/pw-$u" user totp-enroll \
				--secret-file "$dir/totp-$u.b32" --code "$code" >/dev/null
			rm -f "$dir/pw-$u"
		done
		return 0
	fi
	start
}

case $cmd in
up) up ;;
start) start ;;
stop) stop "${3:-TERM}" ;;
down) stop TERM; sg_store_down "$dir"; rm -rf "$dir" ;;
retoken) rm -rf "$dir/tokens"; make_token ;;
*) echo "usage: $0 up|start|stop|retoken|down DIR" >&2; exit 2 ;;
esac
