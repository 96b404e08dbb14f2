"""Watchers for the hostile-client battery (hostile.py).

A Target is one broker under attack plus what watches it for the whole of
its life: a thread sampling the broker's VmRSS every 50 ms (so a case can ask
for its peak over a time window), a well-behaved /echo client in a separate
process (hostile_probe.py) whose round trips a case can read back over the
same window, and /metrics reads (sent from a loopback address of their own,
so per-IP caps on 127.0.0.1 are not disturbed).

Also: a lenient HTTP exchange for hostile requests (the broker may answer
and close while the request is still being sent) and small socket helpers.
Standard library plus tests/integration/rrtest.py.
"""

import os
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RRTEST_DIR = os.path.join(HERE, "..", "integration")
sys.path.insert(0, RRTEST_DIR)
import rrtest  # noqa: E402

METRICS_SOURCE = "127.0.0.4"


def read_rss_kib(pid):
    """VmRSS of pid in KiB, or None once the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def read_cpu_ms(pid):
    """utime + stime of pid (all threads) in ms, or None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class RssSampler(threading.Thread):
    """Samples VmRSS every `period` seconds into (t, kib) pairs, and the
    broker's CPU time into (t, ms) pairs (to tell a broker that is busy from
    a machine that is)."""

    def __init__(self, pid, period=0.05):
        super().__init__(daemon=True)
        self.pid = pid
        self.period = period
        self.samples = []
        self.cpu = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            kib = read_rss_kib(self.pid)
            cpu = read_cpu_ms(self.pid)
            if kib is None or cpu is None:
                return
            t = time.monotonic()
            with self.lock:
                self.samples.append((t, kib))
                self.cpu.append((t, cpu))
            self.stopping.wait(self.period)

    def now(self):
        kib = read_rss_kib(self.pid)
        if kib is not None:
            with self.lock:
                self.samples.append((time.monotonic(), kib))
        return kib

    def cpu_ms(self, t0, t1):
        """Broker CPU time spent between the samples nearest t0 and t1."""
        with self.lock:
            inside = [c for t, c in self.cpu if t0 <= t <= t1]
        return round(inside[-1] - inside[0], 1) if len(inside) >= 2 else None

    def peak(self, t0, t1):
        with self.lock:
            vals = [k for t, k in self.samples if t0 <= t <= t1]
        return max(vals) if vals else None

    def stop(self):
        self.stopping.set()


class Probe:
    """hostile_probe.py in its own process; its lines are collected here."""

    def __init__(self, port, source=""):
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(HERE, "hostile_probe.py"), str(port),
             source, RRTEST_DIR],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.rtts = []      # (t, ms)
        self.errors = []    # (t, text)
        self.connects = []  # (t, ms)
        self.late = []      # (t, ms) the probe's own wake-up lateness
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            parts = line.split(" ", 2)
            with self.lock:
                try:
                    if parts[0] == "R":
                        self.rtts.append((float(parts[1]), float(parts[2])))
                    elif parts[0] == "L":
                        self.late.append((float(parts[1]), float(parts[2])))
                    elif parts[0] == "C":
                        self.connects.append((float(parts[1]), float(parts[2])))
                    elif parts[0] == "E":
                        self.errors.append((float(parts[1]), parts[2] if len(parts) > 2 else ""))
                    else:
                        self.errors.append((time.monotonic(), "probe said: " + line))
                except (IndexError, ValueError):
                    self.errors.append((time.monotonic(), "probe said: " + line))

    def wait_connected(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.rtts:
                    return True
            time.sleep(0.05)
        return False

    def window(self, t0, t1):
        """(rtts in ms, errors) for round trips started within [t0, t1]."""
        with self.lock:
            rtts = [ms for t, ms in self.rtts if t0 <= t <= t1]
            errs = [e for t, e in self.errors if t0 <= t <= t1]
        return rtts, errs

    def slow(self, t0, t1, over_ms):
        """[(seconds after t0, ms)] for round trips slower than over_ms."""
        with self.lock:
            return [(round(t - t0, 2), ms) for t, ms in self.rtts
                    if t0 <= t <= t1 and ms > over_ms]

    def lateness(self, t0, t1):
        """[(seconds after t0, ms)] the probe itself woke late."""
        with self.lock:
            return [(round(t - t0, 2), ms) for t, ms in self.late if t0 <= t <= t1]

    def stop(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=2)


def p99(values):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(0.99 * len(v)))]


class Target:
    """A broker under attack, its RSS sampler and its probe client."""

    def __init__(self, binary, args, name, probe_source=""):
        self.broker = rrtest.Broker(binary, args, name=name)
        self.probe_source = probe_source
        self.rss = None
        self.probe = None
        self.base_conns = None

    @property
    def port(self):
        return self.broker.port

    def start(self):
        self.broker.start()
        self.rss = RssSampler(self.broker.proc.pid)
        self.rss.start()
        self.probe = Probe(self.port, self.probe_source)
        if not self.probe.wait_connected():
            raise RuntimeError("%s: probe client never got an echo (%s)" % (
                self.broker.name, self.probe.errors[:3]))
        time.sleep(0.2)
        self.base_conns = self.connections()
        return self

    def warm_up(self, msg_bytes, conns=8, per_round=16 << 20, rounds=12):
        """Push data through until RSS stops growing, so later baselines
        include the broker's fixed pools. The receive buffers (a provided
        buffer ring per core, 1024 x 16 KiB by default) are mmap'd lazily and
        cycled in ring order: each page becomes resident the first time a
        receive lands on it and stays so. Without this a case that merely
        moves data would "grow" RSS by up to that ring size. Each connection
        sits alone in its own /raw/ room, so nothing is sent back.
        Returns the RSS (KiB) after each round, the first before any."""
        cs = [rrtest.WsConn(self.port, "/raw/hostile-warm-%d-%d" % (os.getpid(), i))
              for i in range(conns)]
        frame = rrtest.encode_frame(rrtest.OP_BINARY, b"w" * msg_bytes,
                                    mask_key=b"\x11\x22\x33\x44")
        per_conn = max(1, per_round // conns // len(frame))
        history = [self.rss.now()]
        try:
            for _r in range(rounds):
                for c in cs:
                    c.sock.settimeout(30)
                    c.sock.sendall(frame * per_conn)
                for c in cs:  # a pong proves the broker consumed the data
                    c.send_frame(rrtest.OP_PING, b"w")
                    while c.read_frame(timeout=30).opcode != rrtest.OP_PONG:
                        pass
                history.append(self.rss.now())
                if len(history) > 2 and history[-1] - history[-2] < 256:
                    break
        finally:
            for c in cs:
                try:
                    c.send_frame(rrtest.OP_CLOSE, rrtest.close_payload(1000))
                    c.wait_eof(3.0)
                except OSError:
                    pass
                c.close()
        return history

    def metrics(self):
        """{name or name{labels}: float} from GET /metrics."""
        st, _h, body, _c = rrtest.http_request(
            self.port, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", timeout=5.0,
            wait_close=2.0, source=METRICS_SOURCE)
        if st != 200:
            raise RuntimeError("/metrics answered %s" % st)
        # parsed (and so checked) as the Prometheus text format, then keyed
        # as before: name, or name{label="v",...} in the broker's order
        m = rrtest.Metrics.parse(body.decode("utf-8"))
        out = {}
        for (name, labels), v in m.samples.items():
            key = name if not labels else "%s{%s}" % (
                name, ",".join('%s="%s"' % kv for kv in labels))
            out[key] = v
        return out

    def connections(self):
        return int(self.metrics().get("ringroom_connections", -1))

    def stat_sum(self, name, label=None):
        """A per-core counter summed over cores (ringroom_<name>{core=..}),
        only the series whose labels hold `label` (e.g. 'code="1013"')."""
        m = self.metrics()
        pre = "ringroom_%s{" % name
        return sum(v for k, v in m.items()
                   if k.startswith(pre) and (label is None or label in k))

    def wait_connections(self, want, timeout):
        """Poll /metrics until ringroom_connections == want. Returns the last
        value seen."""
        deadline = time.monotonic() + timeout
        n = None
        while True:
            try:
                n = self.connections()
            except (OSError, RuntimeError):
                n = None
            if n == want or time.monotonic() >= deadline:
                return n
            time.sleep(0.1)

    def stop_watchers(self):
        if self.probe is not None:
            self.probe.stop()
        if self.rss is not None:
            self.rss.stop()


# ---- hostile HTTP ------------------------------------------------------------

def hostile_http(port, raw, timeout=5.0, source=None, chunk=65536):
    """Send raw (in a thread, tolerating a reset: the broker may reject before
    the request is complete) while reading the answer until EOF.

    Returns dict(status, headers, closed, data, send_error, reset)."""
    s = rrtest.connect(port, timeout, source=source)
    res = {"status": None, "headers": {}, "closed": False, "data": b"",
           "send_error": None, "reset": False}

    def sender():
        try:
            for i in range(0, len(raw), chunk):
                s.sendall(raw[i:i + chunk])
        except OSError as e:
            res["send_error"] = "%s" % e

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk_in = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                res["reset"] = True
                res["closed"] = True
                break
            if not chunk_in:
                res["closed"] = True
                break
            data += chunk_in
    finally:
        th.join(timeout=2)
        s.close()
    res["data"] = data
    head = rrtest.parse_response_head(data)
    if head is not None:
        res["status"], _line, res["headers"], _body = head
    return res


def rst_close(sock):
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
