#!/bin/sh
# Fixture of the authentication tests: a SoftHSM2 token with one seal key
# per second-factor mode, a policy using them, passwords and TOTP secrets
# (base32 in DIR/totp-USER.b32 for the tests to compute codes), and a real
# sealgated with a TEST clock (DIR/clock, Unix seconds; config test_clock).
#
#   fixture.sh up DIR | start DIR | stop DIR [SIGNAL] | down DIR
# env: SEALGATE_BUILD, SEALGATE_SOURCE.
set -eu
cmd=$1 dir=$2
build=${SEALGATE_BUILD:?SEALGATE_BUILD not set}
src=${SEALGATE_SOURCE:?SEALGATE_SOURCE not set}
gw=${SEALGATE_GATEWAY:-$build/gateway/sealgated}
# shellcheck source=tests/lib/gateway.sh
. "$src/tests/lib/gateway.sh"

start() { sg_gw_start "$dir" SEALGATE_TEST_CLOCK="$dir/clock" SOFTHSM2_CONF="$dir/softhsm2.conf"; }

stop() { sg_gw_stop "$dir" "${1:-TERM}"; }

up() {
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	SG_ORG="Auth Co." sh "$src/tests/backend/mktoken.sh" "$dir" sg-auth 1234 \
		login-seal:11:rsa:2048 persig-seal:12:rsa:2048 oob-seal:13:rsa:2048 \
		confirm-seal:14:EC:prime256v1 open-seal:15:EC:prime256v1 \
		quota-seal:16:EC:prime256v1 >/dev/null
	(umask 077; printf '1234\n' >"$dir/token.pin")
	me=$(id -un)
	cat >"$dir/policy.yaml" <<EOP
version: 1
organization:
  name: Auth Co.
  timezone: UTC
  departments:
    - { id: hq, name: Headquarters, head: bob }
  people:
    - { id: alice, name: Alice, department: hq, roles: [employee] }
    - { id: paul, name: Paul, department: hq, roles: [employee] }
    - { id: olga, name: Olga, department: hq, roles: [employee] }
    - { id: lena, name: Lena, department: hq, roles: [employee], os_logins: ["$me"] }
    - { id: nora, name: Nora, department: hq, roles: [employee] }
    - { id: bob, name: Bob, department: hq, roles: [department_head] }
    - { id: frank, name: Frank, department: hq, roles: [seal_admin] }
  act_as:
    - { os_login: "$me", accounts: [alice, paul, olga, nora, bob, frank] }
    - { os_login: nobody, accounts: [lena] }
seals:
  - id: login
    name: Login Seal
    key: "pkcs11:object=login-seal;type=private"
    users: { people: [alice, lena, nora] }
    approval: none
    mfa: login
  - id: persig
    name: Per-Signature Seal
    key: "pkcs11:object=persig-seal;type=private"
    users: { people: [paul] }
    approval: none
    mfa: per_signature
  - id: quota
    name: Quota Seal
    key: "pkcs11:object=quota-seal;type=private"
    users: { people: [paul] }
    quotas: { per_person_per_day: 1 }
    approval: none
    mfa: per_signature
  - id: oob
    name: Out-of-Band Seal
    key: "pkcs11:object=oob-seal;type=private"
    users: { people: [olga] }
    approval: none
    mfa: out_of_band
  - id: confirm
    name: Confirmed Seal
    key: "pkcs11:object=confirm-seal;type=private"
    users: { people: [olga] }
    approval: none
    mfa: out_of_band_confirm
  - id: confirm1
    name: Once A Day Seal
    key: "pkcs11:object=confirm-seal;type=private"
    users: { people: [olga] }
    approval: none
    quotas: { per_day: 1 }
    mfa: out_of_band_confirm
  - id: open
    name: Open Seal
    key: "pkcs11:object=open-seal;type=private"
    users: { people: [alice, nora] }
    approval:
      rules:
        - levels:
            - { head_of: applicant }
    mfa: none
EOP
	storeconf=$(sg_store_conf "$dir")
	cat >"$dir/sealgated.yaml" <<EOC
backend_module: /usr/lib/softhsm/libsofthsm2.so
backend_token: "pkcs11:token=sg-auth"
token_pin_file: $dir/token.pin
socket_path: $dir/sealgated.sock
$storeconf
policy_path: $dir/policy.yaml
token_label: Auth Co.
backend_sessions: 4
confirm_timeout: 8
signing_window: 300
password_hash_concurrency: 2
test_clock: true
EOC
	echo 1700000000 >"$dir/clock"
	for u in alice paul olga lena nora bob frank; do
		printf '%s-password\n' "$u" | "$gw" --config "$dir/sealgated.yaml" \
			--set-password "$u" --password-file -
	done
	start
	# Everyone but nora gets a TOTP secret (nora: password only).
	for u in alice paul olga lena bob frank; do
		(umask 077; base32 </dev/urandom 2>/dev/null | tr -dc 'A-Z2-7' | head -c 32 >"$dir/totp-$u.b32")
		code=$(oathtool --totp -b --now "@$(cat "$dir/clock")" "$(cat "$dir/totp-$u.b32")")
		printf '%s-password\n' "$u" >"$dir/pw"
		"$build/tools/sealctl" --socket "$dir/sealgated.sock" --user "$u" --password-file "$dir/pw" \
			user totp-enroll --secret-file "$dir/totp-$u.b32" --code "$code" >/dev/null
	done
	rm -f "$dir/pw"
}

case $cmd in
up) up ;;
start) start ;;
stop) stop "${3:-TERM}" ;;
down) stop TERM; sg_store_down "$dir"; rm -rf "$dir" ;;
*) echo "usage: $0 up|start|stop|down DIR" >&2; exit 2 ;;
esac
