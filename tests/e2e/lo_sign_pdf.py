#!/usr/bin/python3
# tests/e2e/lo_sign_pdf.py — drives a real LibreOffice (soffice.bin, UNO
# over a pipe) to write a Writer document as a signed PDF with a seal
# certificate from its NSS database, and answers LibreOffice's own PIN dialog
# the way a clerk would. Used by test-libreoffice.sh.
#
# Why not `soffice --headless`: LibreOffice asks for the token PIN through its
# interaction handler (a modal dialog); headless mode, and the "nogui" build
# of Debian's packages, cancel every dialog, so NSS never logs in
# (NoPasswordException / "Write Code:16"). Here soffice runs with the svp
# (in-memory, no display) VCL plugin *without* --headless: the dialog really
# runs, and a second thread types into it through LibreOffice's UI-test API
# (org.libreoffice.uitest.UITest) — the same widgets a person types into.
#
# With --headless soffice runs `--headless` and no dialog is shown: nothing
# answers the PIN prompt (NSS never logs in) unless --pin-handler installs
# an interaction handler of this script's own in LibreOffice's service
# manager, in place of uui's, which answers the password request with the
# PIN — how a batch job signs headless.
#
#   LO_SIGN_PIN=... lo_sign_pdf.py --profile DIR --cn "Acme ... Contract Seal" \
#       --out out.pdf [--text "..."] [--reason R]
#       [--empty-pin | --cancel-pin | --wrong-pin-first | --headless [--pin-handler]]
#
# The PIN comes from the environment (LO_SIGN_PIN), never argv. Exit status:
# 0 signed PDF written, 1 LibreOffice refused or failed to export,
# 2 set-up error (no soffice, no UNO, certificate not found), 3 timed out.
# Output lines start with "lo:" and say what happened (for the test log).

import argparse
import os
import subprocess
import sys
import threading
import time

try:
    import uno
    import unohelper
    from com.sun.star.beans import PropertyValue
    from com.sun.star.lang import XServiceInfo, XSingleComponentFactory
    from com.sun.star.task import XInteractionHandler2
except ImportError as e:  # python3-uno missing, or not Debian's python3
    print("lo: cannot import uno (%s): needs python3-uno and /usr/bin/python3" % e)
    sys.exit(2)

SOFFICE = os.environ.get("LO_SOFFICE", "soffice")


def say(*a):
    print("lo:", *a, flush=True)


def pv(name, value):
    p = PropertyValue()
    p.Name = name
    p.Value = value
    return p


def start_office(profile, pipe, headless):
    env = dict(os.environ)
    # svp: LibreOffice's in-memory VCL backend, no X display; dialogs run.
    env["SAL_USE_VCLPLUGIN"] = "svp"
    argv = [SOFFICE, "--norestore", "--nologo", "--nodefault", "--nolockcheck",
            "-env:UserInstallation=file://" + os.path.abspath(profile),
            "--accept=pipe,name=%s;urp;" % pipe]
    if headless:
        argv.insert(1, "--headless")
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)


HANDLER_SERVICE = "com.sun.star.task.InteractionHandler"


class PinHandler(unohelper.Base, XInteractionHandler2, XServiceInfo):
    """An interaction handler that answers a password request (NSS's token
    PIN prompt) with the PIN, and anything else with nothing."""

    def __init__(self, pin, counter):
        self.pin, self.counter = pin, counter

    def handle(self, request):
        self.handleInteractionRequest(request)

    def handleInteractionRequest(self, request):
        for c in request.getContinuations():
            if hasattr(c, "setPassword"):
                self.counter.append(1)
                say("PIN requested: answered by the script's own interaction handler")
                c.setPassword(self.pin)
                c.select()
                return True
        return False

    def getImplementationName(self):
        return "org.sealgate.test.PinHandler"

    def supportsService(self, name):
        return name == HANDLER_SERVICE

    def getSupportedServiceNames(self):
        return (HANDLER_SERVICE,)


class PinHandlerFactory(unohelper.Base, XSingleComponentFactory, XServiceInfo):
    def __init__(self, pin, counter):
        self.pin, self.counter = pin, counter

    def createInstanceWithContext(self, ctx):
        return PinHandler(self.pin, self.counter)

    def createInstanceWithArgumentsAndContext(self, args, ctx):
        return PinHandler(self.pin, self.counter)

    def getImplementationName(self):
        return "org.sealgate.test.PinHandler"

    def supportsService(self, name):
        return name == HANDLER_SERVICE

    def getSupportedServiceNames(self):
        return (HANDLER_SERVICE,)


def install_pin_handler(ctx, pin, counter):
    """LibreOffice's NSS password callback creates a new
    com.sun.star.task.InteractionHandler for every prompt; the service
    manager gives the first implementation registered for that name, so
    uui's own handler is taken out and ours put in its place."""
    smgr = ctx.ServiceManager
    smgr.remove("com.sun.star.comp.uui.UUIInteractionHandler")
    smgr.insert(PinHandlerFactory(pin, counter))
    h = smgr.createInstanceWithContext(HANDLER_SERVICE, ctx)
    name = h.getImplementationName() if h is not None else None
    if name != "org.sealgate.test.PinHandler":
        raise RuntimeError("the interaction handler is still %s" % name)
    say("interaction handler replaced by the script's own")


def connect(pipe, proc, timeout):
    local = uno.getComponentContext()
    res = local.ServiceManager.createInstanceWithContext(
        "com.sun.star.bridge.UnoUrlResolver", local)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("soffice exited with %d before accepting" % proc.returncode)
        try:
            return res.resolve("uno:pipe,name=%s;urp;StarOffice.ComponentContext" % pipe)
        except Exception:
            time.sleep(0.2)
    raise RuntimeError("soffice did not accept a UNO connection in %d s" % timeout)


class PinAnswerer(threading.Thread):
    """Watches LibreOffice's top window; when it is the token PIN dialog
    (uui's PasswordDialog), types the PIN and presses OK (or Cancel).
    Any other dialog is logged and closed, so a surprise message box cannot
    hang the export."""

    def __init__(self, uitest, pins, cancel):
        super().__init__(daemon=True)
        # one PIN per dialog, in order; the last one answers any further dialog
        self.uitest, self.pins, self.cancel = uitest, list(pins), cancel
        self.stop = threading.Event()
        self.answered = 0
        self.others = []

    def run(self):
        while not self.stop.is_set():
            try:
                self.poll()
            except Exception as e:  # the bridge goes away at shutdown
                if not self.stop.is_set():
                    say("dialog watcher:", type(e).__name__, e)
            time.sleep(0.1)

    def poll(self):
        w = self.uitest.getTopFocusWindow()
        if w is None or w.getType() != "DialogUIObject":
            return
        kids = set(w.getChildren())
        if "PasswordDialog" in kids and "newpassEntry" in kids:
            self.answered += 1
            if self.cancel:
                say("PIN dialog shown: pressing Cancel")
                w.getChild("cancel").executeAction("CLICK", ())
                return
            pin, wrong = self.pins[0]
            if len(self.pins) > 1:
                self.pins.pop(0)
            say("PIN dialog shown: %s, OK" % (
                "typing a wrong PIN" if wrong else "typing the PIN" if pin else "no PIN typed"))
            if pin:
                w.getChild("newpassEntry").executeAction("TYPE", (pv("TEXT", pin),))
            w.getChild("ok").executeAction("CLICK", ())
            return
        self.others.append(sorted(kids))
        say("unexpected dialog, closing it:", sorted(kids)[:12])
        for b in ("cancel", "close", "ok", "yes"):
            if b in kids:
                w.getChild(b).executeAction("CLICK", ())
                return


def seal_certificate(ctx, cn):
    """The seal's certificate among NSS's personal certificates (this is
    where NSS logs in to the token, so the PIN dialog appears here)."""
    smgr = ctx.ServiceManager
    seinit = smgr.createInstanceWithContext("com.sun.star.xml.crypto.SEInitializer", ctx)
    env = seinit.createSecurityContext("").getSecurityEnvironment()
    certs = env.getPersonalCertificates()
    say("personal certificates: %d" % len(certs))
    found = None
    for c in certs:
        say("  " + c.SubjectName)
        if ("CN=" + cn) in c.SubjectName.split(",") and found is None:
            found = c
    return found


def export_signed_pdf(ctx, cert, out, text, reason):
    smgr = ctx.ServiceManager
    desktop = smgr.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
    doc = desktop.loadComponentFromURL("private:factory/swriter", "_blank", 0,
                                       (pv("Hidden", True),))
    try:
        body = doc.getText()
        body.insertString(body.getEnd(), text, False)
        fd = (pv("SignPDF", True),
              pv("SignatureCertificate", cert),
              pv("SignatureReason", reason),
              pv("SignatureLocation", "Acme Trading Co."),
              pv("SignatureContactInfo", "legal@acme.example"),
              pv("SignaturePassword", ""))
        args = (pv("FilterName", "writer_pdf_Export"),
                pv("FilterData", uno.Any("[]com.sun.star.beans.PropertyValue", fd)))
        uno.invoke(doc, "storeToURL", (uno.systemPathToFileUrl(os.path.abspath(out)), args))
    finally:
        doc.close(True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", required=True, help="LibreOffice user profile dir (fresh)")
    ap.add_argument("--cn", required=True, help="CN of the seal certificate")
    ap.add_argument("--out", required=True)
    ap.add_argument("--text", default="Acme Trading Co. - Sales contract No. 2024-117")
    ap.add_argument("--reason", default="Contract 2024-117 approved")
    ap.add_argument("--empty-pin", action="store_true", help="press OK without typing a PIN")
    ap.add_argument("--cancel-pin", action="store_true", help="press Cancel in the PIN dialog")
    ap.add_argument("--wrong-pin-first", action="store_true",
                    help="type a wrong PIN in the first PIN dialog, the right one after")
    ap.add_argument("--headless", action="store_true",
                    help="soffice --headless: no dialogs, nobody types into them")
    ap.add_argument("--pin-handler", action="store_true",
                    help="(with --headless) answer the PIN with an interaction handler of our own")
    ap.add_argument("--timeout", type=int, default=90)
    o = ap.parse_args()

    pin = "" if o.empty_pin else os.environ.get("LO_SIGN_PIN", "")
    pins = [(pin, False)]
    if o.wrong_pin_first:
        pins.insert(0, ("wrong-" + pin, True))
    pipe = "sealgate_lo_%d" % os.getpid()
    try:
        proc = start_office(o.profile, pipe, o.headless)
    except OSError as e:
        say("cannot start %s: %s" % (SOFFICE, e))
        return 2

    # Whatever happens, soffice must not outlive the test.
    timed_out = threading.Event()

    def watchdog():
        timed_out.set()
        say("timeout after %d s: killing soffice" % o.timeout)
        proc.kill()
    timer = threading.Timer(o.timeout, watchdog)
    timer.start()
    rc = 1
    answerer = None
    handled = []
    ctx = None
    try:
        ctx = connect(pipe, proc, 60)
        if o.headless:
            if o.pin_handler:
                install_pin_handler(ctx, pin, handled)
        else:
            uitest = ctx.ServiceManager.createInstanceWithContext("org.libreoffice.uitest.UITest", ctx)
            if uitest is None:
                say("no org.libreoffice.uitest.UITest service in this LibreOffice")
                return 2
            answerer = PinAnswerer(uitest, pins, o.cancel_pin)
            answerer.start()
        try:
            cert = seal_certificate(ctx, o.cn)
        except Exception as e:
            say("listing certificates failed:", type(e).__name__, str(e).split(" at ")[0])
            return 1
        if cert is None:
            say("no personal certificate with CN=%s" % o.cn)
            return 2
        say("signing with", cert.SubjectName)
        try:
            export_signed_pdf(ctx, cert, o.out, o.text, o.reason)
        except Exception as e:
            say("PDF export failed:", type(e).__name__, str(e).split(" at ")[0])
            return 1
        if not os.path.exists(o.out) or os.path.getsize(o.out) == 0:
            say("PDF export returned but wrote nothing")
            return 1
        say("signed PDF written: %s (%d bytes)" % (o.out, os.path.getsize(o.out)))
        rc = 0
    except Exception as e:
        say("error:", type(e).__name__, e)
        rc = 2
    finally:
        if answerer is not None:
            answerer.stop.set()
            say("PIN dialogs answered: %d" % answerer.answered)
        if o.headless:
            say("PIN requests answered by the handler: %d" % len(handled))
        if ctx is not None:
            try:
                ctx.ServiceManager.createInstanceWithContext(
                    "com.sun.star.frame.Desktop", ctx).terminate()
            except Exception:
                pass  # the bridge closes as soffice exits
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        timer.cancel()
    if timed_out.is_set():
        return 3
    return rc


if __name__ == "__main__":
    sys.exit(main())
