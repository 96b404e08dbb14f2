"""Big replay (issue #10, "Tests"): a reconnecting client catches up on a
large backlog, paced by its own reading, with bounded broker memory.

1. A /chat/ room is filled with REPLAY_MESSAGES (100,000) stored messages by
   REPLAY_PUBLISHERS raw-socket publishers, each keeping a window of
   messages in flight with a requestId and counting their acks (default
   --durability async: a durable log, no `memory`).
2. A Debian python3-websockets client connects with ?since=0 and reads
   slowly (a 50 ms pause every 2,000 messages; the library's bounded
   receive queue makes the kernel push back on the broker): it must get
   every message, ids 1..N exactly once and in order, each with the content
   its publisher's ack promised, then `synced` (recovered, lastId N), and
   no 1013. The broker's VmRSS is sampled every 20 ms during the replay:
   its peak growth over the value just before the connect must stay under
   64 MiB.
3. Publishers send again; the broker gets SIGKILL while they are sending,
   then starts again on the same --data-dir. The first connect with
   ?since=0, right after /healthz answers, must get its 101 (no reset
   before the handshake), then the same slow replay: every message a
   publisher got an ack for is there, in order, exactly once (ids 1..N with
   N >= the highest acked id; an unacked message may or may not have been
   stored, but if it was, it is there once), then synced, no 1013, RSS
   growth under 64 MiB.

Message size: each message's content is REPLAY_CONTENT_BYTES (default 600)
bytes, so a server frame is about 750 B and the whole replay about 75 MB:
more than the 64 MiB allowed, so a broker that queues the whole replay for
the reader (as 1 GiB of --max-queued-bytes would let it) fails the memory
case; only a replay paced by the reader passes it.

Every wait below is a deadline against a stall (with its reason), never a
speed threshold: a slow shared machine makes the suite slower, not red.

Environment: REPLAY_MESSAGES, REPLAY_CONTENT_BYTES, REPLAY_PUBLISHERS,
REPLAY_KILL_AFTER (acks after which the SIGKILL comes, default 20,000),
REPLAY_KILLS (kill/restart rounds before the checked restart, default 1),
and rrtest's RINGROOM_EXTRA_ARGS / RINGROOM_VERBOSE.
"""
import asyncio
import json
import os
import selectors
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "integration"))
import rrtest  # noqa: E402

try:
    import websockets
    import websockets.exceptions
except ImportError:
    print("replay: python3-websockets is not installed (run with /usr/bin/python3)")
    sys.exit(77)

# 100,000 in the normal build; the sanitizer build checks the same cases for
# memory errors on a fifth of it (it runs several times slower)
MESSAGES = int(os.environ.get("REPLAY_MESSAGES",
                              "20000" if os.environ.get("RINGROOM_SAN") == "1" else "100000"))
CONTENT = int(os.environ.get("REPLAY_CONTENT_BYTES", "600"))
PUBLISHERS = int(os.environ.get("REPLAY_PUBLISHERS", "4"))
KILL_AFTER = int(os.environ.get("REPLAY_KILL_AFTER", str(MESSAGES // 5)))
KILLS = int(os.environ.get("REPLAY_KILLS", "1"))
WINDOW = 256              # messages in flight per publisher (bounds its output queue)
PAUSE_EVERY, PAUSE_S = 2000, 0.05
RSS_LIMIT = 64 << 20
# An ASan build keeps freed memory resident (its quarantine, 256 MiB by
# default) and adds shadow memory and redzones: under RINGROOM_SAN=1 the
# broker runs with a 16 MiB quarantine and the bound is scaled by 3 (the
# same case, judged in both builds, so the case counts match).
RSS_JUDGED = True
if os.environ.get("RINGROOM_SAN") == "1":
    os.environ["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                                  ":quarantine_size_mb=16").lstrip(":")
    RSS_LIMIT = 3 * RSS_LIMIT
ROOM = "replay-%d" % os.getpid()

# Deadlines (each against a stall, with its reason):
FILL_DEADLINE = 600.0     # 100,000 acks take ~20 s here; ten minutes means nothing moves
STALL = 60.0              # no frame at all for a minute: the replay is stuck, not slow
REPLAY_DEADLINE = 900.0   # ~20 s here; only so that a trickle cannot hang the suite
OPEN_TIMEOUT = 60.0       # TCP + upgrade on a loaded machine, right after a restart
READY_TIMEOUT = 120.0     # start-up; RocksDB recovery of ~100 MB after a SIGKILL
KILL_DEADLINE = 300.0     # publishers reaching REPLAY_KILL_AFTER acks
EOF_DEADLINE = 30.0       # reading what the killed broker had already sent


def content_of(key):
    """The content a publisher sends under requestId `key`: the key, then
    filler derived from it, so any corruption or mix-up shows."""
    body = key + " "
    fill = ("%s|" % key) * (CONTENT // (len(key) + 1) + 1)
    return (body + fill)[:CONTENT]


# ---- publishers: raw sockets, one thread, a window of messages in flight -----------

class Publisher:
    def __init__(self, port, idx, tag, limit):
        self.ws = rrtest.WsConn(port, "/chat/" + ROOM, timeout=OPEN_TIMEOUT)
        self.sock = self.ws.sock
        self.sock.setblocking(False)
        self.rx = bytearray(self.ws.buf)
        self.out = bytearray()
        self.idx, self.tag, self.limit = idx, tag, limit
        self.next = 0
        self.inflight = 0
        self.acks = {}       # id -> requestId
        self.sent = []       # requestIds sent (handed to the socket or queued)
        self.errors = []
        self.close = None    # close code from the broker, or "eof"/"reset"
        self.done = False

    def key(self, seq):
        return "%s%d-%d" % (self.tag, self.idx, seq)

    def fill(self, stop):
        if self.close or stop:
            return
        while self.inflight < WINDOW and (self.limit is None or self.next < self.limit) \
                and len(self.out) < (1 << 20):
            k = self.key(self.next)
            payload = json.dumps({"type": "message", "content": content_of(k),
                                  "requestId": k}).encode()
            self.out += rrtest.encode_frame(rrtest.OP_TEXT, payload)
            self.sent.append(k)
            self.next += 1
            self.inflight += 1

    def on_readable(self):
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            except (ConnectionResetError, BrokenPipeError):
                self.close = self.close or "reset"
                break
            if not chunk:
                self.close = self.close or "eof"
                break
            self.rx += chunk
        self.parse()

    def on_writable(self):
        try:
            n = self.sock.send(self.out)
            del self.out[:n]
        except BlockingIOError:
            pass
        except (ConnectionResetError, BrokenPipeError):
            self.close = self.close or "reset"

    def parse(self):
        buf = self.rx
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            ln, h = b1 & 0x7F, 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln, h = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln, h = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if n - pos < h + ln:
                break
            op = b0 & 0x0F
            start = pos + h
            pos = start + ln
            if op == rrtest.OP_TEXT:
                if buf[start:start + 17] == b'{"type":"message"':
                    continue  # the broadcasts of everyone's messages
                m = json.loads(bytes(buf[start:pos]))
                if m.get("type") == "ack":
                    self.acks[m["id"]] = m["requestId"]
                    self.inflight -= 1
                elif m.get("type") == "error":
                    self.errors.append(m)
                    self.inflight -= 1 if m.get("requestId") else 0
            elif op == rrtest.OP_PING:
                self.out += rrtest.encode_frame(rrtest.OP_PONG, bytes(buf[start:pos]))
            elif op == rrtest.OP_CLOSE:
                code = struct.unpack_from("!H", buf, start)[0] if ln >= 2 else None
                self.close = "close %s %r" % (code, bytes(buf[start + 2:pos])[:60])
        del buf[:pos]

    def finished(self):
        return self.limit is not None and self.next >= self.limit and self.inflight <= 0


def run_publishers(pubs, deadline, on_tick=None):
    """Drive the publishers until each is finished or closed. on_tick()
    returns True once to mean "stop sending" (the broker is being killed):
    after that the loop reads until every socket ends."""
    sel = selectors.DefaultSelector()
    for p in pubs:
        sel.register(p.sock, selectors.EVENT_READ, p)
    stop = False
    end = time.monotonic() + deadline
    while True:
        live = [p for p in pubs if not p.close and not p.finished()]
        if not live:
            break
        if time.monotonic() > end:
            raise TimeoutError("publishers not done within %.0f s (acks %d)" % (
                deadline, sum(len(p.acks) for p in pubs)))
        for p in live:
            p.fill(stop)
            sel.modify(p.sock, selectors.EVENT_READ |
                       (selectors.EVENT_WRITE if p.out else 0), p)
        for key, ev in sel.select(timeout=0.5):
            p = key.data
            if ev & selectors.EVENT_WRITE and p.out and not p.close:
                p.on_writable()
            if ev & selectors.EVENT_READ:
                p.on_readable()
        if on_tick and not stop and on_tick():
            stop = True
            end = time.monotonic() + EOF_DEADLINE
    for p in pubs:
        sel.unregister(p.sock)
    sel.close()


def close_publishers(pubs):
    for p in pubs:
        try:
            p.sock.close()
        except OSError:
            pass


# ---- the broker's memory -------------------------------------------------------------

def vmrss(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class RssSampler:
    """VmRSS every 20 ms from start() to stop(): the peak and the base."""

    def __init__(self, pid):
        self.pid = pid
        self.base = vmrss(pid)
        self.peak = self.base
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            v = vmrss(self.pid)
            if v is not None:
                self.samples += 1
                self.peak = max(self.peak or 0, v)
            self._stop.wait(0.02)

    def start(self):
        self._t.start()
        return self

    def stop(self):
        self._stop.set()
        self._t.join()

    def growth(self):
        return (self.peak or 0) - (self.base or 0)


def mib(n):
    return n / (1 << 20)


# ---- the slow reader (Debian's python3-websockets) -----------------------------------

async def slow_replay(port):
    """Connect with ?since=0 and read slowly to `synced`. Returns a dict:
    open_error, ids, contents (requestId keys), synced, close, elapsed."""
    url = "ws://127.0.0.1:%d/chat/%s?since=0" % (port, ROOM)
    res = {"open_error": None, "ids": [], "keys": [], "synced": None, "close": None,
           "other": {}, "bad": [], "welcome": None, "elapsed": 0.0, "stall": None}
    t0 = time.monotonic()
    try:
        # the library's default max_queue (32 messages) and read limit stay:
        # a reader that pauses stops reading its socket, as a real one would
        ws = await websockets.connect(url, compression=None, open_timeout=OPEN_TIMEOUT,
                                      max_size=1 << 20)
    except Exception as e:
        res["open_error"] = "%s: %s" % (type(e).__name__, e)
        return res
    end = t0 + REPLAY_DEADLINE
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                res["stall"] = "no synced within %.0f s" % REPLAY_DEADLINE
                break
            try:
                raw = await asyncio.wait_for(ws.recv(), min(STALL, left))
            except asyncio.TimeoutError:
                res["stall"] = "no frame for %.0f s after %d messages" % (
                    STALL, len(res["ids"]))
                break
            m = json.loads(raw)
            t = m.get("type")
            if t == "message":
                msg = m["message"]
                res["ids"].append(msg["id"])
                c = msg.get("content", "")
                k = c.split(" ", 1)[0]
                if c != content_of(k) and len(res["bad"]) < 5:
                    res["bad"].append("id %s: content %r..." % (msg["id"], c[:40]))
                res["keys"].append(k)
                if len(res["ids"]) % PAUSE_EVERY == 0:
                    await asyncio.sleep(PAUSE_S)
            elif t == "synced":
                res["synced"] = m
                break
            elif t == "welcome":
                res["welcome"] = m
            else:
                res["other"][t] = res["other"].get(t, 0) + 1
    except websockets.exceptions.ConnectionClosed as e:
        rc = e.rcvd
        res["close"] = "closed by the broker with %s %r" % (rc.code, rc.reason) if rc else \
            "connection lost without a close frame (%s)" % (e.__cause__ or "eof")
        res["close_code"] = rc.code if rc else None
    res["elapsed"] = time.monotonic() - t0
    try:
        await asyncio.wait_for(ws.close(), 10)
    except Exception:
        pass
    return res


def describe(res):
    ids = res["ids"]
    s = "%d messages" % len(ids)
    if ids:
        s += " (ids %d..%d)" % (ids[0], ids[-1])
    s += " in %.1f s" % res["elapsed"]
    if res["close"]:
        s += ", then %s" % res["close"]
    if res["stall"]:
        s += ", then %s" % res["stall"]
    if res["synced"]:
        s += ", then synced %s" % json.dumps(
            {k: v for k, v in res["synced"].items() if k != "onlineUsers"})
    return s


def check_replay(res, acked, sent_keys):
    """None when the replay holds every acked message exactly once and in
    order (ids 1..N, N >= the highest acked id) and ends with synced."""
    ids, keys = res["ids"], res["keys"]
    if res["open_error"]:
        return "connect failed: %s" % res["open_error"]
    if res["close"] or res["stall"] or not res["synced"]:
        return "replay did not complete: %s" % describe(res)
    n = len(ids)
    if ids != list(range(1, n + 1)):
        for i, v in enumerate(ids):
            if v != i + 1:
                return "ids not 1..%d in order: position %d holds id %d (%s)" % (
                    n, i, v, describe(res))
    top = max(acked) if acked else 0
    if n < top:
        return "replay ends at id %d, but id %d was acked (%s)" % (n, top, describe(res))
    for i, k in enumerate(keys):
        want = acked.get(i + 1)
        if want is not None and want != k:
            return "id %d holds %r, its ack said %r" % (i + 1, k, want)
    if len(set(keys)) != n:
        return "a message is stored twice under two ids (%d distinct of %d)" % (
            len(set(keys)), n)
    unknown = set(keys) - sent_keys
    if unknown:
        return "messages nobody sent: %s" % sorted(unknown)[:3]
    if res["bad"]:
        return "corrupted content: %s" % "; ".join(res["bad"])
    sy = res["synced"]
    if sy.get("recovered") is not True or sy.get("lastId") != n:
        return "synced %s after %d messages (want recovered true, lastId %d)" % (sy, n, n)
    return None


def replay_cases(report, label, broker, acked, sent_keys, settle):
    """The slow replay with RSS sampling: two cases (content; memory).
    settle: seconds to wait before the base sample (0 right after a restart:
    the connect must come as soon as /healthz answers)."""
    time.sleep(settle)
    rss = RssSampler(broker.proc.pid).start()
    try:
        res = asyncio.run(slow_replay(broker.port))
    finally:
        rss.stop()
    print("   %s: %s; broker VmRSS %.1f MiB before, peak %.1f MiB (growth %.1f MiB, "
          "%d samples)" % (label, describe(res), mib(rss.base or 0), mib(rss.peak or 0),
                           mib(rss.growth()), rss.samples), flush=True)
    why = check_replay(res, acked, sent_keys)
    if why is None and res.get("close_code") == 1013:
        why = "closed with 1013"
    report.check("%s: a slow reader with ?since=0 gets ids 1..N exactly once, in order, "
                 "then synced, no 1013" % label, why)
    if not RSS_JUDGED:
        print("SKIP %s: broker RSS bound: not judged under a sanitizer build (RINGROOM_SAN=1: "
              "ASan's quarantine keeps freed memory resident); peak growth %.1f MiB" % (
                  label, mib(rss.growth())), flush=True)
        return res
    if why is not None and not res["synced"]:
        mem = "not judged as a pass: the replay did not complete (%s); peak growth %.1f " \
              "MiB over the part that ran" % (describe(res), mib(rss.growth()))
    elif rss.growth() >= RSS_LIMIT:
        mem = "broker VmRSS grew by %.1f MiB (from %.1f to %.1f MiB), limit %d MiB" % (
            mib(rss.growth()), mib(rss.base), mib(rss.peak), RSS_LIMIT >> 20)
    else:
        mem = None
    report.check("%s: broker RSS grows by less than %d MiB over the replay" % (
        label, RSS_LIMIT >> 20), mem)
    return res


def kill_under_load(report, broker, rnd, acked, sent_keys):
    """Publishers send (a window in flight each) until KILL_AFTER acks, then
    the broker gets SIGKILL; what the killed broker had already sent is
    read to the end. acked and sent_keys grow."""
    pubs = [Publisher(broker.port, i, "k%d." % rnd, None) for i in range(PUBLISHERS)]
    killed = {}

    def tick():
        # the kill comes with messages on the wire: handed to the kernel
        # (nothing left in the publishers' own buffers) and not yet acked
        n = sum(len(p.acks) for p in pubs)
        inflight = sum(p.inflight for p in pubs)
        if n >= KILL_AFTER and inflight > 0 and not any(p.out for p in pubs):
            killed.update(acks=n, inflight=inflight)
            broker.proc.send_signal(signal.SIGKILL)
            broker.proc.wait()
            return True
        return False

    try:
        run_publishers(pubs, KILL_DEADLINE, tick)
    finally:
        close_publishers(pubs)
    for p in pubs:
        acked.update(p.acks)
        sent_keys.update(p.sent)
    why = None
    if not killed:
        why = "publishers closed before the kill: %s" % [p.close for p in pubs]
    elif killed["inflight"] <= 0:
        why = "nothing was in flight at the kill"
    never = sum(p.inflight for p in pubs)
    print("   kill %d: SIGKILL after %s acks with %s messages in flight; %d of them never "
          "acked; %d acked in all (highest id %d), %d sent" % (
              rnd + 1, killed.get("acks"), killed.get("inflight"), never, len(acked),
              max(acked), len(sent_keys)), flush=True)
    report.check("kill %d: SIGKILL while publishers have messages in flight" % (rnd + 1), why)


# ---- the suite -----------------------------------------------------------------------

def main():
    binary = rrtest.load_binary_arg("replay")
    report = rrtest.Report("replay")
    planned = 1 + (2 if RSS_JUDGED else 1) * 2 + KILLS + 1 + 1
    print("replay: %d cases (one more if the first connect after the restart fails); %d "
          "messages of %d B content, %d publishers, %d kill(s)" % (
              planned, MESSAGES, CONTENT, PUBLISHERS, KILLS), flush=True)
    data = tempfile.mkdtemp(prefix="ringroom-replay-")
    # room log long enough for everything; per-connection chat rate at its
    # maximum (the publishers are the test's own load, not clients)
    args = ["--data-dir", data, "--history-size", "1000000", "--chat-rate", "100000"]
    b1 = rrtest.Broker(binary, args, name="replay")
    b2 = None
    spare = []  # brokers started between kills (REPLAY_KILLS > 1), killed in turn
    acked, sent_keys = {}, set()
    try:
        b1.start(ready_timeout=READY_TIMEOUT)
        # 1. fill
        t0 = time.monotonic()
        per = [MESSAGES // PUBLISHERS + (1 if i < MESSAGES % PUBLISHERS else 0)
               for i in range(PUBLISHERS)]
        pubs = [Publisher(b1.port, i, "f", per[i]) for i in range(PUBLISHERS)]
        try:
            run_publishers(pubs, FILL_DEADLINE)
        finally:
            close_publishers(pubs)
        for p in pubs:
            acked.update(p.acks)
            sent_keys.update(p.sent)
        why = None
        closes = [p.close for p in pubs if p.close]
        errs = [e for p in pubs for e in p.errors]
        if closes or errs:
            why = "publishers closed %s, errors %s" % (closes, errs[:3])
        elif sorted(acked) != list(range(1, MESSAGES + 1)):
            why = "%d acks, ids %s..%s" % (len(acked), min(acked, default=None),
                                          max(acked, default=None))
        print("   fill: %d messages of %d B content acked in %.1f s by %d publishers" % (
            len(acked), CONTENT, time.monotonic() - t0, PUBLISHERS), flush=True)
        report.check("fill: %d messages stored and acked (ids 1..%d)" % (MESSAGES, MESSAGES),
                     why)
        if why:
            raise RuntimeError("cannot go on without the room filled")

        # 2. the slow replay
        # (half a second for the publishers' connections to be gone)
        replay_cases(report, "replay", b1, acked, sent_keys, 0.5)

        # 3. SIGKILL under publish load (KILLS rounds), restart, replay again
        cur = b1
        for rnd in range(KILLS):
            if rnd > 0:
                cur = rrtest.Broker(binary, args, name="replay-round%d" % rnd)
                spare.append(cur)
                cur.start(ready_timeout=READY_TIMEOUT)
            kill_under_load(report, cur, rnd, acked, sent_keys)

        b2 = rrtest.Broker(binary, args, name="replay-restarted")
        b2.start(ready_timeout=READY_TIMEOUT)
        res = replay_cases(report, "after SIGKILL + restart", b2, acked, sent_keys, 0)
        report.check("after SIGKILL + restart: the first ?since=0 connect gets its 101 "
                     "(no reset before the handshake)",
                     None if not res["open_error"] else res["open_error"])
        if res["open_error"]:
            # the data are still worth checking: connect again, a few times
            for attempt in range(1, 6):
                time.sleep(1.0)
                res = asyncio.run(slow_replay(b2.port))
                print("   retry %d: %s" % (attempt, res["open_error"] or describe(res)),
                      flush=True)
                if not res["open_error"]:
                    break
            report.check("after SIGKILL + restart, connecting again: every acked message "
                         "there, once, in order, then synced", check_replay(res, acked,
                                                                           sent_keys))
    except Exception as e:
        report.fail("replay suite", "%s: %s" % (type(e).__name__, e))
    for b in [b1] + spare:
        if b.running():
            b.kill()
    if report.failed:
        b1.dump_stderr(limit=6000)  # the broker that was killed
    brokers = [b for b in (b2,) if b is not None]
    st = rrtest.finish_suite(report, brokers)
    if st == 0:
        import shutil
        shutil.rmtree(data, ignore_errors=True)
    else:
        print("data folder kept: %s" % data)
    return st


if __name__ == "__main__":
    sys.exit(main())
