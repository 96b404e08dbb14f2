#!/usr/bin/python3
"""Graceful drain on SIGTERM/SIGINT.

Usage: test_drain.py <ringroom binary>

SIGTERM: every member receives close 1001; while one is still connected
/healthz answers 503 "draining" and upgrades get 503; the process exits 0
once the last member answers its close. A member that never answers does
not hold the process past --drain-timeout. SIGINT drains the same way.
Members are raw-socket clients so the test decides when (if ever) each one
answers the close.

No case measures how long anything took. What causes the exit is set by the
broker's flags and checked by the order of events: a broker that must exit
because its members answered gets --drain-timeout 10m, so an exit within the
generous EXIT_WAIT deadline can only come from the answers; the silent-member
case gets --drain-timeout 500ms and must still be draining (/healthz 503)
after its member got 1001, then exit 0 by itself.
"""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rrtest  # noqa: E402
from rrtest import OP_CLOSE, OP_PING, OP_PONG, close_payload, encode_frame  # noqa: E402


# Deadlines for things that must happen eventually. They are generous because
# this machine is shared (2 cores, other test runs, sanitizer builds) and a
# late event is not a failure of the broker; a missing one is.
EXIT_WAIT = 30.0
CLOSE_WAIT = 10.0
NEVER = "10m"  # a broker timeout the test must never reach


def await_close(conn, timeout):
    """The server's close code, or a string saying what came instead."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "no close frame within %.0fs" % timeout
        try:
            f = conn.read_frame(left)
        except rrtest.Eof:
            return "TCP closed without a close frame"
        except socket.timeout:
            continue
        if f.opcode == OP_CLOSE:
            return f.close_code()
        if f.opcode not in (OP_PING, OP_PONG):
            return "unexpected frame %r" % f


def joined(*conns):
    """Order, not a pause: a ping answered by a pong means the broker has
    the connection in its WebSocket phase, a member to drain. None or why
    not."""
    for c in conns:
        c.send_frame(OP_PING, b"joined?")
        try:
            while True:
                f = c.read_frame(CLOSE_WAIT)
                if f.opcode == OP_PONG and f.payload == b"joined?":
                    break
        except (rrtest.Eof, socket.timeout) as e:
            return "no pong to a ping: %s" % (type(e).__name__)
    return None


def answer_close(conn, code=1001):
    try:
        conn.send(encode_frame(OP_CLOSE, close_payload(code)))
    except OSError:
        pass


def drain_with_slow_member(report, binary):
    b = rrtest.Broker(binary, ["--drain-timeout", NEVER], name="drain-broker")
    try:
        b.start()
    except Exception as e:
        report.fail("drain-broker starts", str(e))
        return b
    port = b.port
    slow = rrtest.WsConn(port, "/raw/drainroom")
    quick = [rrtest.WsConn(port, "/raw/drainroom"), rrtest.WsConn(port, "/echo")]
    why = joined(slow, quick[0], quick[1])
    if why:
        report.fail("drain: members joined before SIGTERM", why)
    b.signal(signal.SIGTERM)

    codes = [await_close(c, CLOSE_WAIT) for c in [slow] + quick]
    report.check("SIGTERM: every member receives close 1001",
                 None if all(c == 1001 for c in codes) else "close codes %r" % codes)
    for c in quick:
        answer_close(c)
    report.check("SIGTERM: members that answer the close get TCP closed",
                 None if all(c.wait_eof(CLOSE_WAIT) for c in quick)
                 else "TCP still open %.0fs after" % CLOSE_WAIT)

    def healthz_draining():
        st, _h, body, _c = rrtest.http_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        if st != 503:
            return "status %s, expected 503" % st
        return None if body.strip() == b"draining" else "body %r" % body[:40]
    report.run("draining: /healthz 503 'draining' while a member remains", healthz_draining)

    def upgrade_refused():
        req, _key = rrtest.upgrade_request("/echo")
        st, h, _b, closed = rrtest.http_request(port, req, wait_close=3)
        if st != 503:
            return "status %s, expected 503" % st
        return None if closed else "503 but TCP left open"
    report.run("draining: new upgrade gets 503", upgrade_refused)

    # the other members are gone and /healthz answered 503 after them: the
    # broker is still draining for the one member left
    report.check("draining: process waits while a member has not answered",
                 None if b.running() else "exited (status %s) with a member still open" %
                 b.proc.returncode)
    answer_close(slow)
    # --drain-timeout is 10 minutes: an exit within EXIT_WAIT comes from
    # the last member's answer
    st = b.wait(EXIT_WAIT)
    if st is None:
        report.fail("drain: exits 0 once the last member answers (drain timeout 10m)",
                    "still running %.0fs later" % EXIT_WAIT)
    else:
        report.check("drain: exits 0 once the last member answers (drain timeout 10m)",
                     None if st == 0 else "exit status %d" % st)
    report.check("drain: the slow member's TCP is closed", None if slow.wait_eof(CLOSE_WAIT)
                 else "TCP still open")
    for c in [slow] + quick:
        c.close()
    return b


def drain_timeout_silent_member(report, binary):
    b = rrtest.Broker(binary, ["--drain-timeout", "500ms", "--close-timeout", NEVER],
                      name="drain-timeout-broker")
    try:
        b.start()
    except Exception as e:
        report.fail("drain-timeout-broker starts", str(e))
        return b
    m = rrtest.WsConn(b.port, "/raw/silent")
    why = joined(m)
    if why:
        report.fail("drain-timeout: member joined before SIGTERM", why)
    b.signal(signal.SIGTERM)
    code = await_close(m, CLOSE_WAIT)
    report.check("drain-timeout: silent member receives close 1001",
                 None if code == 1001 else "got %r" % (code,))
    # the member never answers and --close-timeout is 10 minutes, so only
    # the 500 ms drain timeout can end the process
    st = b.wait(EXIT_WAIT)
    why = None
    if st is None:
        why = "still running %.0fs after SIGTERM" % EXIT_WAIT
    elif st != 0:
        why = "exit status %d" % st
    elif "draining (at most 500 ms)" not in b.stderr_text():
        why = "exited without logging 'draining (at most 500 ms)'"
    report.check("drain-timeout 500ms: exits 0 although the member never answers", why)
    report.check("drain-timeout: the silent member's TCP is closed",
                 None if m.wait_eof(CLOSE_WAIT) else "TCP still open")
    m.close()
    return b


def sigint_drain(report, binary):
    b = rrtest.Broker(binary, ["--drain-timeout", NEVER], name="sigint-broker")
    try:
        b.start()
    except Exception as e:
        report.fail("sigint-broker starts", str(e))
        return b
    m = rrtest.WsConn(b.port, "/echo")
    why = joined(m)
    if why:
        report.fail("SIGINT: member joined before SIGINT", why)
    b.signal(signal.SIGINT)
    code = await_close(m, CLOSE_WAIT)
    answer_close(m)
    st = b.wait(EXIT_WAIT)
    why = None
    if code != 1001:
        why = "member got %r, expected close 1001" % (code,)
    elif st is None:
        why = "still running %.0fs after SIGINT" % EXIT_WAIT
    elif st != 0:
        why = "exit status %d" % st
    report.check("SIGINT: member gets 1001, process exits 0", why)
    m.close()
    return b


def idle_broker_exits(report, binary):
    b = rrtest.Broker(binary, ["--drain-timeout", NEVER], name="idle-exit-broker")
    try:
        b.start()
    except Exception as e:
        report.fail("idle-exit-broker starts", str(e))
        return b
    b.signal(signal.SIGTERM)
    st = b.wait(EXIT_WAIT)
    why = None
    if st is None:
        why = "still running %.0fs after SIGTERM with no members" % EXIT_WAIT
    elif st != 0:
        why = "exit status %d" % st
    report.check("SIGTERM with no members: exits 0 without waiting for the drain timeout "
                 "(10m)", why)
    return b


def drain_many_members(report, binary):
    """100 websockets members (rooms and /echo, spread over the cores) all
    get 1001; they answer by themselves, so the exit follows at once."""
    import asyncio
    import websockets
    b = rrtest.Broker(binary, ["--drain-timeout", NEVER], name="drain-many-broker")
    try:
        b.start()
    except Exception as e:
        report.fail("drain-many-broker starts", str(e))
        return b

    async def go():
        paths = ["/raw/r%d" % (i % 7) if i % 4 else "/echo" for i in range(100)]
        conns = await asyncio.gather(*(websockets.connect(
            "ws://127.0.0.1:%d%s" % (b.port, p), compression=None, ping_interval=None,
            max_queue=None, open_timeout=10) for p in paths))
        b.signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*(c.wait_closed() for c in conns)), EXIT_WAIT)
        codes = sorted({c.close_code for c in conns})
        st = await asyncio.to_thread(b.wait, EXIT_WAIT)
        return codes, st
    name = ("SIGTERM with 100 members: all get 1001, exit 0 once they answered (drain "
            "timeout 10m)")
    try:
        codes, st = asyncio.run(go())
    except Exception as e:
        report.fail(name, "%s: %s" % (type(e).__name__, e))
        return b
    why = None
    if codes != [1001]:
        why = "close codes %r" % codes
    elif st is None:
        why = "still running %.0fs after every member closed" % EXIT_WAIT
    elif st != 0:
        why = "exit status %d" % st
    report.check(name, why)
    return b


def half_open_http_only(report, binary):
    """Connections that never became members (a partial upgrade request, a
    silent TCP connection) do not hold the exit: the process exits once
    members are gone, and here there are none."""
    b = rrtest.Broker(binary, ["--drain-timeout", NEVER, "--handshake-timeout", NEVER],
                      name="half-open-broker")
    try:
        b.start()
    except Exception as e:
        report.fail("half-open-broker starts", str(e))
        return b
    partial = rrtest.connect(b.port)
    partial.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    silent = rrtest.connect(b.port)
    # both are accepted once a request on a third connection is answered
    st, _h, _b, _c = rrtest.http_request(b.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    b.signal(signal.SIGTERM)
    st = b.wait(EXIT_WAIT)
    why = None
    if st is None:
        why = ("still running %.0fs after SIGTERM with no members (waiting for connections "
               "still in the handshake? --handshake-timeout/--drain-timeout are 10m)" % EXIT_WAIT)
    elif st != 0:
        why = "exit status %d" % st
    report.check("SIGTERM with only half-open HTTP connections (no members): exits 0 "
                 "without waiting for the handshake or drain timeout (10m)", why)
    partial.close()
    silent.close()
    return b


def main():
    binary = rrtest.load_binary_arg("drain")
    report = rrtest.Report("drain")
    brokers = []
    try:
        for fn in (drain_with_slow_member, drain_timeout_silent_member, sigint_drain,
                   idle_broker_exits, half_open_http_only, drain_many_members):
            try:
                brokers.append(fn(report, binary))
            except Exception as e:
                report.fail(fn.__name__, "exception %s: %s" % (type(e).__name__, e))
    finally:
        code = rrtest.finish_suite(report, brokers)
    return code


if __name__ == "__main__":
    sys.exit(main())
