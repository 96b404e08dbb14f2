#!/usr/bin/python3
"""RFC 6455 conformance battery against a live broker's /echo.

Usage: conformance.py <ringroom binary>

The client is raw sockets (tests/integration/rrtest.py): every frame is built
byte by byte, so invalid frames, non-minimal lengths and arbitrary TCP splits
can be sent. Case groups follow the Autobahn|Testsuite numbering (1 framing,
2 ping/pong, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close,
9 limits) plus group 11 for length encodings and group 12 for masking.

Each case checks both what comes back (the exact sequence of echoed messages
and pongs: opcode and bytes) and how the connection ends: the close code the
server sends and that it then closes TCP. Expectations follow RFC 6455 and
protocol.md: 1002 protocol error, 1007 invalid UTF-8 (fail-fast), 1009 over
--max-message-bytes (decided from the header, before the payload arrives).

Cases run concurrently, each on its own connection; the whole battery takes
a few seconds when the broker behaves.
"""

import concurrent.futures
import os
import random
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import rrtest  # noqa: E402
from rrtest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG,  # noqa: E402
                    OP_TEXT, close_payload, encode_frame as F)

MAX_MSG = 256 * 1024
BROKER_ARGS = ["--max-message-bytes", "256KiB", "--ping-interval", "10m",
               "--idle-timeout", "20m"]
NORMAL = "normal"  # expect: client closes with 1000 at the end, server echoes
EOF_ONLY = "eof"   # expect: the server closes TCP (the client sent a FIN)
# Deadlines for what must arrive eventually. Generous: the machine is shared,
# the build may be a sanitizer one and 24 cases run at once; a passing case
# never waits for them. Fail-fast (a close before the rest of a frame is
# sent) is checked by that order, so its deadline is just as generous.
EVENTUALLY = 30.0
READ_TIMEOUT = EVENTUALLY  # per frame
EOF_TIMEOUT = EVENTUALLY   # after the server's close frame


class Case:
    """steps: list of actions, run in order:
         bytes                     sent as is
         ("chunks", data, n)       data sent n bytes per send()
         ("sleep", s)
         ("await_close", s)        the server's close must arrive within s
                                   seconds, before the next step (fail-fast)
         ("client_close",)         marks that the steps sent a close frame
    expect: list of ("msg", opcode, payload) / ("pong", payload), in order.
         ("shutdown",)             TCP FIN from the client (SHUT_WR)
    close: NORMAL, or a set of acceptable close codes (None = empty payload),
    or EOF_ONLY: the server must close TCP (events are not checked then).
    """

    def __init__(self, name, steps, expect=(), close=NORMAL, timeout=READ_TIMEOUT):
        self.name = name
        self.steps = steps
        self.expect = list(expect)
        self.close = close
        self.timeout = timeout


CASES = []


def case(name, steps, expect=(), close=NORMAL, timeout=READ_TIMEOUT):
    if isinstance(close, int):
        close = {close}
    CASES.append(Case(name, steps, expect, close, timeout))


def msg(op, payload):
    return ("msg", op, payload.encode() if isinstance(payload, str) else payload)


def pong(payload):
    return ("pong", payload.encode() if isinstance(payload, str) else payload)


def text(payload, **kw):
    return F(OP_TEXT, payload, **kw)


def binary(payload, **kw):
    return F(OP_BINARY, payload, **kw)


def cont(payload, **kw):
    return F(OP_CONT, payload, **kw)


def ping(payload=b"", **kw):
    return F(OP_PING, payload, **kw)


def pongf(payload=b"", **kw):
    return F(OP_PONG, payload, **kw)


def closef(code=None, reason=b"", **kw):
    return F(OP_CLOSE, close_payload(code, reason), **kw)


def describe(ev):
    if ev is None:
        return "nothing"
    if ev[0] == "pong":
        return "pong(%d B %s)" % (len(ev[1]), ev[1][:16].hex())
    return "msg(op=%d, %d B %s)" % (ev[1], len(ev[2]), ev[2][:16].hex())


def event_diff(got, want):
    """Messages must match in order. Pongs must answer the pings in order,
    but RFC 6455 5.5.3 lets an endpoint that has not yet answered earlier
    pings answer only the most recent one: so the pongs received must be a
    subsequence of the ones expected that ends with the last one. How the
    two streams interleave is not fixed either (a pong may overtake an
    echo)."""
    why = _seq_diff([e for e in got if e[0] == "msg"], [e for e in want if e[0] == "msg"])
    if why:
        return why
    return _pong_diff([e for e in got if e[0] == "pong"], [e for e in want if e[0] == "pong"])


def _pong_diff(got, want):
    if not want:
        return None if not got else "unexpected %s" % describe(got[0])
    j = 0
    for i, g in enumerate(got):
        while j < len(want) and want[j] != g:
            j += 1
        if j == len(want):
            return "pong %d: %s does not answer an outstanding ping in order" % (
                i, describe(g))
        j += 1
    if not got or got[-1] != want[-1]:
        return "the last ping (%s) was not answered (%d pongs received)" % (
            describe(want[-1]), len(got))
    return None


def events_complete(got, want):
    """Everything expected has arrived (see event_diff for pongs)."""
    n_msg = sum(1 for e in want if e[0] == "msg")
    if sum(1 for e in got if e[0] == "msg") < n_msg:
        return False
    pongs = [e for e in want if e[0] == "pong"]
    return not pongs or pongs[-1] in got


def _seq_diff(got, want):
    for i in range(max(len(got), len(want))):
        g = got[i] if i < len(got) else None
        w = want[i] if i < len(want) else None
        if g != w:
            return "%s %d: expected %s, got %s (%d expected, %d received)" % (
                (w or g)[0], i, describe(w), describe(g), len(want), len(got))
    return None


# ---- the runner --------------------------------------------------------------

def run_case(port, c):
    try:
        conn = rrtest.WsConn(port, "/echo")
    except Exception as e:
        return "handshake: %s" % e
    try:
        return _run(conn, c)
    finally:
        conn.close()


class Reader:
    """Collects events from the server until its close frame."""

    def __init__(self, conn):
        self.conn = conn
        self.events = []
        self.close = None       # the server's close Frame
        self.problem = None
        self._op = None
        self._parts = []

    def step(self, timeout):
        """Read one frame; False when the close frame (or EOF) arrived."""
        try:
            f = self.conn.read_frame(timeout)
        except rrtest.Eof:
            if self.problem is None:
                self.problem = "TCP closed without a close frame"
            return False
        if f.masked and self.problem is None:
            self.problem = "server frame is masked: %r" % f
        if f.rsv and self.problem is None:
            self.problem = "server frame has RSV bits: %r" % f
        if f.opcode == OP_CLOSE:
            self.close = f
            return False
        if f.opcode == OP_PONG:
            self.events.append(("pong", f.payload))
        elif f.opcode == OP_PING:
            pass  # a keepalive ping is not part of any expectation
        elif f.opcode in (OP_TEXT, OP_BINARY, OP_CONT):
            if (f.opcode == OP_CONT) != (self._op is not None):
                if self.problem is None:
                    self.problem = "server fragmentation is invalid: %r" % f
            if self._op is None:
                self._op = f.opcode
            self._parts.append(f.payload)
            if f.fin:
                self.events.append(("msg", self._op, b"".join(self._parts)))
                self._op, self._parts = None, []
        elif self.problem is None:
            self.problem = "server sent opcode %d" % f.opcode
        return True

    def until_close(self, timeout):
        deadline = time.monotonic() + timeout
        while self.close is None and not self.conn.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            if not self.step(left):
                break


def _run(conn, c):
    rd = Reader(conn)
    client_closed = False
    send_error = None
    for st in c.steps:
        try:
            if isinstance(st, bytes):
                conn.send(st)
            elif st[0] == "chunks":
                conn.send_chunked(st[1], st[2])
            elif st[0] == "sleep":
                time.sleep(st[1])
            elif st[0] == "client_close":
                client_closed = True
            elif st[0] == "shutdown":
                conn.sock.shutdown(socket.SHUT_WR)
            elif st[0] == "await_close":
                try:
                    rd.until_close(st[1])
                except socket.timeout:
                    return "no close frame within %.1fs (fail-fast expected); got %d events" % (
                        st[1], len(rd.events))
        except (BrokenPipeError, ConnectionResetError) as e:
            send_error = e
            break

    if c.close == EOF_ONLY:
        # the client half-closed TCP: the server must close too; a close
        # frame on the way is allowed, its code must be a sendable one
        deadline = time.monotonic() + EOF_TIMEOUT
        while not conn.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return "TCP not closed within %.0fs of the client's FIN" % EOF_TIMEOUT
            try:
                if not rd.step(left) and rd.close is not None:
                    code = rd.close.close_code()
                    if len(rd.close.payload) == 1 or code in (1005, 1006, 1015):
                        return "bad close frame %r" % rd.close
                    return None if conn.wait_eof(max(0.01, deadline - time.monotonic())) \
                        else "close frame but TCP not closed within %.0fs" % EOF_TIMEOUT
            except socket.timeout:
                continue
            except OSError:
                return None
        return None
    if c.close == NORMAL:
        if send_error is not None:
            return "send failed: %s" % send_error
        if rd.close is not None:
            return "unexpected close %s; %s" % (rd.close, event_diff(rd.events, c.expect))
        try:
            while not events_complete(rd.events, c.expect) and rd.close is None:
                if not rd.step(c.timeout):
                    break
        except socket.timeout:
            return "timed out waiting; %s" % event_diff(rd.events, c.expect)
        if rd.close is not None or conn.eof:
            return "unexpected close %s; %s" % (rd.close, event_diff(rd.events, c.expect))
        if not client_closed:
            try:
                conn.send(closef(1000))
            except OSError as e:
                return "sending close 1000: %s" % e
        allowed = {1000} if not client_closed else None
    else:
        allowed = c.close
    try:
        rd.until_close(c.timeout)
    except socket.timeout:
        return "no close frame within %.1fs; %s" % (c.timeout,
                                                    event_diff(rd.events, c.expect) or
                                                    "events as expected")
    if rd.close is None:
        return rd.problem or "no close frame"
    diff = event_diff(rd.events, c.expect)
    if diff:
        return diff
    if rd.problem:
        return rd.problem
    code = rd.close.close_code()
    if len(rd.close.payload) == 1:
        return "server close payload has 1 byte"
    if allowed is not None and code not in allowed:
        return "close code %s, expected %s" % (code, sorted(allowed, key=str))
    if not client_closed and c.close != NORMAL:
        try:  # answer like a polite client; the server may already be gone
            conn.send(closef(code if code not in (None, 1005, 1006, 1015) else 1000))
        except OSError:
            pass
    reason = rd.close.payload[2:]
    try:
        reason.decode("utf-8")
    except UnicodeDecodeError:
        return "server close reason is not UTF-8: %r" % reason[:40]
    if len(rd.close.payload) > 125:
        return "server close payload of %d bytes" % len(rd.close.payload)
    after, closed = rrtest.read_until_eof(conn.sock, EOF_TIMEOUT)
    after = conn.buf + after
    if after:
        return "server sent %d bytes after its close frame: %r" % (len(after), after[:20])
    if not closed:
        return "close code %s ok but TCP not closed within %.0fs" % (code, EOF_TIMEOUT)
    return None


# ---- the cases ------------------------------------------------------------------

def rnd(n, seed):
    r = random.Random(seed)
    return bytes(r.getrandbits(8) for _ in range(n)) if n < 4096 else \
        r.getrandbits(8 * n).to_bytes(n, "big")


def ascii_text(n, seed):
    r = random.Random(seed)
    alpha = b"abcdefghijklmnopqrstuvwxyz0123456789 *"
    if n < 4096:
        return bytes(r.choice(alpha) for _ in range(n))
    block = bytes(r.choice(alpha) for _ in range(4096))
    return (block * (n // 4096 + 1))[:n]


def group1():
    """Framing: text and binary of every length class, whole and split."""
    sizes = [0, 1, 125, 126, 127, 128, 65535, 65536]
    for i, n in enumerate(sizes, 1):
        p = ascii_text(n, n)
        case("1.1.%d text %d bytes" % (i, n), [text(p)], [msg(OP_TEXT, p)])
    p = ascii_text(65536, 9)
    case("1.1.9 text 65536 bytes in 997-byte chunks", [("chunks", text(p), 997)],
         [msg(OP_TEXT, p)])
    for i, n in enumerate(sizes, 1):
        p = rnd(n, n)
        case("1.2.%d binary %d bytes" % (i, n), [binary(p)], [msg(OP_BINARY, p)])
    p = rnd(65536, 9)
    case("1.2.9 binary 65536 bytes in 997-byte chunks", [("chunks", binary(p), 997)],
         [msg(OP_BINARY, p)])
    p = rnd(300, 10)
    case("1.2.10 binary 300 bytes, one byte per send", [("chunks", binary(p), 1)],
         [msg(OP_BINARY, p)])
    frames = [text("m%d" % i) for i in range(5)]
    case("1.3.1 five text frames in one send", [b"".join(frames)],
         [msg(OP_TEXT, "m%d" % i) for i in range(5)])
    case("1.3.2 text then binary then text", [text("a"), binary(b"\x00\xff"), text("b")],
         [msg(OP_TEXT, "a"), msg(OP_BINARY, b"\x00\xff"), msg(OP_TEXT, "b")])
    case("1.3.3 all-zero mask key", [text("zero-mask", mask_key=b"\0\0\0\0")],
         [msg(OP_TEXT, "zero-mask")])


def group2():
    """Ping/pong."""
    case("2.1 ping without payload", [ping()], [pong(b"")])
    case("2.2 ping with text payload", [ping("Hello, world!")], [pong("Hello, world!")])
    p = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
    case("2.3 ping with binary payload", [ping(p)], [pong(p)])
    p = rnd(125, 24)
    case("2.4 ping with 125 bytes", [ping(p)], [pong(p)])
    case("2.5 ping with 126 bytes", [ping(rnd(126, 25))], [], 1002)
    p = rnd(125, 26)
    case("2.6 ping 125 bytes, one byte per send", [("chunks", ping(p), 1)], [pong(p)])
    case("2.7 unsolicited pong, no payload", [pongf()], [])
    case("2.8 unsolicited pong with payload", [pongf("unsolicited")], [])
    case("2.9 unsolicited pong then ping", [pongf("unsolicited"), ping("solicited")],
         [pong("solicited")])
    case("2.10 ten pings", [ping("p%d" % i) for i in range(10)],
         [pong("p%d" % i) for i in range(10)])
    case("2.11 ten pings, 1-byte chunks",
         [("chunks", b"".join(ping("p%d" % i) for i in range(10)), 1)],
         [pong("p%d" % i) for i in range(10)])
    case("2.12 ping between text frames", [text("a"), ping("x"), text("b")],
         [msg(OP_TEXT, "a"), pong("x"), msg(OP_TEXT, "b")])
    case("2.13 pong with 126 bytes", [pongf(rnd(126, 27))], [], 1002)


def group3():
    """Reserved bits must be zero without a negotiated extension."""
    n = 1
    for rsv in range(1, 8):
        case("3.%d text with RSV=%d" % (n, rsv), [text("Hello", rsv=rsv)], [], 1002)
        n += 1
    for rsv in range(1, 8):
        case("3.%d binary with RSV=%d after a good text" % (n, rsv),
             [text("good"), binary(b"\x01\x02", rsv=rsv), ping("no")],
             [msg(OP_TEXT, "good")], 1002)
        n += 1
    for rsv in range(1, 8):
        case("3.%d ping with RSV=%d" % (n, rsv), [ping("x", rsv=rsv)], [], 1002)
        n += 1
    case("3.%d close with RSV=3" % n, [closef(1000, rsv=3)], [], 1002)
    n += 1
    case("3.%d continuation with RSV=4" % n,
         [text("frag", fin=False), cont("ment", rsv=4)], [], 1002)
    n += 1
    case("3.%d RSV=1 text, one byte per send" % n, [("chunks", text("Hello", rsv=1), 1)],
         [], 1002)


def group4():
    """Reserved opcodes."""
    n = 1
    for op in (3, 4, 5, 6, 7):
        case("4.1.%d reserved data opcode %d" % (n, op), [F(op)], [], 1002)
        n += 1
        case("4.1.%d text, opcode %d with payload, ping" % (n, op),
             [text("first"), F(op, b"reserved"), ping("never")], [msg(OP_TEXT, "first")],
             1002)
        n += 1
    n = 1
    for op in (11, 12, 13, 14, 15):
        case("4.2.%d reserved control opcode %d" % (n, op), [F(op)], [], 1002)
        n += 1
        case("4.2.%d text, opcode %d with payload, ping" % (n, op),
             [text("first"), F(op, b"reserved"), ping("never")], [msg(OP_TEXT, "first")],
             1002)
        n += 1


def group5():
    """Fragmentation."""
    case("5.1 ping fragmented in 2", [ping("frag", fin=False), cont("ment")], [], 1002)
    case("5.2 pong fragmented in 2", [pongf("frag", fin=False), cont("ment")], [], 1002)
    case("5.3 text in 2 fragments", [text("frag", fin=False), cont("ment")],
         [msg(OP_TEXT, "fragment")])
    case("5.4 text in 2 fragments, 1-byte chunks",
         [("chunks", text("frag", fin=False) + cont("ment"), 1)], [msg(OP_TEXT, "fragment")])
    case("5.5 text in 2 fragments, pause between",
         [text("frag", fin=False), ("sleep", 0.3), cont("ment")], [msg(OP_TEXT, "fragment")])
    case("5.6 text in 2 fragments, ping between",
         [text("frag", fin=False), ping("inside"), cont("ment")],
         [pong("inside"), msg(OP_TEXT, "fragment")])
    case("5.7 text in 2 fragments, ping between, 1-byte chunks",
         [("chunks", text("frag", fin=False) + ping("inside") + cont("ment"), 1)],
         [pong("inside"), msg(OP_TEXT, "fragment")])
    case("5.8 text in 2 fragments, pong between",
         [text("frag", fin=False), pongf("unsolicited"), cont("ment")],
         [msg(OP_TEXT, "fragment")])
    case("5.9 continuation fin=1 without start", [cont("lonely"), text("after")], [], 1002)
    case("5.10 continuation fin=1 without start, 1-byte chunks",
         [("chunks", cont("lonely") + text("after"), 1)], [], 1002)
    case("5.11 continuation fin=0 without start",
         [cont("lonely", fin=False), cont("again")], [], 1002)
    case("5.12 text fin=0 then text fin=1 (new message inside one)",
         [text("frag", fin=False), text("ment")], [], 1002)
    case("5.13 text fin=0 then binary fin=0", [text("a", fin=False), binary(b"b", fin=False)],
         [], 1002)
    case("5.14 echo, then continuation without start",
         [text("ok"), cont("no")], [msg(OP_TEXT, "ok")], 1002)
    case("5.15 fragmented text, finished, then a stray continuation",
         [text("a", fin=False), cont("b"), cont("c")], [msg(OP_TEXT, "ab")], 1002)
    case("5.16 two fragmented messages with pings between",
         [text("a", fin=False), ping("1"), cont("b", fin=False), ping("2"), cont("c"),
          binary(b"\x01", fin=False), ping("3"), cont(b"\x02")],
         [pong("1"), pong("2"), msg(OP_TEXT, "abc"), pong("3"), msg(OP_BINARY, b"\x01\x02")])
    p = rnd(1000, 51)
    case("5.17 binary in 100 fragments",
         [binary(p[:10], fin=False)] + [cont(p[i:i + 10], fin=False) for i in range(10, 990, 10)]
         + [cont(p[990:])], [msg(OP_BINARY, p)])
    case("5.18 text with empty fragments", [text("", fin=False), cont("", fin=False),
                                           cont("x", fin=False), cont("", fin=False), cont("")],
         [msg(OP_TEXT, "x")])
    case("5.19 empty text in 3 empty fragments",
         [text("", fin=False), cont("", fin=False), cont("")], [msg(OP_TEXT, "")])
    p = rnd(70000, 52)
    case("5.20 binary 70000 B in 3 fragments (16- and 64-bit lengths)",
         [binary(p[:100], fin=False), cont(p[100:65636], fin=False), cont(p[65636:])],
         [msg(OP_BINARY, p)])
    case("5.21 fragmented text, close in the middle",
         [text("frag", fin=False), closef(1000), ("client_close",)], [], {1000})
    case("5.22 close fragmented (fin=0)", [F(OP_CLOSE, close_payload(1000), fin=False)],
         [], 1002)


VALID_UTF8 = [
    ("Hello-µ@ßöäüàá-UTF-8!!", "Hello-µ@ßöäüàá-UTF-8!!".encode()),
    ("kosme", "κόσμε".encode()),
    ("U+0000", b"\x00"),
    ("U+007F", b"\x7f"),
    ("U+0080", b"\xc2\x80"),
    ("U+07FF", b"\xdf\xbf"),
    ("U+0800", b"\xe0\xa0\x80"),
    ("U+D7FF", b"\xed\x9f\xbf"),
    ("U+E000", b"\xee\x80\x80"),
    ("U+FFFD", b"\xef\xbf\xbd"),
    ("U+FFFE noncharacter", b"\xef\xbf\xbe"),
    ("U+FFFF", b"\xef\xbf\xbf"),
    ("U+10000", b"\xf0\x90\x80\x80"),
    ("U+10FFFF", b"\xf4\x8f\xbf\xbf"),
    ("mixed scripts and emoji", "ascii ελληνικά русский 日本語 😀 𝄞".encode()),
]

# (name, bytes, index of the first byte from which the input can never be
# valid, or None when only the end of the message makes it invalid)
INVALID_UTF8 = [
    ("lone 0xFF", b"\xff", 0),
    ("lone 0xFE", b"\xfe", 0),
    ("0xFE 0xFE 0xFF 0xFF", b"\xfe\xfe\xff\xff", 0),
    ("lone continuation 0x80", b"\x80", 0),
    ("lone continuation 0xBF", b"\xbf", 0),
    ("two continuations", b"\x80\xbf", 0),
    ("overlong '/' 2-byte", b"\xc0\xaf", 0),
    ("overlong 0xC1 0xBF", b"\xc1\xbf", 0),
    ("overlong '/' 3-byte", b"\xe0\x80\xaf", 1),
    ("overlong U+07FF 3-byte", b"\xe0\x9f\xbf", 1),
    ("overlong '/' 4-byte", b"\xf0\x80\x80\xaf", 1),
    ("overlong U+FFFF 4-byte", b"\xf0\x8f\xbf\xbf", 1),
    ("5-byte sequence", b"\xf8\x88\x80\x80\x80", 0),
    ("6-byte sequence", b"\xfc\x84\x80\x80\x80\x80", 0),
    ("surrogate U+D800", b"\xed\xa0\x80", 1),
    ("surrogate U+DB7F", b"\xed\xad\xbf", 1),
    ("surrogate U+DC00", b"\xed\xb0\x80", 1),
    ("surrogate U+DFFF", b"\xed\xbf\xbf", 1),
    ("surrogate pair U+D800 U+DC00", b"\xed\xa0\x80\xed\xb0\x80", 1),
    ("above U+10FFFF (0xF4 0x90)", b"\xf4\x90\x80\x80", 1),
    ("0xF5 lead", b"\xf5\x80\x80\x80", 0),
    ("0xF7 lead", b"\xf7\xbf\xbf\xbf", 0),
    ("2-byte lead then ASCII", b"\xc2\x41", 1),
    ("3-byte lead then ASCII", b"\xe1\x80\x41", 2),
    ("kosme then surrogate then ASCII",
     "κόσμε".encode() + b"\xed\xa0\x80" + b"edited", 12),
    ("valid text then 0xFF", b"Hello, world" + b"\xff" + b"more", 12),
    ("incomplete 2-byte at end", b"abc\xc2", None),
    ("incomplete 3-byte at end", b"abc\xe0\xa0", None),
    ("incomplete 4-byte at end", b"abc\xf0\x90\x80", None),
    ("kosme truncated", "κόσμε".encode()[:-1], None),
]


def group6():
    """UTF-8: valid and invalid sequences, whole, per byte, split at every
    byte, and fail-fast."""
    n = 1
    for name, b in VALID_UTF8:
        case("6.1.%d valid %s" % (n, name), [text(b)], [msg(OP_TEXT, b)])
        n += 1
    n = 1
    for name, b in VALID_UTF8:
        frames = [text(b[:1], fin=len(b) <= 1)] + \
            [cont(b[i:i + 1], fin=(i == len(b) - 1)) for i in range(1, len(b))]
        case("6.2.%d valid %s, one fragment per byte" % (n, name), frames, [msg(OP_TEXT, b)])
        n += 1
    n = 1
    for name, b, _ff in INVALID_UTF8:
        case("6.3.%d invalid %s" % (n, name), [text(b)], [], 1007)
        n += 1
    n = 1
    for name, b, _ff in INVALID_UTF8:
        frames = [text(b[:1], fin=len(b) <= 1)] + \
            [cont(b[i:i + 1], fin=(i == len(b) - 1)) for i in range(1, len(b))]
        case("6.4.%d invalid %s, one fragment per byte" % (n, name), frames, [], 1007)
        n += 1
    n = 1
    for name, b, ff in INVALID_UTF8:
        if ff is None:
            continue
        # declare a frame longer than the prefix: only the bytes up to and
        # including the first bad one are sent, then the rest after a pause
        tail = b" padding that never needs to arrive"
        whole = b + tail
        key = os.urandom(4)
        fr = text(whole, mask_key=key)
        hdr_len = len(fr) - len(whole)
        cut = hdr_len + ff + 1
        case("6.5.%d fail-fast: %s, rest of frame withheld" % (n, name),
             [fr[:cut], ("await_close", EVENTUALLY), fr[cut:]], [], 1007)
        n += 1
    # the same fail-fast with the bad byte in a later fragment
    bad = b"\xed\xa0\x80"
    fr = cont(bad + b" and the rest", fin=True)
    case("6.5.%d fail-fast: surrogate in a continuation, rest withheld" % n,
         [text("good start ", fin=False), fr[:6 + 2], ("await_close", EVENTUALLY), fr[8:]], [], 1007)
    n += 1
    fr = text(b"\xff" + b"x" * 1000)
    case("6.5.%d fail-fast: 0xFF first of a 1001-byte frame" % n,
         [fr[:9], ("await_close", EVENTUALLY), fr[9:]], [], 1007)
    # valid text split into two fragments at every byte
    s = "κόσμε-€-𝄞!".encode()
    for k in range(1, len(s)):
        case("6.6.%d valid text split at byte %d of %d" % (k, k, len(s)),
             [text(s[:k], fin=False), cont(s[k:])], [msg(OP_TEXT, s)])
    # one frame, TCP split at every byte
    case("6.7.1 valid text, one frame, one byte per send", [("chunks", text(s), 1)],
         [msg(OP_TEXT, s)])
    b = "κόσμε".encode() + b"\xed\xa0\x80"
    case("6.7.2 invalid text, one frame, one byte per send", [("chunks", text(b), 1)],
         [], 1007)
    case("6.8.1 binary frames are not UTF-8 checked", [binary(b"\xff\xfe\xed\xa0\x80")],
         [msg(OP_BINARY, b"\xff\xfe\xed\xa0\x80")])
    case("6.8.2 ping payload is not UTF-8 checked", [ping(b"\xff\xfe")], [pong(b"\xff\xfe")])
    case("6.8.3 valid text, then invalid text: first echoed",
         [text("fine"), text(b"\xc0\xaf")], [msg(OP_TEXT, "fine")], 1007)
    case("6.8.4 4-byte char split across 3 fragments",
         [text(b"\xf0", fin=False), cont(b"\x9d\x84", fin=False), cont(b"\x9e")],
         [msg(OP_TEXT, b"\xf0\x9d\x84\x9e")])


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
               3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


def group7():
    """Close handling."""
    cc = ("client_close",)
    case("7.1.1 echo, then close normally", [text("Hello"), closef(1000), cc],
         [msg(OP_TEXT, "Hello")], {1000})
    case("7.1.2 close twice", [closef(1000), closef(1000), cc], [], {1000})
    case("7.1.3 close then ping: no pong", [closef(1000), ping("after"), cc], [], {1000})
    case("7.1.4 close then text: no echo", [closef(1000), text("after"), cc], [], {1000})
    case("7.1.5 fragmented text, close, continuation",
         [text("frag", fin=False), closef(1000), cont("ment"), cc], [], {1000})
    p = rnd(65536, 71)
    case("7.1.6 large binary, close right after (same send)",
         [binary(p) + closef(1000), cc], [msg(OP_BINARY, p)], {1000})
    case("7.3.1 close, empty payload", [closef(), cc], [], {None, 1000})
    case("7.3.2 close, 1-byte payload", [F(OP_CLOSE, b"\x03"), cc], [], 1002)
    case("7.3.3 close 1000, no reason", [closef(1000), cc], [], {1000})
    case("7.3.4 close 1000 with reason", [closef(1000, "Hello World!"), cc], [], {1000})
    case("7.3.5 close 1000, 123-byte reason (125 total)", [closef(1000, "*" * 123), cc],
         [], {1000})
    case("7.3.6 close 1000, 124-byte reason (126 total)", [closef(1000, "*" * 124), cc],
         [], 1002)
    case("7.3.7 close with UTF-8 reason", [closef(1000, "κόσμε 😀"), cc], [], {1000})
    case("7.5.1 close reason invalid UTF-8", [closef(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83"
                                                     b"\xce\xbc\xce\xb5\xed\xa0\x80edited"), cc],
         [], 1007)
    case("7.5.2 close reason truncated UTF-8", [closef(1000, b"ok \xe2\x82"), cc], [], 1007)
    n = 1
    for code in VALID_CODES:
        case("7.7.%d close with valid code %d" % (n, code), [closef(code), cc], [],
             {1000, code})
        n += 1
    n = 1
    for code in INVALID_CODES:
        case("7.9.%d close with invalid code %d" % (n, code), [closef(code), cc], [], 1002)
        n += 1
    fin = ("shutdown",)
    case("7.2.1 TCP FIN right after the handshake", [fin], [], EOF_ONLY)
    case("7.2.2 text, then TCP FIN without a close frame", [text("bye"), fin], [], EOF_ONLY)
    case("7.2.3 TCP FIN inside a frame header", [text("Hello")[:3], fin], [], EOF_ONLY)
    case("7.2.4 TCP FIN inside a payload", [binary(rnd(1000, 72))[:500], fin], [], EOF_ONLY)
    case("7.2.5 TCP FIN inside a fragmented message",
         [text("frag", fin=False), fin], [], EOF_ONLY)
    case("7.2.6 close frame then TCP FIN at once", [closef(1000), fin], [], EOF_ONLY)
    case("7.13.1 close 1000, one byte per send", [("chunks", closef(1000, "bye"), 1), cc],
         [], {1000})
    case("7.13.2 close while a ping is answered", [ping("a"), closef(1000), cc],
         [pong("a")], {1000})


def group9():
    """Limits (--max-message-bytes 256KiB here)."""
    n = 1
    for size in (65536, 131072, MAX_MSG):
        p = ascii_text(size, size)
        case("9.1.%d text %d bytes" % (n, size), [text(p)], [msg(OP_TEXT, p)])
        n += 1
    case("9.1.%d text %d bytes (limit + 1)" % (n, MAX_MSG + 1),
         [text(ascii_text(MAX_MSG + 1, 1))], [], 1009)
    n = 1
    for size in (65536, 131072, MAX_MSG):
        p = rnd(size, size)
        case("9.2.%d binary %d bytes" % (n, size), [binary(p)], [msg(OP_BINARY, p)])
        n += 1
    case("9.2.%d binary %d bytes (limit + 1)" % (n, MAX_MSG + 1),
         [binary(rnd(MAX_MSG + 1, 2))], [], 1009)
    n = 1
    for frag in (64, 256, 1024, 4096, 65536):
        p = ascii_text(MAX_MSG if frag >= 1024 else 65536, frag)
        frames = [text(p[:frag], fin=False)] + \
            [cont(p[i:i + frag], fin=i + frag >= len(p)) for i in range(frag, len(p), frag)]
        case("9.3.%d text %d B in %d-byte fragments" % (n, len(p), frag), [b"".join(frames)],
             [msg(OP_TEXT, p)])
        n += 1
    p = rnd(MAX_MSG, 93)
    q = 65536
    frames = [binary(p[:q], fin=False)] + \
        [cont(p[i:i + q], fin=False) for i in range(q, MAX_MSG, q)] + [cont(b"!")]
    case("9.3.%d binary fragments totalling limit + 1" % n, [b"".join(frames)], [], 1009)
    n = 1
    for chunk in (64, 256, 1024, 4096, 65536):
        p = rnd(65536, chunk)
        case("9.4.%d binary 64 KiB, %d-byte TCP sends" % (n, chunk),
             [("chunks", binary(p), chunk)], [msg(OP_BINARY, p)])
        n += 1
    msgs = [ascii_text(16, i) for i in range(1000)]
    case("9.5.1 1000 16-byte texts in one burst", [b"".join(text(m) for m in msgs)],
         [msg(OP_TEXT, m) for m in msgs])
    msgs = [rnd(1000, i) for i in range(100)]
    case("9.5.2 100 1000-byte binaries in one burst", [b"".join(binary(m) for m in msgs)],
         [msg(OP_BINARY, m) for m in msgs])
    case("9.5.3 1000 pings in one burst", [b"".join(ping(b"%d" % i) for i in range(1000))],
         [pong(b"%d" % i) for i in range(1000)])


def group11():
    """Length encodings: minimal form required, top bit clear, limit from
    the header alone."""
    n = 1
    for op, name in ((OP_TEXT, "text"), (OP_BINARY, "binary")):
        for ln in (0, 1, 125):
            case("11.1.%d %s %d bytes with a 16-bit length" % (n, name, ln),
                 [F(op, b"a" * ln, len_form=16)], [], 1002)
            n += 1
    n = 1
    for op, name in ((OP_TEXT, "text"), (OP_BINARY, "binary")):
        for ln in (0, 125, 126, 65535):
            case("11.2.%d %s %d bytes with a 64-bit length" % (n, name, ln),
                 [F(op, b"a" * ln, len_form=64)], [], 1002)
            n += 1
    case("11.2.%d ping 5 bytes with a 16-bit length" % n, [ping("hello", len_form=16)],
         [], 1002)
    n += 1
    case("11.2.%d continuation with a 64-bit length of 3" % n,
         [text("ab", fin=False), cont("cde", len_form=64)], [], 1002)
    n = 1
    for ln in (1 << 63, (1 << 63) + 5, (1 << 64) - 1):
        case("11.3.%d 64-bit length with top bit set (%#x), header only" % (n, ln),
             [F(OP_BINARY, b"", length=ln, len_form=64), ("await_close", EVENTUALLY)], [], 1002)
        n += 1
    n = 1
    for ln in (MAX_MSG + 1, 1 << 30, (1 << 63) - 1):
        case("11.4.%d binary declaring %d bytes (> limit): 1009 before payload" % (n, ln),
             [F(OP_BINARY, b"", length=ln, len_form=64), ("await_close", EVENTUALLY)], [], 1009)
        n += 1
        case("11.4.%d text declaring %d bytes (> limit): 1009 before payload" % (n, ln),
             [F(OP_TEXT, b"", length=ln, len_form=64), ("await_close", EVENTUALLY)], [], 1009)
        n += 1
    p = rnd(200000, 114)
    case("11.4.%d 200000-byte fragment, then continuation declaring 100000" % n,
         [binary(p, fin=False), F(OP_CONT, b"", length=100000, fin=True, len_form=64),
          ("await_close", EVENTUALLY)], [], 1009)
    n += 1
    case("11.4.%d 1009 then more payload arrives: still closed" % n,
         [F(OP_TEXT, b"", length=MAX_MSG + 1, len_form=64), ("await_close", EVENTUALLY),
          b"x" * 4096], [], 1009)
    n = 1
    for ln, form in ((126, 16), (65535, 16), (65536, 64)):
        p = rnd(ln, ln)
        case("11.5.%d minimal %d-bit length %d accepted" % (n, form, ln),
             [F(OP_BINARY, p, len_form=form)], [msg(OP_BINARY, p)])
        n += 1
    case("11.5.%d close with a 16-bit length of 126" % n,
         [F(OP_CLOSE, close_payload(1000, "x" * 124))], [], 1002)
    n += 1
    case("11.5.%d ping with a 16-bit length of 126, header only" % n,
         [F(OP_PING, b"", length=126, len_form=16), ("await_close", EVENTUALLY)], [], 1002)


def group12():
    """Masking: every client frame must be masked."""
    case("12.1 unmasked text", [text("Hello", mask=False)], [], 1002)
    case("12.2 unmasked empty binary", [binary(b"", mask=False)], [], 1002)
    case("12.3 unmasked ping", [ping("x", mask=False)], [], 1002)
    case("12.4 unmasked pong", [pongf("x", mask=False)], [], 1002)
    case("12.5 unmasked close", [closef(1000, mask=False)], [], 1002)
    case("12.6 good text, then unmasked text", [text("ok"), text("bad", mask=False)],
         [msg(OP_TEXT, "ok")], 1002)
    case("12.7 unmasked continuation", [text("a", fin=False), cont("b", mask=False)], [],
         1002)
    case("12.8 unmasked 64 KiB binary, header only",
         [F(OP_BINARY, b"", length=65536, mask=False), ("await_close", EVENTUALLY)], [], 1002)


def build_cases():
    for g in (group1, group2, group3, group4, group5, group6, group7, group9, group11,
              group12):
        g()
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"


def main():
    binary_path = rrtest.load_binary_arg("conformance")
    build_cases()
    report = rrtest.Report("conformance")
    broker = rrtest.Broker(binary_path, BROKER_ARGS, name="conformance-broker")
    try:
        broker.start()
    except Exception as e:
        report.fail("broker starts", str(e))
        return report.finish()
    t0 = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=24) as ex:
            futs = [(c, ex.submit(run_case, broker.port, c)) for c in CASES]
            for c, fut in futs:
                try:
                    why = fut.result(timeout=120)
                except Exception as e:
                    why = "exception %s: %s" % (type(e).__name__, e)
                report.check(c.name, why)
        print("# %d cases in %.1fs" % (len(CASES), time.monotonic() - t0), flush=True)
        # the broker must still be serving after all of that
        report.run("broker still answers /healthz", lambda: None if rrtest.http_request(
            broker.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200
            else "healthz not 200")
    finally:
        code = rrtest.finish_suite(report, [broker])
    return code


if __name__ == "__main__":
    sys.exit(main())
