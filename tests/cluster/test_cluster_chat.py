#!/usr/bin/python3
"""/chat/ rooms across nodes with one order (issue 15, kernel-notes/cluster.md
"/chat/ across nodes"): three brokers on one nats-server with JetStream
that this suite starts on a temporary folder and a loopback port.

Cases:
  - members on every node get the same epoch (the stream's);
  - publishers on every node at once (compare-and-set races between the
    nodes): every ack names an id, and every member on every node sees
    ids 1..N, contiguous, in the same order with the same contents; each
    acked message is there once, under its acked id;
  - a member joining any node with since/epoch replays the rest exactly
    once, then synced;
  - the backend API's publish on one node: answered with the next id and
    the epoch once stored, seen on every node;
  - a node SIGKILLed while another publishes, then restarted on its data
    folder: it catches up from the stream (the same epoch; members joining
    it replay everything from 0), and publishes in the one order;
  - a room leaves memory (--room-idle-evict 300ms) and comes back: it
    loads from its copy and the stream (replay from 0, the next id);
  - node-c SIGKILLed 5 times while a member on every node publishes:
    each node's log replayed from 0 is 1..N, the same on every node, and
    every acked message is in it exactly once, under its acked id;
  - NATS stopped for 5 s while a member on every node publishes: answers
    are storage_unavailable, never a false ack (every acked message is in
    the log afterwards, once), the members stay connected, a room that must
    load answers 503; NATS back: every node is acked again, every node's
    log replayed from 0 is 1..N and the same, and that room loads.

Usage: test_cluster_chat.py <ringroom binary>
"""

import asyncio
import json
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "chat"))
import rrtest  # noqa: E402
from test_chat import mint_token_here  # noqa: E402
import test_cluster_broker as tcb  # noqa: E402  (the Nats helper, wait_metrics)

import websockets  # noqa: E402  (python3-websockets, Debian)

LABEL = "cluster_chat"
# What must happen (a connect, an ack, a delivery) within this: a passing
# run never waits it out; long for the shared machine and sanitizer builds.
EVENTUALLY = 60.0
NODES = ("node-a", "node-b", "node-c")
ROOM = "talk.room"
MEMBERS_PER_NODE = 3
PER_PUBLISHER = 20
API_KEY = "cluster-chat-test-key-0123456789"
KILLS = 10
SECRET = "cluster-chat-secret-0123456789"


class Chat:
    """One /chat/ connection; a reader task files every JSON frame."""

    def __init__(self, node, ws):
        self.node = node
        self.ws = ws
        self.frames = []
        self.closed = None
        self.task = asyncio.ensure_future(self._read())

    users = 0

    @classmethod
    async def open(cls, node, port, query=None, user=None):
        """A JWT user (--auth-secret): a new one unless user is given."""
        if user is None:
            cls.users += 1
            user = "u%d" % cls.users
        query = dict(query or {})
        query["token"] = mint_token_here(SECRET, user, user, ["read", "write"])
        url = "ws://127.0.0.1:%d/chat/%s?%s" % (port, ROOM, urllib.parse.urlencode(query))
        ws = await websockets.connect(url, max_size=None, ping_interval=None,
                                      close_timeout=2, open_timeout=20)
        return cls(node, ws)

    async def _read(self):
        try:
            async for m in self.ws:
                self.frames.append(json.loads(m))
        except Exception as e:  # noqa: BLE001
            self.closed = "%s: %s" % (type(e).__name__, e)
        if self.closed is None:
            self.closed = "closed %s" % self.ws.close_code

    def of(self, typ):
        return [f for f in self.frames if f.get("type") == typ]

    def message_ids(self):
        return [f["message"]["id"] for f in self.of("message")]

    async def wait(self, pred, what):
        deadline = time.monotonic() + EVENTUALLY
        while time.monotonic() < deadline:
            if pred():
                return None
            if self.closed:
                return "%s: %s while waiting for %s" % (self.node, self.closed, what)
            await asyncio.sleep(0.02)
        return "%s: no %s within %.0fs (last frames %s)" % (
            self.node, what, EVENTUALLY, json.dumps(self.frames[-3:])[:300])

    async def publish(self, content, rid):
        """The ack or error for one message (sent again with the same rid:
        the answer to this sending)."""
        start = len(self.frames)
        await self.ws.send(json.dumps({"type": "message", "content": content,
                                       "requestId": rid}))
        got = []

        def answered():
            got[:] = [f for f in self.frames[start:] if f.get("requestId") == rid and
                      f.get("type") in ("ack", "error")]
            return bool(got)
        why = await self.wait(answered, "answer to %s" % rid)
        if why:
            raise AssertionError(why)
        return got[0]

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:  # noqa: BLE001
            pass
        self.task.cancel()


class Suite:
    def __init__(self, report, brokers, nats):
        self.report = report
        self.brokers = brokers
        self.nats = nats
        self.members = []
        self.acked = {}  # content -> id
        self.duplicates = 0

    async def case(self, name, coro):
        try:
            why = await coro
        except Exception as e:  # noqa: BLE001
            why = "%s: %s" % (type(e).__name__, e)
        self.report.check(name, why)
        return why is None

    async def join(self):
        for n in NODES:
            for _ in range(MEMBERS_PER_NODE):
                self.members.append(await Chat.open(n, self.brokers[n].port))
        for m in self.members:
            why = await m.wait(lambda: m.of("welcome"), "welcome")
            if why:
                return why
        epochs = {m.of("welcome")[0]["epoch"] for m in self.members}
        if len(epochs) != 1:
            return "epochs differ between nodes: %s" % sorted(epochs)
        self.epoch = epochs.pop()
        return None

    def same_log(self, n):
        """Every member has ids 1..n in order, with one content per id."""
        contents = {}
        for m in self.members:
            ids = m.message_ids()
            if ids != list(range(1, n + 1)):
                return "%s: ids %s (want 1..%d)" % (m.node, ids[:12] + ["..."] + ids[-5:], n)
            for f in m.of("message"):
                c = f["message"]["content"]
                if contents.setdefault(f["message"]["id"], c) != c:
                    return "id %d is %r on one member and %r on another" % (
                        f["message"]["id"], contents[f["message"]["id"]], c)
        for c, i in self.acked.items():
            if contents.get(i) != c:
                return "%r was acked as id %d, which is %r" % (c, i, contents.get(i))
        if len(set(contents.values())) != len(contents):
            return "a content appears under two ids"
        return None

    async def publishers(self):
        pubs = [m for m in self.members if self.members.index(m) % MEMBERS_PER_NODE == 0]

        async def run(p, k):
            for i in range(PER_PUBLISHER):
                content = "%s-%d-%d" % (p.node, k, i)
                f = await p.publish(content, "r-%d-%d" % (k, i))
                if f["type"] != "ack":
                    raise AssertionError("%s: %s" % (content, f))
                self.acked[content] = f["id"]
        await asyncio.gather(*(run(p, k) for k, p in enumerate(pubs)))
        n = len(pubs) * PER_PUBLISHER
        for m in self.members:
            why = await m.wait(lambda: len(m.of("message")) >= n, "%d messages" % n)
            if why:
                return why
        self.n = n
        return self.same_log(n)

    async def replay(self):
        since = self.n // 2
        for n in NODES:
            c = await Chat.open(n, self.brokers[n].port, {"since": since, "epoch": self.epoch})
            try:
                why = await c.wait(lambda: c.of("synced"), "synced")
                if why:
                    return why
                ids = c.message_ids()
                if ids != list(range(since + 1, self.n + 1)):
                    return "%s: replay after %d gave %s" % (n, since, ids)
            finally:
                await c.close()
        return None

    async def api(self):
        loop = asyncio.get_running_loop()
        body = json.dumps({"content": "from-the-api", "userId": "ci"}).encode()
        req = (b"POST /api/chat/%s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
                   ROOM.encode(), API_KEY.encode(), len(body), body))
        st, _h, rb, _c = await loop.run_in_executor(
            None, rrtest.http_request, self.brokers["node-b"].port, req)
        want = {"id": self.n + 1, "epoch": self.epoch}
        if st != 200 or json.loads(rb) != want:
            return "POST /api/chat on node-b: %s %r (want 200 %s)" % (st, rb, want)
        self.n += 1
        self.acked["from-the-api"] = self.n
        for m in self.members:
            why = await m.wait(lambda: len(m.of("message")) >= self.n, "the API's message")
            if why:
                return why
        return self.same_log(self.n)

    async def resend(self):
        """The same message sent again with the same requestId (what a
        client does when it lost the ack): acked with duplicate and the
        first one's id, stored and shown once; another user's message with
        the same requestId is its own."""
        a = [m for m in self.members if m.node == "node-a"][0]
        b = [m for m in self.members if m.node == "node-b"][0]
        f1 = await a.publish("sent-twice", "same-rid")
        f2 = await a.publish("sent-twice", "same-rid")
        if f1["type"] != "ack" or f1["id"] != self.n + 1 or f1.get("duplicate"):
            return "the first sending: %s (want ack %d)" % (f1, self.n + 1)
        if f2 != {"type": "ack", "id": self.n + 1, "duplicate": True, "requestId": "same-rid"}:
            return "the resend: %s (want a duplicate ack of %d)" % (f2, self.n + 1)
        f3 = await b.publish("other-user-same-rid", "same-rid")
        if f3["type"] != "ack" or f3["id"] != self.n + 2 or f3.get("duplicate"):
            return "another user with the same requestId: %s (want ack %d)" % (f3, self.n + 2)
        self.n += 2
        self.acked["sent-twice"] = self.n - 1
        self.acked["other-user-same-rid"] = self.n
        for m in self.members:
            why = await m.wait(lambda: len(m.of("message")) >= self.n, "the new messages")
            if why:
                return why
        return self.same_log(self.n)

    async def restart(self):
        """SIGKILL node-c; node-a goes on; node-c comes back on its data
        folder, catches up from the stream, and its members replay and
        publish in the one order."""
        c = self.brokers["node-c"]
        c.kill()
        self.members = [m for m in self.members if m.node != "node-c"]
        a = self.members[0]
        for i in range(5):
            f = await a.publish("while-c-is-down-%d" % i, "wcd-%d" % i)
            if f["type"] != "ack" or f["id"] != self.n + 1:
                return "with node-c down: %s (want ack %d)" % (f, self.n + 1)
            self.n += 1
            self.acked["while-c-is-down-%d" % i] = self.n
        c.start()
        if tcb.wait_metrics(c, lambda m: m.value("ringroom_cluster_up") == 1) is None:
            return "node-c did not connect again"
        fresh = []
        for _ in range(MEMBERS_PER_NODE):
            m = await Chat.open("node-c", c.port, {"since": 0, "epoch": self.epoch})
            fresh.append(m)
            why = await m.wait(lambda: m.of("synced"), "synced after the restart")
            if why:
                return why
            if m.of("welcome")[0]["epoch"] != self.epoch:
                return "node-c's epoch changed over its restart: %s" % m.of("welcome")[0]
        self.members += fresh
        why = self.same_log(self.n)
        if why:
            return "after node-c's restart: " + why
        f = await fresh[0].publish("from-c-again", "fca")
        if f["type"] != "ack" or f["id"] != self.n + 1:
            return "node-c after its restart: %s (want ack %d)" % (f, self.n + 1)
        self.n += 1
        self.acked["from-c-again"] = self.n
        for m in self.members:
            why = await m.wait(lambda: len(m.of("message")) >= self.n, "node-c's message")
            if why:
                return why
        return self.same_log(self.n)

    async def evicted(self):
        """A room on node-a loses its last member and leaves memory
        (--room-idle-evict); back, it loads from its copy and the stream:
        replay from 0, and the next id."""
        a = self.brokers["node-a"]
        room_q = {"since": 0, "epoch": self.epoch}

        async def member(query=None):
            query = dict(query or {})
            query["token"] = mint_token_here(SECRET, "evictor", "evictor", ["read", "write"])
            url = "ws://127.0.0.1:%d/chat/evict.room?%s" % (a.port, urllib.parse.urlencode(query))
            ws = await websockets.connect(url, ping_interval=None, open_timeout=20)
            return Chat("node-a", ws)
        loop = asyncio.get_running_loop()

        def rooms():
            return rrtest.get_metrics(a.port).sum("ringroom_rooms_open")
        before = await loop.run_in_executor(None, rooms)
        m = await member()
        f = await m.publish("before-eviction", "be")
        if f["type"] != "ack" or f["id"] != 1:
            return "the first message of a new room: %s" % f
        await m.close()
        deadline = time.monotonic() + EVENTUALLY
        while await loop.run_in_executor(None, rooms) > before:
            if time.monotonic() > deadline:
                return "the room did not leave memory"
            await asyncio.sleep(0.1)
        m = await member(room_q)
        try:
            why = await m.wait(lambda: m.of("synced"), "synced")
            if why:
                return why
            if m.message_ids() != [1]:
                return "replay after the eviction: %s" % m.message_ids()
            f = await m.publish("after-eviction", "ae")
            if f["type"] != "ack" or f["id"] != 2:
                return "after the eviction: %s" % f
        finally:
            await m.close()
        return None

    def load(self, tag, acked, problems, may_drop=()):
        """A publisher on every node (one JWT user each) until stop():
        a message whose answer was lost (a kill) or that got
        storage_unavailable is sent again with the same requestId until it
        is acked: the cluster stores it once. acked gets content -> id;
        a publisher on a node in may_drop reconnects when it loses its
        connection, any other reports it in problems."""
        st = {"stop": False, "errors": 0, "acks": {n: 0 for n in NODES}}

        async def publisher(node):
            user = "%s-%s" % (tag, node)
            k = 0
            pending = None
            while not st["stop"]:
                try:
                    p = await Chat.open(node, self.brokers[node].port, user=user)
                    while not st["stop"]:
                        if pending is None:
                            pending = "%s-%d" % (user, k)
                            k += 1
                        f = await p.publish(pending, pending)
                        if f["type"] == "ack":
                            if "id" not in f:
                                problems.append("%s: ack without an id: %s" % (pending, f))
                            else:
                                acked[pending] = f["id"]
                            if f.get("duplicate"):
                                self.duplicates += 1
                            st["acks"][node] += 1
                            pending = None
                        elif f.get("code") == "storage_unavailable":
                            st["errors"] += 1
                        else:
                            problems.append("%s: %s" % (pending, f))
                        await asyncio.sleep(0.01)
                    await p.close()
                except (OSError, AssertionError, websockets.exceptions.WebSocketException):
                    if node not in may_drop:
                        problems.append("%s's publisher lost its connection" % node)
                        return
                    await asyncio.sleep(0.1)  # its node is down: try again
        tasks = [asyncio.ensure_future(publisher(n)) for n in NODES]

        async def stop():
            st["stop"] = True
            await asyncio.gather(*tasks, return_exceptions=True)
        st["finish"] = stop
        return st

    async def replayed_log(self, acked):
        """Every node's log replayed from 0: ids 1..N, the same on every
        node, nothing twice, each acked message once under its acked id.
        (why, N)"""
        logs = {}
        for n in NODES:
            r = await Chat.open(n, self.brokers[n].port, {"since": 0, "epoch": self.epoch})
            try:
                why = await r.wait(lambda: r.of("synced"), "synced")
                if why:
                    return why, 0
                logs[n] = [(f["message"]["id"], f["message"]["content"])
                           for f in r.of("message")]
            finally:
                await r.close()
        first = logs[NODES[0]]
        ids = [i for i, _ in first]
        if ids != list(range(1, len(ids) + 1)):
            return "node-a's replay from 0: ids not 1..N: %s" % ids[:20], 0
        for n in NODES[1:]:
            if logs[n] != first:
                return "%s's replay differs from node-a's (%d vs %d messages)" % (
                    n, len(logs[n]), len(first)), 0
        where = {}
        for i, content in first:
            where.setdefault(content, []).append(i)
        twice = [c for c, ids in where.items() if len(ids) > 1]
        if twice:
            return "stored more than once (resent with the same requestId): %s" % [
                (c, where[c]) for c in twice[:5]], 0
        for content, i in acked.items():
            if where.get(content) != [i]:
                return "acked %r as %d; the log has it at %s" % (
                    content, i, where.get(content)), 0
        return None, len(first)

    async def caught_up(self):
        for m in self.members:
            why = await m.wait(lambda: len(m.of("message")) >= self.n, "every message")
            if why:
                return why
        return self.same_log(self.n)

    async def kill_loop(self):
        """Node-c SIGKILLed KILLS times while a member on every node
        publishes; then every node's log, replayed from 0, holds ids 1..N
        contiguous, the same on every node, each acked message exactly
        once and nothing twice."""
        c = self.brokers["node-c"]
        acked = dict(self.acked)
        problems = []
        self.members = [m for m in self.members if m.node != "node-c"]
        ld = self.load("kl", acked, problems, may_drop=("node-c",))
        for _ in range(KILLS):
            await asyncio.sleep(0.5)
            c.kill()
            await asyncio.sleep(0.3)
            c.start()
            if tcb.wait_metrics(c, lambda m: m.value("ringroom_cluster_up") == 1) is None:
                problems.append("node-c did not connect again")
                break
        await asyncio.sleep(0.5)
        await ld["finish"]()
        if problems:
            return "; ".join(problems[:3])
        why, self.n = await self.replayed_log(acked)
        if why:
            return why
        self.acked = acked
        print("%s: kill loop: %d messages, %d resends answered as duplicates" % (
            LABEL, self.n, self.duplicates))
        for _ in range(MEMBERS_PER_NODE):
            m = await Chat.open("node-c", c.port, {"since": 0, "epoch": self.epoch})
            self.members.append(m)
            why = await m.wait(lambda: m.of("synced"), "synced")
            if why:
                return why
        return await self.caught_up()

    async def cold_room(self):
        """Join a room that is not in memory on node-b: the status, 101 as 0."""
        try:
            ws = await websockets.connect("ws://127.0.0.1:%d/chat/cold.room?token=%s" % (
                self.brokers["node-b"].port, mint_token_here(SECRET, "cold", "cold", ["read"])),
                open_timeout=EVENTUALLY)
            await ws.close()
            return 0
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code

    async def outage(self):
        """NATS stopped for 5 s while a member on every node publishes:
        storage_unavailable meanwhile, never a false ack (every ack is in
        the log afterwards), the members stay connected, a room that must
        load answers 503; NATS back: every node publishes again, and the
        log is 1..N on every node with each acked message once."""
        acked = dict(self.acked)
        problems = []
        ld = self.load("ou", acked, problems)
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        self.nats.kill()
        for n in NODES:
            if tcb.wait_metrics(self.brokers[n],
                                lambda m: m.value("ringroom_cluster_up") == 0) is None:
                return "%s: still up with NATS down" % n
        errors = ld["errors"]
        status = await self.cold_room()
        if status != 503:
            return "joining a room that must load with NATS down: %s (want 503)" % status
        await asyncio.sleep(max(0.0, t0 + 5.0 - time.monotonic()))  # down for 5 s at least
        if ld["errors"] <= errors:
            return "no storage_unavailable while NATS was down"
        acks = dict(ld["acks"])
        self.nats.start()
        for n in NODES:
            if tcb.wait_metrics(self.brokers[n],
                                lambda m: m.value("ringroom_cluster_up") == 1) is None:
                return "%s: not connected again" % n
        deadline = time.monotonic() + EVENTUALLY
        while any(ld["acks"][n] < acks[n] + 3 for n in NODES):
            if time.monotonic() > deadline or problems:
                break
            await asyncio.sleep(0.05)
        await ld["finish"]()
        if problems:
            return "; ".join(problems[:3])
        late = [n for n in NODES if ld["acks"][n] < acks[n] + 3]
        if late:
            return "no acks after NATS came back on %s" % late
        why, self.n = await self.replayed_log(acked)
        if why:
            return why
        self.acked = acked
        stray = [m.node + ": " + m.closed for m in self.members if m.closed]
        if stray:
            return "members closed: %s" % stray[:3]
        print("%s: outage: %d storage_unavailable answers, log of %d messages after" % (
            LABEL, ld["errors"], self.n))
        status = await self.cold_room()
        if status != 0:
            return "the room that could not load answers %s with NATS back" % status
        return await self.caught_up()

    async def run(self):
        cases = [
            ("publishers on every node at once: every member sees ids 1..N in one order, "
             "each acked message once under its id", self.publishers),
            ("since/epoch on any node replays the rest once, then synced", self.replay),
            ("POST /api/chat on one node: answered with the next id and the epoch, seen "
             "on every node", self.api),
            ("a resend with the same requestId: acked as a duplicate of the first, stored "
             "once; another user's same requestId is its own message", self.resend),
            ("SIGKILL a node, publish, restart it: it catches up (same epoch, replay from 0 "
             "on it), and its members publish in the one order", self.restart),
            ("a room leaves memory and comes back: replay from 0 and the next id",
             self.evicted),
            ("SIGKILL a node %d times while every node publishes: every node's log replayed "
             "from 0 is 1..N, the same everywhere, each acked message once" % KILLS,
             self.kill_loop),
            ("NATS stopped for 5 s while every node publishes: storage_unavailable, never "
             "a false ack, members stay, a cold room 503; back: acks again, 1..N everywhere, "
             "each acked message once", self.outage),
        ]
        ok = await self.case("%d members on 3 nodes get the same epoch" %
                             (MEMBERS_PER_NODE * 3), self.join())
        for name, fn in cases:
            if ok:
                ok = await self.case(name, fn())
            else:  # each case builds on the ones before; the same case list
                self.report.fail(name, "not run: an earlier case failed")
        await asyncio.gather(*(m.close() for m in self.members))


def main():
    def args_of(_name, keyfile):
        return ["--chat-rate", "1000", "--idle-timeout", "10m", "--room-idle-evict", "300ms",
                "--api-key-file", keyfile, "--auth-secret", SECRET]

    async def run(report, brokers, nats):
        await Suite(report, brokers, nats).run()
    return tcb.run_nodes(LABEL, NODES, args_of, run, api_key=API_KEY)


if __name__ == "__main__":
    sys.exit(main())
