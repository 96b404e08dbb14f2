"""Helpers for the wss:// suites: a throwaway PKI made with the openssl CLI,
a broker started with a TLS listener, HTTP and a raw WebSocket client over
TLS, a memory-BIO TLS client that can stop anywhere in a record, and
/metrics parsing.

Builds on tests/integration/rrtest.py (imported, not changed): TlsBroker
subclasses its Broker so stop, sanitizer checks (RINGROOM_SAN=1) and
finish_suite work the same; TlsWsConn subclasses its WsConn so the frame
reader and the conformance battery's runner can be reused over TLS.

Standard library only; runs under Debian's /usr/bin/python3.
"""

import os
import socket
import ssl
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import rrtest  # noqa: E402

SAN = os.environ.get("RINGROOM_SAN") == "1"
SLOW = 3.0 if SAN else 1.0  # sanitizer builds are several times slower


# ---- a throwaway PKI ---------------------------------------------------------

def _run(argv, cwd):
    p = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                                 p.stdout.decode(errors="replace")[-500:]))


EXT = ("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
       "basicConstraints=critical,CA:FALSE\n"
       "keyUsage=critical,digitalSignature,keyEncipherment\n"
       "extendedKeyUsage=serverAuth\n")


class Pki:
    """A CA (EC P-256) and server certificates it signed, all in dir.

    cert(name) -> (cert path, key path); serial(name) -> the serial as the
    upper-case hex string Python's getpeercert() reports; org(name) -> the
    subject O= that tells the certificates apart."""

    def __init__(self, dir):
        self.dir = dir
        self.ca = os.path.join(dir, "ca.pem")
        self.serials = {}
        with open(os.path.join(dir, "ext.cnf"), "w") as f:
            f.write(EXT)
        _run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
              "-out", "ca.key"], dir)
        _run(["openssl", "req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "2",
              "-subj", "/CN=ringroom test CA %d/O=ringroom-tests" % os.getpid(),
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign",
              "-out", "ca.pem"], dir)

    def make(self, name, keytype, serial):
        """keytype 'ec' (P-256, SEC1 key file) or 'rsa' (2048, PKCS#8)."""
        key, csr, pem = name + ".key", name + ".csr", name + ".pem"
        if keytype == "ec":
            _run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
                  "-out", key], self.dir)
        else:
            _run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                  "rsa_keygen_bits:2048", "-out", key], self.dir)
        _run(["openssl", "req", "-new", "-key", key, "-subj",
              "/CN=localhost/O=ringroom-%s" % name, "-out", csr], self.dir)
        _run(["openssl", "x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey", "ca.key",
              "-set_serial", "0x%X" % serial, "-days", "2", "-sha256",
              "-extfile", "ext.cnf", "-out", pem], self.dir)
        self.serials[name] = "%X" % serial
        return self.path(name)

    def path(self, name):
        return os.path.join(self.dir, name + ".pem"), os.path.join(self.dir, name + ".key")

    def serial(self, name):
        return self.serials[name]

    def org(self, name):
        return "ringroom-" + name

    def client_ctx(self, alpn=("http/1.1",)):
        ctx = ssl.create_default_context(cafile=self.ca)
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        return ctx


def spki_sha256_b64(cert_path):
    """base64(sha256(SubjectPublicKeyInfo DER)), Chromium's SPKI pin format."""
    pub = subprocess.run(["openssl", "x509", "-in", cert_path, "-noout", "-pubkey"],
                         capture_output=True, check=True, timeout=30).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, check=True, timeout=30).stdout
    dig = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der,
                         capture_output=True, check=True, timeout=30).stdout
    import base64
    return base64.b64encode(dig).decode()


# ---- the broker with a TLS listener ------------------------------------------

class TlsBroker(rrtest.Broker):
    """rrtest.Broker plus --tls-cert/--tls-key/--tls-port (and --tls-only).

    Ready when GET /healthz answers 200 on the TLS port (and on the plain
    port unless tls_only)."""

    def __init__(self, binary, cert, key, ca, args=(), name="tls-broker", tls_only=False):
        super().__init__(binary, args, name)
        self.cert, self.key, self.ca = cert, key, ca
        self.tls_only = tls_only
        self.tls_port = None

    def argv(self):
        extra = ["--tls-cert", self.cert, "--tls-key", self.key,
                 "--tls-port", str(self.tls_port)]
        if self.tls_only:
            extra.append("--tls-only")
        return super().argv() + extra

    def ctx(self):
        c = ssl.create_default_context(cafile=self.ca)
        c.set_alpn_protocols(["http/1.1"])
        return c

    def start(self, ready_timeout=15.0):
        last = None
        ready_timeout *= SLOW
        for _attempt in range(3):
            self.port = rrtest.free_port()
            self.tls_port = rrtest.free_port()
            if self.tls_port == self.port:
                continue
            err = open(self.stderr_path, "ab")
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err)
            err.close()
            deadline = time.monotonic() + ready_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last = "exited with status %d before ready" % self.proc.returncode
                    break
                try:
                    st = https_request(self.tls_port, self.ctx(), b"GET /healthz HTTP/1.1\r\n"
                                       b"Host: localhost\r\n\r\n", timeout=2.0)[0]
                    if st == 200 and not self.tls_only:
                        st = rrtest.http_request(self.port, b"GET /healthz HTTP/1.1\r\n"
                                                 b"Host: t\r\n\r\n", timeout=1.0)[0]
                    if st == 200:
                        return self
                    last = "healthz status %s" % st
                except (OSError, ConnectionError) as e:
                    last = "healthz: %s" % e
                time.sleep(0.05)
            else:
                last = "not ready within %.0fs (%s)" % (ready_timeout, last)
                self.kill()
                break
            self.kill()
        self.dump_stderr()
        self.proc = None
        rrtest.skip_if_kernel_lacks(self.name, self.stderr_text())
        raise RuntimeError("%s: %s" % (self.name, last))

    def pid(self):
        return self.proc.pid

    def metrics_text(self):
        req = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"
        if self.tls_only:
            st, _h, body = https_request(self.tls_port, self.ctx(), req)
        else:
            st, _h, body, _c = rrtest.http_request(self.port, req)
        if st != 200:
            raise RuntimeError("/metrics status %s" % st)
        return body.decode("utf-8", "replace")

    def metric(self, name):
        """Sum of every sample of metric name (over its core labels)."""
        return metric_sum(self.metrics_text(), name)

    def wait_metric(self, name, want, timeout=10.0):
        """Poll until metric == want; returns the last value seen."""
        deadline = time.monotonic() + timeout * SLOW
        v = None
        while time.monotonic() < deadline:
            v = self.metric(name)
            if v == want:
                return v
            time.sleep(0.1)
        return v

    def vmrss(self):
        with open("/proc/%d/status" % self.pid()) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def log_count(self, needle):
        return self.stderr_text().count(needle)

    def wait_log(self, needle, count, timeout=5.0):
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            if self.log_count(needle) >= count:
                return True
            time.sleep(0.05)
        return False


def metric_sum(text, name):
    """The sum of a metric over its series, from a page parsed as the
    Prometheus text format (rrtest.Metrics: a malformed page raises)."""
    return rrtest.Metrics.parse(text).sum(name)


# ---- HTTP and WebSocket over TLS ---------------------------------------------

def tls_connect(port, ctx, timeout=5.0, host="localhost"):
    raw = rrtest.connect(port, timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=host)
    except Exception:
        raw.close()
        raise


def https_request(port, ctx, raw, timeout=5.0):
    """(status, headers, body) of one request over a fresh TLS connection."""
    s = tls_connect(port, ctx, timeout)
    try:
        s.sendall(raw)
        data = b""
        deadline = time.monotonic() + timeout
        while True:
            head = rrtest.parse_response_head(data)
            if head is not None:
                want = int(head[2].get("content-length", "-1") or -1)
                if want >= 0 and len(head[3]) >= want:
                    break
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no full response within %.1fs" % timeout)
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
                chunk = b""
            if not chunk:
                break
            data += chunk
        head = rrtest.parse_response_head(data)
        if head is None:
            raise ConnectionError("closed before a response head (%r)" % data[:200])
        return head[0], head[2], head[3]
    finally:
        s.close()


class TlsWsConn(rrtest.WsConn):
    """rrtest.WsConn over a TLS socket (same frame reader and senders)."""

    def __init__(self, port, path="/echo", ctx=None, timeout=5.0, host="localhost"):
        self.sock = tls_connect(port, ctx, timeout, host)
        self.buf = b""
        self.eof = False
        req, key = rrtest.upgrade_request(path, host=host)
        self.sock.sendall(req)
        deadline = time.monotonic() + timeout
        while True:
            head = rrtest.parse_response_head(self.buf)
            if head is not None:
                break
            chunk = self._recv(deadline)
            if not chunk:
                self.sock.close()
                raise rrtest.HandshakeError("closed during handshake (%r)" % self.buf[:200])
            self.buf += chunk
        status, line, headers, rest = head
        if status != 101:
            self.sock.close()
            raise rrtest.HandshakeError("status line %r" % line)
        if headers.get("sec-websocket-accept") != rrtest.ws_accept(key):
            self.sock.close()
            raise rrtest.HandshakeError("bad Sec-WebSocket-Accept")
        self.buf = rest

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)
        try:
            return self.sock.recv(262144)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return b""

    def peer_cert(self):
        return self.sock.getpeercert()


def cert_org(peer):
    for rdn in peer.get("subject", ()):
        for k, v in rdn:
            if k == "organizationName":
                return v
    return None


class MemTls:
    """A TLS client over a raw TCP socket through memory BIOs, so the test
    decides which encrypted bytes go out and when (half a ClientHello, half
    a record)."""

    def __init__(self, port, ctx, timeout=5.0):
        self.sock = rrtest.connect(port, timeout)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname="localhost")
        self.timeout = timeout

    def client_hello(self):
        """The ClientHello bytes (not sent)."""
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.out.read()

    def _pump_in(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("peer closed")
        self.inc.write(chunk)

    def handshake(self, hold_last=False):
        """Complete the handshake. With hold_last the client's last flight
        (its Finished) is returned instead of sent, for the caller to send
        together with application data."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.obj.do_handshake()
                last = self.out.read()
                if hold_last:
                    return last
                self.sock.sendall(last)
                return b""
            except ssl.SSLWantReadError:
                pending = self.out.read()
                if pending:
                    self.sock.sendall(pending)
                self._pump_in(deadline)

    def encrypt(self, data):
        self.obj.write(data)
        return self.out.read()

    def read_until(self, needle):
        deadline = time.monotonic() + self.timeout
        got = b""
        while needle not in got:
            try:
                got += self.obj.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            self._pump_in(deadline)
        return got

    def reset(self):
        """Abortive close: RST instead of FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
