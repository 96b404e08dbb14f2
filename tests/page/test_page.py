"""The web page at GET / (protocol.md): a chat client for /chat/{room}.
Headless Chromium loads it with ?room=..&say=..; the page (on /ringroom.js)
connects, reads welcome and initial_state, and sends the message; a python3-websockets
member of the same room must receive it as a chat `message` and see the
browser's user join. Exits 77 (skip) when chromium isn't installed."""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import rrtest  # noqa: E402
import websockets  # noqa: E402

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


async def watch(port, room, text, browser):
    async with websockets.connect("ws://127.0.0.1:%d/chat/%s" % (port, room)) as ws:
        await ws.recv()  # welcome
        await ws.recv()  # initial_state
        proc = browser()
        joined = False
        try:
            deadline = asyncio.get_event_loop().time() + 30
            while asyncio.get_event_loop().time() < deadline:
                try:
                    f = json.loads(await asyncio.wait_for(ws.recv(), 1))
                except asyncio.TimeoutError:
                    continue
                if f.get("type") == "user_joined":
                    joined = True
                if f.get("type") == "message" and f["message"]["content"] == text:
                    return None if joined else "message arrived but no user_joined first"
            return "the page's message never arrived (joined=%s)" % joined
        finally:
            proc.kill()
            proc.wait()


def main():
    if CHROMIUM is None:
        rrtest.skip_suite("page", "chromium is not installed (Debian package chromium)")
    binary = rrtest.load_binary_arg("page")
    report = rrtest.Report("page")
    b = rrtest.Broker(binary, [], name="page")
    profile = tempfile.mkdtemp(prefix="ringroom-chromium-")
    try:
        b.start()
        st, h, body, _c = rrtest.http_request(b.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        report.check("GET / serves the chat page",
                     None if st == 200 and b"/ringroom.js" in body and b"<script" in body else
                     "status %s, %d bytes" % (st, len(body)))
        text = "hello from chromium %d" % os.getpid()
        url = "http://127.0.0.1:%d/?room=pagetest&say=%s" % (b.port, text.replace(" ", "%20"))

        def browser():
            return subprocess.Popen([CHROMIUM] + FLAGS + ["--user-data-dir=" + profile,
                                                         "--remote-debugging-port=0", url],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        report.run("Chromium: the page joins the room and sends a chat message",
                   lambda: asyncio.run(watch(b.port, "pagetest", text, browser)))
    except Exception as e:
        report.fail("page suite", "%s: %s" % (type(e).__name__, e))
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return rrtest.finish_suite(report, [b])


if __name__ == "__main__":
    sys.exit(main())
