"""A small Chrome DevTools Protocol client for the page tests: headless
Chromium (Debian's `chromium`) driven over its debugging WebSocket with
python3-websockets. Each Page is a tab in its own browser context (its own
cookies and storage: another person), with its own viewport.

Nothing here waits for a fixed time: Page.wait_for polls a JavaScript
condition until a generous deadline that only bounds a hang."""

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

import websockets

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions",
         "--disable-features=Translate,MediaRouter,OptimizationHints",
         "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
         "--disable-backgrounding-occluded-windows", "--hide-scrollbars", "--mute-audio",
         "--remote-debugging-port=0"]


def find_chromium():
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    return None


class CdpError(Exception):
    pass


class Browser:
    def __init__(self, binary):
        self.binary = binary
        self.profile = tempfile.mkdtemp(prefix="ringroom-cdp-")
        self.proc = None
        self.ws = None
        self.seq = 0
        self.waiting = {}
        self.listeners = {}  # sessionId -> list of callables(method, params)
        self.reader = None

    async def start(self, timeout=60):
        self.proc = subprocess.Popen([self.binary] + FLAGS + ["--user-data-dir=" + self.profile,
                                                              "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise CdpError("chromium exited with %d" % self.proc.returncode)
            try:
                with open(port_file) as f:
                    lines = f.read().split("\n")
                if len(lines) >= 2 and lines[1]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise CdpError("chromium did not open its debugging port")
            await asyncio.sleep(0.05)
        url = "ws://127.0.0.1:%s%s" % (lines[0].strip(), lines[1].strip())
        self.ws = await websockets.connect(url, max_size=64 << 20, ping_interval=None)
        self.reader = asyncio.create_task(self._read())
        return self

    async def _read(self):
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg:
                    fut = self.waiting.pop(msg["id"], None)
                    if fut and not fut.done():
                        if "error" in msg:
                            fut.set_exception(CdpError("%s" % msg["error"]))
                        else:
                            fut.set_result(msg.get("result", {}))
                else:
                    for fn in self.listeners.get(msg.get("sessionId"), []):
                        fn(msg.get("method"), msg.get("params", {}))
        except websockets.ConnectionClosed:
            pass
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(CdpError("browser connection closed"))

    async def send(self, method, params=None, session=None, timeout=60):
        self.seq += 1
        msg = {"id": self.seq, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_event_loop().create_future()
        self.waiting[self.seq] = fut
        await self.ws.send(json.dumps(msg))
        return await asyncio.wait_for(fut, timeout)

    async def new_page(self, width, height, mobile=False, scale=1):
        ctx = (await self.send("Target.createBrowserContext"))["browserContextId"]
        tid = (await self.send("Target.createTarget", {"url": "about:blank",
                                                       "browserContextId": ctx}))["targetId"]
        sid = (await self.send("Target.attachToTarget", {"targetId": tid, "flatten": True}))["sessionId"]
        page = Page(self, sid, tid)
        self.listeners[sid] = [page._event]
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile})
        if mobile:
            await page.send("Emulation.setTouchEmulationEnabled", {"enabled": True})
        return page

    async def close(self):
        try:
            if self.ws:
                await self.send("Browser.close", timeout=10)
        except Exception:
            pass
        if self.reader:
            self.reader.cancel()
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser, session, target):
        self.browser = browser
        self.session = session
        self.target = target
        self.console = []   # console messages and exceptions, for failure reports
        self.loaded = asyncio.Event()

    def _event(self, method, params):
        if method == "Runtime.consoleAPICalled":
            self.console.append("console.%s: %s" % (params.get("type"), " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", []))))
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.console.append("exception: %s" % (d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Page.loadEventFired":
            self.loaded.set()

    async def send(self, method, params=None, timeout=60):
        return await self.browser.send(method, params, self.session, timeout)

    async def goto(self, url):
        self.loaded.clear()
        await self.send("Page.navigate", {"url": url})
        await asyncio.wait_for(self.loaded.wait(), 60)

    async def reload(self):
        self.loaded.clear()
        await self.send("Page.reload", {"ignoreCache": True})
        await asyncio.wait_for(self.loaded.wait(), 60)

    async def eval(self, expr):
        r = await self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                                 "awaitPromise": True})
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CdpError("%s: %s" % (expr[:80], d.get("exception", {}).get("description") or d.get("text")))
        return r.get("result", {}).get("value")

    async def wait_for(self, expr, what, timeout=30):
        """Poll expr until truthy; its value. The deadline bounds a hang only."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                v = await self.eval(expr)
                if v:
                    return v
                last = v
            except CdpError as e:
                last = str(e)
            await asyncio.sleep(0.05)
        raise AssertionError("not within %d s: %s (last value %r; page console: %s)" % (
            timeout, what, last, self.console[-5:]))

    async def type_text(self, text):
        """Keyboard input into the focused element, as a person types."""
        await self.send("Input.insertText", {"text": text})

    async def press_enter(self):
        for t in ("keyDown", "keyUp"):
            await self.send("Input.dispatchKeyEvent", {"type": t, "key": "Enter", "code": "Enter",
                                                       "windowsVirtualKeyCode": 13,
                                                       "text": "\r" if t == "keyDown" else ""})

    async def screenshot(self, path):
        r = await self.send("Page.captureScreenshot", {"format": "png"})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        return path
