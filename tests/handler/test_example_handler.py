"""The example shared-object handler (examples/counter_room.c), loaded with
--handler, serving rooms: room storage survives a restart, tags route
targeted sends and can change, attachments are per member, and a bad
--handler value is refused with exit status 2."""
import asyncio
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import rrtest  # noqa: E402
import websockets  # noqa: E402


# A deadline for what must arrive eventually: generous, since the machine is
# shared and may run a sanitizer build. Nothing here waits for silence: that
# a member got nothing is shown by order (it got a later broadcast first).
EVENTUALLY = 30.0


async def recv(ws, t=EVENTUALLY):
    return await asyncio.wait_for(ws.recv(), t)


async def until_count(ws):
    """Every message before the next "count <n>" broadcast. The room runs
    one member's commands in order and each member's sends are queued in
    order, so a member that gets the count of an incr sent after a targeted
    send, without the targeted text before it, was not targeted."""
    got = []
    while True:
        m = await recv(ws)
        if m.startswith("count "):
            return got
        got.append(m)


async def case_counter(port):
    url = "ws://127.0.0.1:%d/counter/room1" % port
    a = await websockets.connect(url)
    b = await websockets.connect(url)
    try:
        await a.send("incr")
        ra, rb = await recv(a), await recv(b)
        if ra != rb:
            return "members saw different counts: %r %r" % (ra, rb)
        first = int(ra.split()[1])
        await b.send("incr")
        ra, rb = await recv(a), await recv(b)
        if ra != "count %d" % (first + 1) or rb != ra:
            return "second incr: %r %r" % (ra, rb)
        await a.send("get")
        g = await recv(a)
        if g != "count %d" % (first + 1):
            return "get after two incr: %r" % g
        return None
    finally:
        await a.close()
        await b.close()


async def get_count(port):
    async with websockets.connect("ws://127.0.0.1:%d/counter/room1" % port) as ws:
        await ws.send("get")
        return await recv(ws)


async def case_tags(port):
    url = "ws://127.0.0.1:%d/counter/tagroom" % port
    ws = [await websockets.connect(url) for _ in range(4)]
    try:
        await ws[0].send("tag red blue")
        await ws[1].send("tag red")
        await ws[2].send("tag green")
        for i in range(3):
            if await recv(ws[i]) != "tagged":
                return "tag not acknowledged"
        await ws[3].send("to red hello-red")
        await ws[3].send("incr")
        got = [await until_count(w) for w in ws]
        if got != [["hello-red"], ["hello-red"], [], []]:
            return "targeted send to red reached %r (before the incr broadcast)" % got
        await ws[3].send("who red")
        if await recv(ws[3]) != "members 2":
            return "who red"
        # tags change later (unlike Durable Objects)
        await ws[0].send("tag green")
        await recv(ws[0])
        await ws[3].send("to green hello-green")
        await ws[3].send("incr")
        got = [await until_count(w) for w in ws]
        if got != [["hello-green"], [], ["hello-green"], []]:
            return "after retagging, send to green reached %r (before the incr broadcast)" % got
        await ws[3].send("tag " + "x" * 257)
        if await recv(ws[3]) != "bad tags":
            return "a 257-byte tag was accepted"
        return None
    finally:
        for w in ws:
            await w.close()


async def case_attachment(port):
    url = "ws://127.0.0.1:%d/counter/noteroom" % port
    a = await websockets.connect(url)
    b = await websockets.connect(url)
    try:
        await a.send("note alice-was-here")
        if await recv(a) != "noted":
            return "note not stored"
        await b.send("mynote")
        if await recv(b) != "note ":
            return "b sees a's attachment"
        await a.send("mynote")
        r = await recv(a)
        return None if r == "note alice-was-here" else "attachment read back as %r" % r
    finally:
        await a.close()
        await b.close()


async def case_alarms(port):
    url = "ws://127.0.0.1:%d/counter/alarmroom" % port
    a = await websockets.connect(url)
    try:
        ids = []
        for i in range(5):  # many per room
            await a.send("alarm %d a%d" % (300 + 100 * i, i))
            r = await recv(a)
            if not r.startswith("alarm id "):
                return "alarm %d not set: %r" % (i, r)
            ids.append(r.split()[2])
        await a.send("cancel " + ids[2])
        if await recv(a) != "cancelled":
            return "cancel refused"
        await a.send("alarm 200 flaky1")  # fails once, retried after ~1 s
        await recv(a)
        # the first five alarms to fire, in order: a2 (cancelled, due at
        # 500 ms) would come before a3 and a4 if it fired; flaky1 is retried
        # after its failure, so it comes last
        got = []
        try:
            while len(got) < 5:
                got.append(await recv(a))
        except asyncio.TimeoutError:
            return "only %r fired within %.0fs" % (got, EVENTUALLY)
        want = ["alarm a0", "alarm a1", "alarm a3", "alarm a4", "alarm flaky1"]
        if got != want:
            return "alarms fired %r, expected %r in that order" % (got, want)
        await a.send("cancel " + ids[0])
        if await recv(a) != "no such alarm":
            return "a fired alarm could still be cancelled"
        return None
    finally:
        await a.close()


async def set_alarm(port, ms, text):
    async with websockets.connect("ws://127.0.0.1:%d/counter/restartroom" % port) as ws:
        await ws.send("alarm %d %s" % (ms, text))
        return await recv(ws)


async def fired(port, text):
    async with websockets.connect("ws://127.0.0.1:%d/counter/restartroom" % port) as ws:
        await ws.send("fired " + text)
        return await recv(ws)


def main():
    binary = rrtest.load_binary_arg("example_handler")
    so = sys.argv[2]
    report = rrtest.Report("example_handler")
    data = tempfile.mkdtemp(prefix="ringroom-example-data-")
    args = ["--handler", "/counter/=" + so, "--data-dir", data]
    b = rrtest.Broker(binary, args, name="example-handler")
    b2 = None
    try:
        b.start()
        report.run("counter: incr broadcast to members, stored in room storage",
                   lambda: asyncio.run(case_counter(b.port)))
        report.run("tags: targeted sends reach exactly the tagged members; tags change",
                   lambda: asyncio.run(case_tags(b.port)))
        report.run("attachment: per member", lambda: asyncio.run(case_attachment(b.port)))
        report.run("alarms: many per room, cancel, retry after a failure",
                   lambda: asyncio.run(case_alarms(b.port)))
        r = asyncio.run(set_alarm(b.port, 1500, "while-down"))
        report.check("alarm for the restart is set", None if r.startswith("alarm id") else r)
        before = asyncio.run(get_count(b.port))
        st = b.stop()
        report.check("example-handler exits 0 on SIGTERM",
                     st)
        b = None
        b2 = rrtest.Broker(binary, args, name="example-handler-restart")
        import time
        time.sleep(2.0)  # the alarm comes due while the broker is down
        b2.start()
        after = asyncio.run(get_count(b2.port))
        ok = False
        deadline = time.monotonic() + EVENTUALLY
        while time.monotonic() < deadline:
            if asyncio.run(fired(b2.port, "while-down")) == "fired yes":
                ok = True
                break
            time.sleep(0.2)
        report.check("an alarm due while the broker was down fires after the restart",
                     None if ok else "not fired within %.0fs of the restart" % EVENTUALLY)
        report.check("room storage survives a restart",
                     None if after == before and before != "count 0" else
                     "before %r after %r" % (before, after))
        bad = subprocess.run([binary, "--handler", "/x/=/nonexistent.so", "--data-dir", data],
                             capture_output=True, timeout=10)
        report.check("a missing handler object exits 2 naming it",
                     None if bad.returncode == 2 and b"/nonexistent.so" in bad.stderr else
                     "status %d: %r" % (bad.returncode, bad.stderr[-200:]))
    except Exception as e:
        report.fail("example handler", "%s: %s" % (type(e).__name__, e))
    return rrtest.finish_suite(report, [x for x in (b, b2) if x])


if __name__ == "__main__":
    sys.exit(main())
