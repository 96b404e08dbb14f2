#!/usr/bin/python3
"""Hostile-client battery (issue #5): the broker under abuse on loopback.

Usage: hostile.py <ringroom binary>

Each case attacks a live broker and checks three things:
  1. the answer: the HTTP status or close code protocol.md promises, and that
     the broker then closes TCP;
  2. memory: the broker's VmRSS (sampled every 50 ms by a thread) is back
     within max(2 MiB, 10 %) of its value before the case once the case's
     connections are gone, and its peak during the case stays under a bound
     chosen per case (what the attack may legitimately cost, with margin);
  3. a well-behaved /echo client, connected throughout in its own process
     (hostile_probe.py), keeps working: every round trip comes back (within
     its generous 10 s deadline) and it completes round trips during the
     case. Round-trip times (p99, max) are printed and kept in the JSON
     report, never judged: a latency bound on a shared 2-core machine flakes
     and invites loosening; latency belongs to bench/.
One line per case: `ok name peak_rss_kib=… after_rss_kib=… rtt_p99_ms=…` or
`FAIL name: why`; then `hostile: N passed, M failed`. Exit 0 only if all
passed. HOSTILE_REPORT=<path> also writes a JSON summary there.

Brokers (all on 127.0.0.1, --cores 2, quick timeouts so the battery takes
about a minute):
  main   --handshake-timeout 2s --close-timeout 2s --max-queued-bytes 1MiB
         --max-message-bytes 1MiB: most cases
  small  the same with --max-message-bytes 64KiB: fragments past the limit
  cap    --max-connections 50 (the probe is one of the 50)
  perip  --max-connections-per-ip 10 (the probe connects from 127.0.0.3)
/metrics is read from 127.0.0.4 so it never counts against 127.0.0.1.

Memory baselines: right after start each broker is warmed up (data pushed
through lone /raw/ members until RSS stops growing; Target.warm_up). The
broker's receive-buffer ring (mmap'd, 1024 x 16 KiB per core by default) is
faulted in page by page as receives cycle through it and never released, so
without this any case that moves data "grows" RSS by up to ~32 MiB once.
HOSTILE_WARMUP=0 skips it (to see that growth). HOSTILE_ONLY=a,b,a runs only
the named cases, in that order (repeat one to see if a second round grows
memory again).

RINGROOM_SAN=1 (sanitizer build): RSS figures are printed but not enforced
(ASan's quarantine and shadow memory keep freed memory resident; the normal
build enforces them), and the brokers' stderr must hold no sanitizer report.
The same cases run in both builds ("hostile: N cases").
"""

import concurrent.futures
import json
import os
import selectors
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile_lib as hl  # noqa: E402
from hostile_lib import rrtest  # noqa: E402
from rrtest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG,  # noqa: E402
                    OP_TEXT, Eof, WsConn, close_payload, encode_frame as F)

SAN = os.environ.get("RINGROOM_SAN") == "1"
HANDSHAKE_S = 2.0
CLOSE_S = 2.0
# Deadlines for what must happen eventually (a close, a slot freed, the probe
# getting round trips): generous, since the machine is shared and may run a
# sanitizer build. They never measure how fast the broker is.
EVENTUALLY = 30.0
EOF_WAIT = CLOSE_S + EVENTUALLY  # the broker's close-timeout, then eventually
KIB = 1024
MIB = 1024 * KIB

COMMON = ["--handshake-timeout", "2s", "--close-timeout", "2s",
          "--max-queued-bytes", "1MiB", "--ping-interval", "10m",
          "--idle-timeout", "20m"]
BROKERS = {
    "main": (COMMON + ["--max-message-bytes", "1MiB"], ""),
    "small": (COMMON + ["--max-message-bytes", "64KiB"], ""),
    "cap": (COMMON + ["--max-connections", "50"], ""),
    "perip": (COMMON + ["--max-connections-per-ip", "10"], "127.0.0.3"),
}
KEY = b"\x5a\xc3\x17\x9e"  # one fixed mask key where frames are repeated in bulk


def masked_one(opcode, byte, fin):
    """A masked 1-byte frame with the fixed key (repeated by the thousand)."""
    return F(opcode, byte, fin=fin, mask_key=KEY)


def sender_thread(sock, data, timeout=30.0):
    """Send data on a dup of sock from a thread (the reader keeps its own
    timeouts). Returns (thread, result dict with 'error' and 'done_at')."""
    s = sock.dup()
    s.settimeout(timeout)
    res = {"error": None, "done_at": None}

    def run():
        try:
            s.sendall(data)
            res["done_at"] = time.monotonic()
        except OSError as e:
            res["error"] = "%s" % e
        finally:
            s.close()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, res


def read_until_close(c, timeout):
    """Frames until the server's close frame: (close frame or None, others,
    what ended it: 'close' | 'eof' | 'timeout')."""
    deadline = time.monotonic() + timeout
    others = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, others, "timeout"
        try:
            f = c.read_frame(timeout=left)
        except Eof:
            return None, others, "eof"
        except socket.timeout:
            return None, others, "timeout"
        if f.opcode == OP_CLOSE:
            return f, others, "close"
        others.append(f)


def expect_close(port, data, want, path="/echo", send_in_thread=False, timeout=5.0):
    """Connect, send data, require a close frame with code `want`, then TCP
    closed by the broker within EOF_WAIT without our close reply. Returns
    None or why."""
    c = WsConn(port, path)
    try:
        th = None
        if send_in_thread:
            th, _res = sender_thread(c.sock, data)
        else:
            try:
                c.send(data)
            except OSError:
                pass  # rejected mid-send; the answer is what counts
        f, others, how = read_until_close(c, timeout)
        if f is None:
            return "no close frame (%s) after %s; want %d" % (
                how, ", ".join(repr(o) for o in others[:3]) or "nothing", want)
        code = f.close_code()
        if code != want:
            return "close code %s (%r), want %d" % (code, f.payload[2:60], want)
        echoed = [o for o in others if o.opcode not in (OP_PING, OP_PONG)]
        if echoed:  # every input here is invalid before its first full message
            return "close %d, but first echoed %r" % (want, echoed[0])
        if not c.wait_eof(EOF_WAIT):
            return "close %d ok but TCP still open %.1fs later" % (want, EOF_WAIT)
        if th is not None:
            th.join(timeout=5)
        return None
    finally:
        c.close()


def run_parallel(subs):
    """subs: [(name, fn)] run concurrently; returns (why or None, details)."""
    details = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(subs)) as ex:
        futs = {ex.submit(fn): name for name, fn in subs}
        for fut, name in futs.items():
            try:
                details[name] = fut.result()
            except Exception as e:
                details[name] = "exception %s: %s" % (type(e).__name__, e)
    bad = ["%s: %s" % (n, w) for n, w in details.items() if w is not None]
    return ("; ".join(bad) if bad else None), {n: (w or "ok") for n, w in details.items()}


def clean_close(c, timeout=5.0):
    """Our close 1000, the broker's close back, then TCP closed. None or why."""
    c.send_frame(OP_CLOSE, close_payload(1000))
    f, _o, how = read_until_close(c, timeout)
    if f is None:
        return "no close reply (%s)" % how
    if f.close_code() != 1000:
        return "close reply code %s, want 1000" % f.close_code()
    if not c.wait_eof(EOF_WAIT):
        return "TCP open after the close handshake"
    return None


# ---- cases -------------------------------------------------------------------

def case_slowloris(t):
    """1,000 sockets dribble an upgrade request one byte per ~100 ms each;
    every one must be closed by --handshake-timeout (2 s): closed without a
    101, and ringroom_handshake_timeouts_total rises by (at least) 1,000, the
    broker's own account of why. A normal client connecting meanwhile gets
    its echo and a clean close. Nothing is timed: how long the normal
    handshake took and how many slowloris sockets were still open when it
    finished are printed."""
    n = 1000
    req, _k = rrtest.upgrade_request("/echo")
    before = t.stat_sum("handshake_timeouts_total")
    socks = []  # [sock, connected_at, sent, closed_at, data]
    for _i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5.0)
        s.connect(("127.0.0.1", t.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append([s, time.monotonic(), 0, None, b""])
    start = time.monotonic()
    normal = []  # (handshake ms, why)

    def normal_client():
        for at in (0.5, 1.0, 1.5, 2.5):
            time.sleep(max(0.0, start + at - time.monotonic()))
            t0 = time.monotonic()
            try:
                c = WsConn(t.port, "/echo", timeout=EVENTUALLY)
                ms = (time.monotonic() - t0) * 1000.0
                held = open_left
                c.send_frame(OP_TEXT, b"still here")
                op, data, _ctl = c.read_message(timeout=EVENTUALLY)
                why = None if (op, data) == (OP_TEXT, b"still here") else "bad echo %r" % (data,)
                if why is None:
                    why = clean_close(c)
                c.close()
                normal.append((ms, why, held))
            except Exception as e:
                normal.append(((time.monotonic() - t0) * 1000.0,
                               "%s: %s" % (type(e).__name__, e), open_left))

    nth = threading.Thread(target=normal_client, daemon=True)
    nth.start()
    deadline = socks[-1][1] + HANDSHAKE_S + EVENTUALLY
    # epoll tells which sockets the broker answered or closed, so the
    # attacker's own CPU goes to one send per socket per round only.
    sel = selectors.DefaultSelector()
    for e in socks:
        sel.register(e[0], selectors.EVENT_READ, e)
    open_left = n

    def gone(e):
        nonlocal open_left
        e[3] = time.monotonic()
        open_left -= 1
        sel.unregister(e[0])
        e[0].close()

    while open_left and time.monotonic() < deadline:
        round_start = time.monotonic()
        for idx in range(0, n, 100):  # 10 slices over ~100 ms
            for key, _ev in sel.select(timeout=0):
                e = key.data
                try:
                    d = e[0].recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    d = b""
                if d:
                    e[4] += d
                else:
                    gone(e)
            for e in socks[idx:idx + 100]:
                if e[3] is None and e[2] < len(req) - 1:  # never completes it
                    try:
                        e[0].send(req[e[2]:e[2] + 1])
                        e[2] += 1
                    except BlockingIOError:
                        pass
                    except OSError:
                        gone(e)
            time.sleep(max(0.0, round_start + (idx / 100 + 1) * 0.01 - time.monotonic()))
    sel.close()
    nth.join(timeout=4 * EVENTUALLY)
    still = [e for e in socks if e[3] is None]
    for e in still:
        e[0].close()
    problems = []
    if still:
        problems.append("%d of %d sockets still open %.1fs after connecting" % (
            len(still), n, HANDSHAKE_S + EVENTUALLY))
    lat = [e[3] - e[1] for e in socks if e[3] is not None]
    answered = [e[4][:40] for e in socks if e[4]]
    if any(a.startswith(b"HTTP/1.1 101") for a in answered):
        problems.append("an incomplete request got 101")
    if nth.is_alive():
        problems.append("normal client still running")
    elif len(normal) != 4 or any(w for _ms, w, _held in normal):
        problems.append("normal client: %s" % normal)
    after = t.stat_sum("handshake_timeouts_total")
    if after - before < n:
        problems.append("ringroom_handshake_timeouts_total rose by %d, want >= %d" % (after - before, n))
    info = {"close_after_s_min": round(min(lat), 3) if lat else None,
            "close_after_s_max": round(max(lat), 3) if lat else None,
            "normal_handshake_ms": [round(ms, 1) for ms, _w, _h in normal],
            "slowloris_open_at_normal_handshake": [h for _ms, _w, h in normal],
            "answered_before_close": len(answered)}
    return ("; ".join(problems) if problems else None), info


def upgrade_head(path="/echo"):
    key = rrtest.ws_key()
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\n" % (path, key)).encode()


def expect_status(port, raw, want, need_retry_after=False, source=None):
    r = hl.hostile_http(port, raw, timeout=5.0, source=source)
    if r["status"] != want:
        return "status %s, want %d (reset=%s, send_error=%s, got %r)" % (
            r["status"], want, r["reset"], r["send_error"], r["data"][:80])
    if need_retry_after and "retry-after" not in r["headers"]:
        return "%d without Retry-After" % want
    if not r["closed"]:
        return "%d but TCP left open" % want
    return None


def case_header_floods(t):
    many = upgrade_head() + b"".join(b"X-Flood-%d: v\r\n" % i for i in range(2000)) + b"\r\n"
    huge = upgrade_head() + b"X-Huge: " + b"a" * (64 * KIB) + b"\r\n\r\n"
    body = upgrade_head() + b"Content-Length: 10\r\n\r\n0123456789"
    return run_parallel([
        ("2000-headers", lambda: expect_status(t.port, many, 431)),
        ("64KiB-header", lambda: expect_status(t.port, huge, 431)),
        ("body", lambda: expect_status(t.port, body, 400)),
    ])


def case_frame_lengths(t):
    mk = b"\x01\x02\x03\x04"
    top_bit = b"\x82\xff" + struct.pack("!Q", (1 << 63) | 5) + mk
    over = b"\x82\xff" + struct.pack("!Q", 2 * MIB) + mk  # header only
    return run_parallel([
        ("64bit-top-bit", lambda: expect_close(t.port, top_bit, 1002)),
        ("over-limit-header-only", lambda: expect_close(t.port, over, 1009)),
        ("nonminimal-16-for-5", lambda: expect_close(
            t.port, F(OP_BINARY, b"hello", len_form=16), 1002)),
        ("nonminimal-64-for-5", lambda: expect_close(
            t.port, F(OP_BINARY, b"hello", len_form=64), 1002)),
        ("nonminimal-64-for-200", lambda: expect_close(
            t.port, F(OP_BINARY, b"x" * 200, len_form=64), 1002)),
    ])


def case_fragments_100k(t):
    """100,000 one-byte continuations after a 1-byte text start: 100,001
    bytes, under the 1 MiB limit, so every frame is accepted and the whole
    message comes back; memory must stay bounded meanwhile."""
    n = 100000
    data = masked_one(OP_TEXT, b"a", False) + masked_one(OP_CONT, b"a", False) * n \
        + F(OP_CONT, b"", fin=True, mask_key=KEY)
    c = WsConn(t.port, "/echo")
    try:
        th, res = sender_thread(c.sock, data)
        op, payload, _ctl = c.read_message(timeout=30.0)
        th.join(timeout=10)
        if op == OP_CLOSE:
            return "closed with %r instead of echoing" % (payload,)
        if op != OP_TEXT or payload != b"a" * (n + 1):
            return "echo op=%d len=%d, want text of %d 'a'" % (op, len(payload), n + 1)
        if res["error"]:
            return "send failed: %s" % res["error"]
        return clean_close(c)
    finally:
        c.close()


def case_fragments_over_limit(t):
    """On the 64 KiB broker: 70,000 one-byte continuations (no FIN) → 1009."""
    n = 70000
    data = masked_one(OP_TEXT, b"a", False) + masked_one(OP_CONT, b"a", False) * n
    return expect_close(t.port, data, 1009, send_in_thread=True, timeout=15.0)


def case_control_in_fragment(t):
    start = F(OP_TEXT, b"ab", fin=False)
    return run_parallel([
        ("ping-126-inside-fragmented", lambda: expect_close(
            t.port, start + F(OP_PING, b"p" * 126), 1002)),
        ("ping-126-alone", lambda: expect_close(t.port, F(OP_PING, b"p" * 126), 1002)),
        ("fragmented-ping", lambda: expect_close(
            t.port, start + F(OP_PING, b"p", fin=False), 1002)),
        ("continuation-without-start", lambda: expect_close(
            t.port, F(OP_CONT, b"x", fin=True), 1002)),
        ("continuation-without-start-nofin", lambda: expect_close(
            t.port, F(OP_CONT, b"x", fin=False), 1002)),
        ("text-inside-fragmented", lambda: expect_close(
            t.port, start + F(OP_TEXT, b"c"), 1002)),
    ])


def case_ping_flood(t):
    """100,000 pings sent without reading, then read. Pongs may be coalesced
    (RFC 6455 5.5.3), but each pong must echo a ping we sent, in order, the
    last one must carry the last ping's payload, and the connection must
    still echo afterwards."""
    n = 100000
    data = b"".join(F(OP_PING, b"p%d" % i, mask_key=KEY) for i in range(n))
    c = WsConn(t.port, "/echo")
    info = {}
    try:
        th, res = sender_thread(c.sock, data, timeout=60.0)
        th.join(timeout=15.0)
        info["sender_stalled"] = th.is_alive()  # the broker paused reading
        last = -1
        pongs = 0
        want = b"p%d" % (n - 1)
        deadline = time.monotonic() + 30.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "last pong not seen within 30s (%d pongs, last index %d)" % (pongs, last), info
            f = c.read_frame(timeout=left)
            if f.opcode == OP_CLOSE:
                return "closed with %s after %d pongs" % (f.close_code(), pongs), info
            if f.opcode != OP_PONG:
                return "unexpected frame %r" % f, info
            pongs += 1
            try:
                idx = int(f.payload[1:]) if f.payload[:1] == b"p" else -2
            except ValueError:
                idx = -2
            if idx <= last or idx >= n:
                return "pong payload %r out of order (after index %d)" % (f.payload, last), info
            last = idx
            if f.payload == want:
                break
        th.join(timeout=10)
        info["pongs"] = pongs
        if res["error"]:
            return "send failed: %s" % res["error"], info
        c.send_frame(OP_TEXT, b"after the flood")
        op, payload, _ctl = c.read_message(timeout=5.0)
        if (op, payload) != (OP_TEXT, b"after the flood"):
            return "echo after flood: op=%d %r" % (op, payload[:60]), info
        return clean_close(c), info
    finally:
        c.close()


def case_protocol_violations(t):
    bad_codes = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]
    subs = [
        ("unmasked", lambda: expect_close(t.port, F(OP_TEXT, b"hi", mask=False), 1002)),
        ("rsv1", lambda: expect_close(t.port, F(OP_TEXT, b"hi", rsv=4), 1002)),
        ("rsv2", lambda: expect_close(t.port, F(OP_TEXT, b"hi", rsv=2), 1002)),
        ("rsv3", lambda: expect_close(t.port, F(OP_BINARY, b"hi", rsv=1), 1002)),
        ("opcode-3", lambda: expect_close(t.port, F(3, b"hi"), 1002)),
        ("opcode-7", lambda: expect_close(t.port, F(7, b""), 1002)),
        ("opcode-11", lambda: expect_close(t.port, F(11, b"hi"), 1002)),
        ("opcode-15", lambda: expect_close(t.port, F(15, b""), 1002)),
        ("close-1-byte", lambda: expect_close(t.port, F(OP_CLOSE, b"\x03"), 1002)),
        ("close-reason-bad-utf8", lambda: expect_close(
            t.port, F(OP_CLOSE, close_payload(1000, b"ok\xff\xfe")), 1007)),
        ("text-bad-utf8", lambda: expect_close(t.port, F(OP_TEXT, b"\xc3\x28"), 1007)),
    ]
    for code in bad_codes:
        subs.append(("close-code-%d" % code, (lambda cd: lambda: expect_close(
            t.port, F(OP_CLOSE, close_payload(cd)), 1002))(code)))
    return run_parallel(subs)


def case_slow_consumer(t):
    """/raw/ room: a member with a tiny receive buffer never reads while a
    publisher sends 64 KiB messages; it must be closed with 1013 once its
    queue passes --max-queued-bytes (1 MiB), while a reading member keeps
    receiving everything in order."""
    room = "/raw/hostile-slow-%d" % os.getpid()
    size = 64 * KIB
    slow = WsConn(t.port, room, rcvbuf=4096)
    good = WsConn(t.port, room)
    pub = WsConn(t.port, room)
    before = t.stat_sum("closes_total", 'code="1013"')
    got = []
    reader_err = []
    stop = threading.Event()
    hellos = threading.Event()
    hello = 0xFFFFFFFF

    def read_good():
        while not stop.is_set():
            try:
                op, payload, _ctl = good.read_message(timeout=0.5)
            except socket.timeout:
                continue
            except Exception as e:
                reader_err.append("%s: %s" % (type(e).__name__, e))
                return
            if op == OP_CLOSE:
                reader_err.append("good reader closed: %r" % (payload,))
                return
            seq = struct.unpack("!I", payload[:4])[0]
            if seq == hello:
                hellos.set()
            else:
                if len(payload) != size:
                    reader_err.append("message %d has %d bytes" % (seq, len(payload)))
                got.append(seq)

    rth = threading.Thread(target=read_good, daemon=True)
    info = {}
    try:
        # joins may be handed to the room's home core: wait until the room
        # delivers before counting messages
        rth.start()
        for _try in range(50):
            pub.send_frame(OP_BINARY, struct.pack("!I", hello))
            if hellos.wait(0.1) or reader_err:
                break
        if not hellos.is_set():
            return "the good reader never received anything in %s" % room, info
        pad = b"\x00" * (size - 4)
        sent = 0
        detected_at = None
        deadline = time.monotonic() + 40.0
        while sent < 400 and time.monotonic() < deadline:
            if detected_at is not None and sent >= detected_at + 16:
                break
            while len(got) < sent - 8 and not reader_err and time.monotonic() < deadline:
                time.sleep(0.002)
            if reader_err:
                break
            pub.send_frame(OP_BINARY, struct.pack("!I", sent) + pad)
            sent += 1
            if detected_at is None and sent % 4 == 0 and sent >= 16:
                if t.stat_sum("closes_total", 'code="1013"') > before:
                    detected_at = sent
        info["sent"] = sent
        info["sent_bytes_before_1013"] = (detected_at or 0) * size
        end = time.monotonic() + 10.0
        while len(got) < sent and not reader_err and time.monotonic() < end:
            time.sleep(0.01)
        stop.set()
        rth.join(timeout=3)
        problems = []
        if reader_err:
            problems.append("good reader: %s" % reader_err[0])
        if got != list(range(sent)):
            problems.append("good reader got %d of %d, in order: %s" % (
                len(got), sent, got == sorted(got)))
        if detected_at is None:
            problems.append("no 1013 close after %d MiB published" % (sent * size // MIB))
        # Now read what the slow member was sent: data frames in order, then
        # (if the broker could deliver it) a close frame 1013, then EOF.
        seqs = []
        fclose = None
        how = None
        rd_deadline = time.monotonic() + 15.0
        while time.monotonic() < rd_deadline:
            try:
                f = slow.read_frame(timeout=max(0.01, rd_deadline - time.monotonic()))
            except Eof:
                how = "eof"
                break
            except socket.timeout:
                how = "timeout"
                break
            if f.opcode == OP_CLOSE:
                fclose = f
                how = "close"
                break
            if f.opcode == OP_BINARY and f.fin:
                s = struct.unpack("!I", f.payload[:4])[0]
                if s != hello:
                    seqs.append(s)
        info["slow_received"] = len(seqs)
        info["slow_close_frame"] = fclose.close_code() if fclose else None
        if seqs != list(range(len(seqs))):
            problems.append("slow member's stream not in order")
        if fclose is None:
            problems.append("slow member: no close frame (%s) after %d messages" % (how, len(seqs)))
        elif fclose.close_code() != 1013:
            problems.append("slow member closed with %s, want 1013" % fclose.close_code())
        elif not slow.wait_eof(EOF_WAIT):
            problems.append("slow member: TCP open after its 1013")
        if len(seqs) >= sent:
            problems.append("slow member got every message: never cut off")
        if not problems:
            w = clean_close(good) or clean_close(pub)
            if w:
                problems.append(w)
        return ("; ".join(problems) if problems else None), info
    finally:
        stop.set()
        for c in (slow, good, pub):
            c.close()


def case_max_connections(t):
    """--max-connections 50: the probe plus 49 more succeed; the 51st → 503
    with Retry-After, and TCP is closed."""
    conns = []
    try:
        for i in range(49):
            try:
                conns.append(WsConn(t.port, "/echo", timeout=5.0))
            except Exception as e:
                return "connection %d of 50 (probe is #1) failed: %s" % (i + 2, e)
        why = expect_status(t.port, upgrade_head() + b"\r\n", 503, need_retry_after=True)
        if why:
            return "51st: " + why
        # the 50 still work
        conns[-1].send_frame(OP_TEXT, b"x")
        op, d, _c = conns[-1].read_message(timeout=5.0)
        if (op, d) != (OP_TEXT, b"x"):
            return "50th no longer echoes"
        return None
    finally:
        for c in conns:
            c.close()


def case_per_ip(t):
    """--max-connections-per-ip 10: 10 from 127.0.0.1 succeed, the 11th →
    429 with Retry-After; 127.0.0.2 still gets 101."""
    conns = []
    try:
        for i in range(10):
            try:
                conns.append(WsConn(t.port, "/echo", source="127.0.0.1"))
            except Exception as e:
                return "connection %d of 10 from 127.0.0.1 failed: %s" % (i + 1, e)
        why = expect_status(t.port, upgrade_head() + b"\r\n", 429, need_retry_after=True,
                            source="127.0.0.1")
        if why:
            return "11th from 127.0.0.1: " + why
        try:
            other = WsConn(t.port, "/echo", source="127.0.0.2")
        except Exception as e:
            return "127.0.0.2 refused while 127.0.0.1 is at its cap: %s" % e
        conns.append(other)
        other.send_frame(OP_TEXT, b"y")
        op, d, _c = other.read_message(timeout=5.0)
        if (op, d) != (OP_TEXT, b"y"):
            return "127.0.0.2 connection does not echo"
        for c in conns:
            c.close()
        conns = []
        n = t.wait_connections(t.base_conns, 5.0)
        if n != t.base_conns:
            return "connections %s after closing, want %d" % (n, t.base_conns)
        again = WsConn(t.port, "/echo", source="127.0.0.1")  # slots freed
        again.close()
        return None
    finally:
        for c in conns:
            c.close()


def case_resets(t):
    """200 × (half a frame, RST), 200 × (half a request, RST), 200 ×
    (half a frame, shutdown(SHUT_WR)): the broker must drop them all;
    ringroom_connections returns to its baseline."""
    n = 200
    frame = F(OP_BINARY, b"z" * 100)
    half_frame = frame[:len(frame) // 2]
    req, _k = rrtest.upgrade_request("/echo")
    half_req = req[:len(req) // 2]
    problems = []
    # half a frame then RST
    for _i in range(n):
        c = WsConn(t.port, "/echo")
        c.send(half_frame)
        hl.rst_close(c.sock)
    # half a request then RST
    for _i in range(n):
        s = rrtest.connect(t.port)
        s.sendall(half_req)
        hl.rst_close(s)
    # half a frame then half-close: the broker sees EOF mid-frame
    halfs = []
    for _i in range(n):
        c = WsConn(t.port, "/echo")
        c.send(half_frame)
        c.sock.shutdown(socket.SHUT_WR)
        halfs.append(c)
    deadline = time.monotonic() + EOF_WAIT + 1.0
    closed = 0
    for c in halfs:
        if c.wait_eof(max(0.01, deadline - time.monotonic())):
            closed += 1
        c.close()
    if closed != n:
        problems.append("%d of %d half-closed connections not closed by the broker" % (n - closed, n))
    got = t.wait_connections(t.base_conns, 5.0)
    if got != t.base_conns:
        problems.append("ringroom_connections %s, want baseline %d" % (got, t.base_conns))
    return "; ".join(problems) if problems else None


# (broker, name, fn, bound on the peak RSS over the case's baseline, KiB):
# what the attack may legitimately hold at once (a 100 KB message, a 1 MiB
# output queue, 1,000 connection slots) with room for allocator slack.
CASES = [
    ("main", "header-floods", case_header_floods, 4 * 1024),
    ("main", "frame-lengths", case_frame_lengths, 4 * 1024),
    ("main", "protocol-violations", case_protocol_violations, 4 * 1024),
    ("main", "control-in-fragment", case_control_in_fragment, 4 * 1024),
    ("main", "fragments-100k", case_fragments_100k, 4 * 1024),
    ("small", "fragments-over-limit", case_fragments_over_limit, 4 * 1024),
    ("main", "ping-flood", case_ping_flood, 4 * 1024),
    ("main", "slow-consumer", case_slow_consumer, 8 * 1024),
    ("main", "resets", case_resets, 8 * 1024),
    ("main", "slowloris", case_slowloris, 8 * 1024),
    ("cap", "max-connections", case_max_connections, 4 * 1024),
    ("perip", "max-connections-per-ip", case_per_ip, 4 * 1024),
]


class Runner:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.results = []

    def record(self, name, why, extra):
        entry = {"name": name, "ok": why is None}
        entry.update(extra)
        if why is not None:
            entry["why"] = why
        self.results.append(entry)
        metrics = " ".join("%s=%s" % (k, extra[k]) for k in
                           ("peak_rss_kib", "after_rss_kib", "rtt_p99_ms") if k in extra)
        if why is None:
            self.passed += 1
            print("ok %s %s" % (name, metrics), flush=True)
        else:
            self.failed += 1
            print("FAIL %s: %s [%s]" % (name, why, metrics), flush=True)
            if extra.get("slow_rtts"):
                print("  # probe round trips over 50 ms (s after case start, ms): %s" % (
                    extra["slow_rtts"][:10],), flush=True)
            if extra.get("probe_woke_late"):
                print("  # the probe process itself woke late (s, ms): %s" % (
                    extra["probe_woke_late"][:10],), flush=True)
            print("  # broker CPU over the case %s ms in %s s; load average %.2f" % (
                extra.get("broker_cpu_ms"), extra.get("seconds"), extra.get("loadavg_1m", 0)),
                flush=True)
        if os.environ.get("RINGROOM_VERBOSE") == "1" and extra.get("details"):
            print("  # %s" % json.dumps(extra["details"], sort_keys=True), flush=True)

    def run_case(self, t, name, fn, peak_bound_kib):
        """Run and record one case (once: nothing here depends on speed)."""
        settle = t.wait_connections(t.base_conns, EVENTUALLY)
        base = t.rss.now()
        t0 = time.monotonic()
        try:
            res = fn(t)
        except Exception as e:
            res = "exception %s: %s" % (type(e).__name__, e)
        why, details = res if isinstance(res, tuple) else (res, None)
        t1 = time.monotonic()
        problems = [why] if why else []
        if settle != t.base_conns:
            problems.append("(before the case: %s connections, baseline %d)" % (settle, t.base_conns))
        conns = t.wait_connections(t.base_conns, EVENTUALLY)
        if conns != t.base_conns:
            problems.append("ringroom_connections %s after the case, baseline %d" % (
                conns, t.base_conns))
        # RSS: the allocator hands memory back eventually
        limit = base + max(2 * 1024, base // 10)
        after = t.rss.now()
        end = time.monotonic() + (EVENTUALLY if not SAN else 0.0)
        while after is not None and after > limit and time.monotonic() < end:
            time.sleep(0.1)
            after = t.rss.now()
        # the probe must show it still works right after the attack too
        while time.monotonic() < t0 + 0.6 or len(t.probe.window(t0, time.monotonic())[0]) < 3:
            if time.monotonic() > t1 + EVENTUALLY:
                break
            time.sleep(0.05)
        t2 = time.monotonic()
        peak = t.rss.peak(t0, t2)
        rtts, errs = t.probe.window(t0, t2)
        p = hl.p99(rtts)
        extra = {"broker": t.broker.name, "baseline_rss_kib": base, "peak_rss_kib": peak,
                 "after_rss_kib": after,
                 "rtt_p99_ms": round(p, 1) if p is not None else None,
                 "rtt_max_ms": round(max(rtts), 1) if rtts else None,
                 "rtt_samples": len(rtts), "seconds": round(t1 - t0, 2),
                 "slow_rtts": t.probe.slow(t0, t2, 50.0),
                 "probe_woke_late": t.probe.lateness(t0, t2),
                 "broker_cpu_ms": t.rss.cpu_ms(t0, t2),
                 "loadavg_1m": round(os.getloadavg()[0], 2)}
        if details is not None:
            extra["details"] = details
        if after is None:
            problems.append("broker process gone")
        elif not SAN:
            if after > limit:
                problems.append("RSS %d KiB after the case, baseline %d (limit %d)" % (
                    after, base, limit))
            if peak is not None and peak > base + peak_bound_kib:
                problems.append("peak RSS %d KiB > baseline %d + %d" % (peak, base, peak_bound_kib))
        if errs:
            problems.append("probe client errors: %s" % errs[:3])
        if not rtts:
            problems.append("probe client got no round trip during the case")
        self.record(name, "; ".join(problems) if problems else None, extra)


def selected_cases():
    """CASES, or HOSTILE_ONLY=name,name,... (in that order; a name may
    repeat, to see whether a second round of an attack grows memory again)."""
    only = os.environ.get("HOSTILE_ONLY")
    if not only:
        return CASES
    by_name = {c[1]: c for c in CASES}
    out = []
    for n in only.split(","):
        if n.strip() not in by_name:
            raise SystemExit("HOSTILE_ONLY: no case %r (have %s)" % (n, ", ".join(by_name)))
        out.append(by_name[n.strip()])
    return out


def main():
    binary = rrtest.load_binary_arg("hostile")
    cases = selected_cases()
    started = time.monotonic()
    runner = Runner()
    targets = {}
    stopped = []
    warmups = {}
    try:
        for i, (key, name, fn, bound) in enumerate(cases):
            if key not in targets:
                args, src = BROKERS[key]
                t = hl.Target(binary, args, "broker-" + key, probe_source=src)
                try:
                    t.start()
                    hist = [t.rss.now()]
                    if os.environ.get("HOSTILE_WARMUP", "1") != "0":
                        hist = t.warm_up(60 * KIB if key == "small" else 512 * KIB)
                    print("# %s warm-up: RSS %s KiB" % (t.broker.name, " -> ".join(
                        str(h) for h in hist)), flush=True)
                    warmups[t.broker.name] = hist
                except Exception as e:
                    runner.record("start broker-" + key, "%s" % e, {})
                    targets[key] = None
                    continue
                targets[key] = t
            t = targets[key]
            if t is None:
                runner.record(name, "broker %s did not start" % key, {})
                continue
            runner.run_case(t, name, fn, bound)
            # stop a broker as soon as its last case is done
            if all(k != key for k, _n, _f, _b in cases[i + 1:]):
                t.stop_watchers()
                why = t.broker.stop()
                runner.record("%s exits 0 on SIGTERM%s" % (
                    t.broker.name, ", no sanitizer report" if SAN else ""), why, {})
                stopped.append(t)
    finally:
        for t in targets.values():
            if t is not None and t not in stopped:
                t.stop_watchers()
                t.broker.kill()
    for t in targets.values():
        if t is None:
            continue
        if runner.failed or os.environ.get("RINGROOM_VERBOSE") == "1":
            t.broker.dump_stderr(limit=8000)
        else:
            t.broker.cleanup()
    total = time.monotonic() - started
    print("# %.1fs" % total)
    print("hostile: %d cases" % (runner.passed + runner.failed))
    print("hostile: %d passed, %d failed, 0 skipped" % (runner.passed, runner.failed),
          flush=True)
    path = os.environ.get("HOSTILE_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"suite": "hostile", "passed": runner.passed, "failed": runner.failed,
                       "seconds": round(total, 1), "sanitizer": SAN,
                       "warm_up_rss_kib": warmups,
                       "cases": runner.results}, f, indent=1)
    return 0 if runner.failed == 0 and runner.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
