#!/usr/bin/python3
"""Rooms of a loaded handler across nodes (--cluster with --handler; README
"Cluster", kernel-notes/cluster.md "Handler rooms across nodes"): two
brokers on one nats-server that this suite starts, both mounting the example
handler (examples/counter_room.c) on /counter/. Each node runs the handler
for its own members; what the handler broadcasts reaches the room's members
on every node.

Cases:
  - x on node-a, y on node-b: x's "incr" is counted by node-a's handler and
    its "count 1" reaches x and y; y's "incr" is counted by node-b's own
    handler (its state is per node) and reaches both; each broadcast once;
  - a tagged broadcast ("to vip …") from node-a reaches the member carrying
    the tag on node-b, not the one without; so does one to a 256-byte tag;
  - a handler's answer to one member (rr_member_send: "get") stays with it;
  - another room of the same handler hears none of it;
  - the last member of the room on node-b leaves: node-b gives up the
    room's subscription (ringroom_cluster_subscriptions back to 0);
  - a broadcast with a forged envelope on the room's subject (no node
    name, a bad tag) is dropped and logged once, and the room goes on.

Usage: test_cluster_handler.py <ringroom binary> <libcounter_room.so>
"""

import asyncio
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import rrtest  # noqa: E402
import test_cluster_broker as tcb  # noqa: E402

import websockets  # noqa: E402  (python3-websockets, Debian)

LABEL = "cluster_handler"
# What must happen within this: a passing run never waits it out.
EVENTUALLY = 30.0
# What must not happen: a broadcast that would come comes well within this
# (they cross in milliseconds), so its absence after it means it was not sent.
QUIET = 0.5
NODES = ("node-a", "node-b")
PREFIX = "/counter/"
LONG_TAG = "k" * 256  # RR_TAG_BYTES_MAX


def fnv64(s):
    h = 14695981039346656037
    for b in s.encode():
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def subject(room):
    """The room's subject (src/rt/layer.c: ringroom.h.<FNV-1a of the mount
    prefix>; room names of [A-Za-z0-9_-] need no escape)."""
    return "ringroom.h.%016x.%s" % (fnv64(PREFIX), room)


class Member:
    def __init__(self, node, ws):
        self.node = node
        self.ws = ws
        self.got = []
        self.reader = asyncio.ensure_future(self.read())

    async def read(self):
        try:
            async for m in self.ws:
                self.got.append(m)
        except websockets.ConnectionClosed:
            pass

    async def wait(self, pred, what):
        deadline = time.monotonic() + EVENTUALLY
        while time.monotonic() < deadline:
            if pred():
                return None
            await asyncio.sleep(0.01)
        return "%s: no %s within %.0fs (got %r)" % (self.node, what, EVENTUALLY, self.got[-5:])

    def count(self, text):
        return sum(1 for m in self.got if m == text)

    async def close(self):
        await self.ws.close()
        await self.reader


class Suite:
    def __init__(self, report, brokers, nats):
        self.report = report
        self.brokers = brokers
        self.nats = nats

    async def open(self, node, room):
        url = "ws://127.0.0.1:%d%s%s" % (self.brokers[node].port, PREFIX, room)
        return Member(node, await websockets.connect(url, ping_interval=None,
                                                     open_timeout=EVENTUALLY))

    def subs(self, node):
        return rrtest.get_metrics(self.brokers[node].port).value(
            "ringroom_cluster_subscriptions")

    async def subscribed(self, node, n):
        deadline = time.monotonic() + EVENTUALLY
        while time.monotonic() < deadline:
            if self.subs(node) == n:
                return None
            await asyncio.sleep(0.05)
        return "%s: %s room subscriptions, want %d" % (node, self.subs(node), n)

    async def counts(self):
        x = await self.open("node-a", "r1")
        y = await self.open("node-b", "r1")
        self.x, self.y = x, y
        for node in NODES:
            why = await self.subscribed(node, 1)
            if why:
                return why
        # a node's interest reaches the server a moment after its
        # subscription completes: each side first hears the other's probe
        for a, b in ((x, y), (y, x)):
            await b.ws.send("tag probe")
            why = await b.wait(lambda: "tagged" in b.got, "tagged")
            if why:
                return why
            why = await self.probe(a, b)
            if why:
                return why
        # node-b's handler has its own state: its first incr is 1 too
        for sender, text, times in ((x, "count 1", 1), (y, "count 1", 2), (x, "count 2", 1)):
            await sender.ws.send("incr")
            for m in (x, y):
                why = await m.wait(lambda: m.count(text) >= times,
                                   "%s from %s" % (text, sender.node))
                if why:
                    return why
        await asyncio.sleep(QUIET)
        for m in (x, y):
            if m.count("count 1") != 2 or m.count("count 2") != 1:
                return "%s heard %r (each broadcast once)" % (m.node, m.got)
        return None

    async def probe(self, a, b):
        """a sends "to probe …" until b, tagged probe, hears it."""
        deadline = time.monotonic() + EVENTUALLY
        while time.monotonic() < deadline:
            await a.ws.send("to probe ping")
            for _ in range(20):
                if "ping" in b.got:
                    return None
                await asyncio.sleep(0.01)
        return "%s never heard %s's probe" % (b.node, a.node)

    async def tagged(self):
        x, y = self.x, self.y
        z = await self.open("node-b", "r1")
        self.z = z
        await z.ws.send("tag vip " + LONG_TAG)
        why = await z.wait(lambda: "tagged" in z.got, "tagged")
        if why:
            return why
        await x.ws.send("to vip hello-vips")
        why = await z.wait(lambda: "hello-vips" in z.got, "the tagged broadcast")
        if why:
            return why
        # ordering check: x's next incr reaches y after the tagged text
        # would have, and y must not have it
        await x.ws.send("incr")
        why = await y.wait(lambda: y.count("count 3") >= 1, "count 3")
        if why:
            return why
        if "hello-vips" in y.got:
            return "y on node-b (no tag) got the tagged broadcast"
        if z.count("hello-vips") != 1:
            return "z got the tagged broadcast %d times" % z.count("hello-vips")
        # the longest tag a member may carry crosses too
        await x.ws.send("to %s hello-long" % LONG_TAG)
        why = await z.wait(lambda: "hello-long" in z.got, "the broadcast to a 256-byte tag")
        if why:
            return why
        return None

    async def private(self):
        x, y = self.x, self.y
        before = list(y.got)
        await x.ws.send("get")
        why = await x.wait(lambda: x.count("count 3") >= 2, "get's answer")
        if why:
            return why
        await asyncio.sleep(QUIET)
        if y.got != before:
            return "y heard x's private answer: %r" % y.got[len(before):]
        return None

    async def other_room(self):
        w = await self.open("node-b", "r2")
        try:
            why = await self.subscribed("node-b", 2)
            if why:
                return why
            await self.x.ws.send("incr")
            why = await self.y.wait(lambda: self.y.count("count 4") >= 1, "count 4")
            if why:
                return why
            await asyncio.sleep(QUIET)
            if w.got:
                return "a member of another room heard %r" % w.got
        finally:
            await w.close()
        return await self.subscribed("node-b", 1)

    async def forged(self):
        """Publish on the room's subject from a plain NATS connection: an
        envelope of an unknown version, and a tagged one whose tag is cut
        short. Both dropped, logged once; the room goes on."""
        s = self.nats.client()
        try:
            bad = [b"\x07\x01\x05nodeXbogus", b"\x02\x01\x05nodeX\x00\x09vi"]
            out = b""
            for p in bad:
                out += b"PUB %s %d\r\n%s\r\n" % (subject("r1").encode(), len(p), p)
            out += b"PING\r\n"
            s.sendall(out)
            buf = b""
            while b"PONG" not in buf:
                buf += s.recv(4096)
        finally:
            s.close()
        b = self.brokers["node-b"]
        if not tcb.wait_log(b, "is not a ringroom node's: dropped"):
            return "node-b does not log the forged message"
        await self.x.ws.send("incr")
        for m in (self.x, self.y):
            why = await m.wait(lambda: m.count("count 5") >= 1, "count 5 after the forgery")
            if why:
                return why
        if any("bogus" in m or m == "vi" for m in self.y.got + self.z.got):
            return "a forged payload was shown"
        if b.stderr_text().count("is not a ringroom node's") != 1:
            return "logged %d times, want once" % b.stderr_text().count(
                "is not a ringroom node's")
        return None

    async def leave(self):
        await self.y.close()
        await self.z.close()
        return await self.subscribed("node-b", 0)

    async def run(self):
        cases = [
            ("a handler broadcast reaches the room's members on every node, once; each "
             "node's handler keeps its own state", self.counts),
            ("a tagged broadcast reaches the tagged member on the other node only",
             self.tagged),
            ("an answer to one member stays with it", self.private),
            ("another room of the handler hears nothing of it", self.other_room),
            ("a forged message on the room's subject is dropped, logged once",
             self.forged),
            ("the node's last member leaves: the node gives up the room's subscription",
             self.leave),
        ]
        ok = True
        for name, fn in cases:
            if not ok:
                self.report.fail(name, "not run: an earlier case failed")
                continue
            try:
                why = await fn()
            except Exception as e:  # noqa: BLE001
                why = "%s: %s" % (type(e).__name__, e)
            self.report.check(name, why)
            ok = why is None
        await self.x.close()


def main():
    if len(sys.argv) < 3:
        print("usage: %s <ringroom binary> <libcounter_room.so>" % sys.argv[0])
        return 2
    so = os.path.abspath(sys.argv[2])

    def args_of(_name, _keyfile):
        return ["--handler", "%s=%s" % (PREFIX, so)]

    async def run(report, brokers, nats):
        await Suite(report, brokers, nats).run()
    return tcb.run_nodes(LABEL, NODES, args_of, run)


if __name__ == "__main__":
    sys.exit(main())
