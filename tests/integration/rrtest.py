"""Shared helpers for ringroom's integration and conformance suites.

Every suite is a script that gets the broker binary as argv[1], starts it on
a free loopback port, runs its cases and exits 0 (all passed), 1 (a case
failed) or 77 (a case or the suite could not run here; the cause is printed
on a "SKIP name: cause" line). This module holds what they share: starting
and stopping the broker (stderr captured to a file, printed on failure,
checked for sanitizer reports when RINGROOM_SAN=1), plain HTTP over raw
sockets, a raw WebSocket client that can send anything (invalid frames
included) and a tiny result reporter.

Standard library only; runs under Debian's /usr/bin/python3.

Environment:
  RINGROOM_EXTRA_ARGS  extra broker flags, split on whitespace
  RINGROOM_SAN=1       the broker is a sanitizer build: its stderr must hold
                       no AddressSanitizer/UBSan/LeakSanitizer report
  RINGROOM_VERBOSE=1   print the broker's stderr even when all passed
"""

import base64
import hashlib
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

SAN_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")


# ---- results ---------------------------------------------------------------

class Report:
    """One line per case, a summary line, and the exit status.

    A case ends in one of three ways: ok, FAIL (with why) or SKIP (with the
    exact cause, e.g. "mount -t tmpfs: Operation not permitted"). A skip is
    never an ok: the suite exits 77 when a case skipped and none failed, so
    meson and tools/test count it as skipped and tools/test fails the run
    unless tests/skips.allow names it. finish() also prints
    "<suite>: N cases", which tools/test compares between the normal and the
    sanitizer build so a suite that silently shrinks is visible."""

    def __init__(self, label):
        self.label = label
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures = []
        self.skips = []
        self._lock = threading.Lock()

    def ok(self, name):
        with self._lock:
            self.passed += 1
            print("ok %s" % name, flush=True)

    def fail(self, name, why):
        with self._lock:
            self.failed += 1
            self.failures.append((name, why))
            print("FAIL %s: %s" % (name, why), flush=True)

    def skip(self, name, cause):
        """The case cannot run here; cause says exactly why (the error text)."""
        with self._lock:
            self.skipped += 1
            self.skips.append((name, cause))
            print("SKIP %s: %s" % (name, cause), flush=True)

    def check(self, name, why):
        """why is None (passed) or a string saying what went wrong."""
        if why is None:
            self.ok(name)
        else:
            self.fail(name, why)

    def run(self, name, fn, *args):
        """Run fn(*args): None or a string; an exception is a failure."""
        try:
            why = fn(*args)
        except Exception as e:  # a case must never take the suite down
            why = "exception %s: %s" % (type(e).__name__, e)
        self.check(name, why)

    def finish(self):
        print("%s: %d cases" % (self.label, self.passed + self.failed + self.skipped))
        print("%s: %d passed, %d failed, %d skipped" % (self.label, self.passed,
                                                        self.failed, self.skipped), flush=True)
        if self.failed or self.passed + self.skipped == 0:
            return 1
        return 77 if self.skipped else 0


# ---- the broker process ----------------------------------------------------

def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def extra_args_from_env():
    return shlex.split(os.environ.get("RINGROOM_EXTRA_ARGS", ""))


_help_cache = {}


def broker_has_flag(binary, flag):
    """Whether `binary --help` lists flag (cached per binary)."""
    if binary.endswith(".py"):
        return False
    if binary not in _help_cache:
        try:
            out = subprocess.run([binary, "--help"], stdin=subprocess.DEVNULL,
                                 capture_output=True, timeout=10)
            _help_cache[binary] = (out.stdout + out.stderr).decode("utf-8", "replace")
        except (OSError, subprocess.TimeoutExpired):
            _help_cache[binary] = ""
    return flag in _help_cache[binary]


class Broker:
    """A broker process on 127.0.0.1:<free port>, stderr in a temp file."""

    def __init__(self, binary, args=(), name="broker"):
        self.binary = binary
        self.args = list(args)
        self.name = name
        self.port = None
        self.proc = None
        self.exit_status = None
        self.terminated = False
        fd, self.stderr_path = tempfile.mkstemp(prefix="ringroom-%s-" % name,
                                                suffix=".stderr")
        os.close(fd)
        # each broker gets its own RocksDB folder (one broker per folder),
        # when the binary has persistence (--data-dir in its --help)
        self.data_dir = None
        if "--data-dir" not in self.args and broker_has_flag(binary, "--data-dir"):
            self.data_dir = tempfile.mkdtemp(prefix="ringroom-%s-data-" % name)
            self.args += ["--data-dir", self.data_dir]

    def argv(self):
        cmd = [self.binary]
        if self.binary.endswith(".py"):  # a stand-in server during development
            cmd = ["/usr/bin/python3", self.binary]
        return cmd + ["--port", str(self.port), "--bind", "127.0.0.1",
                      "--cores", "2"] + self.args + extra_args_from_env()

    def start(self, ready_timeout=15.0):
        """Start and wait for GET /healthz -> 200. Raises on failure."""
        last = None
        for _attempt in range(3):  # a free port can be taken in between
            self.port = free_port()
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
                    st, _h, body, _c = http_request(self.port, b"GET /healthz HTTP/1.1\r\n"
                                                    b"Host: t\r\n\r\n", timeout=1.0)
                    if st == 200:
                        return self
                    last = "healthz status %s" % st
                except OSError as e:
                    last = "healthz: %s" % e
                time.sleep(0.05)
            else:
                last = "not ready within %.0fs (%s)" % (ready_timeout, last)
                self.kill()
                break  # only an early exit (port taken meanwhile) is retried
            self.kill()
        self.dump_stderr()
        self.proc = None  # reported here; finish_suite skips it
        skip_if_kernel_lacks(self.name, self.stderr_text())
        raise RuntimeError("%s: %s" % (self.name, last))

    def kernel_unsupported(self):
        """kernel_refusal()'s verdict when it is a skip, else None."""
        verdict = kernel_refusal(self.stderr_text())
        return verdict[1] if verdict and verdict[0] == "skip" else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.running():
            if sig in (signal.SIGTERM, signal.SIGINT):
                self.terminated = True  # a test drives the shutdown itself
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """Exit status, or None if still running after timeout seconds."""
        try:
            self.exit_status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.exit_status

    def kill(self):
        if self.running():
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout=20.0):
        """SIGTERM, then require exit status 0 and a clean sanitizer report.

        Returns None when all is well, else a string saying what is wrong.
        """
        problems = []
        if self.proc is None:
            return "never started"
        if self.proc.poll() is not None:
            if not (self.terminated and self.proc.returncode == 0):
                problems.append("already exited with status %d" % self.proc.returncode)
        else:
            self.proc.send_signal(signal.SIGTERM)
            st = self.wait(timeout)
            if st is None:
                problems.append("did not exit within %.0fs of SIGTERM" % timeout)
                self.kill()
            elif st != 0:
                problems.append("exit status %d after SIGTERM" % st)
        problems += self.san_problems()
        return "; ".join(problems) if problems else None

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def san_problems(self):
        if os.environ.get("RINGROOM_SAN") != "1":
            return []
        bad = [l for l in self.stderr_text().splitlines()
               if any(m in l for m in SAN_MARKERS)]
        if bad:
            return ["sanitizer report on stderr: %s" % bad[0].strip()]
        return []

    def dump_stderr(self, limit=20000):
        text = self.stderr_text()
        print("---- %s stderr (%s, %d bytes) ----" % (self.name, self.stderr_path,
                                                       len(text)))
        if len(text) > limit:
            print("[... %d bytes cut ...]" % (len(text) - limit))
            text = text[-limit:]
        print(text.rstrip())
        print("---- end of %s stderr ----" % self.name, flush=True)

    def cleanup(self):
        try:
            os.unlink(self.stderr_path)
        except OSError:
            pass
        if self.data_dir and not self.running():
            shutil.rmtree(self.data_dir, ignore_errors=True)


# Why the broker refused to start, when it was the kernel. The broker's probe
# (src/reactor/ring.c, src/persist/store.c) says "kernel lacks <feature>" or
# "io_uring is not available (<strerror>): ringroom needs Linux 6.0+". Only a
# feature the kernel does not have is a skip: ENOSYS (no io_uring at all),
# EINVAL/EOPNOTSUPP (an older kernel refusing a newer opcode or flag) or no
# errno (an opcode missing from the probe, a release number too old). A
# permission (EPERM/EACCES: seccomp, the io_uring_disabled sysctl) or a
# resource (ENOMEM: RLIMIT_MEMLOCK, EMFILE) refusal is the machine's set-up,
# which CI must get right: a failure with the broker's words, never a skip.
MISSING_FEATURE_ERRNOS = ("Function not implemented", "Invalid argument",
                          "Operation not supported")
SETUP_ERRNOS = ("Operation not permitted", "Permission denied",
                "Cannot allocate memory", "Too many open files", "No space left")


def kernel_refusal(stderr_text):
    """("skip", line) for a missing kernel feature, ("fail", line) for a
    kernel refusal that is a permission or resource problem, None when the
    broker did not blame the kernel."""
    for line in stderr_text.splitlines():
        l = line.lower()
        if not ("kernel lacks" in l or "needs linux" in l or "io_uring is not available" in l):
            continue
        if any(e.lower() in l for e in SETUP_ERRNOS):
            return "fail", line.strip()
        if "(" in line and ":" in line.split("kernel lacks", 1)[-1] and \
                not any(e.lower() in l for e in MISSING_FEATURE_ERRNOS) and \
                "io_uring is not available" not in l:
            # "kernel lacks X (Linux N+): <strerror>" with an errno that
            # says nothing about a missing feature
            return "fail", line.strip()
        if "io_uring is not available" in l and \
                not any(e.lower() in l for e in MISSING_FEATURE_ERRNOS):
            return "fail", line.strip()
        return "skip", line.strip()
    return None


def skip_if_kernel_lacks(name, stderr_text):
    """Exit 77 with the broker's words when it refused to start for want of
    a kernel feature; return otherwise (the caller then fails)."""
    verdict = kernel_refusal(stderr_text)
    if verdict is None:
        return
    kind, line = verdict
    if kind == "skip":
        print("SKIP %s: the kernel (%s) lacks a feature ringroom needs: %s" % (
            name, os.uname().release, line), flush=True)
        sys.exit(77)
    print("FAIL %s: the kernel refused for a reason that is not a missing feature "
          "(fix the machine's limits or policy, not the test): %s" % (name, line), flush=True)


def skip_suite(label, cause):
    """The whole suite cannot run here: print the exact cause and exit 77."""
    print("SKIP %s: %s" % (label, cause), flush=True)
    print("%s: 0 passed, 0 failed, 1 skipped" % label, flush=True)
    sys.exit(77)


def finish_suite(report, brokers, stop_results=None):
    """Stop every broker (SIGTERM, exit 0, sanitizer check) as one case each,
    print stderr of the ones that misbehaved (or all, on any failure), print
    the summary and return the exit status."""
    for b in brokers:
        if b.proc is None:
            continue
        why = b.stop()
        report.check("%s exits 0 on SIGTERM%s" % (
            b.name, ", no sanitizer report" if os.environ.get("RINGROOM_SAN") == "1" else ""), why)
    if report.failed or os.environ.get("RINGROOM_VERBOSE") == "1":
        for b in brokers:
            if b.proc is not None:
                b.dump_stderr()
    else:
        for b in brokers:
            b.cleanup()
    return report.finish()


def load_binary_arg(label):
    if len(sys.argv) < 2:
        print("usage: %s <ringroom binary>" % sys.argv[0], file=sys.stderr)
        sys.exit(2)
    binary = sys.argv[1]
    if not os.path.exists(binary):
        print("FAIL %s: broker binary %s not found" % (label, binary))
        sys.exit(1)
    return binary


# ---- plain HTTP over a raw socket -------------------------------------------

def connect(port, timeout=5.0, host="127.0.0.1", source=None, rcvbuf=None):
    """TCP to host:port; source picks the client address (e.g. 127.0.0.2),
    rcvbuf shrinks the receive buffer (set before connect, for a slow reader)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            s.bind((source, 0))
        s.settimeout(timeout)
        s.connect((host, port))
    except OSError:
        s.close()
        raise
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_eof(sock, timeout, limit=1 << 20):
    """Read until EOF. Returns (data, closed): closed is False on timeout."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def parse_response_head(data):
    """(status, reason line, headers dict lowercased (last wins), body) or
    None when the head is incomplete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        status = -1
    headers = {}
    for l in lines[1:]:
        if ":" in l:
            k, v = l.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, lines[0], headers, data[end + 4:]


def http_request(port, raw, timeout=5.0, wait_close=None, source=None):
    """Send raw bytes, read the response. Returns (status, headers, body,
    closed) where closed says the server closed the connection within
    wait_close seconds (or the read timeout) after the response head."""
    s = connect(port, timeout, source=source)
    try:
        s.sendall(raw)
        data = b""
        deadline = time.monotonic() + timeout
        head = None
        closed = False
        while head is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no response head within %.1fs" % timeout)
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                closed = True
                head = parse_response_head(data)
                if head is None:
                    raise ConnectionError("connection closed before a full response "
                                          "head (%r)" % data[:200])
                break
            data += chunk
            head = parse_response_head(data)
        status, _line, headers, body = head
        if not closed:
            # body by Content-Length if present, then wait for the close
            want = int(headers.get("content-length", "0") or 0)
            rest, closed = read_until_eof(s, wait_close if wait_close is not None
                                          else timeout)
            body += rest
            if len(body) > want and want:
                body = body[:want] if closed else body
        return status, headers, body, closed
    finally:
        s.close()


# ---- /metrics: the Prometheus text exposition format (0.0.4) -------------

class MetricsFormatError(ValueError):
    pass


_SAMPLE_RE = None


class Metrics:
    """A parsed /metrics page. parse() checks the format as a scraper would:
    every line is "# HELP name text", "# TYPE name counter|gauge|...", or a
    sample "name{label="value",...} number"; a sample's family has a TYPE
    line before it; a series appears once; a counter is never negative.
    Anything else raises MetricsFormatError naming the line."""

    def __init__(self):
        self.types = {}    # family name -> type
        self.helps = {}    # family name -> help text
        self.samples = {}  # (name, ((label, value), ...) sorted) -> float

    @classmethod
    def parse(cls, text):
        import re
        global _SAMPLE_RE
        if _SAMPLE_RE is None:
            _SAMPLE_RE = re.compile(
                r'^([a-zA-Z_:][a-zA-Z0-9_:]*)'
                r'(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})?'
                r' (\S+)(?: (-?\d+))?$')
        label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')
        m = cls()
        for n, line in enumerate(text.split("\n"), 1):
            if line == "":
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] == "TYPE":
                    if len(parts) != 4 or parts[3] not in ("counter", "gauge", "histogram",
                                                           "summary", "untyped"):
                        raise MetricsFormatError("line %d: bad TYPE line %r" % (n, line))
                    if parts[2] in m.types:
                        raise MetricsFormatError("line %d: second TYPE for %s" % (n, parts[2]))
                    m.types[parts[2]] = parts[3]
                elif len(parts) >= 3 and parts[1] == "HELP":
                    m.helps[parts[2]] = parts[3] if len(parts) == 4 else ""
                continue
            g = _SAMPLE_RE.match(line)
            if g is None:
                raise MetricsFormatError("line %d: not a sample: %r" % (n, line))
            name, labels, value = g.group(1), g.group(2), g.group(3)
            family = name
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and name[:-len(suffix)] in m.types:
                    family = name[:-len(suffix)]
            if family not in m.types:
                raise MetricsFormatError("line %d: sample of %s before its TYPE line" % (n, name))
            try:
                v = float(value)
            except ValueError:
                raise MetricsFormatError("line %d: value %r is not a number" % (n, value))
            key = (name, tuple(sorted(label_re.findall(labels or ""))))
            if key in m.samples:
                raise MetricsFormatError("line %d: series %s%s repeated" % (n, name, key[1]))
            if m.types[family] == "counter" and v < 0:
                raise MetricsFormatError("line %d: counter %s is negative" % (n, name))
            m.samples[key] = v
        return m

    def series(self, name):
        """{labels dict as a sorted tuple: value} of one metric."""
        return {k[1]: v for k, v in self.samples.items() if k[0] == name}

    def value(self, name, **labels):
        """One series' value; KeyError naming it when it is absent."""
        key = (name, tuple(sorted(labels.items())))
        if key not in self.samples:
            raise KeyError("no series %s%s in /metrics" % (name, labels or ""))
        return self.samples[key]

    def sum(self, name):
        """The sum of a metric over its series (e.g. over cores); KeyError
        when the metric has none."""
        s = self.series(name)
        if not s:
            raise KeyError("metric %s not in /metrics" % name)
        return sum(s.values())


def get_metrics(port, source=None, timeout=5.0):
    """GET /metrics over plain HTTP, parsed (Metrics); raises on a status
    other than 200 or a malformed page."""
    st, h, body, _c = http_request(port, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
                                   timeout=timeout, wait_close=2.0, source=source)
    if st != 200:
        raise RuntimeError("/metrics answered %s" % st)
    ctype = h.get("content-type", "")
    if not ctype.startswith("text/plain"):
        raise MetricsFormatError("/metrics Content-Type %r, want text/plain" % ctype)
    return Metrics.parse(body.decode("utf-8"))


# ---- raw WebSocket client -----------------------------------------------------

def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def upgrade_request(path, key=None, extra=b"", host="127.0.0.1"):
    key = key or ws_key()
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\n" % (path, host, key)).encode() + extra + b"\r\n", key


class HandshakeError(Exception):
    pass


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None,
                 length=None, len_form=None):
    """Build a client frame byte by byte.

    length overrides the advertised payload length (payload bytes are still
    the ones given); len_form forces the length encoding: 7, 16 or 64.
    """
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if len_form is None:
        len_form = 7 if n <= 125 else (16 if n <= 0xFFFF else 64)
    if len_form == 7:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif len_form == 16:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return hdr + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return hdr + key + xor_mask(payload, key)


def xor_mask(data, key):
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload")

    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode = fin, rsv, opcode
        self.masked, self.payload = masked, payload

    def close_code(self):
        if len(self.payload) >= 2:
            return struct.unpack("!H", self.payload[:2])[0]
        return None

    def __repr__(self):
        p = self.payload
        shown = p[:40].hex() + ("..(%d B)" % len(p) if len(p) > 40 else "")
        if self.opcode == OP_CLOSE:
            shown = "code=%s reason=%r" % (self.close_code(), p[2:60])
        return "Frame(op=%d fin=%d rsv=%d %s)" % (self.opcode, self.fin, self.rsv, shown)


class Eof(Exception):
    """The peer closed TCP."""


class WsConn:
    """A raw client connection: handshake, then byte-level send and a frame
    reader that keeps unread bytes between calls."""

    def __init__(self, port, path="/echo", timeout=5.0, extra_headers=b"", source=None,
                 rcvbuf=None):
        self.sock = connect(port, timeout, source=source, rcvbuf=rcvbuf)
        self.buf = b""
        self.eof = False
        req, key = upgrade_request(path, extra=extra_headers)
        self.sock.sendall(req)
        deadline = time.monotonic() + timeout
        while True:
            head = parse_response_head(self.buf)
            if head is not None:
                break
            chunk = self._recv(deadline)
            if not chunk:
                raise HandshakeError("closed during handshake (%r)" % self.buf[:200])
            self.buf += chunk
        status, line, headers, rest = head
        if status != 101:
            self.sock.close()
            raise HandshakeError("status line %r" % line)
        if headers.get("sec-websocket-accept") != ws_accept(key):
            self.sock.close()
            raise HandshakeError("bad Sec-WebSocket-Accept %r" %
                                 headers.get("sec-websocket-accept"))
        self.buf = rest

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)
        try:
            return self.sock.recv(262144)
        except ConnectionResetError:
            return b""

    SEND_TIMEOUT = 10.0  # reads leave their own (short) timeout on the socket

    def send(self, data):
        self.sock.settimeout(self.SEND_TIMEOUT)
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.send(encode_frame(opcode, payload, **kw))

    def send_chunked(self, data, chunk, pause=0.0):
        self.sock.settimeout(self.SEND_TIMEOUT)
        for i in range(0, len(data), chunk):
            self.sock.sendall(data[i:i + chunk])
            if pause:
                time.sleep(pause)

    def _need(self, n, deadline):
        while len(self.buf) < n:
            chunk = self._recv(deadline)
            if not chunk:
                self.eof = True
                raise Eof()
            self.buf += chunk

    def read_frame(self, timeout=5.0):
        """Next frame; raises Eof on TCP close, socket.timeout on timeout."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._need(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            self._need(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
        masked = bool(b1 & 0x80)
        key = None
        if masked:
            self._need(pos + 4, deadline)
            key = self.buf[pos:pos + 4]
            pos += 4
        self._need(pos + n, deadline)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        if masked:
            payload = xor_mask(payload, key)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, masked, payload)

    def read_message(self, timeout=5.0):
        """Next data message, reassembled: (opcode, payload, control frames
        seen in between). Returns a close Frame as (OP_CLOSE, frame, ctl)."""
        deadline = time.monotonic() + timeout
        ctl = []
        opcode, parts = None, []
        while True:
            f = self.read_frame(max(0.01, deadline - time.monotonic()))
            if f.opcode == OP_CLOSE:
                return OP_CLOSE, f, ctl
            if f.opcode in (OP_PING, OP_PONG):
                ctl.append(f)
                continue
            if opcode is None:
                opcode = f.opcode
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts), ctl

    def wait_eof(self, timeout=5.0):
        """True if the peer closes TCP within timeout (data before is dropped)."""
        if self.eof:
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                chunk = self._recv(deadline)
            except socket.timeout:
                return False
            except OSError:
                return True
            if not chunk:
                self.eof = True
                return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
