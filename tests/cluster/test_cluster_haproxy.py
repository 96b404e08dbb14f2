#!/usr/bin/python3
"""The chat page through Debian's HAProxy in front of three cluster nodes
(issue: "HAProxy (Debian's, TCP mode) in front of the three nodes: the chat
page test from the web client runs through it").

A nats-server -js on a temporary folder, three nodes (--cluster,
--node-name, --proxy-protocol) and HAProxy with tools/haproxy/ringroom.cfg's
shape (mode tcp, send-proxy-v2, /healthz checks with check-send-proxy) but
`balance roundrobin`, so that the page's connections land on different
nodes. Headless Chromium (tests/page/cdp.py) loads the page from HAProxy's
port; the page's WebSocket goes through HAProxy too. Which node a page
landed on is read from the nodes' ringroom_upgrades_total.

Cases:
  - HAProxy's health checks mark the three nodes UP;
  - GET / and /ringroom.js through HAProxy serve the page;
  - pages opened through HAProxy land on all three nodes (a page landing
    on a node that already has one is closed and another page opened);
  - a message typed on each page appears on every page under the same id
    (1..3, one order): the room spans the nodes;
  - node-a SIGKILLed under its page: its page goes offline, HAProxy marks
    node-a DOWN;
  - the page reconnects through HAProxy to another node with
    since=<its last id>&epoch=<the epoch> and its session (resumed there:
    the same session and user), and the messages sent while it
    was away arrive once each, replayed; no gap, no duplicate, the same log
    as the other pages;
  - a message from the reconnected page reaches the others with the next id;
  - node-a restarted on its port and data folder: HAProxy marks it UP.

Exits 77 (SKIP with the cause) without chromium, nats-server or haproxy.

Usage: test_cluster_haproxy.py <ringroom binary>
"""

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for d in ("integration", "page", "proxy"):
    sys.path.insert(0, os.path.join(HERE, "..", d))
import rrtest  # noqa: E402
import cdp  # noqa: E402  (the DevTools driver of tests/page)
import test_cluster_broker as tcb  # noqa: E402  (Nats)
import test_proxy as tp  # noqa: E402  (HAProxy, start_listening, local_metrics)
from test_page_product import DESKTOP, IDS, STATE, js, send_by_keyboard  # noqa: E402

LABEL = "cluster_haproxy"
# What must happen (a page online, a check verdict, a reconnect) within
# this: a passing run never waits it out; long for the shared machine.
EVENTUALLY = 30.0
NODES = ("node-a", "node-b", "node-c")
ROOM = "haproxy.room"
# pages opened at most to find one on every node (roundrobin makes 3 enough
# when each page load opens the same number of connections)
MAX_OPENS = 8
NAMES = ("Ana", "Ben", "Cleo", "Dev", "Eve", "Finn", "Gus", "Hal")
# the page's log as (id, text) pairs
LOG = ("[...document.querySelectorAll('#log li.msg[data-id]')].map(li => "
       "[+li.dataset.id, li.querySelector('.text').textContent])")

# tools/haproxy/ringroom.cfg's defaults and backend, on loopback: checks
# every 200 ms (fall 2, rise 2) so a dead node is DOWN quickly, and
# roundrobin instead of leastconn so consecutive pages spread over the nodes
HAPROXY_CFG = """defaults
    mode tcp
    option dontlognull
    retries 3
    option redispatch
    timeout connect 3s
    timeout client 30s
    timeout server 30s
    timeout tunnel 2m
    timeout client-fin 10s
    timeout server-fin 10s
    timeout check 2s

frontend ws
    bind 127.0.0.1:@FRONT@
    default_backend ringroom

backend ringroom
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host ringroom
    http-check expect status 200
    default-server send-proxy-v2 check check-send-proxy inter 200ms fall 2 rise 2
"""


async def eventually(fn, what, timeout=EVENTUALLY):
    """Poll fn() (quick, blocking) until it returns something true."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
            last = v
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            last = "%s: %s" % (type(e).__name__, e)
        if time.monotonic() > deadline:
            raise AssertionError("no %s within %.0fs (last: %s)" % (what, timeout, last))
        await asyncio.sleep(0.05)


def metric(node, name):
    return tp.local_metrics(node.port).sum(name)


def upgrades(nodes):
    return {n: metric(b, "ringroom_upgrades_total") for n, b in nodes.items() if b.running()}


def status(hp):
    """{node: HAProxy's status} ("UP", "DOWN", "UP 1/2", ...)."""
    return {k: v[0] for k, v in hp.server_status("ringroom").items()}


class Suite:
    def __init__(self, report, nodes, hp, browser):
        self.report = report
        self.nodes = nodes
        self.hp = hp
        self.browser = browser
        self.base = "http://127.0.0.1:%d" % hp.front
        self.pages = {}  # node -> Page
        self.ws_urls = {}  # Page -> the URLs of its WebSockets, in order

    async def case(self, name, coro):
        try:
            why = await coro
        except Exception as e:  # noqa: BLE001  (a case never takes the suite down)
            why = "%s: %s" % (type(e).__name__, e)
        self.report.check(name, why)
        return why is None

    async def all_up(self):
        await eventually(lambda: set(status(self.hp).values()) == {"UP"} and
                         len(status(self.hp)) == 3, "three servers UP")
        return None

    async def serves_page(self):
        get = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
        st, _h, body, _c = rrtest.http_request(self.hp.front, get % b"/")
        if st != 200 or b'from "/ringroom.js"' not in body:
            return "GET / through HAProxy: %s %r" % (st, body[:80])
        st, h, body, _c = rrtest.http_request(self.hp.front, get % b"/ringroom.js")
        if st != 200 or b"export class RingroomClient" not in body:
            return "GET /ringroom.js through HAProxy: %s %r" % (st, h)
        return None

    async def open_page(self, name):
        page = await self.browser.new_page(**DESKTOP)
        urls = self.ws_urls[page] = []

        def on_event(method, params):
            if method == "Network.webSocketCreated":
                urls.append(params.get("url", ""))
        self.browser.listeners[page.session].append(on_event)
        await page.send("Network.enable")
        await page.goto(self.base + "/?room=%s&name=%s" % (ROOM, name))
        await page.wait_for(STATE + " === 'online'", name + " online", timeout=EVENTUALLY)
        return page

    async def spread(self):
        """Open pages until every node holds one; the node a page's
        WebSocket reached is the one whose upgrades grew by it."""
        landed = []
        for name in NAMES[:MAX_OPENS]:
            before = upgrades(self.nodes)
            page = await self.open_page(name)
            after = await eventually(lambda: (lambda u: u if sum(u.values()) > sum(before.values())
                                              else None)(upgrades(self.nodes)),
                                     "the upgrade of %s's page" % name)
            grew = {n: after[n] - before[n] for n in NODES if after[n] != before[n]}
            if list(grew.values()) != [1]:
                return "%s's page: upgrades grew by %s (want 1 on one node)" % (name, grew)
            node = next(iter(grew))
            landed.append("%s->%s" % (name, node))
            if node in self.pages:
                # another page on that node: close it and move HAProxy's
                # rotation on by one connection before the next page
                await page.send("Target.closeTarget", {"targetId": page.target})
                rrtest.http_request(self.hp.front, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                continue
            self.pages[node] = page
            if len(self.pages) == len(NODES):
                print("pages: %s" % ", ".join(landed), flush=True)
                return None
        return "after %d pages, only %s hold one (%s)" % (MAX_OPENS, sorted(self.pages), landed)

    async def logs(self):
        return {n: await p.eval(LOG) for n, p in self.pages.items()}

    async def same_log(self, n, what):
        """Every page shows ids 1..n once each, with the same texts."""
        for node, p in self.pages.items():
            await p.wait_for("%s.length >= %d" % (IDS, n), "%d messages on %s's page (%s)" % (
                n, node, what), timeout=EVENTUALLY)
        logs = await self.logs()
        first = logs[NODES[0]]
        if [i for i, _t in first] != list(range(1, n + 1)):
            return "%s: node-a's page has ids %s, want 1..%d" % (what, [i for i, _ in first], n)
        for node, log in logs.items():
            if log != first:
                return "%s: %s's page %s differs from node-a's %s" % (what, node, log, first)
        for node, p in self.pages.items():
            st = await p.eval("ringroomClient.stats")
            if st["gaps"] or st["duplicates"]:
                return "%s: %s's page counted %s" % (what, node, st)
        return None

    async def chat(self):
        for node in NODES:
            p = self.pages[node]
            text = "hello from the page on %s" % node
            await send_by_keyboard(p, text)
            await p.wait_for("[...document.querySelectorAll('#log li.msg.own')].some(li => "
                             "li.querySelector('.text').textContent === %s && li.dataset.status "
                             "=== 'sent' && li.dataset.id)" % js(text), "%s acked" % text)
        why = await self.same_log(3, "after one message from each page")
        if why:
            return why
        for n, b in self.nodes.items():
            if metric(b, "ringroom_cluster_messages_in_total") < 1:
                return "%s took no message from NATS" % n
        return None

    async def kill(self):
        """HAProxy's frontend is paused first (established connections stay)
        so that the page cannot reconnect before the others have talked:
        what it missed must come back by since/epoch, not live."""
        self.victim = NODES[0]
        p = self.pages[self.victim]
        self.pos = await p.eval("ringroomClient.position")
        if not self.pos["epoch"] or self.pos["lastId"] != 3:
            return "the page's position before the kill: %s" % self.pos
        await p.eval("window.__got = []; ringroomClient.on('message', e => "
                     "window.__got.push([e.message.id, e.replayed]))")
        self.saved = await p.eval("({session: ringroomClient._saved.session, "
                                  "user: ringroomClient._saved.userId})")
        if not self.saved.get("session") or not self.saved.get("user"):
            return "the page has no session before the kill: %s" % self.saved
        await p.eval("window.__welcomes = []; ringroomClient.on('welcome', f => "
                     "window.__welcomes.push([f.session, f.resumed, f.user.id]))")
        self.urls_before = len(self.ws_urls[p])
        self.up_before = upgrades(self.nodes)
        out = self.hp.command("disable frontend ws")
        if out.strip():
            return "disable frontend ws: %r" % out
        self.nodes[self.victim].kill()
        await p.wait_for("['offline','connecting'].includes(%s)" % STATE,
                         "the page offline after the kill", timeout=EVENTUALLY)
        await eventually(lambda: status(self.hp)[self.victim] == "DOWN",
                         "%s DOWN in HAProxy" % self.victim)
        # the others talk meanwhile
        self.missed = []
        for node in NODES[1:]:
            q = self.pages[node]
            text = "while %s was down, from %s" % (self.victim, node)
            mid = await q.eval("ringroomClient.send(%s).then(a => a.id)" % js(text))
            self.missed.append([mid, text])
        if [i for i, _ in self.missed] != [4, 5]:
            return "the messages sent meanwhile got ids %s, want [4, 5]" % self.missed
        if await p.eval(STATE) == "online":
            return "the page is online while HAProxy's frontend is paused"
        return None

    async def resume(self):
        p = self.pages[self.victim]
        out = self.hp.command("enable frontend ws")
        if out.strip():
            return "enable frontend ws: %r" % out
        # its back-off grew while the frontend was paused (up to 4 s after
        # three refused attempts; 8 s after five on a slow machine)
        await p.wait_for(STATE + " === 'online'", "the page online again", timeout=2 * EVENTUALLY)
        after = upgrades(self.nodes)
        grew = {n: after[n] - self.up_before[n] for n in after if after[n] != self.up_before[n]}
        if not grew or self.victim in grew:
            return "the page's new WebSocket is on no other node (upgrades grew by %s)" % grew
        urls = self.ws_urls[p][self.urls_before:]
        want = "since=%d&epoch=%s" % (self.pos["lastId"], self.pos["epoch"])
        if not urls or want not in urls[-1]:
            return "the page's reconnect %s does not ask %s" % (urls, want)
        got = await p.eval("window.__got")
        if got != [[i, True] for i, _ in self.missed]:
            return "the page got %s over the reconnect (want %s, replayed)" % (
                got, [[i, True] for i, _ in self.missed])
        welcomes = await p.eval("window.__welcomes")
        want_w = [self.saved["session"], True, self.saved["user"]]
        if not welcomes or welcomes[-1] != want_w:
            return "the page's welcome on the other node: %s (want its session resumed, " \
                "the same user: %s)" % (welcomes, want_w)
        print("the page reconnected through HAProxy to %s" % sorted(grew), flush=True)
        return await self.same_log(5, "after the reconnect")

    async def after(self):
        p = self.pages[self.victim]
        text = "back on another node"
        mid = await p.eval("ringroomClient.send(%s).then(a => a.id)" % js(text))
        if mid != 6:
            return "the reconnected page's message got id %r, want 6" % mid
        return await self.same_log(6, "after the reconnected page talked")

    async def restart(self):
        b = self.nodes[self.victim]
        err = open(b.stderr_path, "ab")
        b.proc = subprocess.Popen(b.argv(), stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        err.close()
        await eventually(lambda: metric(b, "ringroom_cluster_up") == 1,
                         "%s connected to NATS again" % self.victim)
        await eventually(lambda: status(self.hp)[self.victim] == "UP",
                         "%s UP in HAProxy again" % self.victim)
        return None

    async def run(self):
        cases = [
            ("HAProxy's /healthz checks (check-send-proxy) mark the three nodes UP", self.all_up),
            ("GET / and /ringroom.js through HAProxy serve the page", self.serves_page),
            ("pages through HAProxy land on all three nodes (ringroom_upgrades_total)",
             self.spread),
            ("a message typed on each page appears on every page under the same id (1..3)",
             self.chat),
            ("node-a SIGKILLed under its page: the page goes offline, HAProxy marks node-a DOWN",
             self.kill),
            ("the page reconnects through HAProxy to another node with since/epoch: the "
             "missed messages replayed once, no gap, the same log on every page; its session "
             "resumed there (the same session and user)", self.resume),
            ("the reconnected page's message reaches every page with the next id", self.after),
            ("node-a restarted on its folder: back on NATS, HAProxy marks it UP", self.restart),
        ]
        ok = True
        for name, fn in cases:
            if ok:
                ok = await self.case(name, fn())
            else:  # each case builds on the ones before; the same case list
                self.report.fail(name, "not run: an earlier case failed")


async def main_async(report, nodes, hp):
    browser = cdp.Browser(cdp.find_chromium())
    try:
        await browser.start()
        await Suite(report, nodes, hp, browser).run()
    finally:
        await browser.close()


def main():
    binary = rrtest.load_binary_arg(LABEL)
    if cdp.find_chromium() is None:
        rrtest.skip_suite(LABEL, "chromium is not installed (Debian package chromium)")
    if shutil.which("nats-server") is None:
        rrtest.skip_suite(LABEL, "nats-server is not installed (apt-get install nats-server)")
    if not os.path.exists(tp.haproxy_exe()):
        rrtest.skip_suite(LABEL, "haproxy is not installed (apt-get install haproxy)")
    report = rrtest.Report(LABEL)
    nats = tcb.Nats()
    tmp = tempfile.mkdtemp(prefix="ringroom-clha-")
    nodes = {n: rrtest.Broker(binary, ["--proxy-protocol", "--cluster", nats.url(),
                                       "--node-name", n], name=n) for n in NODES}
    hp = None
    try:
        nats.start()
        for b in nodes.values():
            tp.start_listening(b)
        for n, b in nodes.items():
            try:
                asyncio.run(eventually(lambda: metric(b, "ringroom_cluster_up") == 1,
                                       "%s on NATS" % n))
            except AssertionError as e:
                raise RuntimeError(str(e))
        hp = tp.HAProxy(tmp, "haproxy", HAPROXY_CFG + "".join(
            "    server %s 127.0.0.1:%d\n" % (n, b.port) for n, b in nodes.items()))
        asyncio.run(main_async(report, nodes, hp))
    except Exception as e:  # noqa: BLE001
        report.fail("start", "%s: %s" % (type(e).__name__, e))
    if hp is not None:
        hp.stop()
        if report.failed:
            print("---- haproxy stderr ----\n%s" % hp.stderr_text()[-4000:], flush=True)
    status_ = rrtest.finish_suite(report, list(nodes.values()))
    nats.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
    return status_


if __name__ == "__main__":
    sys.exit(main())
