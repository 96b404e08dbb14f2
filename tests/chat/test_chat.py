"""The chat room protocol (/chat/{room}, docs/protocol.md) against the real
broker: a multi-user session, every error code, replay with no gap into the
live stream, a SIGKILL crash loop under --durability async and sync, session
resume across a restart, and a full disk.

Usage: /usr/bin/python3 tests/chat/test_chat.py <ringroom binary>
Prints one line per case, ends with "chat: N passed, M failed", exits 0 only
when all passed (77 when nothing can run here).

Environment (besides rrtest.py's RINGROOM_EXTRA_ARGS / RINGROOM_SAN /
RINGROOM_VERBOSE):
  CHAT_ONLY=name,name   run only these groups: session errors contract auth
                        recovery replay crash resume diskfull
  CHAT_HANDLER_SO=path  mount the chat handler from a shared object
                        (--handler /chat/=path) instead of the built-in one
  CHAT_CRASH_KILLS=n    SIGKILLs per durability mode (default 20)

Tokens for the auth cases are HS256 JWTs (claims sub, name, perms, exp) made
by tools/mint-token, or minted here when the tool is missing, with the secret
the broker gets as --auth-secret.

Rate limits: every case runs under the default --chat-rate (20/s, burst 40
per connection), so publishers pace themselves or retry after rate_limited.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "integration"))
import rrtest  # noqa: E402

try:
    import websockets
    import websockets.exceptions
except ImportError:
    rrtest.skip_suite("chat", "python3-websockets is not installed (run with /usr/bin/python3)")

BINARY = None
BROKERS = []

# A deadline for what must happen eventually (an ack, a room leaving memory,
# a connection gone): generous, since the machine is shared and may run a
# sanitizer build. Tests never judge how fast the broker is.
EVENTUALLY = 30.0
TMPDIRS = []


# ---- the broker ------------------------------------------------------------

class ChatBroker(rrtest.Broker):
    """A broker that can be restarted on the same port (crash loop, resume)."""

    def __init__(self, binary, args=(), name="broker"):
        args = list(args)
        so = os.environ.get("CHAT_HANDLER_SO")
        if so:
            args += ["--handler", "/chat/=" + so]
        super().__init__(binary, args, name)
        BROKERS.append(self)

    def start(self, ready_timeout=15.0):
        if self.port is None:
            return super().start(ready_timeout)
        return self.restart(ready_timeout)

    def restart(self, ready_timeout=20.0):
        """Start again on the same port (after a kill or a SIGTERM)."""
        self.terminated = False
        err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=err, stderr=err)
        err.close()
        deadline = time.monotonic() + ready_timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s: exited with status %d on restart" %
                                   (self.name, self.proc.returncode))
            try:
                st, _h, _b, _c = rrtest.http_request(
                    self.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", timeout=1.0)
                if st == 200:
                    return self
                last = "healthz %s" % st
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        raise RuntimeError("%s: not ready %.0fs after restart (%s)" %
                           (self.name, ready_timeout, last))

    def sigkill(self):
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def sigterm_wait(self, timeout=20.0):
        self.signal(signal.SIGTERM)
        st = self.wait(timeout)
        if st is None:
            self.kill()
            return "did not exit within %.0fs of SIGTERM" % timeout
        if st != 0:
            return "exit status %d after SIGTERM" % st
        return None


def tmpdir(prefix):
    d = tempfile.mkdtemp(prefix="ringroom-chat-%s-" % prefix)
    TMPDIRS.append(d)
    return d


def new_broker(name, extra=()):
    d = tmpdir(name)
    b = ChatBroker(BINARY, ["--data-dir", os.path.join(d, "db")] + list(extra), name)
    b.start()
    return b


async def until_metric(port, name, want):
    """Poll /metrics until the sum of metric name is want (eventually).
    Order instead of a pause: a client that closed is gone from the broker
    (ringroom_connections falls to 1, the /metrics request itself), a room
    left memory (ringroom_rooms_open). Raises when it never happens."""
    deadline = time.monotonic() + EVENTUALLY
    while True:
        v = (await asyncio.to_thread(rrtest.get_metrics, port)).sum(name)
        if v == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError("%s is %s, not %s, %.0fs on" % (name, v, want, EVENTUALLY))
        await asyncio.sleep(0.05)


def room_name(tag):
    return "%s-%d-%d" % (tag, os.getpid(), random.randrange(1 << 30))


# ---- tokens ----------------------------------------------------------------

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


MINT_TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                         "mint-token")


def mint_token(secret, sub, name, perms, exp_in_s=3600):
    """tools/mint-token when it is there (an implementation independent of
    the broker's), else the same HS256 JWT minted here."""
    if os.path.exists(MINT_TOOL):
        d = tmpdir("secret")
        path = os.path.join(d, "secret")
        with open(path, "w") as f:
            f.write(secret)
        r = subprocess.run(["/usr/bin/python3", MINT_TOOL, "--secret-file", path, "--sub", sub,
                            "--name", name, "--perms", ",".join(perms),
                            "--ttl", str(exp_in_s)], capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            raise RuntimeError("tools/mint-token failed: %s" % r.stderr.strip())
        return r.stdout.strip()
    return mint_token_here(secret, sub, name, perms, exp_in_s)


def mint_token_here(secret, sub, name, perms, exp_in_s=3600):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": sub, "name": name, "perms": perms,
              "exp": int(time.time()) + exp_in_s}
    payload = b64url(json.dumps(claims).encode())
    signing = ("%s.%s" % (header, payload)).encode()
    sig = b64url(hmac.new(secret.encode(), signing, hashlib.sha256).digest())
    return "%s.%s.%s" % (header, payload, sig)


# ---- a chat client -------------------------------------------------------------

class Closed(Exception):
    pass


class Chat:
    """One /chat/ connection: a reader task files every JSON frame in
    arrival order; take() removes the first frame matching a predicate
    (waiting for it), so order among matching frames is kept."""

    def __init__(self, ws):
        self.ws = ws
        self.frames = []
        self.ev = asyncio.Event()
        self.done = False
        self.close_code = None
        self.welcome = None
        self.task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, port, room, query=None, timeout=10.0, welcome=True):
        url = "ws://127.0.0.1:%d/chat/%s" % (port, room)
        if query:
            url += "?" + urllib.parse.urlencode(query)
        ws = await websockets.connect(url, max_size=None, ping_interval=None,
                                      close_timeout=2, open_timeout=timeout)
        c = cls(ws)
        if welcome:
            c.welcome = await c.take("welcome", timeout)
        return c

    async def _read(self):
        try:
            async for m in self.ws:
                if isinstance(m, bytes):
                    f = {"type": "<binary>", "raw": m}
                else:
                    try:
                        f = json.loads(m)
                    except ValueError:
                        f = {"type": "<not json>", "raw": m}
                self.frames.append(f)
                self.ev.set()
        except Exception:
            pass
        self.close_code = self.ws.close_code
        self.done = True
        self.ev.set()

    async def take(self, pred, timeout=5.0):
        if isinstance(pred, str):
            want = pred
            pred = lambda f: f.get("type") == want  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            for i, f in enumerate(self.frames):
                if pred(f):
                    del self.frames[i]
                    return f
            if self.done:
                raise Closed("connection closed (code %s) while waiting" % self.close_code)
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError("no matching frame within %.1fs; have %s" %
                                           (timeout, short(self.frames)))
            self.ev.clear()
            try:
                await asyncio.wait_for(self.ev.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def next(self, timeout=5.0):
        return await self.take(lambda f: True, timeout)

    async def send(self, obj):
        await self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    async def barrier(self, timeout=5.0):
        """ping -> pong: every frame the server sent before it has arrived."""
        await self.send({"type": "ping"})
        await self.take("pong", timeout)

    def pending(self, typ):
        return [f for f in self.frames if f.get("type") == typ]

    def abort(self):
        self.ws.transport.abort()

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:
            self.abort()
        self.task.cancel()


def short(frames, n=4):
    s = json.dumps(frames[:n])
    return s[:400] + ("..." if len(s) > 400 else "")


async def publish(c, content, rid, timeout=10.0, extra=None):
    """Send one message, retrying after rate_limited. Returns the ack or the
    error frame for it."""
    deadline = time.monotonic() + timeout
    while True:
        msg = {"type": "message", "content": content, "requestId": rid}
        if extra:
            msg.update(extra)
        await c.send(msg)
        f = await c.take(lambda f: f.get("requestId") == rid and
                         f.get("type") in ("ack", "error"),
                         max(0.1, deadline - time.monotonic()))
        if f["type"] == "error" and f.get("code") == "rate_limited" and \
                time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            continue
        return f


async def publish_many(clients, n, tag):
    """n messages spread over clients (each paced by publish's retries).
    Returns the acks' ids in order of content index."""
    ids = [None] * n

    async def one(ci):
        c = clients[ci]
        for i in range(ci, n, len(clients)):
            f = await publish(c, "%s-%d" % (tag, i), "%s-%d" % (tag, i), timeout=30)
            if f["type"] != "ack":
                raise AssertionError("message %d: %s" % (i, f))
            ids[i] = f["id"]
    await asyncio.gather(*(one(i) for i in range(len(clients))))
    return ids


async def drain_messages(c, timeout=0.3):
    """Take every message frame that arrives within timeout of the last."""
    out = []
    while True:
        try:
            out.append(await c.take("message", timeout))
        except asyncio.TimeoutError:
            return out


# ---- cases: one multi-user session ------------------------------------------------

async def case_session(report, port):
    room = room_name("lobby")
    a = await Chat.open(port, room)
    w = a.welcome
    why = None
    for k in ("room", "session", "resume", "epoch", "lastId", "user", "heartbeatMs"):
        if k not in w:
            why = "welcome lacks %s: %s" % (k, w)
    if why is None and not (w["room"] == room and w["lastId"] == 0 and w["resume"] and
                            w["user"].get("id") and w["user"].get("name") and
                            isinstance(w["heartbeatMs"], int) and w["heartbeatMs"] > 0):
        why = "welcome fields: %s" % w
    ist = await a.take("initial_state")
    if why is None and (ist.get("messages") != [] or
                        [u["userId"] for u in ist.get("onlineUsers", [])] != [w["user"]["id"]]):
        why = "first member's initial_state: %s" % ist
    report.check("session: welcome then initial_state (empty room, self online)", why)

    b = await Chat.open(port, room)
    await b.take("initial_state")
    ja = await a.take("user_joined")
    c = await Chat.open(port, room)
    ist_c = await c.take("initial_state")
    jb = await a.take("user_joined")
    await b.take("user_joined")
    uid = {x: x.welcome["user"]["id"] for x in (a, b, c)}
    why = None
    if ja["userId"] != uid[b] or jb["userId"] != uid[c] or "username" not in ja:
        why = "user_joined: %s %s" % (ja, jb)
    online = sorted(u["userId"] for u in ist_c["onlineUsers"])
    if why is None and online != sorted(uid.values()):
        why = "third user's onlineUsers %s, want %s" % (online, sorted(uid.values()))
    if why is None and len(set(uid.values())) != 3:
        why = "three anonymous users share ids: %s" % uid
    report.check("session: user_joined to the others, onlineUsers lists all three", why)

    # messages: ids 1, 2, 3, to everyone including the sender, then ack
    why = None
    for i, (sender, rid) in enumerate(((a, "r1"), (b, "r2"), (c, "r3"))):
        await sender.send({"type": "message", "content": "hello %d" % i, "requestId": rid,
                           "threadId": "t-%d" % i if i == 1 else None})
        ack = await sender.take("ack")
        if ack.get("requestId") != rid or ack.get("id") != i + 1:
            why = "ack %s, want requestId %s id %d" % (ack, rid, i + 1)
    for x in (a, b, c):
        got = [await x.take("message") for _ in range(3)]
        ids = [m["message"]["id"] for m in got]
        if why is None and ids != [1, 2, 3]:
            why = "ids seen %s" % ids
        m = got[1]["message"]
        if why is None and not (m["userId"] == uid[b] and m["content"] == "hello 1" and
                                m["threadId"] == "t-1" and
                                isinstance(m["timestamp"], int) and "username" in m):
            why = "message object %s" % m
    report.check("session: messages get ids 1,2,3, reach everyone (sender too), ack by requestId",
                 why)

    # ack comes after the sender's own copy of the message
    await a.send({"type": "message", "content": "order", "requestId": "ord"})
    first = await a.take(lambda f: f.get("type") in ("ack", "message"))
    await a.take(lambda f: f.get("type") in ("ack", "message"))
    await b.take("message")
    await c.take("message")
    report.check("session: the sender sees its message before its ack",
                 None if first["type"] == "message" else "ack before message")

    # typing: to the others only
    await a.send({"type": "typing", "isTyping": True})
    tb = await b.take("typing")
    tc = await c.take("typing")
    await a.barrier()
    why = None
    if not (tb["userId"] == uid[a] and tb["isTyping"] is True and "username" in tb and tc == tb):
        why = "typing frames %s %s" % (tb, tc)
    if a.pending("typing"):
        why = "typing echoed to the typer"
    await a.send({"type": "typing", "isTyping": False})
    if (await b.take("typing"))["isTyping"] is not False:
        why = "isTyping false not relayed"
    await c.take("typing")
    report.check("session: typing goes to every other member, not the typer", why)

    # presence: to everyone
    await b.send({"type": "presence", "status": "away"})
    ps = [await x.take("presence") for x in (a, b, c)]
    why = None
    if any(p.get("userId") != uid[b] or p.get("status") != "away" for p in ps):
        why = "presence frames %s" % ps
    report.check("session: presence goes to every member, the sender included", why)

    # heartbeat (auto-response) and ping
    t0 = int(time.time() * 1000)
    await a.send({"type": "heartbeat"})
    hb = await a.take("heartbeat_ack")
    await a.send({"type": "ping"})
    await a.take("pong")
    why = None
    if not isinstance(hb.get("timestamp"), int) or abs(hb["timestamp"] - t0) > 5000:
        why = "heartbeat_ack %s (now %d)" % (hb, t0)
    report.check("session: heartbeat -> heartbeat_ack with the time, ping -> pong", why)

    # answered by the auto-response, not the handler: 100 at once are not
    # charged to the rate limit (burst 40)
    hx = await Chat.open(port, room)
    await hx.take("initial_state")
    for x in (a, b, c):
        await x.take("user_joined")
    await asyncio.gather(*(hx.send({"type": "heartbeat"}) for _ in range(100)))
    why = None
    try:
        for i in range(100):
            await hx.take("heartbeat_ack", 5)
    except Exception as e:
        why = "%d heartbeat_acks of 100 (%s), pending %s" % (i, e, short(hx.frames))
    if why is None and hx.pending("error"):
        why = "errors among heartbeats: %s" % hx.pending("error")[:2]
    report.check("session: 100 heartbeats at once all answered (auto-response, no rate limit)",
                 why)
    await hx.close()
    for x in (a, b, c):
        await x.take("user_disconnected")

    # history paging over 150 more messages (ids 5..154), from 5 publishers
    pubs = [await Chat.open(port, room) for _ in range(5)]
    for p in pubs:
        await p.take("initial_state")
    ids = await publish_many(pubs, 150, "hist")
    last = max(ids)
    why = None
    if sorted(ids) != list(range(5, 155)):
        why = "published ids %s..%s (%d), want 5..154" % (min(ids), max(ids), len(set(ids)))
    seen = []
    before = 0
    for _ in range(10):
        await a.send({"type": "history", "beforeId": before, "limit": 50})
        h = await a.take("history")
        page = [m["id"] for m in h["messages"]]
        if page != sorted(page):
            why = why or "history page not oldest first: %s" % page
        if not page:
            break
        seen = page + seen
        before = page[0]
    if why is None and seen != list(range(1, last + 1)):
        why = "history pages give %d ids (%s..%s), want 1..%d" % (
            len(seen), seen[:1], seen[-1:], last)
    await a.send({"type": "history", "limit": 500})
    h = await a.take("history")
    if why is None and [m["id"] for m in h["messages"]] != list(range(last - 99, last + 1)):
        why = "history limit 500 gave %d messages, want the newest 100" % len(h["messages"])
    await a.send({"type": "history", "beforeId": 3, "limit": 1})
    h = await a.take("history")
    if why is None and [m["id"] for m in h["messages"]] != [2]:
        why = "history beforeId 3 limit 1: %s" % h
    report.check("session: history pages back to id 1, oldest first, limit capped at 100", why)
    for x in [a, b, c] + pubs:
        await drain_messages(x, 0.2)

    # sync after a reconnect: b leaves at `last`, 10 more, b comes back
    epoch = a.welcome["epoch"]
    b_uid = uid[b]
    await b.close()
    left = await a.take("user_disconnected")
    more = await publish_many(pubs[:2], 10, "gap")
    b2 = await Chat.open(port, room, {"since": last, "epoch": epoch})
    got = []
    while True:
        f = await b2.next()
        if f["type"] == "synced":
            break
        if f["type"] == "message":
            got.append(f["message"]["id"])
    why = None
    if left.get("userId") != b_uid:
        why = "user_disconnected %s, want %s" % (left, b_uid)
    if why is None and (got != sorted(more) or got != list(range(last + 1, last + 11))):
        why = "replay after %d gave %s, want %d..%d" % (last, got, last + 1, last + 10)
    if why is None and not (f["recovered"] is True and f["lastId"] == last + 10):
        why = "synced %s" % f
    report.check("session: reconnect with since+epoch replays the 10 missed, then synced", why)
    last += 10

    # sync request on an open connection
    await c.send({"type": "sync", "afterMessageId": last - 5})
    got = []
    while True:
        f = await c.next()
        if f["type"] == "synced":
            break
        if f["type"] == "message" and f["message"]["id"] > last - 5:
            got.append(f["message"]["id"])
    why = None
    # c saw ids up to `last` live already; the sync sends them again
    if got[-5:] != list(range(last - 4, last + 1)) or f["lastId"] != last or \
            f["recovered"] is not True:
        why = "sync afterMessageId %d: ids %s, synced %s" % (last - 5, got, f)
    report.check("session: sync {afterMessageId} -> the messages after it, then synced", why)

    # a newcomer: newest 50 and who is online
    d = await Chat.open(port, room)
    ist = await d.take("initial_state")
    ids = [m["id"] for m in ist["messages"]]
    online = sorted(u["userId"] for u in ist["onlineUsers"])
    want_online = sorted({x.welcome["user"]["id"] for x in [a, c, d, b2] + pubs})
    why = None
    if ids != list(range(last - 49, last + 1)):
        why = "initial_state ids %s..%s (%d), want %d..%d" % (
            ids[:1], ids[-1:], len(ids), last - 49, last)
    if why is None and online != want_online:
        why = "onlineUsers %s, want %s" % (online, want_online)
    if why is None and len(online) != len(set(online)):
        why = "onlineUsers has duplicates"
    report.check("session: a newcomer's initial_state has the newest 50 and every online user",
                 why)

    # leaving
    d_uid = d.welcome["user"]["id"]
    await d.close()
    f = await a.take("user_disconnected")
    report.check("session: user_disconnected to the others when a user leaves",
                 None if f.get("userId") == d_uid and "username" in f else "got %s" % f)
    for x in [a, c, b2] + pubs:
        await x.close()


# ---- cases: errors ----------------------------------------------------------------

async def expect_error(c, send, code, rid=None):
    if isinstance(send, bytes):
        await c.ws.send(send)
    else:
        await c.send(send)
    f = await c.take("error")
    if f.get("code") != code or not isinstance(f.get("message"), str):
        return "sent %r: got %s, want code %s" % (send if not isinstance(send, bytes)
                                                   else "binary", f, code)
    if rid is not None and f.get("requestId") != rid:
        return "error without the requestId %r: %s" % (rid, f)
    try:
        await c.barrier()
    except Exception as e:
        return "connection unusable after the error: %s" % e
    return None


async def case_errors(report, port):
    room = room_name("errors")
    c = await Chat.open(port, room)
    await c.take("initial_state")
    for label, send in (("not JSON", "hello there"), ("no type", '{"content":"x"}'),
                        ("type not a string", '{"type":7}'), ("an array", "[1,2]"),
                        ("a binary frame", b"\x01\x02"),
                        ("content not a string", {"type": "message", "content": 5}),
                        ("isTyping not a bool", {"type": "typing", "isTyping": "yes"}),
                        ("history limit a string", {"type": "history", "limit": "x"}),
                        ("threadId a number", {"type": "message", "content": "x",
                                               "threadId": 5}),
                        ("requestId an object", {"type": "message", "content": "x",
                                                 "requestId": {"a": 1}}),
                        ("afterMessageId negative", {"type": "sync", "afterMessageId": -1})):
        report.check("errors: invalid_format for %s, connection stays usable" % label,
                     await expect_error(c, send, "invalid_format"))
    report.check("errors: unknown_type",
                 await expect_error(c, {"type": "teleport", "requestId": "u1"}, "unknown_type",
                                    "u1"))
    why = await expect_error(c, {"type": "message", "content": "x" * 4097, "requestId": "big"},
                             "too_large", "big")
    if why is None:
        why = await expect_error(c, {"type": "message", "content": "\u00e9" * 2049,
                                     "requestId": "big2"}, "too_large", "big2")
    if why is None:  # far over: refused before parsing, the requestId still found
        why = await expect_error(c, json.dumps({"type": "message", "content": "z" * 40000,
                                                "requestId": "huge"}), "too_large", "huge")
    for label, send in (("a requestId over 64 bytes", {"type": "message", "content": "x",
                                                       "requestId": "r" * 65}),
                        ("a threadId over 128 bytes", {"type": "message", "content": "x",
                                                       "threadId": "t" * 129}),
                        ("a status over 64 bytes", {"type": "presence", "status": "s" * 65})):
        if why is None:
            why = await expect_error(c, send, "too_large")
            why = why and "%s: %s" % (label, why)
    if why is None:
        await c.send({"type": "message", "content": "null rid", "requestId": None})
        f = await c.take("ack")
        if "requestId" in f and f["requestId"] is not None:
            why = "requestId null: ack %s" % f
    if why is None:
        f = await publish(c, "x" * 4096, "fits")
        if f["type"] != "ack":
            why = "4096 bytes of content refused: %s" % f
    report.check("errors: too_large over 4 KiB of content (bytes, not characters), for long "
                 "requestId/threadId/status; 4096 fits; requestId null is no requestId", why)

    # rate limit: 100 at once on a fresh connection (burst 40 at 20/s)
    r = await Chat.open(port, room)
    await r.take("initial_state")
    t0 = time.monotonic()
    await asyncio.gather(*(r.send({"type": "message", "content": "flood %d" % i,
                                   "requestId": "f%d" % i}) for i in range(100)))
    answers = {}
    for _ in range(100):
        f = await r.take(lambda f: f.get("type") in ("ack", "error"), EVENTUALLY)
        answers[f.get("requestId")] = f
    # the bucket refills at 20/s of the broker's clock while it works
    # through the 100: however slow this machine is, it cannot have let
    # more than the burst plus what the elapsed time refilled
    refill = int(20 * (time.monotonic() - t0)) + 1
    acks = [k for k, f in answers.items() if f["type"] == "ack"]
    limited = [k for k, f in answers.items() if f.get("code") == "rate_limited"]
    why = None
    if len(answers) != 100:
        why = "%d distinct answers to 100 requests" % len(answers)
    elif len(acks) < 30 or len(acks) > 40 + refill or len(acks) + len(limited) != 100:
        why = "%d acked, %d rate_limited of 100 (burst 40 at 20/s, at most %d refilled)" % (
            len(acks), len(limited), refill)
    if why is None:
        try:
            await r.barrier()
        except Exception as e:
            why = "connection unusable after rate_limited: %s" % e
    if why is None:
        await asyncio.sleep(1.0)
        f = await publish(r, "after the flood", "after", timeout=EVENTUALLY)
        if f["type"] != "ack":
            why = "no recovery a second later: %s" % f
    report.check("errors: rate_limited for 100 messages at once, later ones pass again", why)
    await c.close()
    await r.close()


async def case_auth(report):
    secret = "chat-test-secret-%d" % random.randrange(1 << 30)
    b = new_broker("auth", ["--auth-secret", secret])
    room = room_name("auth")
    st, _h, _b, _c = rrtest.http_request(b.port, rrtest.upgrade_request("/chat/" + room)[0])
    report.check("auth: no token -> 401 before the upgrade",
                 None if st == 401 else "status %s" % st)

    w = await Chat.open(b.port, room, {"token": mint_token(secret, "u-w", "writer",
                                                           ["read", "write"])})
    await w.take("initial_state")
    ro = await Chat.open(b.port, room, {"token": mint_token(secret, "u-r", "reader",
                                                            ["read"])})
    await ro.take("initial_state")
    why = None
    if ro.welcome["user"].get("id") != "u-r" or ro.welcome["user"].get("name") != "reader":
        why = "welcome user %s, want u-r/reader from the token" % ro.welcome["user"]
    why = why or await expect_error(ro, {"type": "message", "content": "hi",
                                         "requestId": "np"}, "no_permission", "np")
    why = why or await expect_error(ro, {"type": "typing", "isTyping": True},
                                    "no_permission")
    if why is None:
        f = await publish(w, "from the writer", "w1")
        m = await ro.take("message")
        if f["type"] != "ack" or m["message"]["userId"] != "u-w" or \
                m["message"]["username"] != "writer":
            why = "writer's message: ack %s, reader saw %s" % (f, m)
    report.check("auth: no_permission for a read-only token (message, typing); it still reads",
                 why)
    sess, res = w.welcome["session"], w.welcome["resume"]
    await w.close()
    await ro.close()
    await until_metric(b.port, "ringroom_connections", 1)

    # another user's token with u-w's session and resume secret: refused
    why = None
    try:
        x = await Chat.open(b.port, room, {"token": mint_token(secret, "u-r", "reader",
                                                               ["read", "write"]),
                                           "session": sess, "resume": res})
        if x.welcome["user"]["id"] == "u-w":
            why = "took over u-w's session: %s" % x.welcome
        else:
            await x.take(lambda f: False, 2)  # wait for a close
    except Closed:
        pass  # refused after the upgrade (1008), before any welcome
    except asyncio.TimeoutError:
        if x.welcome["session"] == sess:
            why = "u-r resumed u-w's session and stayed: %s" % x.welcome
    except websockets.exceptions.InvalidStatusCode as e:
        why = None if e.status_code in (401, 403) else "status %s" % e.status_code
    # the rightful user resumes with its own token
    if why is None:
        y = await Chat.open(b.port, room, {"token": mint_token(secret, "u-w", "writer",
                                                               ["read", "write"]),
                                           "session": sess, "resume": res})
        if y.welcome["session"] != sess or y.welcome["user"]["id"] != "u-w" or \
                y.welcome.get("resumed") is not True:
            why = "u-w's own resume: %s" % y.welcome
        await y.close()
    report.check("auth: a token of another user cannot resume a session; its own user can", why)


# ---- cases: issue 11's protocol fixes ---------------------------------------------------

def online_ids(f):
    return sorted(u.get("userId") for u in f.get("onlineUsers") or [])


async def case_contract(report, port):
    room = room_name("contract")
    a = await Chat.open(port, room)
    await a.take("initial_state")
    f = await publish(a, "one", "c1")
    why = None if f["type"] == "ack" else "publish: %s" % f
    b = await Chat.open(port, room, {"since": "0", "epoch": a.welcome["epoch"]})
    want = sorted([a.welcome["user"]["id"], b.welcome["user"]["id"]])
    if why is None:
        ids, synced = await read_until_synced(b)
        if online_ids(synced) != want or synced.get("onlineCount") != 2:
            why = "synced after since=0: %s, want onlineUsers %s" % (synced, want)
        elif ids != [f["id"]]:
            why = "replayed %s, want [%s]" % (ids, f["id"])
    if why is None:
        await b.send({"type": "sync", "afterMessageId": 0})
        _ids, synced = await read_until_synced(b)
        if online_ids(synced) != want:
            why = "synced after a sync request: %s, want onlineUsers %s" % (synced, want)
    if why is None and any("username" not in u for u in synced["onlineUsers"]):
        why = "onlineUsers without username: %s" % synced["onlineUsers"]
    report.check("contract: synced carries onlineUsers ({userId, username}) and onlineCount, "
                 "after since= and after a sync request", why)

    # every error answering a request names it
    why = None
    for label, send, code in (
            ("far over the cap (refused unparsed), requestId after the content",
             json.dumps({"type": "message", "content": "q" * 50000, "requestId": "far"}),
             "too_large"),
            ("broken JSON with a readable requestId",
             '{"type":"message","requestId":"brk","content":"x",', "invalid_format"),
            ("a numeric requestId on an unknown type",
             {"type": "warp", "requestId": 77}, "unknown_type")):
        rid = "far" if "far" in label else "brk" if "broken" in label else 77
        w = await expect_error(a, send, code, rid)
        if w:
            why = "%s: %s" % (label, w)
            break
    if why is None:
        await a.send({"type": "history", "beforeId": 0, "limit": 5, "requestId": "h1"})
        h = await a.take("history")
        if h.get("requestId") != "h1":
            why = "history answer without its requestId: %s" % h
    report.check("contract: too_large, invalid_format and unknown_type carry the requestId "
                 "(also for a frame refused unparsed or broken JSON); history echoes it", why)
    await a.close()
    await b.close()

    # --max-chat-bytes sets the content cap and the error says it
    nb = new_broker("maxchat", ["--max-chat-bytes", "100"])
    room = room_name("maxchat")
    c = await Chat.open(nb.port, room)
    await c.take("initial_state")
    f = await publish(c, "m" * 101, "over")
    why = None
    if f.get("type") != "error" or f.get("code") != "too_large" or \
            "100" not in f.get("message", ""):
        why = "101 bytes under --max-chat-bytes 100: %s" % f
    if why is None:
        f = await publish(c, "m" * 100, "fits")
        if f.get("type") != "ack":
            why = "100 bytes under --max-chat-bytes 100: %s" % f
    if why is None:
        f = await publish(c, "x" * 5000, "far")
        if f.get("code") != "too_large" or f.get("requestId") != "far":
            why = "5000 bytes (refused unparsed): %s" % f
    report.check("contract: --max-chat-bytes 100: 101 bytes too_large (the message names the "
                 "limit, the requestId kept), 100 fit", why)
    await c.close()
    why = nb.sigterm_wait()
    report.check("contract: the --max-chat-bytes broker exits cleanly", why)


# ---- cases: recovered:false, since without epoch, room eviction ---------------------

async def read_until_synced(c, timeout=5.0):
    """(message ids before synced, the synced frame)."""
    ids = []
    while True:
        f = await c.next(timeout)
        if f["type"] == "message":
            ids.append(f["message"]["id"])
        elif f["type"] == "synced":
            return ids, f


async def case_recovery(report):
    # rooms leave memory as soon as the last member goes: every reconnect
    # below rebuilds the room from storage
    b = new_broker("recovery", ["--room-idle-evict", "0"])
    rooms_base = (await asyncio.to_thread(rrtest.get_metrics, b.port)).sum("ringroom_rooms_open")
    room = room_name("recovery")
    a = await Chat.open(b.port, room)
    await a.take("initial_state")
    epoch = a.welcome["epoch"]
    ids = await publish_many([a], 5, "ev")
    await a.close()
    await until_metric(b.port, "ringroom_rooms_open", rooms_base)  # evicted
    c = await Chat.open(b.port, room)
    ist = await c.take("initial_state")
    f = await publish(c, "after eviction", "ev-after")
    why = None
    if ids != [1, 2, 3, 4, 5] or [m["id"] for m in ist["messages"]] != [1, 2, 3, 4, 5]:
        why = "before eviction ids %s, initial_state after it %s" % (
            ids, [m["id"] for m in ist["messages"]])
    elif c.welcome["epoch"] != epoch or c.welcome["lastId"] != 5:
        why = "rebuilt room: epoch %s lastId %s, want %s and 5" % (
            c.welcome["epoch"], c.welcome["lastId"], epoch)
    elif f.get("id") != 6:
        why = "first message after the rebuild: %s, want id 6" % f
    report.check("recovery: a room evicted from memory comes back with its log; ids go on", why)
    await c.close()
    await until_metric(b.port, "ringroom_rooms_open", rooms_base)

    x = await Chat.open(b.port, room, {"since": 3})
    got, syn = await read_until_synced(x)
    why = None
    if got != [4, 5, 6] or syn["recovered"] is not True or syn["lastId"] != 6:
        why = "since=3 without epoch: ids %s, %s" % (got, syn)
    report.check("recovery: since without epoch replays from the current epoch", why)

    y = await Chat.open(b.port, room, {"since": 2, "epoch": "0123456789abcdef"})
    got, syn = await read_until_synced(y)
    why = None
    if epoch == "0123456789abcdef":
        why = "test epoch collides with the room's"
    elif got or syn["recovered"] is not False or syn["lastId"] != 6:
        why = "another epoch: ids %s, %s (want none, recovered false, lastId 6)" % (got, syn)
    else:
        f = await publish(x, "live after", "ep-live")
        m = await y.take("message")
        if m["message"]["id"] != f.get("id") or f.get("id") != 7:
            why = "live stream after recovered:false: %s (ack %s)" % (m, f)
    report.check("recovery: another epoch -> nothing replayed, recovered:false, then live", why)

    z = await Chat.open(b.port, room, {"since": 500, "epoch": epoch})
    got, syn = await read_until_synced(z)
    why = None
    if got or syn["recovered"] is not False or syn["lastId"] != 7:
        why = "since ahead of the log: ids %s, %s" % (got, syn)
    report.check("recovery: since ahead of the log -> recovered:false, nothing replayed", why)

    q = await Chat.open(b.port, room, {"since": "seven"})
    f = await q.next()
    g = await q.next()
    why = None
    if f.get("type") != "error" or f.get("code") != "invalid_format" or \
            g.get("type") != "initial_state":
        why = "since=seven: %s then %s" % (f, g)
    report.check("recovery: a malformed since -> invalid_format, then initial_state", why)

    # a sender that resets its connection as soon as the handler took its
    # 30 messages (the pong comes back before their appends complete): they
    # are still stored and broadcast (their completions outlive it). Not
    # before the pong: a reset discards what the broker has not read yet.
    s_ = await Chat.open(b.port, room)
    await s_.take("initial_state")
    await q.take("user_joined")
    await asyncio.gather(*(s_.send({"type": "message", "content": "gone %d" % i,
                                    "requestId": "g%d" % i}) for i in range(30)))
    await s_.barrier()
    s_.abort()
    got = []
    why = None
    try:
        for _ in range(30):
            got.append((await q.take("message", 5))["message"]["content"])
    except Exception as e:
        why = "saw %d of 30 messages of a sender that left: %s" % (len(got), e)
    if why is None and got != ["gone %d" % i for i in range(30)]:
        why = "messages of a sender that left: %s" % got[:5]
    report.check("recovery: messages of a sender that resets at once are stored and broadcast",
                 why)
    for w in (x, y, z, q):
        await w.close()


# ---- cases: replay at many disconnect points ----------------------------------------

async def case_replay(report, port):
    room = room_name("replay")
    stop = asyncio.Event()
    acked = []
    refused = []

    async def publisher(k):
        p = await Chat.open(port, room)
        await p.take("initial_state")
        n = 0

        def file_answers():
            for f in p.frames:
                if f.get("type") == "ack":
                    acked.append(f["id"])
                    sent.discard(f.get("requestId"))
                elif f.get("type") == "error":
                    refused.append(f)
                    sent.discard(f.get("requestId"))
            p.frames.clear()
        sent = set()
        while not stop.is_set():
            rid = "p%d-%d" % (k, n)
            await p.send({"type": "message", "content": rid, "requestId": rid})
            sent.add(rid)
            n += 1
            await asyncio.sleep(1 / 15)  # under 20/s per connection
            file_answers()
        # every message sent gets its answer (eventually: storage may be
        # slow on a shared machine), so "acked" is complete, not a sample
        for rid in sorted(sent):
            f = await p.take(lambda f, rid=rid: f.get("requestId") == rid and
                             f.get("type") in ("ack", "error"), EVENTUALLY)
            p.frames.append(f)
            file_answers()
        await p.close()

    first = await Chat.open(port, room)
    epoch = first.welcome["epoch"]
    await first.take("initial_state")
    await first.close()
    pubs = [asyncio.get_running_loop().create_task(publisher(k)) for k in range(3)]
    await asyncio.sleep(0.5)

    last = 0
    problems = []
    rng = random.Random(7)
    sessions = 20
    for i in range(sessions):
        point = i % 5
        c = await Chat.open(port, room, {"since": last, "epoch": epoch})
        synced = False
        replayed = 0
        live = 0
        want_replay = rng.randrange(1, 20)
        try:
            while True:
                if point == 0:
                    break  # gone right after welcome
                f = await c.next(5)
                t = f["type"]
                if t == "message":
                    mid = f["message"]["id"]
                    if mid != last + 1:
                        problems.append("session %d (point %d): id %d after %d" %
                                        (i, point, mid, last))
                        break
                    last = mid
                    if synced:
                        live += 1
                    else:
                        replayed += 1
                elif t == "synced":
                    if f["recovered"] is not True or f["lastId"] != last:
                        problems.append("session %d: synced %s with last seen %d" %
                                        (i, f, last))
                        break
                    if c.welcome["lastId"] != f["lastId"]:
                        problems.append("session %d: welcome lastId %d, synced lastId %d" %
                                        (i, c.welcome["lastId"], f["lastId"]))
                    synced = True
                elif t in ("error", "<binary>", "<not json>"):
                    problems.append("session %d: %s" % (i, f))
                    break
                if point == 1 and not synced and replayed >= want_replay:
                    break  # in the middle of the replay
                if point == 2 and synced:
                    break
                if point >= 3 and synced and live >= want_replay:
                    break
        except Exception as e:
            problems.append("session %d: %s" % (i, e))
        if rng.random() < 0.5:
            c.abort()
            try:
                await asyncio.wait_for(c.ws.wait_closed(), 2)
            except Exception:
                pass
        else:
            await c.close()
        if problems:
            break
        # let a backlog build for the next replay
        await asyncio.sleep(rng.uniform(0.1, 1.2))

    stop.set()
    await asyncio.gather(*pubs)
    if not problems:
        top = max(acked) if acked else 0
        c = await Chat.open(port, room, {"since": last, "epoch": epoch})
        while True:
            f = await c.next(5)
            if f["type"] == "message":
                if f["message"]["id"] != last + 1:
                    problems.append("final replay: id %d after %d" % (f["message"]["id"], last))
                    break
                last = f["message"]["id"]
            elif f["type"] == "synced":
                break
        await c.close()
        if not problems and last != top:
            problems.append("final replay ends at %d, newest acked %d" % (last, top))
        if not problems and sorted(acked) != list(range(1, top + 1)):
            problems.append("acked ids are not 1..%d" % top)
        if not problems and refused:
            problems.append("%d messages paced under the rate limit refused, e.g. %s" % (
                len(refused), refused[0]))
    report.check("replay: %d reconnects at 5 kinds of points (after welcome, mid-replay, at "
                 "synced, in the live stream; close or reset) see every id once, in order, "
                 "%d messages" % (sessions, last), problems[0] if problems else None)


# ---- cases: crash loop ------------------------------------------------------------------

async def crash_loop(report, mode, kills):
    d = tmpdir("crash-" + mode)
    b = ChatBroker(BINARY, ["--data-dir", os.path.join(d, "db"), "--durability", mode,
                            "--history-size", "1000000"], "crash-" + mode)
    b.start()
    room = room_name("crash-" + mode)
    acked = {}  # requestId -> id
    errors = {}
    epochs = set()
    stop = asyncio.Event()
    sent = [0]

    async def publisher(k):
        n = 0
        while not stop.is_set():
            try:
                p = await Chat.open(b.port, room, timeout=3)
            except Exception:
                await asyncio.sleep(0.05)
                continue
            epochs.add(p.welcome["epoch"])
            try:
                while not stop.is_set() and not p.done:
                    rid = "%s-%d-%d" % (mode, k, n)
                    n += 1
                    await p.send({"type": "message", "content": rid, "requestId": rid})
                    sent[0] += 1
                    await asyncio.sleep(1 / 16)
                    for f in list(p.frames):
                        if f.get("type") == "ack":
                            acked[f["requestId"]] = f["id"]
                        elif f.get("type") == "error":
                            errors[f.get("requestId")] = f
                    p.frames.clear()
            except Exception:
                pass
            await asyncio.sleep(0.3)  # acks still on the way
            for f in p.frames:
                if f.get("type") == "ack":
                    acked[f["requestId"]] = f["id"]
                elif f.get("type") == "error":
                    errors[f.get("requestId")] = f
            await p.close()

    pubs = [asyncio.get_running_loop().create_task(publisher(k)) for k in range(3)]
    rng = random.Random(hash(mode) & 0xffff)
    problem = None
    t0 = time.monotonic()
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(0.2, 2.2))
        b.sigkill()
        await asyncio.sleep(rng.uniform(0, 0.2))
        try:
            await asyncio.get_running_loop().run_in_executor(None, b.restart)
        except Exception as e:
            problem = "restart: %s" % e
            break
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*pubs)
    elapsed = time.monotonic() - t0

    if problem is None:
        c = await Chat.open(b.port, room, {"since": 0})
        ids, contents = [], []
        while True:
            f = await c.next(10)
            if f["type"] == "message":
                ids.append(f["message"]["id"])
                contents.append(f["message"]["content"])
            elif f["type"] == "synced":
                break
        await c.close()
        by_content = {}
        for i, ct in zip(ids, contents):
            by_content.setdefault(ct, []).append(i)
        if not f["recovered"]:
            problem = "replay from 0: synced %s" % f
        elif ids != list(range(1, len(ids) + 1)):
            gaps = [x for x in range(1, max(ids) + 1) if x not in set(ids)] if ids else []
            problem = "replay ids not 1..%d: missing %s" % (len(ids), gaps[:10])
        elif len(epochs) != 1:
            problem = "the epoch changed across SIGKILL restarts: %s" % sorted(epochs)
        else:
            dups = [k for k, v in by_content.items() if len(v) > 1]
            lost = [r for r in acked if r not in by_content]
            moved = [r for r, i in acked.items() if r in by_content and by_content[r] != [i]]
            # a message refused with an error frame must not be in the log
            # (the same rule as the disk-full case's ghost list)
            ghost = [r for r in errors if r in by_content]
            both = [r for r in errors if r in acked]
            if errors:
                codes = {}
                for f in errors.values():
                    codes[f.get("code")] = codes.get(f.get("code"), 0) + 1
                print("   crash loop %s: %d error frames by code %s" % (mode, len(errors), codes),
                      flush=True)
            if None in errors:
                problem = "an error frame without the message's requestId: %s" % errors[None]
            elif both:
                problem = "%d messages both acked and refused, e.g. %s" % (len(both), both[:3])
            elif ghost:
                problem = "%d messages refused with an error are stored anyway, e.g. %s: %s" % (
                    len(ghost), ghost[:3], errors[ghost[0]])
            elif dups:
                problem = "%d messages stored twice, e.g. %s" % (len(dups), dups[:3])
            elif lost:
                problem = "%d ACKED messages lost, e.g. %s" % (len(lost), lost[:3])
            elif moved:
                problem = "%d acked with another id than stored, e.g. %s" % (len(moved),
                                                                             moved[:3])
            elif len(acked) < 50:
                problem = "only %d messages acked: the loop did not exercise much" % len(acked)
    report.check("crash loop (--durability %s): %d SIGKILLs in %.0fs, %d sent, %d acked, every "
                 "acked message stored once, no refused one stored, ids without gaps, replay "
                 "from 0 in order" %
                 (mode, kills, elapsed, sent[0], len(acked)), problem)


# ---- cases: session resume across a restart ----------------------------------------------

async def case_resume(report):
    d = tmpdir("resume")
    b = ChatBroker(BINARY, ["--data-dir", os.path.join(d, "db")], "resume")
    b.start()
    room = room_name("resume")
    a = await Chat.open(b.port, room)
    await a.take("initial_state")
    w1 = a.welcome
    f = await publish(a, "before the restart", "r1")
    why = None if f["type"] == "ack" else "publish: %s" % f
    why = why or b.sigterm_wait()
    a.task.cancel()
    if why is None:
        b.restart()
        r = await Chat.open(b.port, room, {"session": w1["session"], "resume": w1["resume"]})
        w2 = r.welcome
        ist = await r.take("initial_state")
        online = [u["userId"] for u in ist["onlineUsers"]]
        if w2["session"] != w1["session"]:
            why = "session %s after resume, was %s" % (w2["session"], w1["session"])
        elif w2["user"]["id"] != w1["user"]["id"] or w2["user"]["name"] != w1["user"]["name"]:
            why = "user %s after resume, was %s" % (w2["user"], w1["user"])
        elif w2["user"].get("joinedAt") != w1["user"].get("joinedAt"):
            why = "joinedAt %s after resume, was %s (attachment not restored)" % (
                w2["user"].get("joinedAt"), w1["user"].get("joinedAt"))
        elif w2.get("resumed") is not True or not isinstance(w2.get("resume"), str) or \
                len(w2["resume"]) < 32 or w2["resume"] == w1["resume"]:
            why = "welcome of a resumed session: resumed %s resume %s (want a fresh token)" % (
                w2.get("resumed"), w2.get("resume"))
        elif online != [w1["user"]["id"]]:
            why = "onlineUsers %s, want the resumed user %s" % (online, w1["user"]["id"])
        elif w2["epoch"] != w1["epoch"] or [m["content"] for m in ist["messages"]] != \
                ["before the restart"]:
            why = "log after restart: epoch %s->%s, messages %s" % (
                w1["epoch"], w2["epoch"], ist["messages"])
        # single use: the token used once gets a new session, the rotated
        # one from the welcome resumes (and is rotated again)
        if why is None:
            await r.close()
            await until_metric(b.port, "ringroom_connections", 1)
            r2 = await Chat.open(b.port, room, {"session": w1["session"],
                                                "resume": w1["resume"]})
            if r2.welcome["session"] == w1["session"] or \
                    r2.welcome["user"]["id"] == w1["user"]["id"] or \
                    r2.welcome.get("resumed") is not False:
                why = "a resume token used twice resumed again: %s" % r2.welcome
            await r2.close()
        if why is None:
            await asyncio.sleep(0.3)
            r3 = await Chat.open(b.port, room, {"session": w1["session"],
                                                "resume": w2["resume"]})
            w3 = r3.welcome
            if w3["session"] != w1["session"] or w3["user"]["id"] != w1["user"]["id"] or \
                    w3.get("resumed") is not True:
                why = "the rotated token did not resume: %s" % w3
            elif not isinstance(w3.get("resume"), str) or w3["resume"] in (w1["resume"],
                                                                             w2["resume"]):
                why = "third welcome's resume %r: want a new token" % w3.get("resume")
            await r3.close()
        # a wrong resume token gets a new session, never the old identity
        if why is None:
            x = await Chat.open(b.port, room, {"session": w1["session"],
                                               "resume": "A" * 43})
            if x.welcome["session"] == w1["session"] or \
                    x.welcome["user"]["id"] == w1["user"]["id"]:
                why = "a wrong resume token took over the session: %s" % x.welcome
            await x.close()
    report.check("resume: after SIGTERM and a restart, ?session&resume restores the session and "
                 "its attachment (same user, joinedAt); a wrong token does not", why)
    report.check("resume: single-use tokens: the welcome of a resumed session carries a fresh "
                 "one, the used one gets a new session the second time, the fresh one resumes",
                 why)


# ---- cases: disk full ----------------------------------------------------------------------

async def case_diskfull(report):
    # CI runs as root and mounts a 48 MiB tmpfs here; elsewhere the case is
    # a skip (counted, with the cause), never an ok
    name = "disk full: the broker on a full tmpfs"
    if os.geteuid() != 0:
        report.skip(name, "needs root to mount a tmpfs (euid %d)" % os.geteuid())
        return
    mnt = tmpdir("diskfull")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", mnt],
                       capture_output=True, text=True)
    if r.returncode != 0:
        report.skip(name, "mount -t tmpfs -o size=48m tmpfs %s: exit %d: %s" % (
            mnt, r.returncode, r.stderr.strip()))
        return
    b = None
    try:
        b = ChatBroker(BINARY, ["--data-dir", os.path.join(mnt, "db")], "diskfull")
        b.start()
        await diskfull_body(report, b, mnt)
        why = b.sigterm_wait()
        report.check("disk full: the broker still exits 0 on SIGTERM", why)
    finally:
        if b is not None:
            b.kill()
        subprocess.run(["umount", mnt], capture_output=True)


async def diskfull_body(report, b, mnt):
    room = room_name("full")
    a = await Chat.open(b.port, room)
    o = await Chat.open(b.port, room)
    await a.take("initial_state")
    await o.take("initial_state")
    await a.take("user_joined")
    f = await publish(a, "before full", "before")
    acked = {}
    refused = {}
    if f["type"] != "ack":
        report.fail("disk full: setup", "first publish: %s" % f)
        return
    acked["before full"] = f["id"]
    await drain_messages(a, 0.1)
    await drain_messages(o, 0.1)

    filler = os.path.join(mnt, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # big chunks first, then smaller ones until not one byte fits
        for size in (1 << 20, 65536, 4096, 512, 64, 1):
            buf = b"\0" * size
            try:
                while True:
                    os.write(fd, buf)
            except OSError:
                pass
    finally:
        os.close(fd)

    # publish until a few refusals (each 3 KiB, so a preallocated WAL tail fills)
    n_err = 0
    big = "y" * 3000
    for i in range(120):
        content = "during full %d %s" % (i, big)
        f = await publish(a, content, "full-%d" % i, timeout=15)
        if f["type"] == "ack":
            acked[content] = f["id"]
        elif f.get("code") != "rate_limited":
            refused[content] = f
            n_err += 1
            if n_err >= 5:
                break
    why = None
    if n_err == 0:
        why = "no error for 120 messages of 3 KiB on a full disk (%d acked)" % len(acked)
    else:
        codes = {f.get("code") for f in refused.values()}
        print("   disk full: %d acked, %d refused with codes %s" % (len(acked) - 1, n_err,
                                                                   sorted(codes)), flush=True)
    report.check("disk full: publishers get error frames for messages that cannot be stored",
                 why)

    # live traffic still flows: typing, presence, ping
    why = None
    try:
        await o.send({"type": "typing", "isTyping": True})
        t = await a.take("typing", 5)
        await a.send({"type": "presence", "status": "full"})
        await o.take("presence", 5)
        await o.barrier()
        if t["userId"] != o.welcome["user"]["id"]:
            why = "typing %s" % t
    except Exception as e:
        why = "live traffic stalled: %s" % e
    report.check("disk full: live traffic (typing, presence, ping) keeps flowing", why)

    os.unlink(filler)
    why = None
    recovered_at = None
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 20:
        content = "after free %d" % i
        f = await publish(a, content, "after-%d" % i, timeout=10)
        i += 1
        if f["type"] == "ack":
            acked[content] = f["id"]
            recovered_at = time.monotonic() - t0
            break
        refused[content] = f
        await asyncio.sleep(0.5)
    if recovered_at is None:
        why = "no message acknowledged within 20 s of freeing the space (last: %s)" % f
    report.check("disk full: publishing recovers after space is freed%s" %
                 ("" if recovered_at is None else " (%.1fs)" % recovered_at), why)

    # every ack was true, every refusal too
    c = await Chat.open(b.port, room, {"since": 0})
    stored = {}
    while True:
        f = await c.next(10)
        if f["type"] == "message":
            stored.setdefault(f["message"]["content"], []).append(f["message"]["id"])
        elif f["type"] == "synced":
            break
    await c.close()
    lost = [k for k in acked if k not in stored]
    wrong = [k for k, i in acked.items() if k in stored and stored[k] != [i]]
    ghost = [k for k in refused if k in stored]
    why = None
    if lost:
        why = "%d acked messages not stored (false acks), e.g. %r" % (len(lost), lost[0][:40])
    elif wrong:
        why = "acked ids differ from stored ones: %r" % wrong[:2]
    elif ghost:
        why = "%d messages refused with an error are stored anyway, e.g. %r" % (
            len(ghost), ghost[0][:40])
    report.check("disk full: no false ack (every acked message stored, nothing refused stored)",
                 why)
    await a.close()
    await o.close()


# ---- main ------------------------------------------------------------------------------

async def run_case(report, name, coro, timeout):
    try:
        await asyncio.wait_for(coro, timeout)
    except Exception as e:
        report.fail(name, "exception %s: %s" % (type(e).__name__, e))


async def main(report):
    only = set(filter(None, os.environ.get("CHAT_ONLY", "").split(",")))

    def want(g):
        return not only or g in only

    kills = int(os.environ.get("CHAT_CRASH_KILLS", "20"))
    main_broker = None
    if want("session") or want("errors") or want("replay") or want("contract"):
        main_broker = new_broker("main")
    if want("session"):
        await run_case(report, "session", case_session(report, main_broker.port), 120)
    if want("errors"):
        await run_case(report, "errors", case_errors(report, main_broker.port), 60)
    if want("contract"):
        await run_case(report, "contract", case_contract(report, main_broker.port), 60)
    if want("auth"):
        await run_case(report, "auth", case_auth(report), 60)
    if want("recovery"):
        await run_case(report, "recovery", case_recovery(report), 60)
    if want("replay"):
        await run_case(report, "replay", case_replay(report, main_broker.port), 120)
    if want("crash"):
        for mode in ("async", "sync"):
            await run_case(report, "crash loop " + mode, crash_loop(report, mode, kills), 150)
    if want("resume"):
        await run_case(report, "resume", case_resume(report), 60)
    if want("diskfull"):
        await run_case(report, "disk full", case_diskfull(report), 120)


def run():
    global BINARY
    BINARY = rrtest.load_binary_arg("chat")
    report = rrtest.Report("chat")
    try:
        asyncio.run(main(report))
    except RuntimeError as e:  # a broker that cannot start
        report.fail("broker start", str(e))
    status = rrtest.finish_suite(report, [b for b in BROKERS if b.proc is not None])
    if status == 0:
        for d in TMPDIRS:
            shutil.rmtree(d, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    run()
