#!/usr/bin/python3
"""A real SMTP sink for tests (aiosmtpd, Debian's python3-aiosmtpd).

  smtpsink.py serve DIR [--port P] [--starttls CERT KEY] [--auth USER PASSWORD-FILE]
      listens on 127.0.0.1 (a free port, or P), writes the port to
      DIR/port once it accepts, and keeps every message: DIR/mail/N.eml
      (the bytes as received) and DIR/mail/N.json (envelope: from, to;
      tls: whether the session was encrypted; login: who logged in).
      --starttls: STARTTLS offered and required; --auth: a login
      required (over TLS), the password read from the file; a wrong one
      is refused (535) and counted in DIR/auth-refused. Runs until killed
      (TERM).
  smtpsink.py wait DIR TO [SECONDS [ID]]
      waits (default 30 s) for a message to TO and prints the approval
      link it carries (<web_url>/#/applications/ID); with ID, only a
      link to that application counts; exit 1 on timeout.
  smtpsink.py count DIR TO
      prints how many messages TO has received.
  smtpsink.py show DIR TO [N]
      prints message N (default the last) to TO as JSON: subject (decoded),
      body (decoded), headers.
  smtpsink.py list DIR [TO]
      what a person reads (tools/sandbox mail): without TO one line per
      message (number, recipients, subject); with TO (an address, or a
      bare name standing for NAME@any domain) each of their messages in
      full, subject and body decoded.
"""
import asyncio
import email
import email.header
import email.policy
import json
import os
import re
import signal
import socket
import sys
import time


def serve(d, port, starttls=None, auth=None):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    mail = os.path.join(d, "mail")
    os.makedirs(mail, exist_ok=True)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            n = len([f for f in os.listdir(mail) if f.endswith(".eml")]) + 1
            with open(os.path.join(mail, "%d.eml.tmp" % n), "wb") as f:
                f.write(envelope.original_content or envelope.content)
            login = getattr(session, "auth_data", None)
            login = getattr(login, "login", None)
            with open(os.path.join(mail, "%d.json" % n), "w") as f:
                json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                           "tls": session.ssl is not None,
                           "login": login.decode() if login else None}, f)
            os.rename(os.path.join(mail, "%d.eml.tmp" % n), os.path.join(mail, "%d.eml" % n))
            return "250 OK"

    if port == 0:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
    kw = {}
    if starttls:
        import ssl
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(starttls[0], starttls[1])
        kw.update(tls_context=ctx, require_starttls=True)
    if auth:
        user, pw = auth[0], open(auth[1]).read().strip()

        def check(server, session, envelope, mechanism, data):
            ok = data is not None and data.login.decode() == user and data.password.decode() == pw
            if not ok:
                with open(os.path.join(d, "auth-refused"), "a") as f:
                    f.write("x\n")
            return AuthResult(success=ok, auth_data=data if ok else None)
        kw.update(authenticator=check, auth_required=True, auth_require_tls=bool(starttls))
    c = Controller(Handler(), hostname="127.0.0.1", port=port, **kw)
    c.start()
    with open(os.path.join(d, "port.tmp"), "w") as f:
        f.write("%d\n" % port)
    os.rename(os.path.join(d, "port.tmp"), os.path.join(d, "port"))
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    while not stop:
        time.sleep(0.1)
    c.stop()


def addressed(to, rcpts):
    if "@" in to:
        return to in rcpts
    return any(r.split("@", 1)[0] == to for r in rcpts)


def messages(d, to):
    mail = os.path.join(d, "mail")
    out = []
    if not os.path.isdir(mail):
        return out
    for f in sorted((f for f in os.listdir(mail) if f.endswith(".eml")), key=lambda f: int(f[:-4])):
        n = f[:-4]
        try:
            env = json.load(open(os.path.join(mail, n + ".json")))
        except (OSError, ValueError):
            continue
        if to is None or addressed(to, env["to"]):
            raw = open(os.path.join(mail, f), "rb").read()
            out.append((env, raw))
    return out


def decode(raw):
    m = email.message_from_bytes(raw, policy=email.policy.default)
    subject = str(m["Subject"])
    body = m.get_body(preferencelist=("plain",)).get_content()
    return {"subject": subject, "body": body,
            "headers": {k: str(v) for k, v in m.items()},
            "raw_subject": email.message_from_bytes(raw, policy=email.policy.compat32)["Subject"]}


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd, d = sys.argv[1], sys.argv[2]
    if cmd == "serve":
        port, starttls, auth, a = 0, None, None, sys.argv[3:]
        while a:
            if a[0] == "--port":
                port, a = int(a[1]), a[2:]
            elif a[0] == "--starttls":
                starttls, a = (a[1], a[2]), a[3:]
            elif a[0] == "--auth":
                auth, a = (a[1], a[2]), a[3:]
            else:
                print(__doc__, file=sys.stderr)
                sys.exit(2)
        serve(d, port, starttls, auth)
    elif cmd == "wait":
        to = sys.argv[3]
        deadline = time.time() + (float(sys.argv[4]) if len(sys.argv) > 4 else 30)
        app = re.escape(sys.argv[5]) if len(sys.argv) > 5 else r"\d+"
        while time.time() < deadline:
            for env, raw in messages(d, to):
                link = re.search(r"https?://\S+/#/applications/%s(?!\d)" % app, decode(raw)["body"])
                if link:
                    print(link.group(0))
                    return
            time.sleep(0.1)
        sys.exit(1)
    elif cmd == "count":
        print(len(messages(d, sys.argv[3])))
    elif cmd == "show":
        msgs = messages(d, sys.argv[3])
        if not msgs:
            sys.exit(1)
        n = int(sys.argv[4]) if len(sys.argv) > 4 else len(msgs)
        env, raw = msgs[n - 1]
        out = decode(raw)
        out["envelope"] = env
        print(json.dumps(out, ensure_ascii=False))
    elif cmd == "list":
        to = sys.argv[3] if len(sys.argv) > 3 else None
        for n, (env, raw) in enumerate(messages(d, to), 1):
            m = decode(raw)
            if to is None:
                print("%3d  %-28s %s" % (n, ", ".join(env["to"]), m["subject"]))
                continue
            print("== %d. From: %s  To: %s  Date: %s" % (n, m["headers"].get("From", ""),
                  ", ".join(env["to"]), m["headers"].get("Date", "")))
            print("Subject: %s\n\n%s" % (m["subject"], m["body"].rstrip("\n")))
            print()
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
