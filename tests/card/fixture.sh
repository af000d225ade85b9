#!/bin/sh
# Card fixture: a private pcscd with a vpcd reader (pcscd.sh), two virtual
# CAC cards made by mkcard.sh — card "a" holds the seal, card "b" looks the
# same (same token label) but has its own key and certificate — and a real
# sealgated whose backend is OpenSC's PKCS#11 module, with one seal on card a.
#
#   fixture.sh up DIR            create everything, insert card a, start the gateway
#   fixture.sh insert DIR a|b    put a card in the reader (vpcd-bridge); waits
#                                until pcscd sees it
#   fixture.sh pull DIR          take the card out (stops the bridge)
#   fixture.sh tries DIR a|b N   set a card's PIN try counter (card out)
#   fixture.sh start DIR | stop DIR [SIGNAL]   the gateway
#   fixture.sh down DIR          stop everything and remove DIR
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE, SG_TEST_STORE (pg: the gateway's
# store on a PostgreSQL cluster of DIR's own, stopped by down). DIR/env
# holds PCSCLITE_CSOCK_NAME. Exits 77 when the smartcard stack (or, with
# SG_TEST_STORE=pg, PostgreSQL) is not installed.
set -eu
cmd=$1 dir=$2
build=${SEALGATE_BUILD:?SEALGATE_BUILD not set}
src=${SEALGATE_SOURCE:?SEALGATE_SOURCE not set}
here=$src/tests/card
gw=${SEALGATE_GATEWAY:-$build/gateway/sealgated}
# shellcheck source=tests/lib/gateway.sh
. "$src/tests/lib/gateway.sh"
bridge=$build/tests/card/vpcd-bridge
PIN=4711abcd

for m in /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so /usr/lib/opensc-pkcs11.so \
         /usr/lib64/opensc-pkcs11.so; do
	[ -e "$m" ] && { opensc=$m; break; }
done

load_env() {
	[ -f "$dir/env" ] && . "$dir/env"
	export PCSCLITE_CSOCK_NAME
}

reader_has_card() {
	opensc-tool --list-readers 2>/dev/null | grep -q "^0 *Yes"
}

insert() {
	card=$1
	load_env
	pull
	tries=$(cat "$dir/card-$card/tries" 2>/dev/null || echo 3)
	"$bridge" --db "$dir/card-$card/nssdb" $(sed 's/^/--cert /' "$dir/card-$card/certs") \
		--port "$(cat "$dir/port")" --tries "$tries" --state "$dir/card-$card/tries" \
		>"$dir/bridge.log" 2>&1 &
	echo $! >"$dir/bridge.pid"
	echo "$card" >"$dir/card-in"
	i=0
	until reader_has_card; do
		[ $i -lt 100 ] || { echo "fixture: card $card not seen by pcscd" >&2; cat "$dir/bridge.log" >&2; exit 1; }
		kill -0 "$(cat "$dir/bridge.pid")" 2>/dev/null || { cat "$dir/bridge.log" >&2; exit 1; }
		sleep 0.1
		i=$((i + 1))
	done
}

pull() {
	[ -f "$dir/bridge.pid" ] || return 0
	pid=$(cat "$dir/bridge.pid")
	kill -TERM "$pid" 2>/dev/null || true
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	rm -f "$dir/bridge.pid" "$dir/card-in"
}

start() {
	load_env
	sg_gw_start "$dir"
}

stop() { sg_gw_stop "$dir" "${1:-TERM}"; }

up() {
	for t in pcscd opensc-tool certutil openssl unshare; do
		command -v $t >/dev/null || { echo "fixture: $t not installed" >&2; exit 77; }
	done
	[ -n "${opensc:-}" ] || { echo "fixture: opensc-pkcs11.so not installed" >&2; exit 77; }
	[ -x "$bridge" ] || { echo "fixture: $bridge not built (libcacard-dev missing?)" >&2; exit 77; }
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	# vpcd listens on PORT and PORT+1 (its two readers).
	echo $((30000 + ($$ % 15000) * 2)) >"$dir/port"
	sock=$(sh "$here/pcscd.sh" start "$dir/pcscd" "$(cat "$dir/port")") || exit $?
	echo "PCSCLITE_CSOCK_NAME=$sock" >"$dir/env"
	# Card b: same label (first certificate's CN) as card a, other key.
	sh "$here/mkcard.sh" "$dir/card-a" "$PIN" seal-a:2048 seal-a2:3072 >/dev/null
	SG_CA_DIR=$dir/card-a sh "$here/mkcard.sh" "$dir/card-b" "$PIN" seal-a:2048 >/dev/null
	(umask 077; printf '%s\n' "$PIN" >"$dir/card.pin")
	# The store: SQLite's file, or with SG_TEST_STORE=pg a cluster of the
	# fixture's own (tests/lib/gateway.sh; 77 without PostgreSQL).
	store=$(sg_store_conf "$dir") || exit $?
	me=$(id -un)
	cat >"$dir/policy.yaml" <<EOP
version: 1
organization:
  name: Card Co.
  timezone: UTC
  departments:
    - { id: hq, name: Headquarters, head: carol }
  people:
    - { id: alice, name: Alice, department: hq, roles: [employee] }
    - { id: carol, name: Carol, department: hq, roles: [executive] }
  act_as:
    - { os_login: "$me", accounts: all }
seals:
  - id: official
    name: Official Seal
    kind: official
    mfa: none
    key: "pkcs11:id=%00%01;type=private"
    holder: hq
    users: { people: [alice] }
    approval: none
  - id: contract
    name: Contract Seal
    kind: contract
    mfa: none
    key: "pkcs11:id=%00%02;type=private"
    holder: hq
    users: { people: [alice] }
    approval: none
EOP
	cat >"$dir/sealgated.yaml" <<EOC
backend_module: $opensc
backend_token: "pkcs11:token=seal-a"
token_pin_file: $dir/card.pin
socket_path: $dir/sealgated.sock
$store
policy_path: $dir/policy.yaml
token_label: Card Co.
backend_sessions: 2
card_watch: on
EOC
	for u in alice carol; do
		printf '%s-password\n' "$u" | "$gw" --config "$dir/sealgated.yaml" \
			--set-password "$u" --password-file - >/dev/null
	done
	insert a
	start
}

down() {
	rc=0
	stop TERM
	pull
	sh "$here/pcscd.sh" stop "$dir/pcscd" || true
	sg_store_down "$dir" || { echo "fixture: the PostgreSQL cluster is still running" >&2; rc=1; }
	rm -rf "$dir"
	return $rc
}

case $cmd in
up) up ;;
insert) insert "$3" ;;
pull) pull ;;
tries) echo "$4" >"$dir/card-$3/tries" ;;
start) start ;;
stop) stop "${3:-TERM}" ;;
down) down ;;
*) echo "usage: $0 up|insert|pull|tries|start|stop|down DIR ..." >&2; exit 2 ;;
esac
