#!/usr/bin/python3
"""The well-behaved client that stays connected during the hostile battery.

Usage: hostile_probe.py <port> <source address> <rrtest directory>

It runs in its own process so that the attacking threads of hostile.py (and
their hold on the GIL) do not inflate the round trips it measures. Every
~100 ms it sends a small text message on /echo and waits for the echo; it
prints one line per event on stdout, timestamps on CLOCK_MONOTONIC (the same
clock as time.monotonic() in the parent):

  C <t> <connect_ms>     (re)connected
  R <t> <rtt_ms>         one round trip, started at t
  E <t> <what>           an error (wrong echo, close, timeout); reconnects
  L <t> <late_ms>        its timer (select) returned > 20 ms after it was due:
                         the machine, not the broker, delayed this process
                         (diagnostic only)

It stops when stdin reaches EOF (the parent closes it), or after 15 minutes
in case the parent died without doing so.
"""

import os
import select
import sys
import time

sys.path.insert(0, sys.argv[3])
import rrtest  # noqa: E402

INTERVAL = 0.1
# An echo that has not come back after this long is an error: a deadline for
# "eventually", generous because the machine is shared (and may run a
# sanitizer build). How long round trips take is printed, never judged here:
# latency belongs to bench/.
RTT_TIMEOUT = 10.0
LIFETIME = 900.0


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main():
    port = int(sys.argv[1])
    source = sys.argv[2] or None
    conn = None
    seq = 0
    end = time.monotonic() + LIFETIME
    next_t = time.monotonic()
    while time.monotonic() < end:
        before = time.monotonic()
        wait = max(0.0, next_t - before)
        ready, _w, _x = select.select([sys.stdin], [], [], wait)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # the parent is done with us
        now = time.monotonic()
        if now < next_t:
            continue
        if wait > 0 and now - (before + wait) > 0.02:  # overslept its timer
            out("L %.6f %.3f" % (before + wait, (now - before - wait) * 1000.0))
        next_t = max(next_t + INTERVAL, now)
        t = now
        try:
            if conn is None:
                conn = rrtest.WsConn(port, "/echo", timeout=RTT_TIMEOUT, source=source)
                out("C %.6f %.3f" % (t, (time.monotonic() - t) * 1000.0))
                t = time.monotonic()
            seq += 1
            payload = b"probe %d" % seq
            conn.send_frame(rrtest.OP_TEXT, payload)
            op, data, ctl = conn.read_message(timeout=RTT_TIMEOUT)
            rtt = time.monotonic() - t
            for f in ctl:  # server pings: answer like a browser would
                if f.opcode == rrtest.OP_PING:
                    conn.send_frame(rrtest.OP_PONG, f.payload)
            if op == rrtest.OP_CLOSE:
                raise RuntimeError("server closed: %r" % (data,))
            if op != rrtest.OP_TEXT or data != payload:
                raise RuntimeError("wrong echo op=%d %r" % (op, data[:40]))
            out("R %.6f %.3f" % (t, rtt * 1000.0))
        except Exception as e:  # report and reconnect on the next tick
            out("E %.6f %s: %s" % (t, type(e).__name__, str(e).replace("\n", " ")[:200]))
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        try:
            conn.send_frame(rrtest.OP_CLOSE, rrtest.close_payload(1000))
            conn.wait_eof(1.0)
        except OSError:
            pass
        conn.close()


if __name__ == "__main__":
    main()
