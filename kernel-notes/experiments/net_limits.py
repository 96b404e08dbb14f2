#!/usr/bin/python3
"""Small loopback measurements for kernel-notes/tuning.md (stdlib only).

Every case runs in a fresh network namespace of its own (unshare -n, as
root), so the per-namespace sysctls it sets (net.core.somaxconn,
net.ipv4.ip_local_port_range, net.ipv4.tcp_wmem, ...) never touch the host's,
and its counters (/proc/net/netstat, /proc/net/sockstat "inuse") are its own.
Each case is bounded (a few thousand sockets, a few seconds) and prints what
it measured.

  net_limits.py backlog [--somaxconn N] [--backlog B] [--clients C]
      a listener that never accepts; C clients connect; how many complete
      the handshake (= the accept queue), ListenOverflows/ListenDrops.
  net_limits.py ports [--range LO HI]
      connect until EADDRNOTAVAIL to 127.0.0.1:A, then to :B, then to
      127.0.0.2:A: how many connections each destination got.
  net_limits.py tw [--reuse 0|1|2] [--ports N]
      a port range of N ports; N connections to one destination closed by
      the client first (TIME-WAIT on the client's side); then new
      connections to the same destination at once and after 1.1 s.
  net_limits.py idle [--pairs N]
      N idle connected pairs: kernel memory (Slab, sockstat "mem") per socket.
  net_limits.py stuck [--pairs N] [--wmem "MIN DEF MAX"]
      N pairs whose reader never reads: the writer writes until EAGAIN;
      bytes stuck in the writer's send queue (SIOCOUTQ) and in total.
"""
import argparse
import errno
import fcntl
import os
import select
import socket
import struct
import subprocess
import sys
import time

SIOCOUTQ = 0x5411  # TIOCOUTQ: bytes in the send queue not yet acked


def sysctl_path(name):
    return "/proc/sys/" + name.replace(".", "/")


def sysctl_set(name, value):
    with open(sysctl_path(name), "w") as f:
        f.write(value)


def sysctl_get(name):
    with open(sysctl_path(name)) as f:
        return " ".join(f.read().split())


def netstat_counter(name):
    """TcpExt counter from /proc/net/netstat (per network namespace)."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for i in range(0, len(lines) - 1, 2):
        keys, vals = lines[i].split(), lines[i + 1].split()
        if keys[0] == "TcpExt:" and name in keys:
            return int(vals[keys.index(name)])
    return 0


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def sockstat_tcp():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                p = line.split()[1:]
                return {p[i]: int(p[i + 1]) for i in range(0, len(p), 2)}
    return {}


def in_netns():
    """Re-exec this script in a new network namespace with lo up."""
    if os.environ.get("NET_LIMITS_NETNS") == "1":
        return
    if os.geteuid() != 0:
        sys.exit("net_limits.py: needs root (it runs each case in its own "
                 "network namespace with unshare -n)")
    env = dict(os.environ, NET_LIMITS_NETNS="1")
    cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"',
           "sh", sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    sys.exit(subprocess.call(cmd, env=env))


def raise_nofile(n):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def case_backlog(a):
    sysctl_set("net.core.somaxconn", str(a.somaxconn))
    raise_nofile(a.clients + 64)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(a.backlog)
    port = ls.getsockname()[1]
    ov0, dr0 = netstat_counter("ListenOverflows"), netstat_counter("ListenDrops")
    clients = []
    for _ in range(a.clients):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        clients.append(c)
    time.sleep(a.wait)
    done = 0
    poller = select.poll()
    for c in clients:
        poller.register(c, select.POLLOUT)
    for fd, ev in poller.poll(0):
        s = socket.socket(fileno=fd)
        if ev & select.POLLOUT and \
           s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            done += 1
        s.detach()
    ss = subprocess.run(["ss", "-ltnH", "sport", "= :%d" % port],
                        capture_output=True, text=True).stdout.split()
    print("somaxconn %d, listen(fd, %d), %d clients, waited %.1f s"
          % (a.somaxconn, a.backlog, a.clients, a.wait))
    print("  connected (in the accept queue): %d; ss Recv-Q/Send-Q: %s/%s"
          % (done, ss[1] if len(ss) > 2 else "?", ss[2] if len(ss) > 2 else "?"))
    print("  still in SYN-SENT (SYN dropped, retrying): %d" % (a.clients - done))
    print("  TcpExtListenOverflows +%d, TcpExtListenDrops +%d"
          % (netstat_counter("ListenOverflows") - ov0,
             netstat_counter("ListenDrops") - dr0))


def case_ports(a):
    sysctl_set("net.ipv4.ip_local_port_range", "%d %d" % (a.range[0], a.range[1]))
    n = a.range[1] - a.range[0] + 1
    raise_nofile(8 * n + 64)
    listeners = []
    for _ in range(2):
        ls = socket.socket()
        ls.bind(("0.0.0.0", 0))
        ls.listen(4 * n)
        listeners.append(ls)
    pa, pb = (ls.getsockname()[1] for ls in listeners)
    keep = []

    def fill(addr):
        count = 0
        while True:
            c = socket.socket()
            try:
                c.connect(addr)
            except OSError as e:
                c.close()
                return count, errno.errorcode.get(e.errno, str(e.errno))
            keep.append(c)
            count += 1
            if count > 4 * n:
                return count, "(stopped)"

    print("ip_local_port_range %d %d (%d ports)" % (a.range[0], a.range[1], n))
    for label, addr in (("127.0.0.1:A", ("127.0.0.1", pa)),
                        ("127.0.0.1:B", ("127.0.0.1", pb)),
                        ("127.0.0.2:A", ("127.0.0.2", pa))):
        count, err = fill(addr)
        print("  to %s: %d connections, then %s" % (label, count, err))
    print("  (the two listeners' own ports, bound with port 0, came from the "
          "same range)")
    print("  total client sockets: %d" % len(keep))


def case_tw(a):
    sysctl_set("net.ipv4.ip_local_port_range", "41000 %d" % (41000 + a.ports - 1))
    sysctl_set("net.ipv4.tcp_tw_reuse", str(a.reuse))
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))  # from the range too: one port less
    ls.listen(4096)
    addr = ls.getsockname()
    made = 0
    for _ in range(a.ports):
        c = socket.socket()
        try:
            c.connect(addr)
        except OSError:
            break
        s, _ = ls.accept()
        c.close()            # the client closes first: TIME-WAIT is its own
        s.recv(1)
        s.close()
        made += 1
    time.sleep(0.2)
    tw = sockstat_tcp().get("tw", 0)

    def attempt(n):
        ok, err, keep = 0, "", []
        for _ in range(n):
            c = socket.socket()
            try:
                c.connect(addr)
                keep.append(c)
                ok += 1
            except OSError as e:
                err = errno.errorcode.get(e.errno, str(e.errno))
                c.close()
                break
        for c in keep:
            c.close()
        return ok, err

    now_ok, now_err = attempt(10)
    time.sleep(1.1)
    late_ok, late_err = attempt(10)
    print("tcp_tw_reuse %d, %d ports; %d connections opened and closed by the "
          "client; TIME-WAIT sockets: %d" % (a.reuse, a.ports, made, tw))
    print("  10 new connections at once: %d made%s" % (now_ok, ", then " + now_err if now_err else ""))
    print("  10 new connections 1.1 s later: %d made%s" % (late_ok, ", then " + late_err if late_err else ""))


def make_pairs(n):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4096)
    addr = ls.getsockname()
    pairs = []
    for _ in range(n):
        c = socket.create_connection(addr)
        s, _ = ls.accept()
        pairs.append((c, s))
    return ls, pairs


def case_idle(a):
    raise_nofile(2 * a.pairs + 64)
    slab0, mem0, nr0 = meminfo("Slab"), sockstat_tcp(), int(sysctl_get("fs.file-nr").split()[0])
    ls, pairs = make_pairs(a.pairs)
    time.sleep(0.5)
    slab1, mem1, nr1 = meminfo("Slab"), sockstat_tcp(), int(sysctl_get("fs.file-nr").split()[0])
    socks = 2 * a.pairs
    print("%d idle connected pairs (%d sockets) on loopback" % (a.pairs, socks))
    print("  Slab +%.1f MiB = %d bytes per socket (host-wide figure: other "
          "processes add noise)" % ((slab1 - slab0) / 2**20, (slab1 - slab0) // socks))
    print("  fs.file-nr (open files, host-wide) +%d" % (nr1 - nr0))
    print("  sockstat TCP inuse %d -> %d, mem (pages, host-wide) %d -> %d"
          % (mem0.get("inuse", 0), mem1.get("inuse", 0),
             mem0.get("mem", 0), mem1.get("mem", 0)))


def case_stuck(a):
    if a.wmem:
        sysctl_set("net.ipv4.tcp_wmem", a.wmem)
    raise_nofile(2 * a.pairs + 64)
    mem0 = sockstat_tcp().get("mem", 0)
    ls, pairs = make_pairs(a.pairs)
    chunk = b"x" * 65536
    t0 = time.time()
    for c, s in pairs:
        c.setblocking(False)
        while True:
            try:
                c.send(chunk)
            except BlockingIOError:
                # the window may still open a little: a second try after the
                # receive queue settles
                time.sleep(0.002)
                try:
                    c.send(chunk)
                    continue
                except BlockingIOError:
                    break
    took = time.time() - t0
    time.sleep(0.3)
    outq = [struct.unpack("i", fcntl.ioctl(c.fileno(), SIOCOUTQ, b"\0" * 4))[0]
            for c, _ in pairs]
    inq = [struct.unpack("i", fcntl.ioctl(s.fileno(), 0x541B, b"\0" * 4))[0]
           for _, s in pairs]  # FIONREAD
    sndbuf = pairs[0][0].getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    mem1 = sockstat_tcp().get("mem", 0)
    outq.sort()
    print("tcp_wmem %s, tcp_rmem %s; %d pairs, readers never read (%.1f s)"
          % (sysctl_get("net.ipv4.tcp_wmem"), sysctl_get("net.ipv4.tcp_rmem"),
             a.pairs, took))
    print("  writer's send queue (SIOCOUTQ): median %.2f MiB, max %.2f MiB; "
          "SO_SNDBUF %.2f MiB"
          % (outq[len(outq) // 2] / 2**20, outq[-1] / 2**20, sndbuf / 2**20))
    print("  reader's receive queue (FIONREAD): median %.2f MiB"
          % (sorted(inq)[len(inq) // 2] / 2**20))
    print("  sockstat TCP mem +%d pages (%.1f MiB, host-wide) = %.2f MiB per pair"
          % (mem1 - mem0, (mem1 - mem0) * 4096 / 2**20,
             (mem1 - mem0) * 4096 / 2**20 / a.pairs))
    # tcp_mem is global: a non-initial namespace has no such file.
    print("  (tcp_mem is host-wide: see /proc/sys/net/ipv4/tcp_mem outside "
          "the namespace)")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="case", required=True)
    b = sub.add_parser("backlog")
    b.add_argument("--somaxconn", type=int, default=4096)
    b.add_argument("--backlog", type=int, default=4096)
    b.add_argument("--clients", type=int, default=5000)
    b.add_argument("--wait", type=float, default=1.5)
    q = sub.add_parser("ports")
    q.add_argument("--range", type=int, nargs=2, default=[40000, 40999])
    t = sub.add_parser("tw")
    t.add_argument("--reuse", type=int, default=0)
    t.add_argument("--ports", type=int, default=100)
    i = sub.add_parser("idle")
    i.add_argument("--pairs", type=int, default=5000)
    s = sub.add_parser("stuck")
    s.add_argument("--pairs", type=int, default=50)
    s.add_argument("--wmem", default="")
    a = p.parse_args()
    in_netns()
    {"backlog": case_backlog, "ports": case_ports, "idle": case_idle, "tw": case_tw,
     "stuck": case_stuck}[a.case](a)


if __name__ == "__main__":
    main()
