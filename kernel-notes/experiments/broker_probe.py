"""Bounded loopback probe of a running ringroom, for kernel-notes/:

  /usr/bin/python3 broker_probe.py PORT enobufs   300 /echo clients send 4 KiB at once
  /usr/bin/python3 broker_probe.py PORT LABEL     50 members of /raw/kn, 200 messages

Prints what arrived and the change in the broker's /metrics counters
(recv_enobufs; frames_out and sends). Needs python3-websockets."""
import asyncio, sys, re, urllib.request, websockets
port = int(sys.argv[1]); mode = sys.argv[2]
def metrics():
    t = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    out = {}
    for l in t.splitlines():
        m = re.match(r'ringroom_(\w+)(\{[^}]*\})? ([0-9.e+]+)$', l)
        if m: out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(3))
    return out
async def echo_burst(n, size):
    conns = [await websockets.connect("ws://127.0.0.1:%d/echo" % port, max_size=None) for _ in range(n)]
    msg = "e" * size
    await asyncio.gather(*[c.send(msg) for c in conns])
    got = await asyncio.gather(*[asyncio.wait_for(c.recv(), 30) for c in conns])
    ok = sum(1 for g in got if g == msg)
    for c in conns: await c.close()
    return ok
async def fanout(members, msgs):
    subs = [await websockets.connect("ws://127.0.0.1:%d/raw/kn" % port, max_size=None) for _ in range(members)]
    pub = await websockets.connect("ws://127.0.0.1:%d/raw/kn" % port)
    await asyncio.sleep(0.3)
    for i in range(msgs): await pub.send("m%05d" % i)
    async def take(c):
        n = 0
        while n < msgs:
            await asyncio.wait_for(c.recv(), 30); n += 1
        return n
    got = await asyncio.gather(*[take(c) for c in subs])
    for c in subs + [pub]: await c.close()
    return sum(got)
async def main():
    if mode == "enobufs":
        b = metrics(); ok = await echo_burst(300, 4096); a = metrics()
        print("echo burst: %d/300 echoed intact; recv_enobufs +%d" % (ok, a.get("recv_enobufs",0)-b.get("recv_enobufs",0)))
    else:
        b = metrics(); got = await fanout(50, 200); a = metrics()
        fo = a["frames_out"]-b["frames_out"]; se = a["sends"]-b["sends"]
        print("%s fan-out: %d deliveries; frames_out +%d, sends +%d (%.1f frames per send)" % (mode, got, fo, se, fo/se))
asyncio.run(main())
