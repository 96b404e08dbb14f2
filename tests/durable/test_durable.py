"""Durable rooms (issue #3) beyond the chat suite: hibernation (a room
without members leaves memory after --room-idle-evict and its next
connection rebuilds it from RocksDB with the same epoch and log), the data
dir lock (a second broker on the same --data-dir is refused with a clear
message), and --durability values."""
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
import rrtest  # noqa: E402
import websockets  # noqa: E402


def rooms_open(port):
    return int(rrtest.get_metrics(port).sum("ringroom_rooms_open"))


async def chat_round(port, room, n):
    async with websockets.connect("ws://127.0.0.1:%d/chat/%s" % (port, room)) as ws:
        w = json.loads(await ws.recv())
        await ws.recv()  # initial_state
        for i in range(n):
            await ws.send(json.dumps({"type": "message", "content": "m%d" % i,
                                      "requestId": str(i)}))
        acks = 0
        while acks < n:
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            acks += m.get("type") == "ack"
        return w


async def initial(port, room):
    async with websockets.connect("ws://127.0.0.1:%d/chat/%s" % (port, room)) as ws:
        w = json.loads(await ws.recv())
        s = json.loads(await ws.recv())
        return w, s


def pings_during_hold(port):
    """Two pings pipelined with the upgrade reach the chat room while it holds
    the member's output for its initial state: the pongs must pass the hold
    and the connection must go on working (a pong once pointed into the
    wrong queue here and could crash the broker)."""
    import socket
    req, _key = rrtest.upgrade_request("/chat/holdroom")
    frames = (rrtest.encode_frame(rrtest.OP_PING, b"p1") + rrtest.encode_frame(rrtest.OP_PING, b"p2"))
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    s.sendall(req + frames)
    data = b""
    while b"initial_state" not in data or b"p2" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return "connection closed: %r" % data[-200:]
        data += chunk
    if not data.startswith(b"HTTP/1.1 101"):
        return "no 101: %r" % data[:60]
    s.sendall(rrtest.encode_frame(rrtest.OP_TEXT, b'{"type":"ping"}'))
    more = b""
    while b"pong" not in more:
        chunk = s.recv(65536)
        if not chunk:
            return "closed after the pings"
        more += chunk
    s.close()
    return None


EVENTUALLY = 30.0


def main():
    binary = rrtest.load_binary_arg("durable")
    report = rrtest.Report("durable")
    data = tempfile.mkdtemp(prefix="ringroom-durable-")
    # What makes a room leave memory is the broker's --room-idle-evict, never
    # a reading of the clock: with 10m an empty room stays (checked at once),
    # with 200ms it leaves eventually (polled up to EVENTUALLY: a generous
    # deadline for a shared machine, maybe running a sanitizer build).
    keep_data = tempfile.mkdtemp(prefix="ringroom-durable-keep-")
    keep = rrtest.Broker(binary, ["--data-dir", keep_data, "--room-idle-evict", "10m"],
                         name="durable-keep")
    b = rrtest.Broker(binary, ["--data-dir", data, "--room-idle-evict", "200ms"],
                      name="durable")
    try:
        keep.start()
        base = rooms_open(keep.port)
        asyncio.run(chat_round(keep.port, "sleepy", 1))
        kept = rooms_open(keep.port)
        report.check("hibernation: an empty room stays while --room-idle-evict (10m) has not "
                     "passed", None if kept == base + 1 else
                     "rooms_open %d before, %d after its last member left" % (base, kept))
        b.start()
        p = b.port
        base = rooms_open(p)
        w1 = asyncio.run(chat_round(p, "sleepy", 5))
        deadline = time.monotonic() + EVENTUALLY
        after = rooms_open(p)
        while after != base and time.monotonic() < deadline:
            time.sleep(0.1)
            after = rooms_open(p)
        report.check("hibernation: an empty room leaves memory after --room-idle-evict (200ms)",
                     None if after == base else
                     "rooms_open base %d, still %d %.0fs after its last member left" %
                     (base, after, EVENTUALLY))
        report.run("pings pipelined with the upgrade pass the replay hold", pings_during_hold, p)
        w2, s2 = asyncio.run(initial(p, "sleepy"))
        msgs = [m["content"] for m in s2["messages"]]
        report.check("hibernation: the next connection rebuilds the room from RocksDB",
                     None if w2["epoch"] == w1["epoch"] and w2["lastId"] == 5 and
                     msgs == ["m%d" % i for i in range(5)] else
                     "epoch %r->%r lastId %r messages %r" % (w1["epoch"], w2["epoch"],
                                                           w2["lastId"], msgs))
        second = subprocess.run([binary, "--port", str(rrtest.free_port()), "--data-dir", data],
                                capture_output=True, timeout=20)
        report.check("a second broker on the same data dir is refused",
                     None if second.returncode != 0 and b"in use" in second.stderr else
                     "status %d: %r" % (second.returncode, second.stderr[-300:]))
        bad = subprocess.run([binary, "--durability", "fast"], capture_output=True, timeout=10)
        report.check("--durability fast exits 2 naming the flag",
                     None if bad.returncode == 2 and b"--durability" in bad.stderr else
                     "status %d: %r" % (bad.returncode, bad.stderr))
        fresh = tempfile.mkdtemp(prefix="ringroom-durable-fresh-")
        os.rmdir(fresh)
        b2 = rrtest.Broker(binary, ["--data-dir", os.path.join(fresh, "a", "b")],
                           name="durable-mkdir")
        try:
            b2.start()
            report.check("a missing data dir is created", None if os.path.isdir(
                os.path.join(fresh, "a", "b")) else "not created")
        finally:
            err = b2.stop()
            report.check("durable-mkdir exits 0 on SIGTERM", err)
    except Exception as e:
        report.fail("durable suite", "%s: %s" % (type(e).__name__, e))
    return rrtest.finish_suite(report, [keep, b])


if __name__ == "__main__":
    sys.exit(main())
