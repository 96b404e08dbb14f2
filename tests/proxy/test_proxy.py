#!/usr/bin/python3
"""PROXY protocol behind a load balancer (--proxy-protocol, --proxy-from).

Usage: test_proxy.py <ringroom binary>

The header (v1 text or v2 binary) comes first on every connection, in any
number of pieces; the client address it names is the one per-IP limits and
logs use; v2 LOCAL (a balancer's health check) works with the real peer; a
connection without a header, with a malformed one or from outside
--proxy-from is closed without an answer and counted; the header also comes
before a TLS handshake; and behind a real HAProxy (send-proxy-v2) the
broker tells clients from 127.0.0.3 and 127.0.0.4 apart.
"""

import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import rrtest  # noqa: E402

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
CASES = 17


def v1(src, sport=40000):
    return ("PROXY TCP4 %s 127.0.0.1 %d 8080\r\n" % (src, sport)).encode()


def v2_inet(src, sport=40000):
    return (V2_SIG + b"\x21\x11" + struct.pack(">H", 12) + socket.inet_aton(src) +
            socket.inet_aton("127.0.0.1") + struct.pack(">HH", sport, 8080))


def v2_inet6(src, sport=40000):
    return (V2_SIG + b"\x21\x21" + struct.pack(">H", 36) + socket.inet_pton(socket.AF_INET6, src) +
            socket.inet_pton(socket.AF_INET6, "::1") + struct.pack(">HH", sport, 8080))


V2_LOCAL = V2_SIG + b"\x20\x00\x00\x00"


def upgrade(port, header, pieces=1, path="/echo"):
    """Send header (+ the upgrade) in `pieces` writes; the answer's status
    line, or '' when the broker closed without a byte."""
    s = rrtest.connect(port)
    data = header + rrtest.upgrade_request(path)[0]
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        s.sendall(data[i:i + step])
        if pieces > 1:
            time.sleep(0.005)  # separate segments, so the broker reads pieces
    s.settimeout(5.0)
    try:
        got = s.recv(64)
    except socket.timeout:
        got = b"<no answer, still open>"
    except ConnectionResetError:
        got = b""
    return s, got.split(b"\r\n")[0].decode(errors="replace")


def proxy_rejected(port):
    st, _h, body, _c = rrtest.http_request(port, V2_LOCAL + b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    if st != 200:
        raise RuntimeError("metrics: %s" % st)
    return sum(int(v) for v in re.findall(rb"^ringroom_proxy_rejected_total\{[^}]*\} (\d+)", body, re.M))


def case_v1_and_v2(report, port):
    for name, hdr in (("v1", v1("192.0.2.10")), ("v2 IPv4", v2_inet("192.0.2.11")),
                      ("v2 IPv6", v2_inet6("2001:db8::11"))):
        s, line = upgrade(port, hdr)
        s.close()
        report.check("%s header, then the upgrade: 101" % name,
                     None if line.startswith("HTTP/1.1 101") else "got %r" % line)


def case_pieces(report, port):
    s, line = upgrade(port, v2_inet("192.0.2.12"), pieces=9)
    s.close()
    report.check("a v2 header and request in 9 pieces: 101",
                 None if line.startswith("HTTP/1.1 101") else "got %r" % line)


def case_per_ip(report, port):
    """--max-connections-per-ip 2 counts the header's address, not 127.0.0.1."""
    held = []
    lines = []
    for src in ("198.51.100.1", "198.51.100.1", "198.51.100.1", "198.51.100.2"):
        s, line = upgrade(port, v1(src))
        held.append(s)
        lines.append(line[:12])
    for s in held:
        s.close()
    want = ["HTTP/1.1 101", "HTTP/1.1 101", "HTTP/1.1 429", "HTTP/1.1 101"]
    report.check("per-IP limit by the header's address (2 from one, 3rd 429, other 101)",
                 None if lines == want else "got %r" % lines)


def case_local(report, port):
    st, _h, body, _c = rrtest.http_request(port, V2_LOCAL + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    report.check("v2 LOCAL health check: GET /healthz 200",
                 None if st == 200 else "status %r %r" % (st, body[:40]))


def case_rejected(report, port):
    before = proxy_rejected(port)
    answers = []
    for raw in (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",          # no header
                b"PROXY TCP4 1.2.3 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n",  # bad v1
                V2_SIG + b"\x21\x11\xff\xff"):                         # v2 over the limit
        s = rrtest.connect(port)
        s.sendall(raw)
        data, closed = rrtest.read_until_eof(s, 5.0)
        s.close()
        answers.append((data, closed))
    after = proxy_rejected(port)
    report.check("no header, a malformed v1, an oversized v2: closed without a byte",
                 None if all(d == b"" and c for d, c in answers) else "got %r" % answers)
    report.check("each counted in ringroom_proxy_rejected_total",
                 None if after - before == 3 else "counter %d -> %d" % (before, after))


def case_not_from(report, binary):
    b = rrtest.Broker(binary, ["--proxy-protocol", "--proxy-from", "10.0.0.0/8"],
                      name="proxy-from")
    try:
        start_listening(b)
        s = rrtest.connect(b.port)
        s.sendall(v1("192.0.2.1") + rrtest.upgrade_request("/echo")[0])
        data, closed = rrtest.read_until_eof(s, 5.0)
        s.close()
        report.check("a peer outside --proxy-from: closed without a byte",
                     None if data == b"" and closed else "got %r closed=%s" % (data[:40], closed))
    finally:
        report.check("proxy-from broker exits 0 on SIGTERM", b.stop())


def start_listening(b, port=None):
    """Start b and wait until it accepts on port (its plain port by
    default): Broker.start probes /healthz in plain HTTP, which a
    --proxy-protocol broker can't answer without a header."""
    b.port = rrtest.free_port()
    err = open(b.stderr_path, "ab")
    b.proc = subprocess.Popen(b.argv(), stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    err.close()
    deadline = time.monotonic() + 15.0  # generous: start-up on a loaded machine
    while time.monotonic() < deadline:
        if b.proc.poll() is not None:
            raise RuntimeError("%s exited with %d" % (b.name, b.proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port or b.port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not listen" % b.name)


def case_tls(report, binary, tmp):
    cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj",
                        "/CN=localhost", "-keyout", key, "-out", cert], capture_output=True)
    if r.returncode != 0:
        report.fail("TLS after the header", "openssl req failed: %r" % r.stderr[-200:])
        return
    tls_port = rrtest.free_port()
    b = rrtest.Broker(binary, ["--proxy-protocol", "--tls-cert", cert, "--tls-key", key,
                               "--tls-port", str(tls_port), "--tls-only"], name="proxy-tls")
    try:
        start_listening(b, tls_port)
        raw = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
        raw.sendall(v2_inet("192.0.2.40"))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        t = ctx.wrap_socket(raw, server_hostname="localhost")
        t.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        got = t.recv(64)
        t.close()
        report.check("a v2 header, then the TLS handshake and GET /healthz: 200",
                     None if got.startswith(b"HTTP/1.1 200") else "got %r" % got)
    except Exception as e:
        report.fail("a v2 header, then the TLS handshake", "%s: %s" % (type(e).__name__, e))
    finally:
        report.check("proxy-tls broker exits 0 on SIGTERM", b.stop())


def case_haproxy(report, port, tmp):
    """A real HAProxy (tcp mode, send-proxy-v2) in front: clients from
    127.0.0.3 and 127.0.0.4 are told apart by the per-IP limit of 2."""
    exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(exe):
        report.fail("behind HAProxy", "haproxy is not installed (tools/deps.sh installs it)")
        return
    front = rrtest.free_port()
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write("""global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    server rr 127.0.0.1:%d send-proxy-v2
""" % (front, port))
    hp = subprocess.Popen([exe, "-db", "-f", cfg], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10.0  # generous: HAProxy start-up
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", front), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        held, lines = [], []
        for src in ("127.0.0.3", "127.0.0.3", "127.0.0.3", "127.0.0.4"):
            s = rrtest.connect(front, source=src)
            s.sendall(rrtest.upgrade_request("/echo")[0])
            s.settimeout(5.0)
            held.append(s)
            lines.append(s.recv(64).split(b"\r\n")[0][:12].decode())
        for s in held:
            s.close()
        want = ["HTTP/1.1 101", "HTTP/1.1 101", "HTTP/1.1 429", "HTTP/1.1 101"]
        report.check("behind HAProxy send-proxy-v2: the per-IP limit sees 127.0.0.3 and 127.0.0.4",
                     None if lines == want else "got %r" % lines)
    finally:
        hp.terminate()
        hp.wait(10)


def case_drain_grace(report, binary):
    """--drain-grace: after SIGTERM /healthz answers 503 while members are
    still open; they get their 1001 only after it. Checked by the order of
    events (the grace is long enough that a 503 is seen first)."""
    b = rrtest.Broker(binary, ["--drain-grace", "3s"], name="drain-grace")
    try:
        b.start()
        m = rrtest.WsConn(b.port, "/echo")
        b.signal(signal.SIGTERM)
        status = None
        deadline = time.monotonic() + 10.0  # generous: the signal is handled asynchronously
        while time.monotonic() < deadline:
            status, _h, _b, _c = rrtest.http_request(b.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            if status == 503:
                break
            time.sleep(0.02)
        m.sock.setblocking(False)
        try:
            early = m.sock.recv(64)
        except BlockingIOError:
            early = b""  # nothing yet: the member is still open
        m.sock.setblocking(True)
        report.check("--drain-grace: /healthz 503 while the member is still open",
                     None if status == 503 and early == b"" else
                     "healthz %r, member already got %r" % (status, early))
        f = m.read_frame(timeout=15.0)  # generous: the grace (3 s) then the close
        report.check("--drain-grace: then the member gets 1001",
                     None if f.opcode == rrtest.OP_CLOSE and f.close_code() == 1001 else "got %r" % f)
        m.send_frame(rrtest.OP_CLOSE, rrtest.close_payload(1001))
    except Exception as e:
        report.fail("--drain-grace", "%s: %s" % (type(e).__name__, e))
    finally:
        report.check("drain-grace broker exits 0 on SIGTERM", b.stop())


def main():
    binary = rrtest.load_binary_arg("proxy")
    report = rrtest.Report("proxy")
    print("proxy: %d cases" % CASES, flush=True)
    tmp = tempfile.mkdtemp(prefix="ringroom-proxy-")
    b = rrtest.Broker(binary, ["--proxy-protocol", "--max-connections-per-ip", "2"], name="proxy")
    try:
        start_listening(b)
        case_v1_and_v2(report, b.port)
        case_pieces(report, b.port)
        case_per_ip(report, b.port)
        case_local(report, b.port)
        case_rejected(report, b.port)
        case_haproxy(report, b.port, tmp)
    finally:
        report.check("proxy broker exits 0 on SIGTERM", b.stop())
    case_not_from(report, binary)
    case_tls(report, binary, tmp)
    case_drain_grace(report, binary)
    shutil.rmtree(tmp, ignore_errors=True)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
