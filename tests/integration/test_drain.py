#!/usr/bin/python3
"""Graceful drain on SIGTERM/SIGINT.

Usage: test_drain.py <ringroom binary>

SIGTERM: every member receives close 1001; while one is still connected
/healthz answers 503 "draining" and upgrades get 503; the process exits 0
once the last member answers its close. A member that never answers does
not hold the process past --drain-timeout. SIGINT drains the same way.
Members are raw-socket clients so the test decides when (if ever) each one
answers the close.
"""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rrtest  # noqa: E402
from rrtest import OP_CLOSE, OP_PING, OP_PONG, close_payload, encode_frame  # noqa: E402


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


def answer_close(conn, code=1001):
    try:
        conn.send(encode_frame(OP_CLOSE, close_payload(code)))
    except OSError:
        pass


def drain_with_slow_member(report, binary):
    b = rrtest.Broker(binary, ["--drain-timeout", "10s"], name="drain-broker")
    try:
        b.start()
    except Exception as e:
        report.fail("drain-broker starts", str(e))
        return b
    port = b.port
    slow = rrtest.WsConn(port, "/raw/drainroom")
    quick = [rrtest.WsConn(port, "/raw/drainroom"), rrtest.WsConn(port, "/echo")]
    time.sleep(0.3)
    b.signal(signal.SIGTERM)

    codes = [await_close(c, 3.0) for c in [slow] + quick]
    report.check("SIGTERM: every member receives close 1001",
                 None if all(c == 1001 for c in codes) else "close codes %r" % codes)
    for c in quick:
        answer_close(c)
    report.check("SIGTERM: members that answer the close get TCP closed",
                 None if all(c.wait_eof(3.0) for c in quick) else "TCP still open 3s after")

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

    time.sleep(1.0)
    report.check("draining: process waits while a member has not answered",
                 None if b.running() else "exited (status %s) with a member still open" %
                 b.proc.returncode)
    t0 = time.monotonic()
    answer_close(slow)
    st = b.wait(5.0)
    dt = time.monotonic() - t0
    if st is None:
        report.fail("drain: exits 0 once the last member answers", "still running 5s later")
    else:
        report.check("drain: exits 0 once the last member answers",
                     None if st == 0 else "exit status %d" % st)
        report.check("drain: exit follows the last close promptly",
                     None if dt <= 3.0 else "exited %.1fs after the last close" % dt)
    report.check("drain: the slow member's TCP is closed", None if slow.wait_eof(3.0)
                 else "TCP still open")
    for c in [slow] + quick:
        c.close()
    return b


def drain_timeout_silent_member(report, binary):
    b = rrtest.Broker(binary, ["--drain-timeout", "2s", "--close-timeout", "10s"],
                      name="drain-timeout-broker")
    try:
        b.start()
    except Exception as e:
        report.fail("drain-timeout-broker starts", str(e))
        return b
    m = rrtest.WsConn(b.port, "/raw/silent")
    time.sleep(0.3)
    t0 = time.monotonic()
    b.signal(signal.SIGTERM)
    code = await_close(m, 3.0)
    report.check("drain-timeout: silent member receives close 1001",
                 None if code == 1001 else "got %r" % (code,))
    st = b.wait(6.0)
    dt = time.monotonic() - t0
    if st is None:
        report.fail("drain-timeout 2s: exits 0 although the member never answers",
                    "still running %.1fs after SIGTERM" % dt)
    else:
        why = None
        if st != 0:
            why = "exit status %d" % st
        elif dt > 4.0:
            why = "exited only %.1fs after SIGTERM (drain timeout 2s)" % dt
        elif dt < 1.5:
            why = "exited %.1fs after SIGTERM, before the 2s drain timeout" % dt
        report.check("drain-timeout 2s: exits 0 although the member never answers", why)
    report.check("drain-timeout: the silent member's TCP is closed",
                 None if m.wait_eof(3.0) else "TCP still open")
    m.close()
    return b


def sigint_drain(report, binary):
    b = rrtest.Broker(binary, [], name="sigint-broker")
    try:
        b.start()
    except Exception as e:
        report.fail("sigint-broker starts", str(e))
        return b
    m = rrtest.WsConn(b.port, "/echo")
    time.sleep(0.2)
    b.signal(signal.SIGINT)
    code = await_close(m, 3.0)
    answer_close(m)
    st = b.wait(5.0)
    why = None
    if code != 1001:
        why = "member got %r, expected close 1001" % (code,)
    elif st is None:
        why = "still running 5s after SIGINT"
    elif st != 0:
        why = "exit status %d" % st
    report.check("SIGINT: member gets 1001, process exits 0", why)
    m.close()
    return b


def idle_broker_exits(report, binary):
    b = rrtest.Broker(binary, [], name="idle-exit-broker")
    try:
        b.start()
    except Exception as e:
        report.fail("idle-exit-broker starts", str(e))
        return b
    t0 = time.monotonic()
    b.signal(signal.SIGTERM)
    st = b.wait(5.0)
    dt = time.monotonic() - t0
    why = None
    if st is None:
        why = "still running 5s after SIGTERM with no members"
    elif st != 0:
        why = "exit status %d" % st
    elif dt > 2.0:
        why = "took %.1fs with no members" % dt
    report.check("SIGTERM with no members: exits 0 at once", why)
    return b


def drain_many_members(report, binary):
    """100 websockets members (rooms and /echo, spread over the cores) all
    get 1001; they answer by themselves, so the exit follows at once."""
    import asyncio
    import websockets
    b = rrtest.Broker(binary, [], name="drain-many-broker")
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
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        b.signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*(c.wait_closed() for c in conns)), 10)
        codes = sorted({c.close_code for c in conns})
        st = await asyncio.to_thread(b.wait, 5.0)
        return codes, st, time.monotonic() - t0
    try:
        codes, st, dt = asyncio.run(go())
    except Exception as e:
        report.fail("SIGTERM with 100 members: all get 1001, exit 0 promptly",
                    "%s: %s" % (type(e).__name__, e))
        return b
    why = None
    if codes != [1001]:
        why = "close codes %r" % codes
    elif st is None:
        why = "still running 5s after every member closed"
    elif st != 0:
        why = "exit status %d" % st
    elif dt > 3.0:
        why = "exit %.1fs after SIGTERM" % dt
    report.check("SIGTERM with 100 members: all get 1001, exit 0 promptly", why)
    return b


def half_open_http_only(report, binary):
    """Connections that never became members (a partial upgrade request, a
    silent TCP connection) do not hold the exit: the process exits once
    members are gone, and here there are none."""
    b = rrtest.Broker(binary, [], name="half-open-broker")
    try:
        b.start()
    except Exception as e:
        report.fail("half-open-broker starts", str(e))
        return b
    partial = rrtest.connect(b.port)
    partial.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    silent = rrtest.connect(b.port)
    time.sleep(0.3)
    t0 = time.monotonic()
    b.signal(signal.SIGTERM)
    st = b.wait(12.0)
    dt = time.monotonic() - t0
    why = None
    if st is None:
        why = "still running 12s after SIGTERM"
    elif st != 0:
        why = "exit status %d" % st
    elif dt > 3.0:
        why = ("exited %.1fs after SIGTERM with no members (waited for connections "
               "still in the handshake: --handshake-timeout/--drain-timeout are 10s)" % dt)
    report.check("SIGTERM with only half-open HTTP connections (no members): exits 0 "
                 "within 3s", why)
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
