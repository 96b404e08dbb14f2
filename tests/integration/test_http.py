#!/usr/bin/python3
"""HTTP side of the broker: rejections, plain endpoints and timeouts.

Usage: test_http.py <ringroom binary>

Every rejection status of protocol.md the core covers (400, 404, 405, 426,
431, 503), each checked for its status line, for the server closing TCP
after the response, and for a good client still working afterwards. Then
/healthz and /metrics, --handshake-timeout and --idle-timeout (4008; a pong
counts as traffic). Raw sockets except the idle "answers pings" case, which
uses python3-websockets because that library answers pings by itself.
"""

import asyncio
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rrtest  # noqa: E402
from rrtest import OP_CLOSE, OP_PING, OP_TEXT, close_payload, encode_frame  # noqa: E402

CLOSE_WAIT = 3.0  # the server must close TCP this soon after a rejection


def upgrade(path="/echo", method="GET", version="HTTP/1.1", key=None, headers=None,
            drop=(), extra=b""):
    """An upgrade request; headers overrides/adds, drop removes by name."""
    h = {"Host": "127.0.0.1", "Upgrade": "websocket", "Connection": "Upgrade",
         "Sec-WebSocket-Key": key or rrtest.ws_key(), "Sec-WebSocket-Version": "13"}
    h.update(headers or {})
    lines = ["%s %s %s" % (method, path, version)]
    lines += ["%s: %s" % (k, v) for k, v in h.items() if k not in drop]
    return ("\r\n".join(lines) + "\r\n").encode() + extra + b"\r\n"


def good_client(port, source=None):
    """None if a fresh /echo client gets its message back."""
    try:
        c = rrtest.WsConn(port, "/echo", source=source)
    except Exception as e:
        return "good client afterwards: handshake: %s" % e
    try:
        c.send(encode_frame(OP_TEXT, b"still alive"))
        op, p, _ = c.read_message(5)
        if (op, p) != (OP_TEXT, b"still alive"):
            return "good client afterwards: echo was op %d %r" % (op, p)
        c.send(encode_frame(OP_CLOSE, close_payload(1000)))
        return None
    except Exception as e:
        return "good client afterwards: %s: %s" % (type(e).__name__, e)
    finally:
        c.close()


def rejected(port, raw, status, header=None, header_value=None, check_good=True,
             source=None):
    """Send raw, expect `status`, the TCP close, and optionally a header."""
    try:
        st, headers, _body, closed = rrtest.http_request(port, raw, timeout=5,
                                                         wait_close=CLOSE_WAIT,
                                                         source=source)
    except Exception as e:
        return "no response: %s: %s" % (type(e).__name__, e)
    if st != status:
        return "status %s, expected %d" % (st, status)
    if header is not None:
        v = headers.get(header.lower())
        if v is None:
            return "status %d but no %s header" % (st, header)
        if header_value is not None and v.strip() != header_value:
            return "%s: %r, expected %r" % (header, v, header_value)
    if not closed:
        return "status %d but TCP still open %.0fs later" % (st, CLOSE_WAIT)
    return good_client(port) if check_good else None


def rejection_cases(report, port):
    R = report.run
    R("400 malformed request line (garbage)", rejected, port, b"GARBAGE\r\n\r\n", 400)
    R("400 request line without version", rejected, port,
      b"GET /echo\r\nHost: x\r\n\r\n", 400)
    R("400 request line with a bad version", rejected, port,
      upgrade(version="HTTP/9.Z"), 400)
    R("400 header line without a colon", rejected, port,
      upgrade(extra=b"this is not a header\r\n"), 400)
    R("400 HTTP/1.0 upgrade", rejected, port, upgrade(version="HTTP/1.0"), 400)
    R("400 missing Host", rejected, port, upgrade(drop=("Host",)), 400)
    R("400 two Host headers", rejected, port, upgrade(extra=b"Host: other\r\n"), 400)
    R("400 GET upgrade with a body (Content-Length: 5)", rejected, port,
      upgrade(headers={"Content-Length": "5"}) + b"hello", 400)
    R("400 Sec-WebSocket-Key twice", rejected, port,
      upgrade(extra=b"Sec-WebSocket-Key: " + rrtest.ws_key().encode() + b"\r\n"), 400)
    R("400 missing Sec-WebSocket-Key", rejected, port,
      upgrade(drop=("Sec-WebSocket-Key",)), 400)
    R("400 Sec-WebSocket-Key not base64", rejected, port, upgrade(key="not*base64*!!"), 400)
    R("400 Sec-WebSocket-Key of 15 bytes", rejected, port,
      upgrade(key="AAAAAAAAAAAAAAAAAAAA"), 400)
    R("400 missing Upgrade", rejected, port, upgrade(drop=("Upgrade",)), 400)
    R("400 Upgrade not websocket", rejected, port, upgrade(headers={"Upgrade": "h2c"}), 400)
    R("400 missing Connection", rejected, port, upgrade(drop=("Connection",)), 400)
    R("400 Connection without upgrade token", rejected, port,
      upgrade(headers={"Connection": "keep-alive"}), 400)
    R("400 room name of 129 bytes", rejected, port, upgrade("/raw/" + "a" * 129), 400)
    R("400 room name 'a b' (percent-encoded space)", rejected, port,
      upgrade("/raw/a%20b"), 400)
    R("400 room name with a space in the request line", rejected, port,
      upgrade("/raw/a b"), 400)
    R("400 room name with '/'", rejected, port, upgrade("/raw/a/b"), 400)
    R("400 empty room name", rejected, port, upgrade("/raw/"), 400)
    R("400 room name with '!'", rejected, port, upgrade("/raw/hi!"), 400)
    R("404 unknown path with upgrade headers", rejected, port, upgrade("/nowhere"), 404)
    R("404 unknown path, plain GET", rejected, port,
      b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404)
    R("405 POST /echo with upgrade headers", rejected, port,
      upgrade(method="POST", headers={"Content-Length": "0"}), 405)
    R("405 PUT /raw/room with upgrade headers", rejected, port,
      upgrade("/raw/room", method="PUT", headers={"Content-Length": "0"}), 405)
    R("426 Sec-WebSocket-Version 8 (answer names 13)", rejected, port,
      upgrade(headers={"Sec-WebSocket-Version": "8"}), 426, "Sec-WebSocket-Version", "13")
    R("431 one header over 8 KiB", rejected, port,
      upgrade(headers={"X-Big": "b" * 9000}), 431)
    R("431 request line over 8 KiB", rejected, port,
      upgrade("/echo?" + "q" * 9000), 431)
    # the answer must reach a client still sending (no RST from unread data)
    R("431 headers of 200 KiB: the 431 still arrives", rejected, port,
      upgrade(headers={"X-Big": "b" * 200000}), 431)
    R("405 POST with a 100 KB body: the 405 still arrives", rejected, port,
      upgrade(method="POST", headers={"Content-Length": "100000"}) + b"x" * 100000, 405)
    pads = {"X-Pad-%03d" % i: "v" for i in range(96)}  # + 5 = 101 headers
    R("431 101 headers", rejected, port, upgrade(headers=pads), 431)

    def accepted(raw, path_note):
        s = rrtest.connect(port)
        try:
            s.sendall(raw)
            data, _closed = b"", False
            deadline = time.monotonic() + 5
            while b"\r\n\r\n" not in data and time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            head = rrtest.parse_response_head(data)
            if head is None or head[0] != 101:
                return "%s: expected 101, got %r" % (path_note, data[:80])
            return None
        finally:
            s.close()
    pads100 = {"X-Pad-%03d" % i: "v" for i in range(95)}  # + 5 = 100 headers
    R("101 with exactly 100 headers", accepted, upgrade(headers=pads100), "100 headers")
    R("101 with 7 KiB of headers", accepted, upgrade(headers={"X-Big": "b" * 7000}),
      "7 KiB")
    R("101 room name of 128 bytes, all allowed characters", accepted,
      upgrade("/raw/" + ("AZaz09._~-" * 13)[:128]), "128-byte room")
    R("101 /echo with a query string", accepted, upgrade("/echo?x=1&y"), "/echo?x=1&y")
    R("101 /raw/room with a query string (not part of the room name)", accepted,
      upgrade("/raw/room?since=5"), "/raw/room?since=5")
    R("404 /echo/ (no trailing-slash folding)", rejected, port, upgrade("/echo/"), 404)
    R("101 header names case-insensitive, Connection list", accepted,
      upgrade(drop=("Upgrade", "Connection"),
              extra=b"upgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"),
      "mixed case")


def read_head(s, timeout=5.0):
    """(head tuple or None, bytes after the head)."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    head = rrtest.parse_response_head(data)
    return head, (head[3] if head else b"")


def upgrade_details_cases(report, port):
    def response_headers():
        key = rrtest.ws_key()
        s = rrtest.connect(port)
        try:
            s.sendall(upgrade(key=key, headers={
                "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}))
            head, _rest = read_head(s)
            if head is None or head[0] != 101:
                return "expected 101, got %r" % (head and head[1])
            h = head[2]
            if h.get("upgrade", "").lower() != "websocket":
                return "Upgrade: %r" % h.get("upgrade")
            if "upgrade" not in h.get("connection", "").lower():
                return "Connection: %r" % h.get("connection")
            if h.get("sec-websocket-accept") != rrtest.ws_accept(key):
                return "Sec-WebSocket-Accept %r" % h.get("sec-websocket-accept")
            if "sec-websocket-extensions" in h:
                return "an extension was accepted: %r (no RSV use is allowed then)" % \
                    h["sec-websocket-extensions"]
            return None
        finally:
            s.close()

    def frame_with_request():
        """The first frame in the same send as the request is not lost."""
        s = rrtest.connect(port)
        try:
            s.sendall(upgrade() + encode_frame(OP_TEXT, b"early bird"))
            head, rest = read_head(s)
            if head is None or head[0] != 101:
                return "expected 101, got %r" % (head and head[1])
            want = b"\x81\x0aearly bird"
            deadline = time.monotonic() + 5
            while len(rest) < len(want) and time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(4096)
                if not chunk:
                    break
                rest += chunk
            return None if rest[:len(want)] == want else "after 101: %r" % rest[:40]
        finally:
            s.close()

    def request_byte_by_byte():
        s = rrtest.connect(port)
        try:
            for b in upgrade():
                s.sendall(bytes([b]))
            head, _rest = read_head(s)
            return None if head and head[0] == 101 else "got %r" % (head and head[1])
        finally:
            s.close()

    def request_bare_lf():
        # RFC 7230 section 3.5 lets a server take a bare LF as a line end,
        # and ringroom's parser does (src/http/http_parse.c): a request
        # that is well formed apart from its line ends is upgraded, 101
        # with the right Sec-WebSocket-Accept; 400 would be a regression.
        key = rrtest.ws_key()
        raw = upgrade(key=key).replace(b"\r\n", b"\n")
        s = rrtest.connect(port)
        try:
            s.sendall(raw)
            head, _rest = read_head(s)
            if not head or head[0] != 101:
                return "got %r, want 101" % (head and head[1])
            acc = head[2].get("sec-websocket-accept")
            return None if acc == rrtest.ws_accept(key) else "Sec-WebSocket-Accept %r" % acc
        finally:
            s.close()
    report.run("101 answer: Upgrade, Connection, Accept; no extension accepted",
               response_headers)
    report.run("a frame sent together with the request is echoed after the 101",
               frame_with_request)
    report.run("request sent one byte per send is upgraded", request_byte_by_byte)
    report.run("bare-LF request is upgraded (101, RFC 7230 3.5 line ends)", request_bare_lf)


# A deadline for what must happen eventually: generous, since this machine is
# shared and a sanitizer build is slow; a broker that never does it still
# fails. What causes the event is set by the broker's flags, never measured.
EVENTUALLY = 30.0


def close_timeout_case(port):
    """After its 1002, a server facing a client that neither answers the
    close nor closes TCP drops the connection: the close frame first, then
    TCP closed (--close-timeout 200ms; the idle timeout and ping interval
    are 10m, so nothing else closes it)."""
    c = rrtest.WsConn(port, "/echo")
    try:
        c.send(encode_frame(OP_TEXT, b"unmasked", mask=False))
        f = c.read_frame(EVENTUALLY)
        if f.opcode != OP_CLOSE or f.close_code() != 1002:
            return "expected close 1002, got %r" % f
        if not c.wait_eof(EVENTUALLY):
            return "TCP still open %.0fs after the 1002 (--close-timeout 200ms)" % EVENTUALLY
        return None
    except Exception as e:
        return "%s: %s" % (type(e).__name__, e)
    finally:
        c.close()


def endpoint_cases(report, port):
    def healthz():
        st, _h, body, _c = rrtest.http_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        if st != 200:
            return "status %s" % st
        return None if body.strip() == b"ok" else "body %r, expected 'ok'" % body[:40]

    report.run("GET /healthz -> 200 ok", healthz)


def metrics_after_traffic(port):
    """A fresh broker (--cores 2) gets known traffic, then /metrics must
    parse as the Prometheus text format and count exactly that traffic:
    3 upgrades, 7 data messages in, 1 close 1002, one 404 and one 400
    answer; every per-core counter has a series for core 0 and core 1; the
    connections gauge falls back to the /metrics request alone."""
    # counters by name and, for codes, label (the Prometheus conventions)
    names = {"ringroom_upgrades": ("ringroom_upgrades_total", None),
             "ringroom_messages_in": ("ringroom_messages_in_total", None),
             "ringroom_closes_1002": ("ringroom_closes_total", "1002"),
             "ringroom_rejected_404": ("ringroom_http_responses_total", "404"),
             "ringroom_rejected_400": ("ringroom_http_responses_total", "400"),
             "ringroom_connections_accepted": ("ringroom_connections_accepted_total", None)}

    def count(m, n):
        name, code = names[n]
        return sum(v for k, v in m.series(name).items() if code is None or
                   dict(k).get("code") == code)
    m0 = rrtest.get_metrics(port)
    base = {n: count(m0, n) for n in names}
    conns = [rrtest.WsConn(port, "/echo") for _ in range(3)]
    try:
        for i, c in enumerate(conns):
            for j in range(2):
                c.send_frame(OP_TEXT, b"m%d-%d" % (i, j))
                op, payload, _ctl = c.read_message(10.0)
                if payload != b"m%d-%d" % (i, j):
                    return "echo %d-%d: %r" % (i, j, payload)
        conns[0].send_frame(OP_TEXT, b"one more")
        conns[0].read_message(10.0)
        # a protocol error: an unmasked frame gets 1002
        conns[1].send(encode_frame(OP_TEXT, b"unmasked", mask=False))
        f = conns[1].read_frame(10.0)
        if f.opcode != OP_CLOSE or f.close_code() != 1002:
            return "unmasked frame: %r, want close 1002" % f
        for c in (conns[0], conns[2]):
            c.send_frame(OP_CLOSE, close_payload(1000))
            c.read_frame(10.0)
            c.wait_eof(10.0)
    finally:
        for c in conns:
            c.close()
    st404 = rrtest.http_request(port, rrtest.upgrade_request("/nowhere")[0])[0]
    st400 = rrtest.http_request(port, b"GET /echo HTTP/1.1\r\nHost x\r\n\r\n")[0]
    if (st404, st400) != (404, 400):
        return "setup: statuses %s and %s, want 404 and 400" % (st404, st400)
    want = {"ringroom_upgrades": 3, "ringroom_messages_in": 7, "ringroom_closes_1002": 1,
            "ringroom_rejected_404": 1, "ringroom_rejected_400": 1}
    # the counters are per core and read when /metrics is answered: poll
    # until the closes are counted (eventually; 10 s for a loaded machine)
    deadline = time.monotonic() + 10.0
    while True:
        m = rrtest.get_metrics(port)
        got = {n: count(m, n) - base[n] for n in want}
        if (got == want and m.value("ringroom_connections") == 1) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if got != want:
        return "after known traffic: %s, want %s" % (got, want)
    if m.value("ringroom_connections") != 1:
        return "ringroom_connections %s with only the /metrics request open" % (
            m.value("ringroom_connections"))
    accepted = count(m, "ringroom_connections_accepted") - base["ringroom_connections_accepted"]
    if accepted < 6:  # 3 clients, the 404 and 400 requests, this /metrics request
        return "ringroom_connections_accepted rose by %s, want at least 6" % accepted
    for name in ("ringroom_upgrades_total", "ringroom_messages_in_total",
                 "ringroom_http_responses_total", "ringroom_closes_total"):
        if m.types.get(name) != "counter":
            return "%s has TYPE %s, want counter" % (name, m.types.get(name))
        cores = sorted(set(dict(k).get("core") for k in m.series(name)))
        if cores != ["0", "1"]:
            return "%s has series for cores %s, want 0 and 1" % (name, cores)
    if m.types.get("ringroom_connections") != "gauge":
        return "ringroom_connections has TYPE %s, want gauge" % m.types.get("ringroom_connections")
    return None


def max_connections_case(port):
    held = []
    try:
        for i in range(2):
            held.append(rrtest.WsConn(port, "/echo"))
        why = rejected(port, upgrade(), 503, "Retry-After", check_good=False)
        if why:
            return "third connection: " + why
        for i in range(5):  # rejections must not use up slots
            why = rejected(port, upgrade(), 503, "Retry-After", check_good=False)
            if why:
                return "rejection %d: %s" % (i + 2, why)
        held.pop().close()
        held.pop().close()
        # slots come back when connections end (cleanly or by reset): cycle
        # through the limit several times
        for rnd in range(5):
            deadline = time.monotonic() + 3
            while True:
                try:
                    pair = [rrtest.WsConn(port, "/echo"), rrtest.WsConn(port, "/echo")]
                    break
                except rrtest.HandshakeError as e:
                    if time.monotonic() > deadline:
                        return "round %d: 2 connections refused 3s after the others " \
                            "closed: %s" % (rnd, e)
                    time.sleep(0.1)
            if rnd % 2:
                for c in pair:  # reset instead of a close handshake
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
            for c in pair:
                c.close()
        time.sleep(0.5)
        return good_client(port)
    except Exception as e:
        return "%s: %s" % (type(e).__name__, e)
    finally:
        for c in held:
            c.close()


def max_per_ip_case(port):
    held = []
    try:
        for i in range(2):
            held.append(rrtest.WsConn(port, "/echo"))
        why = rejected(port, upgrade(), 429, "Retry-After", check_good=False)
        if why:
            return "third connection from 127.0.0.1: " + why
        why = good_client(port, source="127.0.0.2")
        if why:
            return "from 127.0.0.2 (another address): " + why
        held.pop().close()
        deadline = time.monotonic() + 3
        while True:
            try:
                held.append(rrtest.WsConn(port, "/echo"))
                break
            except rrtest.HandshakeError as e:
                if time.monotonic() > deadline:
                    return "127.0.0.1 still refused 3s after one of its connections " \
                        "closed: %s" % e
                time.sleep(0.1)
        return None
    except Exception as e:
        return "%s: %s" % (type(e).__name__, e)
    finally:
        for c in held:
            c.close()


def max_room_size_case(port):
    held = []
    try:
        for i in range(2):
            held.append(rrtest.WsConn(port, "/raw/small"))
        why = rejected(port, upgrade("/raw/small"), 503, "Retry-After")
        if why:
            return "third join: " + why
        try:  # another room is not full
            held.append(rrtest.WsConn(port, "/raw/other"))
        except Exception as e:
            return "join of another room: %s" % e
        # a member leaving frees its place
        held.pop(0).close()
        deadline = time.monotonic() + 3
        while True:
            try:
                held.append(rrtest.WsConn(port, "/raw/small"))
                break
            except rrtest.HandshakeError as e:
                if time.monotonic() > deadline:
                    return "join refused 3s after a member left: %s" % e
                time.sleep(0.1)
        return None
    except Exception as e:
        return "%s: %s" % (type(e).__name__, e)
    finally:
        for c in held:
            c.close()


def handshake_timeouts(port):
    return rrtest.get_metrics(port).sum("ringroom_handshake_timeouts_total")


def handshake_timeout_closes(port, first_bytes):
    """Send first_bytes (maybe nothing) and never finish the request: the
    broker (--handshake-timeout 200ms) closes TCP without an answer and
    counts it in ringroom_handshake_timeouts_total, so the close is the timeout's
    by the broker's own account, not a guess from the clock."""
    before = handshake_timeouts(port)
    s = rrtest.connect(port)
    try:
        if first_bytes:
            s.sendall(first_bytes)
        data, closed = rrtest.read_until_eof(s, EVENTUALLY)
        if not closed:
            return "still open %.0fs later (--handshake-timeout 200ms)" % EVENTUALLY
        if data:
            return "answered %r before closing; a timeout closes silently" % data[:60]
    finally:
        s.close()
    after = handshake_timeouts(port)
    return None if after == before + 1 else \
        "ringroom_handshake_timeouts_total %s -> %s, want one more" % (before, after)


def handshake_timeout_partial(port):
    return handshake_timeout_closes(port, b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webs")


def handshake_timeout_silent(port):
    return handshake_timeout_closes(port, b"")


def handshake_timeout_slow_but_complete(port):
    """A request finished within the timeout, sent in slow pieces, is fine."""
    raw = upgrade()
    s = rrtest.connect(port)
    try:
        for i in range(0, len(raw), len(raw) // 4 + 1):
            s.sendall(raw[i:i + len(raw) // 4 + 1])
            time.sleep(0.15)
        s.settimeout(5)
        data = s.recv(4096)
        return None if data.startswith(b"HTTP/1.1 101") else "got %r" % data[:60]
    finally:
        s.close()


def idle_silent_raw(port):
    """Never sends anything (reads only): pings arrive first, then close
    4008. The order is the check; how long it took is not."""
    c = rrtest.WsConn(port, "/echo")
    try:
        t0 = time.monotonic()
        pings = 0
        while True:
            left = EVENTUALLY - (time.monotonic() - t0)
            if left <= 0:
                return "no close within %.0fs (idle timeout 2s); %d pings" % (EVENTUALLY, pings)
            try:
                f = c.read_frame(left)
            except rrtest.Eof:
                return "TCP closed without a close frame after %.1fs" % (
                    time.monotonic() - t0)
            except socket.timeout:
                continue
            if f.opcode == OP_PING:
                pings += 1
                continue
            if f.opcode == OP_CLOSE:
                break
            return "unexpected frame %r" % f
        dt = time.monotonic() - t0
        code = f.close_code()
        if code != 4008:
            return "close code %s after %.1fs, expected 4008" % (code, dt)
        if pings < 1:
            return "close 4008 but no ping before it (--ping-interval 1s)"
        c.send(encode_frame(OP_CLOSE, close_payload(4008)))
        return None if c.wait_eof(EVENTUALLY) else "TCP not closed after the close handshake"
    finally:
        c.close()


def idle_answering_client(port):
    """python3-websockets answers pings by itself: a pong is traffic, so a
    client that only answers pings for 4s (2x the idle timeout) stays."""
    import websockets

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/echo" % port, compression=None,
                                      ping_interval=None, open_timeout=5) as ws:
            await asyncio.sleep(4.0)
            if ws.closed:
                return "closed after answering pings: code %s" % ws.close_code
            await ws.send("still here")
            m = await asyncio.wait_for(ws.recv(), 5)
            return None if m == "still here" else "echo was %r" % m
    try:
        return asyncio.run(go())
    except Exception as e:
        return "%s: %s" % (type(e).__name__, e)


def main():
    binary = rrtest.load_binary_arg("http")
    report = rrtest.Report("http")
    specs = [
        ("http-broker", []),
        ("maxconn-broker", ["--max-connections", "2"]),
        ("roomsize-broker", ["--max-room-size", "2"]),
        ("perip-broker", ["--max-connections-per-ip", "2"]),
        ("handshake-broker", ["--handshake-timeout", "200ms"]),
        ("idle-broker", ["--idle-timeout", "2s", "--ping-interval", "1s"]),
        ("close-timeout-broker", ["--close-timeout", "200ms", "--idle-timeout", "10m",
                                  "--ping-interval", "10m"]),
        ("metrics-broker", []),
    ]
    brokers = {}
    try:
        for name, args in specs:
            b = rrtest.Broker(binary, args, name=name)
            brokers[name] = b
            try:
                b.start()
            except Exception as e:
                report.fail("%s starts" % name, str(e))
        def up(name):
            return brokers[name].running()
        if up("http-broker"):
            p = brokers["http-broker"].port
            endpoint_cases(report, p)
            upgrade_details_cases(report, p)
            rejection_cases(report, p)
            # --handshake-timeout is 10s there; the pieces take 0.6s
            report.run("a complete request sent in slow pieces is upgraded",
                       handshake_timeout_slow_but_complete, p)
        if up("maxconn-broker"):
            report.run("503 + Retry-After at --max-connections 2 (third connection)",
                       max_connections_case, brokers["maxconn-broker"].port)
        if up("roomsize-broker"):
            report.run("503 + Retry-After at --max-room-size 2 (third join)",
                       max_room_size_case, brokers["roomsize-broker"].port)
        if up("perip-broker"):
            report.run("429 + Retry-After at --max-connections-per-ip 2; other IP still ok",
                       max_per_ip_case, brokers["perip-broker"].port)
        if up("handshake-broker"):
            p = brokers["handshake-broker"].port
            report.run("handshake timeout 200ms: partial request closed silently, counted "
                       "as a handshake timeout", handshake_timeout_partial, p)
            report.run("handshake timeout 200ms: silent connection closed, counted as a "
                       "handshake timeout", handshake_timeout_silent, p)
        if up("idle-broker"):
            p = brokers["idle-broker"].port
            report.run("idle timeout 2s: silent raw client gets pings then close 4008",
                       idle_silent_raw, p)
            report.run("idle timeout 2s: client answering pings stays open 4s",
                       idle_answering_client, p)
        if up("metrics-broker"):
            report.run("/metrics parses as Prometheus text and counts known traffic exactly "
                       "(upgrades, messages, 1002, 404, 400, per-core series)",
                       metrics_after_traffic, brokers["metrics-broker"].port)
        if up("close-timeout-broker"):
            report.run("close timeout 200ms: client ignoring the server's close is dropped "
                   "(close frame, then TCP closed)",
                       close_timeout_case, brokers["close-timeout-broker"].port)
    finally:
        code = rrtest.finish_suite(report, list(brokers.values()))
    return code


if __name__ == "__main__":
    sys.exit(main())
