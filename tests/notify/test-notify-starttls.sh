#!/usr/bin/env bash
# Email through a relay that requires STARTTLS and a login
# (docs/notifications.md, "Email"): a real aiosmtpd sink with a
# certificate of the test's own CA. With starttls, user, password_file
# (0600) and ca_file the mail arrives over TLS, logged in as the
# configured user; a wrong password is refused by the relay and recorded
# as notice_failed, and the password is in no record and no log line; a
# password file readable by others stops the gateway at start, naming
# the file.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$SEALGATE_SOURCE/tests/integration/lib.sh" notify-tls
py=/usr/bin/python3
$py -c 'import aiosmtpd' 2>/dev/null || { echo "python3-aiosmtpd is not installed"; exit 77; }
sink=$SEALGATE_SOURCE/tests/lib/smtpsink.py
sink_pid=
trap '[ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null; fixture down || true' EXIT

fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
fixture stop
ctl() { "$ctl" --socket "$W/sealgated.sock" "$@"; }
printf 'alice-password\n' >"$W/pw-alice"

# The relay's certificate, for 127.0.0.1, from a CA of the test's own.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=test relay CA" \
	-keyout "$W/ca.key" -out "$W/ca.pem" >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
	-keyout "$W/relay.key" -out "$W/relay.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\n' >"$W/relay.ext"
openssl x509 -req -in "$W/relay.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial -days 2 \
	-extfile "$W/relay.ext" -out "$W/relay.pem" >/dev/null 2>&1
(umask 077; printf 'relay-Pa55word\n' >"$W/relay.pw"; printf 'relay-Pa55word\n' >"$W/smtp.pw")
mkdir -p "$W/sink"
$py "$sink" serve "$W/sink" --starttls "$W/relay.pem" "$W/relay.key" --auth sealgate "$W/relay.pw" \
	>>"$W/sink.log" 2>&1 &
sink_pid=$!
for _ in $(seq 100); do [ -s "$W/sink/port" ] && break; sleep 0.1; done
sport=$(cat "$W/sink/port")

sed -i 's/{ id: bob, name: Bob,/{ id: bob, name: Bob, email: bob@example.test,/' "$W/policy.yaml"
cp "$W/sealgated.yaml" "$W/sealgated.base"
conf() {
	cp "$W/sealgated.base" "$W/sealgated.yaml"
	cat >>"$W/sealgated.yaml" <<EOC
notify:
  web_url: https://seal.example.test
  from: sealgate@example.test
  smtp: { url: "smtp://127.0.0.1:$sport", starttls: true, user: sealgate, password_file: $1 }
  ca_file: $W/ca.pem
  retry_initial: 1
  retry_max: 1
  max_tries: 3
  timeout: 5
  lease: 20
  poll: 1
EOC
}

# ---- STARTTLS and the login ----
conf "$W/smtp.pw"
fixture start
ctl --user alice --password-file "$W/pw-alice" apply --seal approved --amount 1 --reason "over TLS" \
	>"$W/apply1.out" 2>&1 || { fail "alice applies"; cat "$W/apply1.out"; }
link=$($py "$sink" wait "$W/sink" bob@example.test 60) || link=
[ "$link" = "https://seal.example.test/#/applications/1" ] && pass "bob's mail arrives through the relay" ||
	{ fail "bob's mail: '$link'"; tail -5 "$W/sealgated.log"; }
env=$($py "$sink" show "$W/sink" bob@example.test | $py -c 'import json,sys; e=json.load(sys.stdin)["envelope"]; print(e["tls"], e["login"])' || true)
[ "$env" = "True sealgate" ] && pass "over STARTTLS, logged in as the configured user" || fail "the session: $env"
fixture stop

# ---- a wrong password ----
(umask 077; printf 'not-the-password\n' >"$W/wrong.pw")
conf "$W/wrong.pw"
fixture start
ctl --user alice --password-file "$W/pw-alice" apply --seal approved --amount 2 --reason "wrong password" \
	>"$W/apply2.out" 2>&1 || { fail "alice applies (2)"; cat "$W/apply2.out"; }
n=0
for _ in $(seq 300); do
	n=$(store_sql "SELECT count(*) FROM audit WHERE action = 'notice_failed' AND application = 2 AND reason LIKE 'SMTP relay: %' AND detail LIKE '%\"final\":true%'")
	[ "$n" = 1 ] && break
	sleep 0.1
done
[ "$n" = 1 ] && pass "a wrong password: the relay refuses, notice_failed, final after max_tries" ||
	fail "notice_failed for #2: $n: $(store_sql "SELECT reason, detail FROM audit WHERE action = 'notice_failed'")"
[ -s "$W/sink/auth-refused" ] && pass "(the relay saw the wrong login)" || fail "the relay saw no refused login"
n=$(store_sql "SELECT count(*) FROM audit WHERE detail LIKE '%Pa55word%' OR reason LIKE '%Pa55word%' OR detail LIKE '%not-the-password%' OR reason LIKE '%not-the-password%'")
[ "$n" = 0 ] && pass "no record holds a password" || fail "records with a password: $n"
fixture stop
if grep -q -e "Pa55word" -e "not-the-password" "$W/sealgated.log"; then fail "the log holds a password"
else pass "the log holds no password"; fi

# ---- a password file others may read ----
chmod 0644 "$W/smtp.pw"
conf "$W/smtp.pw"
rc=0
"$gw" --config "$W/sealgated.yaml" --foreground >"$W/start.out" 2>&1 &
gpid=$!
for _ in $(seq 100); do kill -0 "$gpid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$gpid" 2>/dev/null; then
	kill "$gpid"; wait "$gpid" || true
	fail "the gateway started with a password file others may read"
else
	wait "$gpid" || rc=$?
	[ $rc != 0 ] && grep -q "notify: smtp password_file $W/smtp.pw must be a regular file of the gateway's user" "$W/start.out" &&
		grep -qv "Pa55word" "$W/start.out" &&
		pass "a password file others may read: the gateway does not start, naming the file" ||
		fail "start with a 0644 password file: rc $rc: $(cat "$W/start.out")"
fi
finish
