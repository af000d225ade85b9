#!/usr/bin/env bash
# Notifications from a real gateway (docs/notifications.md): a real SMTP
# sink (aiosmtpd, tests/lib/smtpsink.py) and a real HTTP receiver
# (hookrecv.py) on free ports of 127.0.0.1.
#  - alice applies: bob (the head of her department) gets a mail with the
#    link <web_url>/#/applications/1, a Message-ID, the seal's name in an
#    RFC 2047 subject; the department's DingTalk (signed), WeCom and
#    Feishu (signed) robots and a plain webhook get their bodies, checked
#    field by field, the signatures recomputed, the reason's Markdown inert.
#  - bob approves: alice's mail says it is authorized, with the link.
#  - the plain webhook answering 500 then 200: notice_failed with a retry,
#    then notice_sent.
#  - carol (level 2) has no address: notice_failed, final, no retry.
#  - the sink down: notice_failed records; back up: the mail arrives.
#  - the gateway killed (SIGKILL) with a notice pending: after the restart
#    it is sent, and no notice is sent twice.
#  - no record and no log line holds a webhook's token or signing secret.
#
# env: SEALGATE_BUILD, SEALGATE_SOURCE
set -euo pipefail
. "$SEALGATE_SOURCE/tests/integration/lib.sh" notify
py=/usr/bin/python3
$py -c 'import aiosmtpd' 2>/dev/null || { echo "python3-aiosmtpd is not installed"; exit 77; }
sink=$SEALGATE_SOURCE/tests/lib/smtpsink.py
hook=$SEALGATE_SOURCE/tests/notify/hookrecv.py
pids=()
cleanup_helpers() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap 'cleanup_helpers; fixture down || true' EXIT

fixture up >"$W/fixture.out" 2>&1 || { cat "$W/fixture.out"; exit 1; }
fixture stop
sock=$W/sealgated.sock
ctl() { "$ctl" --socket "$sock" "$@"; }
printf 'alice-password\n' >"$W/pw-alice"
printf 'bob-password\n' >"$W/pw-bob"
code() {
	echo $(($(cat "$W/clock") + 30)) >"$W/clock"
	oathtool --totp -b --now "@$(cat "$W/clock")" "$(cat "$W/totp-$1.b32")"
}
wait_file() { for _ in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }
start_sink() {
	rm -f "$W/sink/port"
	mkdir -p "$W/sink"
	$py "$sink" serve "$W/sink" ${1:+--port "$1"} >>"$W/sink.log" 2>&1 &
	sink_pid=$!
	pids+=("$sink_pid")
	wait_file "$W/sink/port" || { echo "the SMTP sink did not start"; cat "$W/sink.log"; exit 1; }
}
stop_sink() { kill "$sink_pid"; wait "$sink_pid" 2>/dev/null || true; }
# Polls a query until it gives want (60 s), then prints what it gives.
until_sql() {
	local got
	for _ in $(seq 600); do
		got=$(store_sql "$1")
		[ "$got" = "$2" ] && { echo "$got"; return 0; }
		sleep 0.1
	done
	echo "$got"
	return 1
}

start_sink
sport=$(cat "$W/sink/port")
mkdir -p "$W/hooks"
$py "$hook" serve "$W/hooks" >>"$W/hooks.log" 2>&1 &
pids+=("$!")
wait_file "$W/hooks/port" || { echo "the webhook receiver did not start"; exit 1; }
hport=$(cat "$W/hooks/port")

# Addresses for alice and bob (carol has none); the seal's name in Chinese.
sed -i -e 's/{ id: alice, name: Alice,/{ id: alice, name: Alice, email: alice@example.test,/' \
	-e 's/{ id: bob, name: Bob,/{ id: bob, name: Bob, email: bob@example.test,/' \
	-e 's/name: Approved Seal$/name: 审批专用章/' "$W/policy.yaml"
(umask 077
printf 'SECding-0123456789\n' >"$W/ding.secret"
printf 'feishu-secret-abc\n' >"$W/feishu.secret"
printf 'http://127.0.0.1:%s/feishu/hook/FEISHU-TOKEN-42\n' "$hport" >"$W/feishu.url")
cat >>"$W/sealgated.yaml" <<EOC
notify:
  web_url: https://seal.example.test/
  from: "Sealgate <sealgate@example.test>"
  smtp: { url: "smtp://127.0.0.1:$sport" }
  retry_initial: 1
  retry_max: 2
  max_tries: 100
  timeout: 5
  lease: 20
  poll: 1
  webhooks:
    - { name: sales-ding, department: sales, format: dingtalk, url: "http://127.0.0.1:$hport/dingtalk/robot/send?access_token=DING-TOKEN-77", secret_file: ding.secret }
    - { name: sales-wecom, department: sales, format: wecom, url: "http://127.0.0.1:$hport/wecom/send?key=WECOM-KEY-55" }
    - { name: sales-feishu, department: sales, format: feishu, url_file: feishu.url, secret_file: feishu.secret }
    - { name: all-plain, format: plain, url: "http://127.0.0.1:$hport/plain" }
EOC
fixture start

# ---- 1. alice applies: bob's mail, the robots' bodies ----
ctl --user alice --password-file "$W/pw-alice" apply --seal approved --amount 10 \
	--reason '合同 [click](http://evil.example) **now**' >"$W/apply1.out" 2>&1 ||
	{ fail "alice applies"; cat "$W/apply1.out"; }
link=$($py "$sink" wait "$W/sink" bob@example.test 60) || link=
[ "$link" = "https://seal.example.test/#/applications/1" ] && pass "bob's mail links to application 1" ||
	{ fail "bob's mail: link '$link'"; tail -20 "$W/sealgated.log"; }
$py "$sink" show "$W/sink" bob@example.test >"$W/mail1.json" || true
$py - "$W/mail1.json" <<'EOP' && pass "the mail: From, To, a Message-ID, an RFC 2047 subject with the seal's name, the reason, UTF-8" || fail "the mail's fields: $(cat "$W/mail1.json")"
import json, sys
m = json.load(open(sys.argv[1]))
h = m["headers"]
assert m["envelope"]["from"] == "sealgate@example.test", m["envelope"]
assert m["envelope"]["to"] == ["bob@example.test"], m["envelope"]
assert h["From"] == "Sealgate <sealgate@example.test>", h
assert h["To"] == "<bob@example.test>" or h["To"] == "bob@example.test", h
assert h["Message-ID"].startswith("<notice-") and h["Message-ID"].endswith("@example.test>"), h
assert m["raw_subject"].startswith("=?UTF-8?B?"), m["raw_subject"]
assert m["subject"] == "Application #1 for the 审批专用章 waits for your approval", m["subject"]
assert "text/plain; charset=UTF-8" in h["Content-Type"] or "text/plain; charset=\"utf-8\"" in h["Content-Type"].lower(), h
b = m["body"]
assert "Alice (sales) applies to use the 审批专用章." in b, b
assert "Reason: 合同 [click](http://evil.example) **now**" in b, b
assert "Amount: 10" in b and "Approvers: Bob" in b, b
assert "https://seal.example.test/#/applications/1" in b, b
EOP
until_sql "SELECT count(*) FROM audit WHERE action = 'notice_sent' AND application = 1" 5 >/dev/null &&
	pass "five notice_sent records for application 1 (mail + four webhooks)" ||
	fail "notice_sent of #1: $(store_sql "SELECT action, reason, detail FROM audit WHERE action LIKE 'notice_%'")"
$py - "$W/hooks/req" "$W/ding.secret" "$W/feishu.secret" <<'EOP' && pass "the robots' bodies field by field, both signatures recomputed, Markdown inert" || fail "webhook bodies"
import base64, glob, hashlib, hmac, json, sys, time
reqs = [json.load(open(f)) for f in sorted(glob.glob(sys.argv[1] + "/*.json"), key=lambda f: int(f.split("/")[-1][:-5]))]
ding_secret = open(sys.argv[2]).read().strip()
fs_secret = open(sys.argv[3]).read().strip()
link = "https://seal.example.test/#/applications/1"
by = {}
for r in reqs:
    by.setdefault(r["path"].split("/")[1], []).append(r)
assert sorted(by) == ["dingtalk", "feishu", "plain", "wecom"], sorted(by)
for k, v in by.items():
    assert len(v) == 1, (k, len(v))
    assert v[0]["headers"]["Content-Type"].startswith("application/json"), v[0]["headers"]
# DingTalk: markdown, the token kept, timestamp (ms) and its signature.
d = by["dingtalk"][0]
b = json.loads(d["body"])
assert b["msgtype"] == "markdown", b
assert b["markdown"]["title"] == "Application #1 for the 审批专用章 waits for approval", b
t = b["markdown"]["text"]
assert "(%s)" % link in t and "[Open the application]" in t, t
assert "[click](http" not in t and "**now**" not in t and "［click］（http://evil.example）" in t, t
assert d["query"]["access_token"] == ["DING-TOKEN-77"], d["query"]
ts = d["query"]["timestamp"][0]
assert abs(int(ts) / 1000 - time.time()) < 3600, ts
want = base64.b64encode(hmac.new(ding_secret.encode(), (ts + "\n" + ding_secret).encode(), hashlib.sha256).digest()).decode()
assert d["query"]["sign"] == [want], (d["query"]["sign"], want)
# WeCom: markdown content.
b = json.loads(by["wecom"][0]["body"])
assert b["msgtype"] == "markdown" and set(b) == {"msgtype", "markdown"}, b
assert "(%s)" % link in b["markdown"]["content"] and "Level**: 1 of 1" in b["markdown"]["content"], b
assert by["wecom"][0]["query"]["key"] == ["WECOM-KEY-55"]
# Feishu: text, timestamp (s) and sign in the body.
f = by["feishu"][0]
assert f["path"] == "/feishu/hook/FEISHU-TOKEN-42", f["path"]
b = json.loads(f["body"])
assert b["msg_type"] == "text", b
assert b["content"]["text"].startswith("Application #1 for the 审批专用章 waits for approval\n"), b
assert link in b["content"]["text"], b
want = base64.b64encode(hmac.new((b["timestamp"] + "\n" + fs_secret).encode(), b"", hashlib.sha256).digest()).decode()
assert b["sign"] == want, (b["sign"], want)
# Plain: sealgate's JSON.
b = json.loads(by["plain"][0]["body"])
assert b["event"] == "app_waiting" and b["link"] == link and b["recipient"] == "bob", b
assert b["detail"]["application"] == 1 and b["detail"]["applicant"] == "alice", b
assert b["detail"]["seal"] == "approved" and b["detail"]["amount"] == 10, b
assert b["detail"]["approvers"] == ["Bob"] and b["detail"]["level"] == 1, b
EOP

# ---- 2. bob approves: alice is told ----
SEALGATE_CODE=$(code bob) ctl --user bob --password-file "$W/pw-bob" approve 1 --comment "好的" \
	>"$W/approve1.out" 2>&1 </dev/null || { fail "bob approves"; cat "$W/approve1.out"; }
link=$($py "$sink" wait "$W/sink" alice@example.test 60) || link=
[ "$link" = "https://seal.example.test/#/applications/1" ] && pass "alice's mail links to application 1" ||
	fail "alice's mail: link '$link'"
$py "$sink" show "$W/sink" alice@example.test >"$W/mail2.json" || true
$py - "$W/mail2.json" <<'EOP' && pass "alice's mail says it is authorized by bob, with his comment" || fail "alice's mail: $(cat "$W/mail2.json")"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["subject"] == "Application #1 for the 审批专用章 is authorized", m["subject"]
assert "was authorized by bob." in m["body"] and "Comment: 好的" in m["body"], m["body"]
EOP

# ---- 3. a webhook answering 500, then 200 ----
echo 500 >"$W/hooks/plan/plain"
ctl --user alice --password-file "$W/pw-alice" apply --seal approved --amount 2000000 \
	--reason "two levels" >"$W/apply2.out" 2>&1 || { fail "alice applies (2)"; cat "$W/apply2.out"; }
n=$(until_sql "SELECT count(*) FROM audit WHERE action = 'notice_sent' AND application = 2 AND detail LIKE '%webhook:all-plain%'" 1) &&
	pass "the plain webhook's notice is sent in the end" || fail "notice_sent of all-plain for #2: $n"
n=$(store_sql "SELECT count(*) FROM audit WHERE action = 'notice_failed' AND application = 2 AND detail LIKE '%webhook:all-plain%' AND detail LIKE '%retry_at%' AND reason = 'webhook all-plain: HTTP 500'")
[ "$n" = 1 ] && pass "after one notice_failed (HTTP 500) with its retry time" || fail "notice_failed of all-plain for #2: $n"
n=$($py -c 'import glob, json, sys
rs = [json.load(open(f)) for f in glob.glob(sys.argv[1] + "/*.json")]
print(sum(1 for r in rs if r["path"] == "/plain" and json.loads(r["body"])["detail"]["application"] == 2
          and json.loads(r["body"])["event"] == "app_waiting"))' "$W/hooks/req")
[ "$n" = 2 ] && pass "the receiver saw two tries" || fail "tries at the plain webhook for #2: $n"

# ---- 4. carol has no address ----
SEALGATE_CODE=$(code bob) ctl --user bob --password-file "$W/pw-bob" approve 2 --comment "level one" \
	>"$W/approve2.out" 2>&1 </dev/null || { fail "bob approves #2"; cat "$W/approve2.out"; }
n=$(until_sql "SELECT count(*) FROM audit WHERE action = 'notice_failed' AND application = 2 AND reason = 'carol has no email address in the policy' AND detail LIKE '%\"final\":true%'" 1) &&
	pass "carol without an address: notice_failed, final" || fail "carol's notice: $n"
n=$(store_sql "SELECT state || ' ' || tries FROM outbox WHERE recipient = 'carol' AND channel = 'email'")
[ "$n" = "failed 1" ] && pass "and not tried again" || fail "carol's outbox row: $n"

# ---- 5. the sink down, then back ----
stop_sink
ctl --user alice --password-file "$W/pw-alice" apply --seal approved --amount 30 \
	--reason "while the relay is down" >"$W/apply3.out" 2>&1 || { fail "alice applies (3)"; cat "$W/apply3.out"; }
for _ in $(seq 300); do
	n=$(store_sql "SELECT count(*) FROM audit WHERE action = 'notice_failed' AND application = 3 AND detail LIKE '%\"channel\":\"email\"%' AND reason LIKE 'SMTP relay: %'")
	[ "$n" -ge 2 ] && break
	sleep 0.1
done
[ "$n" -ge 2 ] && pass "the relay down: notice_failed records ($n) naming the relay" || fail "notice_failed of #3: $n"
start_sink "$sport"
# (bob has #1's and #2's mails so far)
for _ in $(seq 600); do [ "$($py "$sink" count "$W/sink" bob@example.test)" -ge 3 ] && break; sleep 0.1; done
link=$($py "$sink" show "$W/sink" bob@example.test 3 | $py -c 'import json,sys; print(json.load(sys.stdin)["subject"])') || link=
[ "$link" = "Application #3 for the 审批专用章 waits for your approval" ] && pass "the relay back: bob's mail of #3 arrives" ||
	fail "after the relay came back: '$link'"
until_sql "SELECT count(*) FROM audit WHERE action = 'notice_sent' AND application = 3 AND detail LIKE '%\"channel\":\"email\"%'" 1 >/dev/null &&
	pass "and is recorded as sent" || fail "notice_sent of #3's mail"

# ---- 6. killed with a notice pending ----
stop_sink
ctl --user alice --password-file "$W/pw-alice" apply --seal approved --amount 40 \
	--reason "before the crash" >"$W/apply4.out" 2>&1 || { fail "alice applies (4)"; cat "$W/apply4.out"; }
until_sql "SELECT count(*) FROM audit WHERE action = 'notice_failed' AND application = 4 AND detail LIKE '%\"channel\":\"email\"%' AND detail LIKE '%\"try\":1,%'" 1 >/dev/null ||
	fail "no failed try of #4's mail before the kill"
fixture stop KILL
n=$(store_sql "SELECT count(*) FROM outbox WHERE application = 4 AND channel = 'email' AND state IN ('pending', 'sending')")
[ "$n" = 1 ] && pass "killed: #4's mail is still in the outbox" ||
	fail "#4's mail in the outbox: $n: $(store_sql "SELECT id, application, channel, state, tries, last_error FROM outbox WHERE channel = 'email'")"
start_sink "$sport"
fixture start
until_sql "SELECT count(*) FROM audit WHERE action = 'notice_sent' AND application = 4 AND detail LIKE '%\"channel\":\"email\"%'" 1 >/dev/null &&
	pass "after the restart #4's mail is sent" || fail "notice_sent of #4's mail after the restart"
n=$($py "$sink" count "$W/sink" bob@example.test)
# (the sinks kept their mail in one directory: #1, #2, #3, then #4)
[ "$n" = 4 ] && pass "bob has four mails, each once" || fail "bob's mails: $n"
n=$(store_sql "SELECT count(*) FROM (SELECT json_extract(detail, '\$.notice') FROM audit WHERE action = 'notice_sent' GROUP BY json_extract(detail, '\$.notice') HAVING count(*) > 1) AS twice")
[ "$n" = 0 ] && pass "no notice was sent twice" || fail "notices sent twice: $n"
n=$(store_sql "SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')")
[ "$n" = 0 ] && pass "the outbox has nothing left to send" ||
	fail "left in the outbox: $(store_sql "SELECT id, channel, recipient, state, last_error FROM outbox WHERE state IN ('pending', 'sending')")"

# ---- 7. no token or secret in a record or the log ----
n=$(store_sql "SELECT count(*) FROM audit WHERE detail LIKE '%TOKEN%' OR reason LIKE '%TOKEN%' OR detail LIKE '%WECOM-KEY%' OR reason LIKE '%WECOM-KEY%' OR detail LIKE '%secret-abc%' OR detail LIKE '%SECding%'")
[ "$n" = 0 ] && pass "no record holds a webhook's token or secret" || fail "records with a token: $n"
if grep -q -e "DING-TOKEN" -e "FEISHU-TOKEN" -e "WECOM-KEY" -e "secret-abc" -e "SECding" "$W/sealgated.log"; then
	fail "the log holds a token or secret"
else
	pass "the log holds no token or secret"
fi
finish
