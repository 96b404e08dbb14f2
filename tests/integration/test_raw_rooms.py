#!/usr/bin/python3
"""/raw/{room} broadcast and /echo payload sizes, with python3-websockets.

Usage: test_raw_rooms.py <ringroom binary>

A data message sent to /raw/{room} must reach every OTHER member of that
room unchanged (same opcode, same bytes), never the sender, never another
room. /echo returns each message to its sender. Sizes cover every length
encoding boundary up to the default --max-message-bytes (1 MiB, allowed:
only "past it" is 1009).
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rrtest  # noqa: E402

import websockets  # noqa: E402  (python3-websockets, Debian)
import websockets.exceptions  # noqa: E402

SIZES = [0, 125, 126, 65535, 65536, 1 << 20]
CLIENT_MAX = 2 << 20
# No pause after joining: the broker joins a /raw/ member on its room's core
# before it answers 101 (src/room/builtin.c, raw_open), so a completed
# handshake already orders the join before anything the test sends next.
QUIET = 0.7    # how long "receives nothing" is watched: only ever a negative
               # check (a late delivery still fails it), never a positive one


async def ws_connect(port, path, max_queue=None):
    # max_queue=None: a client that never calls recv() (a sender) must still
    # read the socket, or it would miss the close reply and wait close_timeout
    return await websockets.connect("ws://127.0.0.1:%d%s" % (port, path),
                                    max_size=CLIENT_MAX, compression=None,
                                    ping_interval=None, open_timeout=10,
                                    close_timeout=5, max_queue=max_queue)


async def connect_many(port, path, n):
    # a few at a time keeps the accept backlog and the 2-core box calm
    conns = []
    for i in range(0, n, 50):
        conns += await asyncio.gather(*(ws_connect(port, path)
                                        for _ in range(min(50, n - i))))
    return conns


async def close_all(conns):
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


async def expect_nothing(conns, secs):
    """Names of connections (by index) that received something."""
    async def one(i, c):
        try:
            m = await asyncio.wait_for(c.recv(), secs)
            return "client %d got %r" % (i, m[:40])
        except asyncio.TimeoutError:
            return None
    got = await asyncio.gather(*(one(i, c) for i, c in enumerate(conns)))
    return [g for g in got if g]


def payload(size, is_text, seed):
    """size bytes: random binary, or text (multi-byte UTF-8, exactly size
    bytes when encoded)."""
    if not is_text:
        return os.urandom(size)
    unit = "ringroom-%d-κόσμε-😀-" % seed
    b = (unit * (size // len(unit.encode()) + 1)).encode()[:size]
    t = b.decode("utf-8", "ignore")  # drop a cut character at the end
    return t + "x" * (size - len(t.encode()))


def same(a, b):
    return type(a) is type(b) and a == b


def show(m):
    return "%s of %d" % (type(m).__name__, len(m))


async def case_room_200(port):
    room = await connect_many(port, "/raw/big-room", 200)
    other = await connect_many(port, "/raw/other-room", 5)
    try:
        msg = "hello from member 0 " + os.urandom(8).hex()
        await room[0].send(msg)

        async def recv(i, c):
            try:
                m = await asyncio.wait_for(c.recv(), 10)
            except asyncio.TimeoutError:
                return "member %d got nothing within 10s" % i
            return None if same(m, msg) else "member %d got %s" % (i, show(m))
        bad = [b for b in await asyncio.gather(*(recv(i, c) for i, c in
                                                 enumerate(room[1:], 1))) if b]
        if bad:
            return "%d of 199 members wrong: %s" % (len(bad), "; ".join(bad[:3]))
        bad = await expect_nothing([room[0]] + other, QUIET)
        if bad:
            return "sender or other room received: %s" % "; ".join(bad[:3])
        return None
    finally:
        await close_all(room + other)


async def case_all_to_all(port):
    n = 20
    conns = await connect_many(port, "/raw/all2all", n)
    try:
        await asyncio.gather(*(c.send("from-%d" % i) for i, c in enumerate(conns)))

        async def recv(i, c):
            got = set()
            try:
                for _ in range(n - 1):
                    got.add(await asyncio.wait_for(c.recv(), 10))
            except asyncio.TimeoutError:
                pass
            want = {"from-%d" % j for j in range(n) if j != i}
            if got != want:
                return "member %d: missing %s, extra %s" % (
                    i, sorted(want - got)[:3], sorted(got - want)[:3])
            return None
        bad = [b for b in await asyncio.gather(*(recv(i, c) for i, c in enumerate(conns)))
               if b]
        if bad:
            return "; ".join(bad[:3])
        bad = await expect_nothing(conns, QUIET)
        return ("extra deliveries: " + "; ".join(bad[:3])) if bad else None
    finally:
        await close_all(conns)


async def case_room_size(port, size, is_text):
    kind = "text" if is_text else "binary"
    conns = await connect_many(port, "/raw/sizes-%s-%d" % (kind, size), 3)
    try:
        p = payload(size, is_text, size)
        await conns[0].send(p)
        for i in (1, 2):
            try:
                m = await asyncio.wait_for(conns[i].recv(), 15)
            except asyncio.TimeoutError:
                return "member %d got nothing within 15s" % i
            if not same(m, p):
                return "member %d got %s, sent %s of %d" % (i, show(m), kind, size)
        bad = await expect_nothing([conns[0]], QUIET)
        return ("sender got its own message back: " + bad[0]) if bad else None
    finally:
        await close_all(conns)


async def case_many_rooms(port):
    """300 rooms of 2 (the registry grows), then all emptied and joined
    again (rooms freed and re-created): each message stays in its room."""
    n = 300
    for rnd in range(2):
        names = ["many-%d-%s" % (i, "x" * (i % 97)) for i in range(n)]
        pairs = []
        try:
            for i in range(0, n, 50):
                pairs += await asyncio.gather(*(connect_many(port, "/raw/" + nm, 2)
                                                for nm in names[i:i + 50]))
            await asyncio.gather(*(a.send(nm) for (a, _b), nm in zip(pairs, names)))

            async def check(i):
                try:
                    m = await asyncio.wait_for(pairs[i][1].recv(), 10)
                except asyncio.TimeoutError:
                    return "room %d got nothing" % i
                return None if m == names[i] else "room %d got %r" % (i, m[:30])
            bad = [b for b in await asyncio.gather(*(check(i) for i in range(n))) if b]
            if bad:
                return "round %d: %d rooms wrong: %s" % (rnd, len(bad), "; ".join(bad[:3]))
            bad = await expect_nothing([c for p in pairs for c in p], QUIET)
            if bad:
                return "round %d: cross-room delivery: %s" % (rnd, bad[0])
        finally:
            await close_all([c for p in pairs for c in p])
    return None


async def case_room_too_big(port):
    """1 MiB + 1 (default --max-message-bytes 1MiB) closes the sender with
    1009; the others receive nothing of it and stay connected."""
    conns = await connect_many(port, "/raw/too-big", 3)
    try:
        try:
            await conns[0].send(os.urandom((1 << 20) + 1))
        except websockets.exceptions.ConnectionClosed:
            pass
        try:
            m = await asyncio.wait_for(conns[0].recv(), 10)
            return "sender got a message instead of close 1009: %s" % show(m)
        except websockets.exceptions.ConnectionClosed:
            pass
        if conns[0].close_code != 1009:
            return "sender closed with %s, expected 1009" % conns[0].close_code
        bad = await expect_nothing(conns[1:], QUIET)
        if bad:
            return "others received: %s" % bad[0]
        await conns[1].send("still fine")
        m = await asyncio.wait_for(conns[2].recv(), 10)
        return None if m == "still fine" else "room broken: %r" % m
    finally:
        await close_all(conns)


def raw_offender(port, frame):
    """A raw member sends a bad frame: its close code, or a string."""
    c = rrtest.WsConn(port, "/raw/offended")
    try:
        c.send(frame)
        while True:
            f = c.read_frame(5.0)
            if f.opcode == rrtest.OP_CLOSE:
                code = f.close_code()
                c.send(rrtest.encode_frame(rrtest.OP_CLOSE, rrtest.close_payload(code)))
                return code if c.wait_eof(5.0) else "TCP not closed after close %s" % code
    except Exception as e:
        return "%s: %s" % (type(e).__name__, e)
    finally:
        c.close()


async def case_room_protocol_errors(port):
    """Protocol errors on /raw close only the offender, with the same codes
    as /echo, and nothing of the bad frame reaches the room."""
    conns = await connect_many(port, "/raw/offended", 2)
    try:
        for name, frame, want in (
                ("invalid UTF-8 text", rrtest.encode_frame(rrtest.OP_TEXT, b"ok \xed\xa0\x80"), 1007),
                ("unmasked binary", rrtest.encode_frame(rrtest.OP_BINARY, b"x", mask=False), 1002),
                ("RSV1 text", rrtest.encode_frame(rrtest.OP_TEXT, b"x", rsv=4), 1002)):
            got = await asyncio.to_thread(raw_offender, port, frame)
            if got != want:
                return "%s: got %r, expected close %d" % (name, got, want)
        bad = await expect_nothing(conns, QUIET)
        if bad:
            return "members received: %s" % bad[0]
        await conns[0].send("room still fine")
        m = await asyncio.wait_for(conns[1].recv(), 10)
        return None if m == "room still fine" else "room broken: %r" % m
    finally:
        await close_all(conns)


async def case_echo_size(port, size, is_text):
    c = await ws_connect(port, "/echo")
    try:
        p = payload(size, is_text, size + 1)
        await c.send(p)
        try:
            m = await asyncio.wait_for(c.recv(), 15)
        except asyncio.TimeoutError:
            return "no echo within 15s"
        return None if same(m, p) else "echo is %s, sent %s of %d" % (
            show(m), "text" if is_text else "binary", size)
    finally:
        await close_all([c])


async def case_order(port):
    conns = await connect_many(port, "/raw/ordered", 3)
    try:
        msgs = [("m%04d" % i) if i % 2 else ("b%04d" % i).encode() for i in range(500)]
        for m in msgs:
            await conns[0].send(m)
        for i in (1, 2):
            got = []
            try:
                for _ in msgs:
                    got.append(await asyncio.wait_for(conns[i].recv(), 10))
            except asyncio.TimeoutError:
                return "member %d got %d of %d" % (i, len(got), len(msgs))
            if not all(same(a, b) for a, b in zip(got, msgs)):
                k = next(j for j, (a, b) in enumerate(zip(got, msgs)) if not same(a, b))
                return "member %d: message %d is %r, expected %r" % (i, k, got[k], msgs[k])
        return None
    finally:
        await close_all(conns)


async def case_multi_sender_order(port):
    """4 senders x 200 messages into a room of 20 (spread over the cores):
    every receiver gets each sender's messages complete and in order."""
    conns = await connect_many(port, "/raw/multi", 20)
    senders = conns[:4]
    try:

        async def send(k, c):
            for i in range(200):
                await c.send("s%d:%d" % (k, i))

        async def recv(idx, c):
            me = idx if idx < 4 else None
            nxt = {k: 0 for k in range(4) if k != me}
            total = sum(200 for _ in nxt)
            for _ in range(total):
                m = await asyncio.wait_for(c.recv(), 15)
                k, i = m[1:].split(":")
                k, i = int(k), int(i)
                if k == me:
                    return "member %d got its own message %r" % (idx, m)
                if i != nxt[k]:
                    return "member %d: from sender %d got #%d, expected #%d" % (
                        idx, k, i, nxt[k])
                nxt[k] += 1
            return None
        readers = [asyncio.ensure_future(recv(i, c)) for i, c in enumerate(conns)]
        await asyncio.gather(*(send(k, c) for k, c in enumerate(senders)))
        bad = [b for b in await asyncio.wait_for(asyncio.gather(*readers,
                                                                return_exceptions=True), 40)
               if b]
        return "; ".join(str(b) for b in bad[:3]) if bad else None
    finally:
        await close_all(conns)


async def case_leave(port):
    conns = await connect_many(port, "/raw/leavers", 6)
    try:
        await close_all(conns[3:])  # three members leave cleanly
        await conns[0].send(b"after-leave")
        for i in (1, 2):
            try:
                m = await asyncio.wait_for(conns[i].recv(), 10)
            except asyncio.TimeoutError:
                return "member %d got nothing after others left" % i
            if m != b"after-leave":
                return "member %d got %r" % (i, m)
        # an abrupt leave (TCP reset, no close frame) must not break the room
        conns[2].transport.abort()
        await conns[0].send("after-abort")
        m = await asyncio.wait_for(conns[1].recv(), 10)
        return None if m == "after-abort" else "member 1 got %r after an abort" % m
    finally:
        await close_all(conns)


async def case_churn(port):
    """Members join, send and leave (cleanly or by reset) while a sender
    broadcasts: two stable members get every message of the stable sender,
    in order, and nothing breaks."""
    stable = await connect_many(port, "/raw/churn", 3)
    sender, r1, r2 = stable
    try:
        stop = asyncio.Event()
        cycles = [0]

        async def churner(k):
            n = 0
            while not stop.is_set() and n < 200:
                c = await ws_connect(port, "/raw/churn")
                await c.send("churner-%d" % k)
                if n % 3 == 0:
                    c.transport.abort()  # TCP reset, no close frame
                else:
                    await c.close()
                n += 1
                cycles[0] += 1
            return n

        async def stable_sender():
            # interleave: message i goes out once i/10 churn cycles are done,
            # so joins, leaves and resets happen all through the broadcast
            for i in range(300):
                while cycles[0] < i // 10:
                    await asyncio.sleep(0.002)
                await sender.send(b"S%05d" % i)

        async def stable_reader(c):
            want = 0
            while want < 300:
                m = await asyncio.wait_for(c.recv(), 15)
                if isinstance(m, bytes) and m.startswith(b"S"):
                    if m != b"S%05d" % want:
                        return "got %r, expected S%05d" % (m, want)
                    want += 1
                elif not (isinstance(m, str) and m.startswith("churner-")):
                    return "unexpected %r" % m[:30]
            return None
        churners = [asyncio.ensure_future(churner(k)) for k in range(4)]
        try:
            res = await asyncio.wait_for(asyncio.gather(
                stable_sender(), stable_reader(r1), stable_reader(r2)), 45)
        finally:
            stop.set()
            done = await asyncio.gather(*churners, return_exceptions=True)
        bad = [r for r in res[1:] if r]
        if bad:
            return "stable member: " + "; ".join(bad)
        errs = [d for d in done if isinstance(d, Exception)]
        if errs:
            return "a churner failed: %s: %s" % (type(errs[0]).__name__, errs[0])
        if sum(done) < 29:
            return "only %d churn cycles ran" % sum(done)
        return None
    finally:
        await close_all(stable)


async def case_abort_mid_message(port):
    """Receivers reset their TCP while 1 MiB messages are being written to
    them; the others still get everything."""
    conns = await connect_many(port, "/raw/aborts", 12)
    sender, keep, drop = conns[0], conns[1:4], conns[4:]
    try:
        body = os.urandom(1 << 20)

        async def reader(c):
            for i in range(6):
                m = await asyncio.wait_for(c.recv(), 20)
                if m != body:
                    return "message %d differs" % i
            return None
        readers = [asyncio.ensure_future(reader(c)) for c in keep]
        for i in range(6):
            await sender.send(body)
            if i == 1:
                for c in drop:
                    c.transport.abort()
        bad = [r for r in await asyncio.wait_for(asyncio.gather(*readers), 60) if r]
        return "; ".join(bad) if bad else None
    finally:
        await close_all(conns)


async def case_echo_storm(port):
    """1000 /echo connections at once, each echoes one message."""
    n = 1000

    async def one(i):
        c = await ws_connect(port, "/echo")
        try:
            await c.send("storm-%d" % i)
            m = await asyncio.wait_for(c.recv(), 20)
            return None if m == "storm-%d" % i else "conn %d got %r" % (i, m)
        finally:
            await c.close()
    sem = asyncio.Semaphore(250)

    async def limited(i):
        async with sem:
            try:
                return await one(i)
            except Exception as e:
                return "conn %d: %s: %s" % (i, type(e).__name__, e)
    bad = [b for b in await asyncio.gather(*(limited(i) for i in range(n))) if b]
    return ("%d of %d failed: %s" % (len(bad), n, "; ".join(bad[:3]))) if bad else None


SLOW_MSGS = 320          # x 64 KiB = 20 MiB, far past 1 MiB + kernel buffers
SLOW_MSG_BYTES = 65536
WINDOW = 8


def read_slow_member(conn):
    """Drain a member that stopped reading: (indexes of data messages in the
    order received, close code or None, what ended it)."""
    got = []
    while True:
        try:
            f = conn.read_frame(10.0)
        except rrtest.Eof:
            return got, None, "TCP closed without a close frame"
        except OSError as e:
            return got, None, "read: %s" % e
        if f.opcode == rrtest.OP_CLOSE:
            return got, f.close_code(), "close frame"
        if f.opcode == rrtest.OP_BINARY:
            got.append(int.from_bytes(f.payload[:4], "big"))


async def case_slow_consumer(port):
    """A member that does not read is closed with 1013 once its queue passes
    --max-queued-bytes; the sender and a fast member are not held back."""
    slow = rrtest.WsConn(port, "/raw/slowroom", rcvbuf=4096)
    sender, fast = await connect_many(port, "/raw/slowroom", 2)
    try:
        body = os.urandom(SLOW_MSG_BYTES - 4)

        count = {"sent": 0, "fast": 0}

        progress = asyncio.Condition()

        async def send_all():
            # keep at most WINDOW messages (512 KiB) ahead of the fast member,
            # which shares this event loop: it must stay well under the cap
            for i in range(SLOW_MSGS):
                async with progress:
                    await progress.wait_for(lambda: count["fast"] >= i - WINDOW)
                await sender.send(i.to_bytes(4, "big") + body)
                count["sent"] += 1

        async def fast_reads():
            for i in range(SLOW_MSGS):
                m = await fast.recv()
                if int.from_bytes(m[:4], "big") != i or m[4:] != body:
                    return "fast member: message %d wrong (index %d)" % (
                        i, int.from_bytes(m[:4], "big"))
                async with progress:
                    count["fast"] += 1
                    progress.notify_all()
            return None
        try:
            res = await asyncio.wait_for(asyncio.gather(send_all(), fast_reads()), 40)
        except asyncio.TimeoutError:
            return ("after 40s the sender sent %d and the fast member got %d of %d "
                    "messages: held back by the slow member?" % (
                        count["sent"], count["fast"], SLOW_MSGS))
        if res[1]:
            return res[1]
        got, code, how = await asyncio.to_thread(read_slow_member, slow)
        if got != list(range(len(got))):
            return "slow member's messages are not an in-order prefix (%d received)" % len(got)
        if code != 1013:
            return "slow member: %s (code %s) after %d of %d messages, expected close 1013" % (
                how, code, len(got), SLOW_MSGS)
        if len(got) >= SLOW_MSGS:
            return "slow member got all %d messages and then 1013?" % SLOW_MSGS
        if not slow.wait_eof(5.0):
            return "slow member: close 1013 but TCP not closed"
        await sender.send(b"after the slow one left")
        m = await asyncio.wait_for(fast.recv(), 10)
        return None if m == b"after the slow one left" else "room broken afterwards: %r" % m[:20]
    finally:
        slow.close()
        await close_all([sender, fast])


async def run(report, port):
    await_case = [
        ("raw: 200 members, one sends, 199 receive, sender and other room get nothing",
         case_room_200(port)),
        ("raw: 20 members all send, each gets the 19 others", case_all_to_all(port)),
        ("raw: 500 mixed messages arrive in order", case_order(port)),
        ("raw: 4 senders x 200 to 20 members: per-sender order, complete",
         case_multi_sender_order(port)),
        ("raw: members leave (close and reset), room keeps working", case_leave(port)),
        ("raw: join/leave/reset churn while broadcasting; stable members get all, in order",
         case_churn(port)),
        ("raw: receivers reset mid-way through 1 MiB messages; the others get all",
         case_abort_mid_message(port)),
        ("echo: 1000 connections (250 at a time) each echo once", case_echo_storm(port)),
        ("raw: 300 rooms of 2, emptied and re-created: no cross-room delivery",
         case_many_rooms(port)),
        ("raw: 1 MiB + 1 closes the sender with 1009, others get nothing",
         case_room_too_big(port)),
        ("raw: 1007/1002 close only the offending member; nothing reaches the room",
         case_room_protocol_errors(port)),
    ]
    for size in SIZES:
        for is_text in (False, True):
            kind = "text" if is_text else "binary"
            await_case.append(("raw: %s %d bytes reaches the others intact" % (kind, size),
                               case_room_size(port, size, is_text)))
            await_case.append(("echo: %s %d bytes" % (kind, size),
                               case_echo_size(port, size, is_text)))
    for name, coro in await_case:
        try:
            why = await asyncio.wait_for(coro, 60)
        except Exception as e:
            why = "exception %s: %s" % (type(e).__name__, e)
        report.check(name, why)


def main():
    binary = rrtest.load_binary_arg("raw_rooms")
    report = rrtest.Report("raw_rooms")
    broker = rrtest.Broker(binary, [], name="raw-rooms-broker")
    try:
        broker.start()
    except Exception as e:
        report.fail("broker starts", str(e))
        return report.finish()
    slow_broker = rrtest.Broker(binary, ["--max-queued-bytes", "1MiB"],
                                name="slow-consumer-broker")
    try:
        asyncio.run(run(report, broker.port))
        try:
            slow_broker.start()
            report.run("raw: slow member (never reads) closed with 1013 past "
                       "--max-queued-bytes 1MiB; others unaffected",
                       lambda: asyncio.run(asyncio.wait_for(
                           case_slow_consumer(slow_broker.port), 90)))
        except RuntimeError as e:
            report.fail("slow-consumer-broker starts", str(e))
    finally:
        code = rrtest.finish_suite(report, [broker, slow_broker])
    return code


if __name__ == "__main__":
    sys.exit(main())
