#!/bin/sh
# A private pcscd for the card suite, never the system's: its own reader
# configuration (one vpcd virtual reader on a TCP port of our choosing) and
# its own socket. pcscd 1.9.9 always serves /run/pcscd/pcscd.comm, so it runs
# in a private mount namespace where /run/pcscd is DIR/run; clients reach it
# with PCSCLITE_CSOCK_NAME=DIR/run/pcscd.comm (read by libpcsclite). The
# namespace also hides the USB drivers, so it never takes a real reader.
#
#   pcscd.sh start DIR PORT   start it (waits for the socket); prints the
#                             PCSCLITE_CSOCK_NAME value
#   pcscd.sh stop DIR
# exit 77 when no mount namespace can be made here (the caller skips).
set -eu
cmd=$1 dir=$2

start() {
	port=$1
	mkdir -p "$dir/reader.conf.d" "$dir/run" "$dir/drivers"
	dir=$(cd "$dir" && pwd)
	drv=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
	[ -e "$drv" ] || { echo "pcscd.sh: $drv missing (apt-get install vsmartcard-vpcd)" >&2; exit 77; }
	command -v pcscd >/dev/null || { echo "pcscd.sh: pcscd missing" >&2; exit 77; }
	cp "$drv" "$dir/drivers/libifdvpcd.so"
	cat >"$dir/reader.conf.d/vpcd" <<EOC
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:$port
LIBPATH      $dir/drivers/libifdvpcd.so
CHANNELID    $port
EOC
	if [ "$(id -u)" = 0 ]; then ns="unshare --mount --propagation private"
	else ns="unshare --user --map-root-user --mount --propagation private"; fi
	if ! $ns true 2>/dev/null; then
		echo "pcscd.sh: cannot make a mount namespace here" >&2
		exit 77
	fi
	# shellcheck disable=SC2016
	$ns sh -c '
		set -e
		mount -t tmpfs none /usr/lib/pcsc/drivers
		if [ ! -d /run/pcscd ]; then mount -t tmpfs none /run && mkdir /run/pcscd; fi
		mount --bind "$1/run" /run/pcscd
		exec pcscd --foreground --config "$1/reader.conf.d" ' sh "$dir" \
		>"$dir/pcscd.log" 2>&1 &
	echo $! >"$dir/pcscd.pid"
	i=0
	while [ ! -S "$dir/run/pcscd.comm" ]; do
		if ! kill -0 "$(cat "$dir/pcscd.pid")" 2>/dev/null || [ $i -ge 100 ]; then
			echo "pcscd.sh: pcscd did not start:" >&2
			tail -20 "$dir/pcscd.log" >&2
			exit 1
		fi
		sleep 0.1
		i=$((i + 1))
	done
	echo "$dir/run/pcscd.comm"
}

stop() {
	[ -f "$dir/pcscd.pid" ] || return 0
	pid=$(cat "$dir/pcscd.pid")
	kill -TERM "$pid" 2>/dev/null || true
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$dir/pcscd.pid"
}

case $cmd in
start) start "${3:-35963}" ;;
stop) stop ;;
*) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
