#!/usr/bin/python3
"""/raw/ rooms across nodes (issue 15, kernel-notes/cluster.md "/raw/ across
nodes"): three brokers on one nats-server with JetStream that this suite
starts on a temporary folder and a loopback port, 300 members of one room
spread over them (Debian's python3-websockets), 100 per node; node-c runs
with --spread-at 1, so its members stay on the core that accepted them and
the room's home fans out to them through the spread-room path.

Cases:
  - every node subscribes once to the room's subject (its home core, while
    it has members), and a message from each node reaches every member of
    the other nodes (the warm-up: until then NATS may not have every
    node's interest yet);
  - 10 publishers (4 on node-a, 3 on node-b, 3 on node-c) x 100 messages:
    every member gets each message from the others exactly once, each
    publisher's in order, never its own; each node published each of its
    members' messages once (ringroom_cluster_messages_out_total) and took
    in each message of the other nodes once (..._in_total);
  - the backend API: POST /api/raw/{room} on one node reaches the members
    of every node;
  - text and binary messages of 0 to 1,000,000 bytes cross unchanged;
  - a room's only member on a node comes and goes 20 times (SUBSCRIBE and
    UNSUBSCRIBE in flight together): the node ends subscribed while the
    last one stays, unsubscribed once it leaves;
  - NATS stopped for 5 s: /metrics (ringroom_cluster_up 0, state
    reconnecting) and the log say so on every node; /raw/ keeps working
    within each node (and nothing of it reaches the other nodes, checked
    by order after the recovery); NATS back: connected again, and messages
    cross the nodes again, exactly once and in order;
  - the room's last member leaves: each node gives its subscription up.

Usage: test_cluster_raw.py <ringroom binary>
"""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import rrtest  # noqa: E402
import test_cluster_broker as tcb  # noqa: E402  (the Nats helper, wait_metrics, wait_log)

import websockets  # noqa: E402  (python3-websockets, Debian)

LABEL = "cluster_raw"
# What must happen (a subscription, a delivery, a reconnect) within this: a
# passing run never waits it out; long because the machine is shared and
# the sanitizer build is several times slower.
EVENTUALLY = 60.0
NODES = ("node-a", "node-b", "node-c")
PER_NODE = 100
ROOM = "span.room~1"  # '.' and '~' are escaped in the subject
PUBLISHERS = {"node-a": 4, "node-b": 3, "node-c": 3}
PER_PUBLISHER = 100
OUTAGE = 5.0  # how long NATS stays down (the figure, not a bound)
API_KEY = "cluster-raw-test-key-0123456789"


class Member:
    def __init__(self, node, idx, ws):
        self.node = node
        self.idx = idx
        self.ws = ws
        self.got = []
        self.task = None
        self.error = None

    def name(self):
        return "%s/%d" % (self.node, self.idx)

    async def read(self):
        try:
            async for m in self.ws:
                self.got.append(m)
        except websockets.exceptions.ConnectionClosed as e:
            if self.error is None:
                self.error = "closed: %s" % e
        except Exception as e:  # noqa: BLE001 (reported by the cases)
            self.error = "%s: %s" % (type(e).__name__, e)

    def with_prefix(self, prefix):
        return [m for m in self.got if isinstance(m, str) and m.startswith(prefix)]


async def connect(port):
    return await websockets.connect("ws://127.0.0.1:%d/raw/%s" % (port, ROOM),
                                    compression=None, ping_interval=None, open_timeout=20,
                                    close_timeout=5, max_queue=None)


async def wait_for(pred, what):
    """None once pred() is true, else why not within EVENTUALLY."""
    deadline = time.monotonic() + EVENTUALLY
    while time.monotonic() < deadline:
        if pred():
            return None
        await asyncio.sleep(0.05)
    return "%s: not within %.0fs" % (what, EVENTUALLY)


async def metrics_wait(broker, pred, what):
    """Poll /metrics (off the event loop) until pred(m); None or why not."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + EVENTUALLY
    m = None
    while time.monotonic() < deadline:
        m = await loop.run_in_executor(None, rrtest.get_metrics, broker.port)
        if pred(m):
            return None
        await asyncio.sleep(0.1)
    return "%s: %s" % (broker.name, what)


def metric(m, name):
    return m.sum(name) if m.series(name) else 0


class Suite:
    def __init__(self, report, brokers, nats):
        self.report = report
        self.brokers = brokers  # name -> rrtest.Broker
        self.nats = nats
        self.members = {n: [] for n in NODES}
        self.sent = {n: 0 for n in NODES}  # /raw/ messages the members of a node sent

    def all_members(self):
        return [m for n in NODES for m in self.members[n]]

    async def send(self, member, text):
        await member.ws.send(text)
        self.sent[member.node] += 1

    async def case(self, name, coro):
        try:
            why = await coro
        except Exception as e:  # noqa: BLE001
            why = "%s: %s" % (type(e).__name__, e)
        self.report.check(name, why)
        return why is None

    # ---- the cases ----

    async def join(self):
        for n in NODES:
            port = self.brokers[n].port
            for i in range(0, PER_NODE, 25):
                wss = await asyncio.gather(*(connect(port) for _ in range(25)))
                for ws in wss:
                    mem = Member(n, len(self.members[n]), ws)
                    mem.task = asyncio.ensure_future(mem.read())
                    self.members[n].append(mem)
        for n in NODES:
            why = await metrics_wait(self.brokers[n],
                                     lambda m: m.value("ringroom_cluster_subscriptions") == 1,
                                     "ringroom_cluster_subscriptions is not 1")
            if why:
                return why
        # node-c's members are spread: the home fans out to the other core
        why = await metrics_wait(self.brokers["node-c"],
                                 lambda m: metric(m, "ringroom_shard_members") > 0,
                                 "--spread-at 1 but no member held off the room's home")
        if why:
            return why
        return await self.crossing("w")

    async def crossing(self, prefix):
        """One member per node sends "<prefix>:<node>:<k>" every 100 ms until
        every member of the other nodes has one from it: from then on each
        node's subscription is known to NATS. Then a last "<prefix>f:<node>"
        from each, awaited everywhere: what came before it from that node
        has arrived (one publisher's order)."""
        senders = {n: self.members[n][-1] for n in NODES}

        def crossed(n):
            return all(m.with_prefix("%s:%s:" % (prefix, n))
                       for o in NODES if o != n for m in self.members[o])
        k = 0
        deadline = time.monotonic() + EVENTUALLY
        while not all(crossed(n) for n in NODES):
            if time.monotonic() > deadline:
                return "messages of %s did not reach every other node's members" % [
                    n for n in NODES if not crossed(n)]
            for n in NODES:
                if not crossed(n):
                    await self.send(senders[n], "%s:%s:%d" % (prefix, n, k))
            k += 1
            await asyncio.sleep(0.1)
        for n in NODES:
            await self.send(senders[n], "%sf:%s" % (prefix, n))
        return await wait_for(
            lambda: all(m.with_prefix("%sf:%s" % (prefix, o))
                        for n in NODES for m in self.members[n]
                        for o in NODES if m is not senders[o]),
            "the closing %sf messages" % prefix)

    async def snapshot(self):
        loop = asyncio.get_running_loop()
        out = {}
        for n in NODES:
            m = await loop.run_in_executor(None, rrtest.get_metrics, self.brokers[n].port)
            out[n] = (metric(m, "ringroom_cluster_messages_out_total"),
                      metric(m, "ringroom_cluster_messages_in_total"))
        return out

    async def publishers(self):
        before = await self.snapshot()
        sent_before = dict(self.sent)
        pubs = []
        for n in NODES:
            for j in range(PUBLISHERS[n]):
                pubs.append(self.members[n][j * 7])  # spread over the node's cores
        names = {id(p): "p%d" % i for i, p in enumerate(pubs)}

        async def publish(p):
            for s in range(PER_PUBLISHER):
                await self.send(p, "m:%s:%d" % (names[id(p)], s))
                if s % 10 == 9:
                    await asyncio.sleep(0.02)  # a small load for a shared machine
            await self.send(p, "e:%s" % names[id(p)])
        await asyncio.gather(*(publish(p) for p in pubs))
        everyone = self.all_members()

        def done(m):
            want = len(pubs) - (1 if id(m) in names else 0)
            return len(m.with_prefix("e:")) >= want
        why = await wait_for(lambda: all(done(m) for m in everyone),
                             "every member has every other publisher's end mark")
        if why:
            late = [m.name() for m in everyone if not done(m)]
            return "%s (%d members short, e.g. %s)" % (why, len(late), late[:3])
        bad = []
        for m in everyone:
            mine = names.get(id(m))
            seqs = {}
            for x in m.with_prefix("m:"):
                _, p, s = x.split(":")
                seqs.setdefault(p, []).append(int(s))
            for p in names.values():
                got = seqs.get(p, [])
                if p == mine:
                    if got:
                        bad.append("%s got %d of its own messages" % (m.name(), len(got)))
                elif got != list(range(PER_PUBLISHER)):
                    dup = len(got) - len(set(got))
                    bad.append("%s from %s: %d messages, %d duplicates, in order: %s" % (
                        m.name(), p, len(got), dup, got == sorted(got)))
            ends = m.with_prefix("e:")
            if len(ends) != len(set(ends)) or (mine and "e:" + mine in ends):
                bad.append("%s: end marks %s" % (m.name(), sorted(ends)))
        if bad:
            return "%d wrong: %s" % (len(bad), "; ".join(bad[:4]))
        # each node: its members' messages out once, the others' in once
        after = await self.snapshot()
        for n in NODES:
            out = after[n][0] - before[n][0]
            sent = self.sent[n] - sent_before[n]
            others = sum(self.sent[o] - sent_before[o] for o in NODES if o != n)
            inn = after[n][1] - before[n][1]
            if out != sent:
                return "%s: messages_out rose by %d, its members sent %d" % (n, out, sent)
            if inn != others:
                return "%s: messages_in rose by %d, the other nodes sent %d" % (n, inn, others)
        return None

    async def api(self):
        loop = asyncio.get_running_loop()
        body = b"from-the-api"
        req = (b"POST /api/raw/%s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
               b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
                   ROOM.encode(), API_KEY.encode(), len(body), body))
        st, _h, rb, _c = await loop.run_in_executor(
            None, rrtest.http_request, self.brokers["node-b"].port, req)
        if st != 200 or rb != b'{"delivered":%d}' % PER_NODE:
            return "POST /api/raw on node-b: %s %r (want 200 and its %d members)" % (
                st, rb, PER_NODE)
        everyone = self.all_members()
        why = await wait_for(lambda: all(m.with_prefix("from-the-api") for m in everyone),
                             "every member of every node has the API's message")
        if why:
            return why
        twice = [m.name() for m in everyone if len(m.with_prefix("from-the-api")) != 1]
        return "got it more than once: %s" % twice[:3] if twice else None

    async def outage(self):
        self.nats.kill()
        t0 = time.monotonic()
        for n in NODES:
            why = await metrics_wait(
                self.brokers[n],
                lambda m: (m.value("ringroom_cluster_up") == 0 and
                           m.value("ringroom_cluster_state", state="reconnecting") == 1),
                "ringroom_cluster_up is not 0 / state not reconnecting with NATS down")
            if why:
                return why
            if not tcb.wait_log(self.brokers[n], "lost the connection to NATS"):
                return "%s: the log does not say the cluster is down" % n
        # /raw/ within each node while NATS is down
        for n in NODES:
            s = self.members[n][3]
            await self.send(s, "o:%s" % n)
            why = await wait_for(lambda: all(m.with_prefix("o:%s" % n)
                                             for m in self.members[n] if m is not s),
                                 "%s's members have %s's message during the outage" % (n, n))
            if why:
                return why
        left = OUTAGE - (time.monotonic() - t0)
        if left > 0:
            await asyncio.sleep(left)
        self.nats.start()
        for n in NODES:
            why = await metrics_wait(self.brokers[n],
                                     lambda m: m.value("ringroom_cluster_up") == 1,
                                     "not connected again after NATS came back")
            if why:
                return why
            if not tcb.wait_log(self.brokers[n], "reconnected to"):
                return "%s: the log does not say it reconnected" % n
        why = await self.crossing("r")
        if why:
            return "after the outage: " + why
        # order: nothing sent during the outage crossed nodes; within the
        # node each member got it once
        for n in NODES:
            for m in self.members[n]:
                for o in NODES:
                    c = len(m.with_prefix("o:%s" % o))
                    want = 0 if o != n or m is self.members[n][3] else 1
                    if c != want:
                        return "%s has %d of %s's outage message, want %d" % (
                            m.name(), c, o, want)
        # exactly once and in order again
        pubs = [self.members[n][5] for n in NODES]
        for i in range(20):
            for p in pubs:
                await self.send(p, "q:%s:%d" % (p.node, i))
        await asyncio.gather(*(self.send(p, "qe:%s" % p.node) for p in pubs))
        everyone = self.all_members()
        why = await wait_for(lambda: all(len(m.with_prefix("qe:")) >= (2 if m in pubs else 3)
                                         for m in everyone),
                             "the messages after the outage")
        if why:
            return why
        for m in everyone:
            for p in pubs:
                got = [int(x.split(":")[2]) for x in m.with_prefix("q:%s:" % p.node)]
                want = [] if m is p else list(range(20))
                if got != want:
                    return "%s from %s after the outage: %s" % (m.name(), p.node, got[:25])
        return None

    async def leave(self):
        await asyncio.gather(*(m.ws.close() for m in self.all_members()),
                             return_exceptions=True)
        for n in NODES:
            why = await metrics_wait(self.brokers[n],
                                     lambda m: m.value("ringroom_cluster_subscriptions") == 0,
                                     "still subscribed once its members left")
            if why:
                return why
        return None

    async def churn(self):
        """A room whose only member on node-a comes and goes 20 times, its
        SUBSCRIBE and UNSUBSCRIBE overtaking each other: node-a ends
        subscribed while the last one stays (a message from node-b reaches
        it), and unsubscribed once it leaves."""
        room = "churn"
        pa, pb = self.brokers["node-a"].port, self.brokers["node-b"].port

        def url(port):
            return "ws://127.0.0.1:%d/raw/%s" % (port, room)
        for _ in range(20):
            ws = await websockets.connect(url(pa), compression=None, ping_interval=None)
            await ws.close()
        a = await websockets.connect(url(pa), compression=None, ping_interval=None)
        b = await websockets.connect(url(pb), compression=None, ping_interval=None)
        try:
            deadline = time.monotonic() + EVENTUALLY
            got = None
            while got is None and time.monotonic() < deadline:
                await b.send("hello")
                try:
                    got = await asyncio.wait_for(a.recv(), 0.2)
                except asyncio.TimeoutError:
                    pass
            if got != "hello":
                return "node-a's member never heard node-b (%r)" % got
        finally:
            await a.close()
        why = await metrics_wait(self.brokers["node-a"],
                                 lambda m: m.value("ringroom_cluster_subscriptions") == 1,
                                 "not down to the big room's subscription once the churn "
                                 "room's member left")
        await b.close()
        return why

    async def sizes(self):
        """Text and binary messages of every length encoding, empty to
        1,000,000 bytes (a frame and the envelope fit NATS's default
        max_payload of 1 MiB), cross from node-a to node-b unchanged."""
        room = "sizes"
        pa, pb = self.brokers["node-a"].port, self.brokers["node-b"].port

        async def conn(port):
            return await websockets.connect("ws://127.0.0.1:%d/raw/%s" % (port, room),
                                            compression=None, ping_interval=None,
                                            max_size=2 << 20)
        a, b = await conn(pa), await conn(pb)
        try:
            # the first message that crosses says node-b's interest is there
            deadline = time.monotonic() + EVENTUALLY
            got = None
            while got != "ready" and time.monotonic() < deadline:
                await a.send("ready")
                try:
                    got = await asyncio.wait_for(b.recv(), 0.2)
                except asyncio.TimeoutError:
                    pass
            if got != "ready":
                return "nothing crossed from node-a to node-b"
            want = []
            for n in (0, 1, 125, 126, 65535, 65536, 1000000):
                want.append(os.urandom(n))
                want.append(("é" * n)[:n // 2] + "x" * (n - 2 * (n // 2)))
            for w in want:
                await a.send(w)
            await a.send("end")
            got = []
            while True:
                m = await asyncio.wait_for(b.recv(), EVENTUALLY)
                if m == "end":
                    break
                if m != "ready":
                    got.append(m)
            if len(got) != len(want):
                return "%d messages crossed, want %d" % (len(got), len(want))
            for g, w in zip(got, want):
                if type(g) is not type(w) or g != w:
                    return "a %s of %d bytes came as a %s of %d" % (
                        type(w).__name__, len(w), type(g).__name__, len(g))
            return None
        finally:
            await a.close()
            await b.close()

    async def run(self):
        cases = [
            ("10 publishers x %d: each message once to every other member, in order, never "
             "back; once out and once in per node" % PER_PUBLISHER, self.publishers),
            ("POST /api/raw on one node reaches every node's members", self.api),
            ("a member coming and going 20 times: subscribed while it stays, "
             "unsubscribed after", self.churn),
            ("text and binary, 0 to 1,000,000 bytes, cross nodes unchanged", self.sizes),
            ("NATS down %.0fs: metrics and log say so, /raw/ stays within each node; back: "
             "messages cross again, once, in order" % OUTAGE, self.outage),
            ("the last members leave: every node unsubscribes", self.leave),
        ]
        joined = await self.case("300 members over 3 nodes; each node subscribes once and "
                                 "hears the others", self.join())
        for name, fn in cases:
            if joined:
                await self.case(name, fn())
            else:  # the same case list either way (tests/README.md, rule 4)
                self.report.fail(name, "not run: the members did not join")
        stray = [m.name() + ": " + m.error for m in self.all_members()
                 if m.error and "1000" not in m.error and "1005" not in m.error]
        self.report.check("no member was closed by a node", "; ".join(stray[:3]) or None)


def main():
    def args_of(name, keyfile):
        # node-c's members spread: the home fans out to its other core
        return (["--api-key-file", keyfile, "--idle-timeout", "10m"] +
                (["--spread-at", "1"] if name == "node-c" else []))

    async def run(report, brokers, nats):
        await Suite(report, brokers, nats).run()
    return tcb.run_nodes(LABEL, NODES, args_of, run, api_key=API_KEY)


if __name__ == "__main__":
    sys.exit(main())
