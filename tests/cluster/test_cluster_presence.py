#!/usr/bin/python3
"""Presence, typing and joins of /chat/ rooms across nodes (issue 15,
kernel-notes/cluster.md "Presence across nodes"): three brokers on one
nats-server with JetStream that this suite starts on a temporary folder and
a loopback port. Users are JWT users (--auth-secret), so one user can have
connections on two nodes.

Each member's view of who is online is what a client makes of its frames:
initial_state's (or synced's) onlineUsers, then user_joined and
user_disconnected in order.

Cases:
  - alice on node-a, bob on node-b, carol on node-c: every view becomes
    {alice, bob, carol}; each user_joined of another user reaches each
    member exactly once;
  - GET /api/chat/{room}/presence on every node lists the three users,
    also on a node that has no member of the room (it loads the room and
    waits for the others' answers);
  - typing from node-b reaches node-a and node-c (not its sender); presence
    from node-c reaches everyone, its sender included, once each;
  - a session made on node-a resumes on node-b (same session, its
    attachment), then on node-c with the token node-b gave; node-b's token,
    used, resumes nowhere, and the first token (used on node-b) no longer
    resumes on node-a, whose own copy still matches it;
  - alice opens a second connection on node-c: nobody hears a second
    user_joined; her node-a connection closes: nobody hears
    user_disconnected; the node-c one closes: bob and carol hear it once;
  - DELETE /api/chat/{room}/members/dave on node-b closes dave's
    connections on node-a and node-c with 1008;
  - node-c SIGKILLed with carol and erin on it: alice and bob hear
    user_disconnected for both (the node's heartbeat stops); node-c back,
    carol joins it again: the others hear user_joined;
  - NATS stopped for 5 s: each node's view loses the other nodes' users
    (their heartbeats stop) and nobody is closed; NATS back: every view is
    the full set again (the rooms say hello again).

Usage: test_cluster_presence.py <ringroom binary>
"""

import asyncio
import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "chat"))
import rrtest  # noqa: E402
import test_cluster_broker as tcb  # noqa: E402  (the Nats helper, wait_metrics)
import test_cluster_chat as tcc  # noqa: E402  (its Chat reader)
from test_chat import mint_token_here  # noqa: E402

import websockets  # noqa: E402  (python3-websockets, Debian)

LABEL = "cluster_presence"
# What must happen within this: a passing run never waits it out.
EVENTUALLY = 60.0
NODES = ("node-a", "node-b", "node-c")
ROOM = "presence.room"
API_KEY = "cluster-presence-test-key-0123456789"


class Member(tcc.Chat):
    """One /chat/ connection of a JWT user (test_cluster_chat's reader)."""

    def __init__(self, node, user, ws):
        self.user = user
        super().__init__(node, ws)

    def view(self):
        """Who is online, as a client makes it out of its frames."""
        users = None
        for f in self.frames:
            t = f.get("type")
            if t in ("initial_state", "synced") and "onlineUsers" in f:
                users = {u["userId"] for u in f["onlineUsers"]}
            elif users is not None and t == "user_joined":
                users.add(f["userId"])
            elif users is not None and t == "user_disconnected":
                users.discard(f["userId"])
        return users

    def heard(self, typ, uid):
        return sum(1 for f in self.of(typ) if f.get("userId") == uid)

    async def wait_view(self, want):
        why = await self.wait(lambda: self.view() == set(want), "view %s" % sorted(want))
        return "%s/%s: %s (view %s)" % (self.node, self.user, why,
                                        sorted(self.view() or [])) if why else None


class Suite:
    def __init__(self, report, brokers, nats, secret):
        self.report = report
        self.brokers = brokers
        self.nats = nats
        self.secret = secret
        self.members = {}  # user -> Member (the first connection)

    async def open(self, node, user, session=None, room=ROOM):
        token = mint_token_here(self.secret, user, user.capitalize(), ["read", "write"])
        url = "ws://127.0.0.1:%d/chat/%s?token=%s" % (self.brokers[node].port, room, token)
        if session:
            url += "&session=%s&resume=%s" % session
        ws = await websockets.connect(url, ping_interval=None, close_timeout=2,
                                      open_timeout=EVENTUALLY)
        m = Member(node, user, ws)
        why = await m.wait(lambda: m.view() is not None, "initial_state")
        if why:
            raise AssertionError(why)
        return m

    async def case(self, name, coro):
        try:
            why = await coro
        except Exception as e:  # noqa: BLE001
            why = "%s: %s" % (type(e).__name__, e)
        self.report.check(name, why)
        return why is None

    async def views(self, members, want):
        for m in members:
            why = await m.wait_view(want)
            if why:
                return why
        return None

    async def three(self):
        for node, user in zip(NODES, ("alice", "bob", "carol")):
            self.members[user] = await self.open(node, user)
        ms = list(self.members.values())
        why = await self.views(ms, {"alice", "bob", "carol"})
        if why:
            return why
        await asyncio.sleep(0.5)  # a second user_joined would come by now
        for m in ms:
            for u in ("alice", "bob", "carol"):
                if u != m.user and m.heard("user_joined", u) > 1:
                    return "%s heard user_joined %s %d times" % (
                        m.user, u, m.heard("user_joined", u))
        return None

    async def presence_of(self, node, room):
        loop = asyncio.get_running_loop()
        req = (b"GET /api/chat/%s/presence HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s"
               b"\r\n\r\n" % (room.encode(), API_KEY.encode()))
        st, _h, body, _c = await loop.run_in_executor(
            None, rrtest.http_request, self.brokers[node].port, req)
        if st != 200:
            raise AssertionError("%s: presence %s %r" % (node, st, body))
        return json.loads(body)["onlineUsers"]

    async def api_presence(self):
        for n in NODES:
            got = await self.presence_of(n, ROOM)
            ids = sorted(u["userId"] for u in got)
            if ids != ["alice", "bob", "carol"]:
                return "%s: presence lists %s" % (n, ids)
            names = {u["userId"]: u["username"] for u in got}
            if names["carol"] != "Carol":
                return "%s: carol's name is %r" % (n, names["carol"])
        return None

    async def presence_cold(self):
        """Members on node-a and node-b; node-c has none, so the room is not
        in its memory: its presence API loads the room, hears the others
        and lists both."""
        room = "cold.presence.room"
        g = await self.open("node-a", "gina", room=room)
        h = await self.open("node-b", "hank", room=room)
        try:
            for m in (g, h):
                why = await m.wait_view({"gina", "hank"})
                if why:
                    return why
            got = sorted(u["userId"] for u in await self.presence_of("node-c", room))
            if got != ["gina", "hank"]:
                return "node-c (no member of the room) lists %s" % got
        finally:
            await g.close()
            await h.close()
        return None

    async def typing(self):
        a, b, c = (self.members[u] for u in ("alice", "bob", "carol"))
        await b.ws.send(json.dumps({"type": "typing", "isTyping": True}))
        for m in (a, c):
            why = await m.wait(lambda: m.heard("typing", "bob") >= 1, "bob's typing")
            if why:
                return why
        await c.ws.send(json.dumps({"type": "presence", "status": "away"}))
        for m in (a, b, c):
            why = await m.wait(lambda: m.heard("presence", "carol") >= 1, "carol's presence")
            if why:
                return why
        await asyncio.sleep(0.5)
        if b.heard("typing", "bob"):
            return "bob heard his own typing"
        for m in (a, b, c):
            if m.heard("presence", "carol") != 1 or (m is not b and m.heard("typing", "bob") != 1):
                return "%s heard carol's presence %d times, bob's typing %d times" % (
                    m.user, m.heard("presence", "carol"), m.heard("typing", "bob"))
        t = [f for f in a.of("typing") if f.get("userId") == "bob"][0]
        if t != {"type": "typing", "userId": "bob", "username": "Bob", "isTyping": True}:
            return "bob's typing on node-a: %s" % t
        return None

    async def two_nodes_one_user(self):
        a, b, c = (self.members[u] for u in ("alice", "bob", "carol"))
        a2 = await self.open("node-c", "alice")
        why = await a2.wait_view({"alice", "bob", "carol"})
        if why:
            return why
        await a.close()
        await asyncio.sleep(1.0)  # a user_disconnected would come by now
        for m in (b, c):
            if m.heard("user_disconnected", "alice") or m.heard("user_joined", "alice") > 1:
                return "%s: alice left %d times, joined %d times while she stayed on node-c" % (
                    m.user, m.heard("user_disconnected", "alice"), m.heard("user_joined", "alice"))
        await a2.close()
        for m in (b, c):
            why = await m.wait(lambda: m.heard("user_disconnected", "alice") == 1,
                               "alice's user_disconnected")
            if why:
                return why
        await asyncio.sleep(0.5)
        for m in (b, c):
            if m.heard("user_disconnected", "alice") != 1:
                return "%s heard alice leave %d times" % (m.user,
                                                         m.heard("user_disconnected", "alice"))
        self.members["alice"] = await self.open("node-a", "alice")
        return await self.views(self.members.values(), {"alice", "bob", "carol"})

    async def kick(self):
        d1 = await self.open("node-a", "dave")
        d2 = await self.open("node-c", "dave")
        loop = asyncio.get_running_loop()
        req = (b"DELETE /api/chat/%s/members/dave HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
               b"%s\r\n\r\n" % (ROOM.encode(), API_KEY.encode()))
        st, _h, body, _c = await loop.run_in_executor(
            None, rrtest.http_request, self.brokers["node-b"].port, req)
        if st != 200 or json.loads(body) != {"closed": 0}:
            return "DELETE on node-b (dave has no connection there): %s %r" % (st, body)
        for d in (d1, d2):
            deadline = time.monotonic() + EVENTUALLY
            while d.closed is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if d.ws.close_code != 1008:
                return "dave on %s: closed %s (want 1008)" % (d.node, d.ws.close_code)
        return await self.views(self.members.values(), {"alice", "bob", "carol"})

    async def node_killed(self):
        erin = await self.open("node-c", "erin")
        a, b = self.members["alice"], self.members["bob"]
        why = await self.views((a, b), {"alice", "bob", "carol", "erin"})
        if why:
            return why
        c = self.brokers["node-c"]
        m = rrtest.get_metrics(self.brokers["node-a"].port)
        if not (m.value("ringroom_cluster_heartbeats_in_total") > 0 and
                m.value("ringroom_cluster_heartbeats_out_total") > 0):
            return "node-a's heartbeat counters do not move"
        t0 = time.monotonic()
        c.kill()
        why = await self.views((a, b), {"alice", "bob"})
        if why:
            return why
        self.gone_after = time.monotonic() - t0
        await erin.close()
        await self.members["carol"].close()
        c.start()
        if tcb.wait_metrics(c, lambda m: m.value("ringroom_cluster_up") == 1) is None:
            return "node-c did not connect again"
        self.members["carol"] = await self.open("node-c", "carol")
        return await self.views(self.members.values(), {"alice", "bob", "carol"})

    async def outage(self):
        ms = list(self.members.values())
        t0 = time.monotonic()
        self.nats.kill()
        for m in ms:
            why = await m.wait_view({m.user})
            if why:
                return "NATS down: " + why
        await asyncio.sleep(max(0.0, t0 + 5.0 - time.monotonic()))  # down for 5 s at least
        self.nats.start()
        why = await self.views(ms, {"alice", "bob", "carol"})
        if why:
            return "NATS back: " + why
        stray = ["%s/%s: %s" % (m.node, m.user, m.closed) for m in ms if m.closed]
        return "members closed: %s" % stray if stray else None

    async def sessions(self):
        """A session made on node-a resumes on node-b (resumed, the same
        session, its attachment: joinedAt), then on node-c with node-b's
        token; node-b's token, used up, no longer resumes anywhere."""
        f1 = await self.open("node-a", "frank")
        w1 = f1.of("welcome")[0]
        await f1.close()
        f2 = await self.open("node-b", "frank", (w1["session"], w1["resume"]))
        w2 = f2.of("welcome")[0]
        await f2.close()
        if not (w2["resumed"] and w2["session"] == w1["session"] and
                w2["user"]["joinedAt"] == w1["user"]["joinedAt"]):
            return "on node-b: %s (made on node-a: %s)" % (w2, w1)
        f3 = await self.open("node-c", "frank", (w2["session"], w2["resume"]))
        w3 = f3.of("welcome")[0]
        await f3.close()
        if not (w3["resumed"] and w3["session"] == w1["session"]):
            return "on node-c with node-b's token: %s" % w3
        f4 = await self.open("node-a", "frank", (w2["session"], w2["resume"]))
        w4 = f4.of("welcome")[0]
        await f4.close()
        if w4["resumed"] or w4["session"] == w1["session"]:
            return "node-b's token resumed again on node-a after its use on node-c: %s" % w4
        # node-a's own copy still holds the first token's hash: the
        # cluster's record (the newest) decides, so it is refused there too
        f5 = await self.open("node-a", "frank", (w1["session"], w1["resume"]))
        w5 = f5.of("welcome")[0]
        await f5.close()
        if w5["resumed"] or w5["session"] == w1["session"]:
            return "node-a took the first token again (its own copy is older): %s" % w5
        return None

    async def run(self):
        cases = [
            ("GET …/presence on every node lists the users of every node", self.api_presence),
            ("GET …/presence on a node without members of the room lists the others'",
             self.presence_cold),
            ("typing crosses nodes (not to its sender), presence reaches everyone once",
             self.typing),
            ("one user on two nodes joins and leaves once", self.two_nodes_one_user),
            ("a session made on one node resumes on another, and again on a third; a used "
             "token resumes nowhere", self.sessions),
            ("DELETE …/members/{user} on one node closes that user on the others (1008)",
             self.kick),
            ("a node SIGKILLed: its users leave the others' views; back, they join again",
             self.node_killed),
            ("NATS stopped: the views keep each node's own users, nobody is closed; back: "
             "the full set again", self.outage),
        ]
        ok = await self.case("alice, bob, carol on three nodes: every view has all three, "
                             "each join heard once", self.three())
        for name, fn in cases:
            if ok:
                ok = await self.case(name, fn())
            else:  # each case builds on the ones before
                self.report.fail(name, "not run: an earlier case failed")
        if getattr(self, "gone_after", None) is not None:
            print("%s: a SIGKILLed node's users left the other nodes' views after %.1f s" % (
                LABEL, self.gone_after))
        await asyncio.gather(*(m.close() for m in self.members.values()))


def main():
    secret = "cluster-presence-secret-%d" % random.randrange(1 << 30)

    def args_of(_name, keyfile):
        return ["--auth-secret", secret, "--chat-rate", "1000", "--idle-timeout", "10m",
                "--api-key-file", keyfile]

    async def run(report, brokers, nats):
        await Suite(report, brokers, nats, secret).run()
    return tcb.run_nodes(LABEL, NODES, args_of, run, api_key=API_KEY)


if __name__ == "__main__":
    sys.exit(main())
