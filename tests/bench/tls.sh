#!/bin/sh
# The TLS row of docs/performance.md, sourced by tests/bench/run.sh once the
# bench fixture's gateway runs in $dir: the gateway gets its TLS front on
# loopback (a site CA and gateway certificate of the run's own, the device
# CA's key on the token), one desktop enrolls for bench and a seal admin
# approves it, then sealbench signs through the same module over the Unix
# socket and over TLS, run for run alternately and in turn first, into
# $out/tls.tsv. Namespaces are left out: on one machine a veth pair adds
# only the kernel's forwarding, and the comparison is the transport's.
# Needs: openssl, oathtool (the admin's code). Sets status=1 on a failure.

# The TLS front and the enrolled desktop, on the fixture's gateway in $dir
# (restarted with the TLS listeners): sets t, port, conf and gwpid; also
# used by count-tls.sh. Returns non-zero (and sets status=1) on a failure.
tls_setup() {
	t=$dir/tls
	mkdir -p "$t" && chmod 700 "$t"
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	eport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-subj "/CN=Bench Site CA" -keyout "$t/site-ca.key" -out "$t/site-ca.pem" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null &&
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
		-keyout "$t/gateway.key" -out "$t/gateway.csr" 2>/dev/null &&
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$t/gw.ext" &&
	openssl x509 -req -in "$t/gateway.csr" -CA "$t/site-ca.pem" -CAkey "$t/site-ca.key" \
		-CAcreateserial -days 30 -extfile "$t/gw.ext" -out "$t/gateway.pem" 2>/dev/null &&
	chmod 600 "$t/gateway.key" || { log "TLS: certificates could not be made"; status=1; return 1; }
	sh "$here/fixture.sh" stop "$dir"
	cp "$dir/sealgated.yaml" "$dir/sealgated.yaml.unix"
	cat >>"$dir/sealgated.yaml" <<EOC
tls_listen: "127.0.0.1:$port"
tls_enroll_listen: "127.0.0.1:$eport"
tls_cert: $t/gateway.pem
tls_key: $t/gateway.key
tls_device_ca: $t/device-ca.pem
tls_device_ca_token_label: "bench device CA"
tls_devices: $t/devices
tls_connections_per_device: 16
EOC
	sh "$here/fixture.sh" start "$dir" || { status=1; return 1; }
	gwpid=$(cat "$dir/sealgated.pid")
	# The seal admin's second factor, then the desktop's request, approval
	# and collection (sealctl device enroll, as a desktop does it).
	(umask 077; python3 -c 'import base64, os; print(base64.b32encode(os.urandom(20)).decode(), end="")' >"$t/admin.b32")
	"$build/tools/sealctl" --socket "$dir/sealgated.sock" --user admin --password-file "$dir/pw-admin" \
		user totp-enroll --secret-file "$t/admin.b32" --code "$(oathtool --totp -b "$(cat "$t/admin.b32")")" >/dev/null ||
		{ log "TLS: the admin's second factor could not be set"; status=1; return 1; }
	# (exit 3 while the request waits for the admin)
	HOME=$t/desk XDG_CONFIG_HOME=$t/desk/config "$build/tools/sealctl" device enroll \
		--gateway "tls://127.0.0.1:$port" --enroll "tls://127.0.0.1:$eport" --ca "$t/site-ca.pem" --person bench >/dev/null 2>&1 || true
	# (a code of the next step: the enrollment's is spent)
	SEALGATE_CODE=$(oathtool --totp -b --now "$(date -u -d '+30 seconds' '+%Y-%m-%d %H:%M:%S UTC')" "$(cat "$t/admin.b32")") \
		"$build/tools/sealctl" --socket "$dir/sealgated.sock" --user admin --password-file "$dir/pw-admin" \
		device approve 1 >/dev/null &&
	HOME=$t/desk XDG_CONFIG_HOME=$t/desk/config "$build/tools/sealctl" device enroll \
		--gateway "tls://127.0.0.1:$port" --enroll "tls://127.0.0.1:$eport" --ca "$t/site-ca.pem" --person bench >/dev/null ||
		{ log "TLS: the bench desktop could not enroll"; tail -5 "$dir/sealgated.log" >&2; status=1; return 1; }
	conf=$t/desk/config/sealgate/sealgate.conf
}

tls_bench() {
	tls_setup || return 0
	tls_run() { # unix|tls MECH THREADS OPS [TSV]
		if [ "$1" = unix ]; then
			SEALGATE_SOCKET=$dir/sealgated.sock "$sealbench" -q -m "$2" -t "$3" -n "$4" -r 1 \
				-o "${5:-$out/tls.tsv}" "unix=$module,pin=bench-password,cpu-pid=$gwpid" >/dev/null || status=1
		else
			env -u SEALGATE_SOCKET -u SEALGATE_USER SEALGATE_CONF="$conf" "$sealbench" -q -m "$2" -t "$3" \
				-n "$4" -r 1 -o "${5:-$out/tls.tsv}" "tls=$module,pin=bench-password,cpu-pid=$gwpid" \
				>/dev/null || status=1
		fi
	}
	log "warm-up (not counted): 8 threads × $ec_ops P-256 signatures on each transport"
	tls_run unix ec 8 "$ec_ops" "$dir/tls-warmup.tsv"
	tls_run tls ec 8 "$ec_ops" "$dir/tls-warmup.tsv"
	log "Unix socket against TLS on loopback: $tls_rounds runs each of P-256 (threads 1, 8) and RSA-2048 (threads 8)"
	i=0
	while [ $i -lt "$tls_rounds" ]; do
		if [ $((i % 2)) = 0 ]; then a=unix b=tls; else a=tls b=unix; fi
		for m in "ec 1 $ec_ops" "ec 8 $ec_ops" "rsa 8 $rsa_ops"; do
			# shellcheck disable=SC2086
			tls_run $a $m
			# shellcheck disable=SC2086
			tls_run $b $m
		done
		i=$((i + 1))
	done
	n=$(sqlite3 "file:$dir/sealgate.db?mode=ro" "SELECT count(*) FROM audit WHERE action = 'sign' AND outcome = 'ok' AND exe LIKE 'device 1 sha256:%'" 2>/dev/null || echo '?')
	echo "tls_signatures_recorded	$n" >>"$out/tls-misc.tsv"
	sh "$here/fixture.sh" stop "$dir"
	cp "$dir/sealgated.yaml.unix" "$dir/sealgated.yaml"
	sh "$here/fixture.sh" start "$dir" || status=1
	gwpid=$(cat "$dir/sealgated.pid")
}
