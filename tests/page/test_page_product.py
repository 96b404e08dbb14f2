"""The chat page at GET / (built on /ringroom.js; the protocol is
docs/protocol.md) in headless Chromium, as people use it: a phone-sized page and a desktop page in one room (each its
own browser context), driven over the DevTools protocol (cdp.py) with real
keyboard input, against the live broker.

Cases: join with a chosen name; chat (pending -> sent, "you", timestamps, the
other page gets it); typing; scroll-back through history; reload-and-resume
(same user, nothing lost or doubled); a broker restart (offline with a reason,
input disabled, back online, nothing lost or doubled); then against a broker
with --auth-secret: a 401 (sign-in asked once, no retry loop), a valid token
(joined, token gone from the URL) and a read-only token (input disabled, no
errors).

Screenshots go to $RINGROOM_TEST_OUTPUT (default ./test-output/page under
the working directory); with RINGROOM_DOCS_SCREENSHOTS=<dir> the phone and
desktop views are also copied there (docs/screenshots/ in the repository).

Usage: test_page_product.py <ringroom binary>. Exit 77 without chromium.
"""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import rrtest  # noqa: E402
import cdp  # noqa: E402

PHONE = dict(width=390, height=844, mobile=True, scale=2)
DESKTOP = dict(width=1280, height=800, mobile=False, scale=1)
ROOM = "product"


def mint(secret, sub, name, perms, ttl=3600):
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": sub, "name": name, "perms": perms,
                           "exp": int(time.time()) + ttl}).encode())
    sig = hmac.new(secret.encode(), (head + "." + body).encode(), hashlib.sha256).digest()
    return head + "." + body + "." + b64(sig)


# JavaScript snippets evaluated in the pages
STATE = "document.getElementById('status').dataset.state"
IDS = "[...document.querySelectorAll('#log li.msg[data-id]')].map(li => +li.dataset.id)"
TEXTS = "[...document.querySelectorAll('#log li.msg')].map(li => li.querySelector('.text').textContent)"


def js(s):
    return json.dumps(s)


async def ids_unique_and_sorted(page):
    ids = await page.eval(IDS)
    if len(ids) != len(set(ids)):
        return "duplicate message ids on the page: %s" % ids
    if ids != sorted(ids):
        return "messages out of order: %s" % ids
    return None


async def send_by_keyboard(page, text):
    await page.eval("document.getElementById('text').focus()")
    await page.type_text(text)
    await page.press_enter()


class Suite:
    def __init__(self, report, out_dir):
        self.report = report
        self.out = out_dir
        self.shots = {}

    async def case(self, name, coro):
        try:
            why = await coro
        except Exception as e:  # a case must never take the suite down
            why = "%s: %s" % (type(e).__name__, e)
        self.report.check(name, why)
        return why is None

    async def shot(self, page, name):
        path = os.path.join(self.out, name + ".png")
        await page.screenshot(path)
        self.shots[name] = path
        return path


async def run_anonymous(suite, browser, broker):
    base = "http://127.0.0.1:%d" % broker.port
    phone = await browser.new_page(**PHONE)
    desk = await browser.new_page(**DESKTOP)

    async def join():
        await phone.goto(base + "/?room=%s&name=Ana" % ROOM)
        await desk.goto(base + "/?room=%s&name=Ben" % ROOM)
        await phone.wait_for(STATE + " === 'online'", "phone online")
        await desk.wait_for(STATE + " === 'online'", "desktop online")
        # both see each other online; the desktop saw the phone join or the
        # phone saw the desktop join
        pid = await phone.eval("ringroomClient.user.id")
        did = await desk.eval("ringroomClient.user.id")
        await phone.wait_for("!!document.querySelector(%s)" % js('#users li[data-user="%s"]' % did),
                             "the desktop user in the phone's online list")
        await desk.wait_for("!!document.querySelector(%s)" % js('#users li[data-user="%s"]' % pid),
                            "the phone user in the desktop's online list")
        mine = await desk.eval("document.querySelector(%s).textContent" % js('#users li[data-user="%s"]' % did))
        if not mine.endswith("(you)"):
            return "the desktop's own entry is not marked (you): %r" % mine
        await phone.wait_for("[...document.querySelectorAll('#log .sys')].some(e => e.textContent.endsWith(' joined'))",
                             "a 'joined' line on the phone")
        # on a phone the list sits behind a button that says how many are online
        if await phone.eval("getComputedStyle(document.getElementById('people')).display") != "none":
            return "the phone shows the online list without being asked"
        await phone.eval("document.getElementById('people-toggle').click()")
        if await phone.eval("document.getElementById('people-toggle').getAttribute('aria-expanded')") != "true":
            return "the phone's online button does not expand the list"
        if await phone.eval("getComputedStyle(document.getElementById('people')).display") == "none":
            return "the phone's online list stays hidden after the button"
        if await phone.eval("document.getElementById('people-toggle').textContent") != "2 online":
            return "the phone's button says %r" % await phone.eval("document.getElementById('people-toggle').textContent")
        await phone.eval("document.getElementById('people-toggle').click()")
        # the composer is enabled and labelled
        label = await desk.eval("document.querySelector('label[for=text]').textContent")
        if not label or await desk.eval("document.getElementById('text').disabled"):
            return "the message field is disabled or unlabelled"
        return None
    if not await suite.case("join: two pages (phone, desktop) go online and list each other", join()):
        return

    async def name_shown():
        # the page asks for its chosen name (?name=); the broker may not
        # honour it yet: then the chosen name cannot be shown to others
        url = await desk.eval("location.href")
        if "name=Ben" not in url:
            return "the chosen name is not kept in the page's address: %s" % url
        got = await desk.eval("ringroomClient.user.name")
        if got != "Ben":
            print("note: the broker named the anonymous user %r, not the chosen 'Ben' "
                  "(the `name` query parameter is not yet honoured)" % got, flush=True)
        return None
    await suite.case("join: the chosen name is sent to the broker (?name=)", name_shown())

    async def chat():
        await desk.eval("""window.__statuses = [];
          new MutationObserver(ms => { for (const m of ms) for (const n of m.addedNodes)
            if (n.classList && n.classList.contains('msg') && n.classList.contains('own')) {
              window.__statuses.push(n.dataset.status);
              new MutationObserver(() => window.__statuses.push(n.dataset.status))
                .observe(n, {attributes: true, attributeFilter: ['data-status']});
            } }).observe(document.getElementById('log'), {childList: true});""")
        text = "Hello from the desktop"
        await send_by_keyboard(desk, text)
        await desk.wait_for("(() => { const li = [...document.querySelectorAll('#log li.msg.own')].pop();"
                            " return li && li.dataset.status === 'sent' && li.dataset.id; })()",
                            "the desktop's message marked sent with its id")
        statuses = await desk.eval("window.__statuses")
        if not statuses or statuses[0] != "pending" or statuses[-1] != "sent":
            return "the message did not go pending -> sent: %s" % statuses
        who = await desk.eval("[...document.querySelectorAll('#log li.msg.own')].pop().querySelector('.who').textContent")
        if who != "you":
            return "own message labelled %r, not 'you'" % who
        t = await desk.eval("[...document.querySelectorAll('#log li.msg.own')].pop().querySelector('time')"
                            ".getAttribute('datetime')")
        if not t or not t.startswith("20"):
            return "own message without a timestamp: %r" % t
        if await desk.eval("document.getElementById('text').value") != "":
            return "the field was not cleared after sending"
        await phone.wait_for("[...document.querySelectorAll('#log li.msg')].some(li => "
                             "li.querySelector('.text').textContent === %s && !li.classList.contains('own'))" % js(text),
                             "the phone shows the desktop's message as someone else's")
        name = await phone.eval("[...document.querySelectorAll('#log li.msg')].pop().querySelector('.who').textContent")
        dname = await desk.eval("ringroomClient.user.name")
        if name != dname:
            return "the phone shows the sender as %r, the desktop's user is %r" % (name, dname)
        await send_by_keyboard(phone, "Hi Ben, from my phone")
        await desk.wait_for("%s.includes('Hi Ben, from my phone')" % TEXTS, "the phone's reply on the desktop")
        return await ids_unique_and_sorted(phone) or await ids_unique_and_sorted(desk)
    await suite.case("chat: Enter sends, pending -> sent, 'you' and a timestamp; the other page shows it", chat())

    async def typing():
        await phone.eval("document.getElementById('text').focus()")
        await phone.type_text("I am typi")
        pname = await phone.eval("ringroomClient.user.name")
        await desk.wait_for("document.getElementById('typing').textContent === %s" % js(pname + " is typing…"),
                            "'<phone user> is typing…' on the desktop")
        await suite.shot(desk, "desktop-typing")
        await phone.type_text("ng something")
        await phone.press_enter()
        await desk.wait_for("document.getElementById('typing').textContent === ''",
                            "the typing line clears once the message is sent")
        await desk.wait_for("%s.includes('I am typing something')" % TEXTS, "the typed message")
        return None
    await suite.case("typing: the other page shows who is typing, and clears it on send", typing())

    async def scrollback():
        # a room of its own with enough messages that the initial state
        # (the newest 50) leaves older ones
        writer = await browser.new_page(**DESKTOP)
        await writer.goto(base + "/?room=%s-history&name=Cleo" % ROOM)
        await writer.wait_for(STATE + " === 'online'", "writer online")
        for i in range(60):
            r = await writer.eval("ringroomClient.send(%s).then(a => a.id)" % js("filler %d" % i))
            if r != i + 1:
                return "send returned %r, not %d" % (r, i + 1)
        await writer.send("Target.closeTarget", {"targetId": writer.target})
        third = await browser.new_page(**DESKTOP)
        await third.goto(base + "/?room=%s-history&name=Dev" % ROOM)
        await third.wait_for(STATE + " === 'online'", "third page online")
        n0 = len(await third.eval(IDS))
        await third.wait_for("!document.getElementById('older').hidden", "a 'Load earlier messages' button")
        await third.eval("document.getElementById('older').click()")
        await third.wait_for("%s.length > %d" % (IDS, n0), "older messages prepended")
        ids = await third.eval(IDS)
        if ids[0] != 1 and len(ids) < n0 + 30:
            return "the first page of history did not arrive: %s" % ids[:5]
        await third.wait_for("document.getElementById('older').hidden || %s[0] > 1" % IDS, "button state")
        while not await third.eval("document.getElementById('older').hidden"):
            before = len(await third.eval(IDS))
            await third.eval("document.getElementById('older').click()")
            await third.wait_for("%s.length > %d || document.getElementById('older').hidden" % (IDS, before),
                                 "another page")
        ids = await third.eval(IDS)
        if ids != list(range(1, ids[-1] + 1)):
            return "after scrolling back the page does not hold 1..%d once each: %s" % (ids[-1], ids)
        await third.send("Target.closeTarget", {"targetId": third.target})
        return None
    await suite.case("scroll-back: 'Load earlier messages' pages through history down to the first message",
                     scrollback())

    async def reload_resume():
        uid = await phone.eval("ringroomClient.user.id")
        before = await phone.eval(IDS)
        await phone.reload()
        await phone.wait_for(STATE + " === 'online'", "phone online after reload")
        if await phone.eval("ringroomClient.user.id") != uid:
            return "after a reload the phone is another user (%s, was %s)" % (
                await phone.eval("ringroomClient.user.id"), uid)
        ids = await phone.eval(IDS)
        if ids[-len(before):] != before[-len(ids):] and before[-1] not in ids:
            return "the messages before the reload are not shown: %s" % ids[-5:]
        # away (another page in this tab), the desktop talks, the phone comes back
        await phone.goto("about:blank")
        await desk.eval("ringroomClient.send('while you were away')")
        await phone.goto(base + "/?room=%s&name=Ana" % ROOM)
        await phone.wait_for(STATE + " === 'online'", "phone online after coming back")
        await phone.wait_for("%s.filter(t => t === 'while you were away').length === 1" % TEXTS,
                             "the message sent while away, once")
        if await phone.eval("ringroomClient.user.id") != uid:
            return "coming back in the same tab made a new user"
        # its earlier messages (kept across the reload) are still its own
        mine = await phone.eval("[...document.querySelectorAll('#log li.msg')].filter(li => "
                                "li.querySelector('.text').textContent === 'Hi Ben, from my phone')"
                                ".map(li => li.querySelector('.who').textContent)")
        if mine != ["you"]:
            return "the phone's own earlier message shows as %r after coming back" % mine
        await suite.shot(phone, "phone-after-reload")
        return await ids_unique_and_sorted(phone)
    await suite.case("reload-and-resume: same user, earlier messages kept, missed ones once", reload_resume())

    async def restart():
        port = broker.port
        n_desk = len(await desk.eval(IDS))
        if broker.stop() is not None:
            return "the broker did not drain cleanly"
        for p, what in ((phone, "phone"), (desk, "desktop")):
            await p.wait_for("['offline','connecting'].includes(%s)" % STATE, what + " offline")
            await p.wait_for("document.getElementById('text').disabled", what + ": input disabled while offline")
        await desk.wait_for("!document.getElementById('notice').hidden && "
                            "/restarting|cannot be reached|Reconnecting/.test(document.getElementById('notice').textContent)",
                            "the desktop says why it is offline")
        await suite.shot(phone, "phone-offline")
        broker.port = port
        start_on_port(broker, port)
        await phone.wait_for(STATE + " === 'online'", "phone back online", timeout=90)
        await desk.wait_for(STATE + " === 'online'", "desktop back online", timeout=90)
        if await desk.eval("document.getElementById('text').disabled"):
            return "input still disabled after reconnecting"
        await send_by_keyboard(desk, "after the restart")
        await desk.wait_for("[...document.querySelectorAll('#log li.msg.own')].some(li => "
                            "li.querySelector('.text').textContent === 'after the restart' && li.dataset.id)",
                            "the desktop's message after the restart stored")
        await phone.wait_for("%s.includes('after the restart')" % TEXTS, "a message after the restart")
        if len(await desk.eval(IDS)) < n_desk + 1:
            return "the desktop lost messages over the restart"
        return await ids_unique_and_sorted(phone) or await ids_unique_and_sorted(desk)
    await suite.case("broker restart: offline with a reason and input disabled, then back; nothing lost or doubled",
                     restart())

    async def final_shots():
        await suite.shot(phone, "phone-after-restart")
        await suite.shot(desk, "desktop-after-restart")
        return None
    await suite.case("screenshots of the phone and desktop pages after the restart", final_shots())


async def run_auth(suite, browser, broker, secret):
    base = "http://127.0.0.1:%d" % broker.port
    desk = await browser.new_page(**DESKTOP)
    phone = await browser.new_page(**PHONE)

    async def unauthorized():
        await desk.goto(base + "/?room=locked")
        await desk.eval("window.__attempts = 0")
        await desk.wait_for(STATE + " === 'stopped'", "stopped after the 401")
        reason = await desk.eval("document.getElementById('status').dataset.reason")
        if reason != "auth":
            return "state reason %r, not auth" % reason
        if await desk.eval("document.getElementById('join').hidden"):
            return "the sign-in form is not shown"
        err = await desk.eval("document.getElementById('join-error').textContent")
        if "token" not in err:
            return "the form does not say a token is needed: %r" % err
        if await desk.eval("document.activeElement.id") != "token":
            return "focus is not on the token field"
        await suite.shot(desk, "desktop-auth-required")
        # no retry loop: count connection attempts for a while
        await desk.eval("window.__states = []; ringroomClient.on('state', s => window.__states.push(s.state))")
        await asyncio.sleep(3)  # a retry loop would show within this (back-off starts at 0.5 s)
        states = await desk.eval("window.__states")
        if states:
            return "the page kept trying after the 401: %s" % states
        return None
    await suite.case("401: the page asks for a token once, focuses it, and does not retry", unauthorized())

    async def sign_in():
        token = mint(secret, "u-dana", "Dana", ["read", "write"])
        await desk.eval("document.getElementById('token').focus()")
        await desk.type_text(token)
        await desk.press_enter()
        await desk.wait_for(STATE + " === 'online'", "online with the token")
        if await desk.eval("ringroomClient.user.name") != "Dana":
            return "the user is not the token's"
        if "token" in await desk.eval("location.href"):
            return "the token is in the address"
        await send_by_keyboard(desk, "signed in as Dana")
        await desk.wait_for("[...document.querySelectorAll('#log li.msg.own')].some(li => li.dataset.status === 'sent')",
                            "Dana's message sent")
        return None
    await suite.case("token: joining with a valid token from the form works", sign_in())

    async def read_only():
        token = mint(secret, "u-rob", "Rob", ["read"])
        await phone.goto(base + "/?room=locked&token=" + token)
        await phone.wait_for(STATE + " === 'online'", "read-only page online")
        if "token" in await phone.eval("location.href"):
            return "the token stayed in the address: %s" % await phone.eval("location.href")
        if not await phone.eval("document.getElementById('text').disabled && document.getElementById('send').disabled"):
            return "the input is enabled for a read-only user"
        ph = await phone.eval("document.getElementById('text').placeholder")
        if "Read-only" not in ph:
            return "the field does not say read-only: %r" % ph
        await phone.wait_for("document.getElementById('notice').dataset.reason === 'read-only'", "a read-only notice")
        await desk.eval("ringroomClient.send('for the reader')")
        await phone.wait_for("%s.includes('for the reader')" % TEXTS, "the reader gets messages")
        await suite.shot(phone, "phone-read-only")
        # a keystroke into the disabled field does nothing, and no error
        # frame ever arrived (errors would show as a warning notice)
        await phone.type_text("x")
        r = await phone.eval("ringroomClient.history({limit: 1}).then(() => document.getElementById('notice').dataset.reason)")
        if r != "read-only":
            return "a notice other than read-only: %r" % r
        # reload: the token is not in the address any more, the tab kept it
        await phone.reload()
        await phone.wait_for(STATE + " === 'online'", "read-only page online after a reload")
        if await phone.eval("ringroomClient.user.name") != "Rob":
            return "after a reload the reader is not Rob"
        return None
    await suite.case("read-only token: token leaves the URL, input disabled with a reason, no errors", read_only())

    async def showcase():
        # a conversation between signed-in people, for the screenshots
        # (docs/screenshots/): the phone writes as Ana, the desktop as Dana
        ana = mint(secret, "u-ana", "Ana", ["read", "write"])
        await phone.goto(base + "/?room=lobby&token=" + ana)
        await desk.goto(base + "/?room=lobby")  # Dana's token is kept by her tab
        await phone.wait_for(STATE + " === 'online'", "Ana online")
        await desk.wait_for(STATE + " === 'online'", "Dana online")
        lines = [(desk, "Morning! Is the deploy still on for ten?"),
                 (phone, "Yes, ten sharp. I'm on the train, be there in 20"),
                 (desk, "Great. I'll post the checklist here"),
                 (desk, "1. drain node A  2. upgrade  3. watch /healthz")]
        for p, text in lines:
            await send_by_keyboard(p, text)
            await p.wait_for("[...document.querySelectorAll('#log li.msg.own')].some(li => "
                             "li.querySelector('.text').textContent === %s && li.dataset.status === 'sent')" % js(text),
                             "sent: " + text)
        await phone.wait_for("%s.includes(%s)" % (TEXTS, js(lines[-1][1])), "the checklist on the phone")
        await phone.eval("document.getElementById('text').focus()")
        await phone.type_text("On my w")
        await desk.wait_for("document.getElementById('typing').textContent === 'Ana is typing…'",
                            "'Ana is typing…' on the desktop")
        await desk.wait_for("document.querySelectorAll('#users li').length === 2", "two people online")
        await suite.shot(phone, "phone-chat")
        await suite.shot(desk, "desktop-chat")
        return None
    await suite.case("signed-in conversation on a phone and a desktop (screenshots)", showcase())


def start_on_port(broker, port):
    """Restart a stopped rrtest.Broker on the same port and --data-dir."""
    import subprocess
    err = open(broker.stderr_path, "ab")
    broker.proc = subprocess.Popen(broker.argv(), stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    err.close()
    broker.terminated = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            st, _h, _b, _c = rrtest.http_request(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", timeout=1.0)
            if st == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the broker did not come back on port %d" % port)


SECRET = "page-test-secret"


async def main_async(report, out_dir, anon, auth):
    chromium = cdp.find_chromium()
    suite = Suite(report, out_dir)
    secret = SECRET
    browser = cdp.Browser(chromium)
    try:
        anon.start()
        st, h, body, _c = rrtest.http_request(anon.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        report.check("GET / serves the page, which loads /ringroom.js",
                     None if st == 200 and b'from "/ringroom.js"' in body else "status %s" % st)
        st, h, body, _c = rrtest.http_request(anon.port, b"GET /ringroom.js HTTP/1.1\r\nHost: x\r\n\r\n")
        report.check("GET /ringroom.js serves the client library as JavaScript",
                     None if st == 200 and h.get("content-type", "").startswith("text/javascript")
                     and b"export class RingroomClient" in body else "status %s, %r" % (st, h))
        await browser.start()
        await run_anonymous(suite, browser, anon)
        auth.start()
        await run_auth(suite, browser, auth, secret)
    finally:
        await browser.close()
    docs = os.environ.get("RINGROOM_DOCS_SCREENSHOTS")
    if docs:
        os.makedirs(docs, exist_ok=True)
        for name in ("phone-chat", "desktop-chat"):
            if name in suite.shots:
                shutil.copy(suite.shots[name], os.path.join(docs, name + ".png"))
    print("screenshots: %s" % ", ".join(sorted(suite.shots.values())), flush=True)


def main():
    binary = rrtest.load_binary_arg("page_product")
    if cdp.find_chromium() is None:
        print("chromium not installed: skipping")
        return 77
    out_dir = os.environ.get("RINGROOM_TEST_OUTPUT") or os.path.join(os.getcwd(), "test-output", "page")
    os.makedirs(out_dir, exist_ok=True)
    report = rrtest.Report("page_product")
    # --chat-rate: the scroll-back case sends 60 messages at once
    anon = rrtest.Broker(binary, ["--chat-rate", "1000"], name="page-anon")
    auth = rrtest.Broker(binary, ["--auth-secret", SECRET], name="page-auth")
    brokers = [anon, auth]
    try:
        asyncio.run(main_async(report, out_dir, anon, auth))
    except Exception as e:
        report.fail("page product suite", "%s: %s" % (type(e).__name__, e))
    return rrtest.finish_suite(report, brokers)


if __name__ == "__main__":
    sys.exit(main())
