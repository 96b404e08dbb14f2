#!/usr/bin/python3
"""The broker's --cluster and --node-name (kernel-notes/cluster.md): what a
node says about its NATS connection in the log and /metrics, against a
nats-server with JetStream that this suite starts on a temporary folder and
a loopback port, stops with SIGKILL and starts again.

Cases: bad values exit 2 naming the flag; a broker started before NATS
serves and says "connecting"; it connects once NATS is there (default node
name hostname:port, the chat stream made); a second node with --node-name;
NATS killed: both say "reconnecting", counted; NATS back: connected again,
counted; a node SIGTERMed while another node's heartbeats flood in exits 0
with nothing left over (under the sanitizers: no leak of a message posted
to a core whose loop had ended); --cluster-replicas 3 on a lone server is
refused and logged; every node exits 0 on SIGTERM.

Usage: test_cluster_broker.py <ringroom binary>
"""

import asyncio
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import rrtest  # noqa: E402

LABEL = "cluster_broker"
# What must happen (a connect, a reconnect, a state change) within this: a
# passing run never waits it out; long because the machine is shared and the
# sanitizer build is several times slower. libnats retries every 250 ms.
EVENTUALLY = 30.0


class Nats:
    """nats-server -js on 127.0.0.1:<port>, its store in a temp folder."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ringroom-nats-")
        self.port = rrtest.free_port()
        self.proc = None

    def start(self):
        log = open(os.path.join(self.dir, "nats.log"), "ab")
        self.proc = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p",
                                      str(self.port), "-sd", os.path.join(self.dir, "js")],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + EVENTUALLY
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not listen on %d" % self.port)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def url(self):
        return "nats://127.0.0.1:%d" % self.port

    def client(self):
        """A plain NATS client connection (INFO read, CONNECT sent): for
        publishing what no ringroom node would."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=EVENTUALLY)
        s.recv(4096)  # INFO
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        return s

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_metrics(broker, pred):
    """Poll /metrics until pred(m) is true; the last Metrics, or None."""
    deadline = time.monotonic() + EVENTUALLY
    m = None
    while time.monotonic() < deadline:
        m = rrtest.get_metrics(broker.port)
        if pred(m):
            return m
        time.sleep(0.05)
    return None


def run_nodes(label, names, args_of, run, api_key=None):
    """The frame of the three-node suites: skip without nats-server, start
    it (JetStream on a temporary folder) and one broker per name with
    --cluster and --node-name plus args_of(name, keyfile) (keyfile: a file
    holding api_key, or None), wait until every node is on NATS, then
    run(report, brokers by name, nats) (a coroutine function); stop and
    report. Returns the exit status."""
    binary = rrtest.load_binary_arg(label)
    if shutil.which("nats-server") is None:
        rrtest.skip_suite(label, "nats-server is not installed (apt-get install nats-server)")
    report = rrtest.Report(label)
    nats = Nats()
    brokers = []
    keyfile = None
    if api_key:
        keyfile = os.path.join(nats.dir, "api-keys")
        with open(keyfile, "w") as f:
            f.write(api_key + "\n")
    try:
        nats.start()
        by_name = {}
        for n in names:
            b = rrtest.Broker(binary, ["--cluster", nats.url(), "--node-name", n] +
                              list(args_of(n, keyfile)), name=n)
            brokers.append(b)
            b.start()
            by_name[n] = b
        for b in brokers:
            if wait_metrics(b, lambda m: m.value("ringroom_cluster_up") == 1) is None:
                raise RuntimeError("%s did not connect to NATS" % b.name)
        asyncio.run(run(report, by_name, nats))
    except RuntimeError as e:
        report.fail("start", str(e))
    status = rrtest.finish_suite(report, brokers)
    nats.cleanup()
    return status


def state_is(name):
    def pred(m):
        return m.value("ringroom_cluster_state", state=name) == 1
    return pred


def wait_log(broker, text):
    deadline = time.monotonic() + EVENTUALLY
    while time.monotonic() < deadline:
        if text in broker.stderr_text():
            return True
        time.sleep(0.05)
    return False


class HeartbeatFlood:
    """A thread publishing a made-up node's heartbeats on ringroom.nodes as
    fast as a raw NATS connection takes them (the envelope of src/rt/nodes.c:
    version 1, the name's length, the name, a boot id): every core of every
    node subscribes to that subject, so each core keeps getting messages."""

    NAME = b"flood"

    def __init__(self, nats):
        self.sock = nats.client()
        beat = bytes([1, len(self.NAME)]) + self.NAME + struct.pack("<Q", 0x5eed)
        self.batch = (b"PUB ringroom.nodes %d\r\n%s\r\n" % (len(beat), beat)) * 500
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            while not self.stop.is_set():
                self.sock.sendall(self.batch)
                self.sent += 500
        except OSError:
            pass

    def close(self):
        self.stop.set()
        self.thread.join(EVENTUALLY)
        self.sock.close()


def bad_flags(binary):
    d = tempfile.mkdtemp(prefix="ringroom-cluster-flags-")
    try:
        for args, want in ((["--cluster", "http://127.0.0.1:4222"], "--cluster"),
                           (["--cluster", "nats://127.0.0.1"], "--cluster"),
                           (["--node-name", "a"], "--node-name needs --cluster"),
                           (["--cluster-replicas", "3"], "--cluster-replicas needs --cluster"),
                           (["--cluster", "nats://127.0.0.1:4222", "--cluster-replicas", "6"],
                            "--cluster-replicas")):
            r = subprocess.run([binary, "--port", str(rrtest.free_port()), "--bind",
                                "127.0.0.1", "--data-dir", d] + args,
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            err = r.stderr.decode("utf-8", "replace")
            if r.returncode != 2 or want not in err:
                return "%s: exit %d, stderr %r (want 2 and %r)" % (args, r.returncode,
                                                                    err[-300:], want)
        return None
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    binary = rrtest.load_binary_arg(LABEL)
    if shutil.which("nats-server") is None:
        rrtest.skip_suite(LABEL, "nats-server is not installed (apt-get install nats-server)")
    report = rrtest.Report(LABEL)
    nats = Nats()
    brokers = []
    try:
        report.run("bad --cluster / --node-name / --cluster-replicas values exit 2 naming "
                   "the flag", bad_flags,
                   binary)

        a = rrtest.Broker(binary, ["--cluster", nats.url()], name="node-a")
        brokers.append(a)
        a.start()

        def connecting():
            m = wait_metrics(a, state_is("connecting"))
            if m is None:
                return "state is not connecting before NATS runs"
            if m.value("ringroom_cluster_up") != 0:
                return "ringroom_cluster_up %s, want 0" % m.value("ringroom_cluster_up")
            if not wait_log(a, "no NATS server answers at %s" % nats.url()):
                return "the log does not say NATS is not there"
            return None
        report.run("a node started before NATS serves and says connecting", connecting)

        nats.start()

        def connected():
            m = wait_metrics(a, lambda m: m.value("ringroom_cluster_up") == 1)
            if m is None:
                return "not connected within %.0fs of NATS starting" % EVENTUALLY
            if m.value("ringroom_cluster_state", state="connected") != 1:
                return "up but state is not connected"
            node = "%s:%d" % (socket.gethostname(), a.port)
            if not wait_log(a, "connected to %s as %s" % (nats.url(), node)):
                return "the log does not name the server and the node %s" % node
            if not wait_log(a, "created JetStream stream RINGROOM_CHAT"):
                return "the chat stream was not made"
            if m.value("ringroom_cluster_subscriptions") != 0:
                return "subscriptions without rooms"
            for c in ("0", "1"):
                if m.value("ringroom_cluster_messages_out_total", core=c) != 0:
                    return "messages out on core %s without rooms" % c
            return None
        report.run("it connects once NATS is there (node hostname:port, stream made)",
                   connected)

        b = rrtest.Broker(binary, ["--cluster", "nats://127.0.0.1:1,%s" % nats.url(),
                                   "--node-name", "edge-1"], name="node-b")
        brokers.append(b)
        b.start()

        def named():
            if wait_metrics(b, lambda m: m.value("ringroom_cluster_up") == 1) is None:
                return "node-b not connected (second URL of two)"
            if not wait_log(b, "as edge-1"):
                return "the log does not use --node-name"
            return None
        report.run("--node-name names the node; a dead first URL is passed over", named)

        nats.kill()

        def down():
            for n in (a, b):
                m = wait_metrics(n, state_is("reconnecting"))
                if m is None:
                    return "%s: not reconnecting after NATS died" % n.name
                if m.value("ringroom_cluster_up") != 0:
                    return "%s: still up" % n.name
                if m.value("ringroom_cluster_disconnects_total") != 1:
                    return "%s: disconnects %s, want 1" % (
                        n.name, m.value("ringroom_cluster_disconnects_total"))
                if not wait_log(n, "lost the connection to NATS"):
                    return "%s: the log does not say the connection was lost" % n.name
            st, _h, _b, _c = rrtest.http_request(a.port, b"GET /healthz HTTP/1.1\r\n"
                                                 b"Host: t\r\n\r\n")
            if st != 200:
                return "/healthz %s while NATS is down (the node still serves)" % st
            return None
        report.run("NATS killed: the nodes say reconnecting and keep serving", down)

        nats.start()

        def back():
            for n in (a, b):
                m = wait_metrics(n, lambda m: m.value("ringroom_cluster_up") == 1)
                if m is None:
                    return "%s: not connected again" % n.name
                if m.value("ringroom_cluster_reconnects_total") != 1:
                    return "%s: reconnects %s, want 1" % (
                        n.name, m.value("ringroom_cluster_reconnects_total"))
                if not wait_log(n, "reconnected to %s" % nats.url()):
                    return "%s: the log does not say it reconnected" % n.name
            return None
        report.run("NATS back: connected again, counted, logged", back)

        f = rrtest.Broker(binary, ["--cluster", nats.url(), "--node-name", "flooded"],
                          name="node-f")
        brokers.append(f)
        f.start()

        def stop_under_flood():
            if wait_metrics(f, lambda m: m.value("ringroom_cluster_up") == 1) is None:
                return "node-f did not connect"
            flood = HeartbeatFlood(nats)
            try:
                # its cores take the flood's beats, then it is told to stop
                # while they keep coming
                if wait_metrics(f, lambda m: m.value("ringroom_cluster_heartbeats_in_total")
                                > 2000) is None:
                    return "node-f's cores do not get the flood's heartbeats"
                f.signal(signal.SIGTERM)
                st = f.wait(EVENTUALLY)
                if st != 0:
                    return "exit status %s after SIGTERM" % st
                bad = f.san_problems()
                if bad:
                    return bad[0]
                if "core stopped" not in f.stderr_text():
                    return "node-f did not stop its cores"
            finally:
                flood.close()
            return None
        report.run("SIGTERM while another node's heartbeats flood in: exits 0, nothing left "
                   "on the cores' rings", stop_under_flood)

        # --cluster-replicas reaches the stream's config: a lone nats-server
        # cannot keep 3 copies and refuses the stream, and the node says so
        lone = Nats()
        try:
            lone.start()
            c = rrtest.Broker(binary, ["--cluster", lone.url(), "--node-name", "r3",
                                       "--cluster-replicas", "3"], name="node-c")
            brokers.append(c)
            c.start()

            def replicas():
                if wait_metrics(c, lambda m: m.value("ringroom_cluster_up") == 1) is None:
                    return "node-c did not connect"
                if not wait_log(c, "JetStream stream RINGROOM_CHAT: "):
                    return "a lone server took a stream of 3 replicas, or the log is silent"
                if "created JetStream stream RINGROOM_CHAT" in c.stderr_text():
                    return "the stream was created"
                return None
            report.run("--cluster-replicas 3 on a lone nats-server: the stream is refused, "
                       "logged", replicas)
        finally:
            lone.cleanup()
    except RuntimeError as e:
        report.fail("start", str(e))
    status = rrtest.finish_suite(report, brokers)
    nats.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
