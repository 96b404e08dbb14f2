#!/usr/bin/python3
"""A real browser over wss:// (issue #7): headless Chromium loads a test page
from a small Python https server (same throwaway CA and certificate as the
broker), whose script opens two WebSockets to wss://localhost:<tls port>/raw/<room>,
sends from one and writes what the other receives into the DOM. The DOM is
dumped with --dump-dom and must hold the received text.

Usage: test_browser.py <ringroom binary>
Exit 77 (skip) when chromium is not installed (Debian package `chromium`).

Chromium trusts the certificate through --ignore-certificate-errors-spki-list
(the SHA-256 of the server certificate's SubjectPublicKeyInfo), which it
honours only with an explicit --user-data-dir (a temp dir here). Everything
else is switched off so it makes no connection except to 127.0.0.1. A second
run without the pin must not get the page (the trust is real).

No --virtual-time-budget: with it, headless Chromium dumped the DOM before
the sockets had opened, and a pending fetch that held virtual time also held
back the sockets' events. Instead the page ends with an <img> that the page
server answers only once the result has been posted (or after 20 s), so the
load event, after which --dump-dom dumps, comes after the exchange.
"""

import http.server
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tlslib  # noqa: E402
from tlslib import SLOW, TlsBroker, rrtest  # noqa: E402

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>ringroom wss test</title></head>
<body><div id="out">pending</div><div id="log"></div>
<script>
const url = "wss://localhost:%(port)d/raw/%(room)s";
const want = "%(token)s";
const out = document.getElementById("out");
const log = document.getElementById("log");
function note(s) { log.textContent += s + "; "; }
const a = new WebSocket(url);
const b = new WebSocket(url);
let opened = 0, done = false, tries = 0;
b.onmessage = (e) => {
  if (done) return;
  done = true;
  out.textContent = "received:" + e.data;
  fetch("/result", {method: "POST", body: out.textContent});
  a.close(1000); b.close(1000);
};
// b joins its room on the broker's side right after its 101; keep sending
// until b has the message (a few tries at most) rather than guess a delay
function send() {
  if (done || tries >= 50) return;
  tries++;
  a.send(want);
  setTimeout(send, 100);
}
function ready() { if (++opened === 2) { note("both open"); send(); } }
a.onopen = ready; b.onopen = ready;
a.onerror = () => note("a error"); b.onerror = () => note("b error");
a.onclose = (e) => note("a closed " + e.code); b.onclose = (e) => note("b closed " + e.code);
</script>
<!-- held by the page server until the result is posted: the load event, and
     so --dump-dom, waits for it -->
<img src="/wait" alt="">
</body></html>
"""


def find_chromium():
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    return None


class PageServer:
    """https on 127.0.0.1:<free port>: GET /page.html, POST /result."""

    def __init__(self, cert, key, page):
        self.page = page.encode()
        self.results = []
        self.posted = threading.Event()
        self.wait_s = 20 * SLOW
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/wait":
                    outer.posted.wait(outer.wait_s)
                    self.send_response(204)
                    self.end_headers()
                    return
                if self.path != "/page.html":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(outer.page)))
                self.end_headers()
                self.wfile.write(outer.page)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                outer.results.append(self.rfile.read(n).decode("utf-8", "replace"))
                outer.posted.set()
                outer.posted_at = time.monotonic()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def run_chromium(chromium, url, spki, profile, timeout=60):
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-dev-shm-usage",
            "--user-data-dir=" + profile,
            "--ignore-certificate-errors-spki-list=" + spki,
            "--dump-dom", url]
    env = dict(os.environ, HOME=profile)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout * SLOW)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)  # chromium and the helpers it started
        out, err = p.communicate()
        return None, "chromium did not finish within %.0fs; stderr: %s" % (
            timeout * SLOW, err.decode(errors="replace")[-600:])
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def main():
    binary = rrtest.load_binary_arg("tls-browser")
    chromium = find_chromium()
    if chromium is None:
        rrtest.skip_suite("tls-browser", "chromium is not installed (Debian package chromium)")
    report = rrtest.Report("tls-browser")
    tmp = tempfile.mkdtemp(prefix="ringroom-browser-")
    brokers = []
    server = None
    try:
        pki = tlslib.Pki(tmp)
        cert, key = pki.make("ec", "ec", 0x4001)
        spki = tlslib.spki_sha256_b64(cert)
        b = TlsBroker(binary, cert, key, pki.ca, ["--ping-interval", "10m"], name="browser")
        try:
            b.start()
            brokers.append(b)
        except Exception as e:
            report.fail("broker starts", str(e))
            return rrtest.finish_suite(report, brokers)
        token = "hello-over-wss-%d" % os.getpid()
        server = PageServer(cert, key, PAGE % {"port": b.tls_port, "room": "browser-room",
                                               "token": token})
        url = "https://localhost:%d/page.html" % server.port
        upgrades0 = b.metric("ringroom_upgrades_total")
        hs0 = b.metric("ringroom_tls_handshakes_total")
        profile = os.path.join(tmp, "profile")
        os.mkdir(profile)
        t0 = time.monotonic()
        server.posted_at = None
        dom, err = run_chromium(chromium, url, spki, profile)
        print("#   chromium ran %.1fs (result posted after %s)" % (
            time.monotonic() - t0, "%.1fs" % (server.posted_at - t0)
            if server.posted_at else "never"), flush=True)

        def check_dom():
            if dom is None:
                return err
            if ("received:" + token) not in dom:
                i = dom.find('<div id="out">')
                return "DOM does not hold the message: %r; chromium stderr tail: %s" % (
                    dom[i:i + 300] if i >= 0 else dom[:300], err[-600:])
            print("#   DOM: %s" % dom[dom.find('<div id="out">'):dom.find("</div>") + 6],
                  flush=True)
            return None
        report.run("chromium: a page's two wss:// sockets exchange a message through "
                   "/raw/ (DOM dump)", check_dom)

        def check_broker_side():
            up = b.metric("ringroom_upgrades_total") - upgrades0
            hs = b.metric("ringroom_tls_handshakes_total") - hs0
            print("#   broker: %d TLS handshakes, %d upgrades from chromium; page posted %r"
                  % (hs, up, server.results), flush=True)
            if up < 2 or hs < 2:
                return "expected >= 2 TLS handshakes and upgrades, got %d and %d" % (hs, up)
            return None
        report.run("chromium: the broker saw the TLS handshakes and upgrades", check_broker_side)

        def untrusted():
            prof2 = os.path.join(tmp, "profile2")
            os.mkdir(prof2)
            dom2, err2 = run_chromium(chromium, url, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                                      prof2)
            if dom2 is None:
                return err2
            if token in dom2 or "received:" in dom2:
                return "page loaded and ran without the certificate pinned"
            m = re.search(r"(NET::|net::)?ERR_CERT_[A-Z_]+", dom2 + "\n" + err2)
            if m is None:
                return "no certificate error in the DOM or on stderr (DOM %d bytes: %r; " \
                    "stderr %r)" % (len(dom2), dom2[:200], err2[-400:])
            print("#   without the pin: %s" % m.group(0), flush=True)
            return None
        report.run("chromium: without the SPKI pin the page is not trusted (control)",
                   untrusted)
        return rrtest.finish_suite(report, brokers)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
