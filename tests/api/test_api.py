#!/usr/bin/python3
"""The backend API (/api/…): keys and JWT permissions, statuses, keep-alive
and pipelining, publishing into /raw/ and /chat/ rooms on their home core,
history, presence, kick, the room list and the key file's reload on SIGHUP;
room-name and field-type errors, 1,000 requests on one connection, deep
pipelining and large bodies, and a chat publish that survives a SIGKILL once
acked.

Usage: test_api.py <ringroom binary>
"""

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import rrtest  # noqa: E402
import websockets  # noqa: E402

KEY = "api-test-key-0123456789"
KEY2 = "api-test-key-second-abcdef"
SECRET = "api-test-secret-0123456789abcdef"
MINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "mint-token")


def mint(perms, sub="svc", name="svc"):
    r = subprocess.run(["/usr/bin/python3", MINT, "--secret",
                        SECRET, "--sub", sub, "--name", name, "--perms", ",".join(perms),
                        "--ttl", "600"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("mint-token: %s" % r.stderr)
    return r.stdout.strip()


def request(method, path, body=b"", auth=KEY, ctype="application/json", extra=b""):
    head = "%s %s HTTP/1.1\r\nHost: t\r\n" % (method, path)
    if auth:
        head += "Authorization: Bearer %s\r\n" % auth
    if body or method in ("POST",):
        head += "Content-Type: %s\r\nContent-Length: %d\r\n" % (ctype, len(body))
    return head.encode() + extra + b"\r\n" + body


def read_responses(sock, n, timeout=5.0):
    """n responses from a keep-alive connection: [(status, headers, body)]."""
    out, buf = [], b""
    deadline = time.monotonic() + timeout  # generous: a loaded machine
    sock.settimeout(0.2)
    while len(out) < n and time.monotonic() < deadline:
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            st, _line, hdrs, _ = rrtest.parse_response_head(buf[:end + 4])
            length = int(hdrs.get("content-length", "0"))
            if len(buf) < end + 4 + length:
                break
            out.append((st, hdrs, buf[end + 4:end + 4 + length]))
            buf = buf[end + 4 + length:]
        if len(out) >= n:
            break
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
    return out


def one(port, raw):
    s = rrtest.connect(port)
    s.sendall(raw)
    r = read_responses(s, 1)
    s.close()
    return r[0] if r else (None, {}, b"")


def case_statuses(report, port):
    st, h, b = one(port, request("GET", "/api/rooms", auth=None))
    report.check("no credentials: 401 with WWW-Authenticate and an error body",
                 None if st == 401 and "www-authenticate" in h and b"invalid_format" not in b
                 and json.loads(b)["error"]["code"] else "got %r %r %r" % (st, h, b))
    st, _h, _b = one(port, request("GET", "/api/rooms", auth="wrong-key-000000000000"))
    report.check("an unknown key: 401", None if st == 401 else "got %r" % st)
    st, _h, _b = one(port, request("GET", "/api/rooms", auth=mint(["publish"])))
    report.check("a JWT with publish only, on the admin room list: 403",
                 None if st == 403 else "got %r" % st)
    st, _h, _b = one(port, request("POST", "/api/raw/x", b"hi", auth=mint(["publish"]),
                                   ctype="text/plain"))
    report.check("a JWT with publish: POST /api/raw/x 200", None if st == 200 else "got %r" % st)
    st, _h, _b = one(port, request("GET", "/api/nothing"))
    report.check("unknown path: 404", None if st == 404 else "got %r" % st)
    st, h, _b = one(port, request("PUT", "/api/raw/x", b"x"))
    report.check("wrong method: 405 with Allow",
                 None if st == 405 and "allow" in h else "got %r %r" % (st, h))
    st, _h, b = one(port, request("POST", "/api/chat/x", b"{not json"))
    report.check("bad JSON: 400 invalid_format",
                 None if st == 400 and json.loads(b)["error"]["code"] == "invalid_format"
                 else "got %r %r" % (st, b))
    big = b"x" * (64 * 1024 + 1)
    st, _h, _b = one(port, request("POST", "/api/raw/x", big, ctype="text/plain"))
    report.check("a body over --max-message-bytes: 413", None if st == 413 else "got %r" % st)
    st, _h, _b = one(port, request("POST", "/api/raw/x", b"\xff\xfe", ctype="text/plain"))
    report.check("a text body that is not UTF-8: 400", None if st == 400 else "got %r" % st)


def case_pipelined(report, port):
    s = rrtest.connect(port)
    s.sendall(request("GET", "/api/rooms") + request("POST", "/api/raw/p1", b"a", ctype="text/plain")
              + request("GET", "/api/chat/p2/presence"))
    r = read_responses(s, 3)
    s.close()
    report.check("three pipelined requests on one connection: three answers in order",
                 None if [x[0] for x in r] == [200, 200, 200] and b"rooms" in r[0][2]
                 and b"delivered" in r[1][2] and b"onlineUsers" in r[2][2]
                 else "got %r" % [(x[0], x[2][:40]) for x in r])


async def raw_and_chat(report, port):
    members = [await websockets.connect("ws://127.0.0.1:%d/raw/lobby-%d" % (port, i))
               for i in range(4)]
    extra = await websockets.connect("ws://127.0.0.1:%d/raw/lobby-0" % port)
    got = []
    for i in range(4):  # four rooms: their home cores differ
        st, _h, b = one(port, request("POST", "/api/raw/lobby-%d" % i, b'{"n":%d}' % i))
        got.append((st, json.loads(b).get("delivered") if st == 200 else b))
    frames = [await asyncio.wait_for(m.recv(), 5) for m in members]
    frame_x = await asyncio.wait_for(extra.recv(), 5)
    report.check("POST /api/raw/{room}: delivered to every member, counted, on each home core",
                 None if got == [(200, 2), (200, 1), (200, 1), (200, 1)] and
                 frames == ['{"n":%d}' % i for i in range(4)] and frame_x == '{"n":0}'
                 else "got %r frames %r" % (got, frames))
    st, _h, _b = one(port, request("POST", "/api/raw/lobby-1", b"\x00\x01bin",
                                   ctype="application/octet-stream"))
    fb = await asyncio.wait_for(members[1].recv(), 5)
    report.check("a non-text body goes out as a binary frame",
                 None if st == 200 and fb == b"\x00\x01bin" else "got %r %r" % (st, fb))
    for m in members + [extra]:
        await m.close()

    ws = await websockets.connect("ws://127.0.0.1:%d/chat/api-room?token=%s" % (
        port, mint(["read", "write"], sub="u-alice", name="alice")))
    w = json.loads(await ws.recv())
    await ws.recv()  # initial_state
    st, _h, b = one(port, request("POST", "/api/chat/api-room", json.dumps(
        {"content": "from the backend", "userId": "svc", "username": "Service"}).encode()))
    ans = json.loads(b) if st == 200 else {}
    m = json.loads(await asyncio.wait_for(ws.recv(), 5))
    report.check("POST /api/chat/{room}: stored (id, epoch) and broadcast like a message",
                 None if st == 200 and ans.get("epoch") == w["epoch"] and
                 m["type"] == "message" and m["message"]["id"] == ans["id"] and
                 m["message"]["username"] == "Service" else "got %r %r %r" % (st, b, m))
    st, _h, b = one(port, request("GET", "/api/chat/api-room/history?limit=10"))
    hist = json.loads(b)["messages"] if st == 200 else []
    report.check("GET …/history: the stored message, oldest first",
                 None if [x["content"] for x in hist] == ["from the backend"] else "got %r" % b)
    st, _h, b = one(port, request("GET", "/api/chat/api-room/presence"))
    report.check("GET …/presence: the member, with its name",
                 None if st == 200 and json.loads(b)["onlineUsers"] ==
                 [{"userId": w["user"]["id"], "username": "alice"}] else "got %r" % b)
    st, _h, b = one(port, request("DELETE", "/api/chat/api-room/members/%s" % w["user"]["id"]))
    code = None
    try:
        await asyncio.wait_for(ws.recv(), 5)
    except websockets.ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
    report.check("DELETE …/members/{userId}: closed with 1008, counted",
                 None if st == 200 and json.loads(b) == {"closed": 1} and code == 1008
                 else "got %r %r code %r" % (st, b, code))


# A wait for something that must happen (answers to 1,000 requests, a
# broadcast, a restart): generous, because the machine is shared and the
# sanitizer build is several times slower. A passing run never waits for it.
EVENTUALLY = 30.0


def fnv1a(name):
    """The broker's room hash (FNV-1a, 64 bits), written here from the
    algorithm's definition: a room's home core is fnv1a(name) % cores."""
    h = 14695981039346656037
    for byte in name.encode():
        h ^= byte
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def case_room_name(report, port):
    """protocol.md: room names are 1..128 bytes."""
    st128, _h, _b = one(port, request("POST", "/api/raw/" + "n" * 128, b"x", ctype="text/plain"))
    st129, _h, b129 = one(port, request("POST", "/api/raw/" + "n" * 129, b"x", ctype="text/plain"))
    report.check("a room name of 128 bytes: 200; of 129 bytes: 400",
                 None if st128 == 200 and st129 == 400 else
                 "128: %r, 129: %r %r" % (st128, st129, b129[:80]))
    st, _h, b = one(port, request("GET", "/api/chat/%s/history" % ("n" * 129)))
    report.check("GET /api/chat/{129-byte name}/history: 400",
                 None if st == 400 else "got %r %r" % (st, b[:80]))


def case_wrong_types(report, port):
    for what, body in (("userId a number", {"content": "x", "userId": 5}),
                       ("content null", {"content": None, "userId": "svc"})):
        st, _h, b = one(port, request("POST", "/api/chat/types", json.dumps(body).encode()))
        code = None
        try:
            code = json.loads(b)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            pass
        report.check("POST /api/chat/{room} with %s: 400 invalid_format" % what,
                     None if st == 400 and code == "invalid_format" else "got %r %r" % (st, b[:80]))


async def keep_alive_1000(report, port):
    """1,000 requests on one keep-alive connection, pipelined 100 at a time:
    even ones ask a room's history with limit (k % 100) + 1, so each answer
    says which request it belongs to; odd ones publish k into a /raw/ room
    whose member must receive them in order."""
    s = rrtest.connect(port)
    stored = []
    s.sendall(b"".join(request("POST", "/api/chat/ka-hist", json.dumps(
        {"content": "h%d" % k, "userId": "svc"}).encode()) for k in range(100)))
    for st, _h, b in read_responses(s, 100, EVENTUALLY):
        stored.append(json.loads(b)["id"] if st == 200 else None)
    if len(stored) != 100 or None in stored:
        s.close()
        report.fail("1,000 keep-alive requests", "storing 100 messages: %r" % stored[:5])
        return
    member = await websockets.connect("ws://127.0.0.1:%d/raw/ka-raw" % port)
    bad = []
    n = 0
    for batch in range(10):
        ks = range(batch * 100, batch * 100 + 100)
        s.sendall(b"".join(
            request("GET", "/api/chat/ka-hist/history?limit=%d" % (k % 100 + 1)) if k % 2 == 0
            else request("POST", "/api/raw/ka-raw", b"%d" % k, ctype="text/plain") for k in ks))
        answers = read_responses(s, 100, EVENTUALLY)
        n += len(answers)
        if len(answers) != 100:
            bad.append("batch %d: %d answers" % (batch, len(answers)))
            break
        for k, (st, _h, b) in zip(ks, answers):
            if st != 200:
                bad.append("request %d: %r" % (k, st))
            elif k % 2 == 0:
                ids = [m["id"] for m in json.loads(b)["messages"]]
                if ids != stored[100 - (k % 100 + 1):]:
                    bad.append("request %d (limit %d): ids %r" % (k, k % 100 + 1, ids[:3]))
            elif json.loads(b) != {"delivered": 1}:
                bad.append("request %d: %r" % (k, b))
    s.close()
    got = []
    try:
        while len(got) < 500:
            got.append(await asyncio.wait_for(member.recv(), EVENTUALLY))
    except (asyncio.TimeoutError, websockets.ConnectionClosed) as e:
        bad.append("the member got %d of 500 publishes (%s)" % (len(got), type(e).__name__))
    await member.close()
    report.check("1,000 keep-alive requests on one connection (pipelined 100 at a time): "
                 "all 200, answered in order",
                 None if n == 1000 and not bad else "%d answers; %r" % (n, bad[:4]))
    report.check("... and the 500 publishes among them reach the member in order",
                 None if got == ["%d" % k for k in range(1, 1000, 2)] else
                 "got %d, first %r" % (len(got), got[:3]))


async def both_cores(report, port):
    """Two rooms whose home cores differ (FNV-1a % 2), published to from one
    keep-alive connection (so one of the two is another core's room): each
    room's members get their message, and /api/rooms puts each room on the
    core the hash says."""
    names = {}
    k = 0
    while len(names) < 2:
        name = "cores-%d" % k
        names.setdefault(fnv1a(name) % 2, name)
        k += 1
    rooms = [names[0], names[1]]
    members = {r: [await websockets.connect("ws://127.0.0.1:%d/raw/%s" % (port, r))
                   for _ in range(2)] for r in rooms}
    s = rrtest.connect(port)
    s.sendall(b"".join(request("POST", "/api/raw/%s" % r, b"to %s" % r.encode(),
                               ctype="text/plain") for r in rooms) + request("GET", "/api/rooms"))
    answers = read_responses(s, 3, EVENTUALLY)
    s.close()
    got = {}
    for r in rooms:
        got[r] = [await asyncio.wait_for(m.recv(), EVENTUALLY) for m in members[r]]
    listed = {}
    if len(answers) == 3 and answers[2][0] == 200:
        listed = {x["path"]: x["core"] for x in json.loads(answers[2][2])["rooms"]}
    report.check("a publish reaches the members on both cores (rooms %s, %s: home cores 0, 1)" % (
                     rooms[0], rooms[1]),
                 None if [a[0] for a in answers[:2]] == [200, 200] and
                 [json.loads(a[2]) for a in answers[:2]] == [{"delivered": 2}] * 2 and
                 all(got[r] == ["to %s" % r] * 2 for r in rooms) else
                 "answers %r, got %r" % ([(a[0], a[2][:40]) for a in answers], got))
    report.check("/api/rooms lists each room on its home core (FNV-1a of the name % cores)",
                 None if [listed.get("/raw/%s" % r) for r in rooms] == [0, 1] else
                 "listed %r" % {k: v for k, v in listed.items() if k.startswith("/raw/cores-")})
    for ms in members.values():
        for m in ms:
            await m.close()


CRASH_CONNS = 8
CRASH_PER_CONN = 50


def parse_responses(buf):
    """Complete responses at the front of buf: ([(status, body)], rest)."""
    out = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return out, buf
        st, _line, hdrs, _ = rrtest.parse_response_head(buf[:end + 4])
        length = int(hdrs.get("content-length", "0"))
        if len(buf) < end + 4 + length:
            return out, buf
        out.append((st, buf[end + 4:end + 4 + length]))
        buf = buf[end + 4 + length:]


def case_deep_pipeline(report, port):
    """400 chat publishes in one write (about 60 KB, each request small):
    every one answered 200, in order. A pipelining client may send any
    number of requests (RFC 9112 9.3.2); each is judged by its own size."""
    s = rrtest.connect(port)
    s.sendall(b"".join(request("POST", "/api/chat/deep", json.dumps(
        {"content": "d%d" % k, "userId": "svc"}).encode()) for k in range(400)))
    r = read_responses(s, 400, EVENTUALLY)
    s.close()
    ids = [json.loads(b)["id"] for st, _h, b in r if st == 200]
    report.check("400 chat publishes pipelined in one write: 400 answers, all 200, ids in order",
                 None if len(r) == 400 and len(ids) == 400 and ids == sorted(ids) else
                 "%d answers, statuses %r" % (len(r), sorted({x[0] for x in r})))


async def big_body(report, port):
    """A body under --max-message-bytes (64 KiB here) is published."""
    m = await websockets.connect("ws://127.0.0.1:%d/raw/big" % port, max_size=1 << 20)
    body = b"b" * 60000
    st, _h, b = one(port, request("POST", "/api/raw/big", body, ctype="text/plain"))
    got = None
    if st == 200:
        got = await asyncio.wait_for(m.recv(), EVENTUALLY)
    await m.close()
    report.check("a 60,000-byte body (under --max-message-bytes 64KiB): 200, delivered whole",
                 None if st == 200 and got == body.decode() else "got %r %r" % (st, b[:80]))


def case_crash(report, binary, tmp, brokers):
    """A chat publish is acked only once stored: CRASH_CONNS keep-alive
    connections pipeline CRASH_PER_CONN publishes each; the broker is
    SIGKILLed once half of them are answered (the rest in flight) and
    restarted on the same --data-dir: every id answered 200 is in the room's
    history, with its content."""
    keyfile = os.path.join(tmp, "crash-keys")  # the suite's own file is rotated by now
    with open(keyfile, "w") as f:
        f.write("%s\n" % KEY)
    args = ["--api-key-file", keyfile]
    b = rrtest.Broker(binary, args, name="api-crash")
    brokers.append(b)
    b.start()
    total = CRASH_CONNS * CRASH_PER_CONN
    socks = [rrtest.connect(b.port) for _ in range(CRASH_CONNS)]
    for i, s in enumerate(socks):
        s.sendall(b"".join(request("POST", "/api/chat/crash", json.dumps(
            {"content": "m%d-%d" % (i, k), "userId": "svc"}).encode())
            for k in range(CRASH_PER_CONN)))
    bufs = [b""] * CRASH_CONNS
    answers = [[] for _ in range(CRASH_CONNS)]
    open_ = set(range(CRASH_CONNS))
    killed = False
    deadline = time.monotonic() + EVENTUALLY
    while open_ and time.monotonic() < deadline:
        if not killed and sum(len(a) for a in answers) >= total // 2:
            b.kill()  # SIGKILL, with publishes still in flight
            killed = True
            deadline = time.monotonic() + 5.0  # what left before the kill is readable
        ready, _w, _x = select.select([socks[i] for i in open_], [], [], 0.2)
        for s in ready:
            i = socks.index(s)
            try:
                chunk = s.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                open_.discard(i)
                continue
            got, bufs[i] = parse_responses(bufs[i] + chunk)
            answers[i] += got
    for s in socks:
        s.close()
    if not killed:
        b.kill()
    b.proc = None  # killed on purpose: not a broker to stop at the end
    acked, bad = {}, []
    for i in range(CRASH_CONNS):
        for k, (st, body) in enumerate(answers[i]):
            if st == 200:
                acked[json.loads(body)["id"]] = "m%d-%d" % (i, k)
            else:
                bad.append("publish %d-%d: %r %r" % (i, k, st, body[:60]))
    n = sum(len(a) for a in answers)
    report.check("%d of %d chat publishes answered before the SIGKILL, every one 200" % (
                     n, total),
                 None if killed and total // 2 <= n and not bad and len(acked) == n else
                 "killed=%s, %d answers; %r" % (killed, n, bad[:3]))
    b2 = rrtest.Broker(binary, args + ["--data-dir", b.data_dir], name="api-crash-restart")
    brokers.append(b2)
    b2.start()
    history = {}
    before = None
    while True:
        q = "/api/chat/crash/history?limit=100" + ("&beforeId=%d" % before if before else "")
        st, _h, body = one(b2.port, request("GET", q))
        if st != 200:
            bad.append("history: %r %r" % (st, body[:80]))
            break
        msgs = json.loads(body)["messages"]
        if not msgs:
            break
        for m in msgs:
            history[m["id"]] = m["content"]
        before = msgs[0]["id"]
    missing = {i: c for i, c in acked.items() if history.get(i) != c}
    report.check("after the crash and a restart on the same --data-dir, every acked id "
                 "is in the history with its content (%d acked, %d stored)" % (
                     len(acked), len(history)),
                 None if acked and not missing and not bad else
                 "missing %r; %r" % (sorted(missing.items())[:5], bad[:3]))


def case_reload(report, b, keyfile):
    with open(keyfile, "w") as f:
        f.write("# rotated\n%s\n" % KEY2)
    b.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10.0  # generous: the reload is logged, not acknowledged
    st_new = None
    while time.monotonic() < deadline:
        st_new, _h, _b = one(b.port, request("GET", "/api/rooms", auth=KEY2))
        if st_new == 200:
            break
        time.sleep(0.05)
    st_old, _h, _b = one(b.port, request("GET", "/api/rooms", auth=KEY))
    report.check("SIGHUP reloads --api-key-file: the new key works, the old one is 401",
                 None if st_new == 200 and st_old == 401 else "new %r old %r" % (st_new, st_old))


def main():
    binary = rrtest.load_binary_arg("api")
    report = rrtest.Report("api")
    print("api: 33 cases", flush=True)
    tmp = tempfile.mkdtemp(prefix="ringroom-api-")
    keyfile = os.path.join(tmp, "keys")
    with open(keyfile, "w") as f:
        f.write("%s\n" % KEY)
    off = rrtest.Broker(binary, [], name="api-off")
    b = rrtest.Broker(binary, ["--api-key-file", keyfile, "--auth-secret", SECRET,
                               "--max-message-bytes", "64KiB"], name="api")
    brokers = [off, b]
    try:
        off.start()
        st, _h, _b = one(off.port, request("GET", "/api/rooms"))
        report.check("without --api-key-file or --auth-secret: /api/ is 404",
                     None if st == 404 else "got %r" % st)
        b.start()
        case_statuses(report, b.port)
        case_room_name(report, b.port)
        case_wrong_types(report, b.port)
        case_pipelined(report, b.port)
        case_deep_pipeline(report, b.port)
        asyncio.run(big_body(report, b.port))
        asyncio.run(raw_and_chat(report, b.port))
        asyncio.run(keep_alive_1000(report, b.port))
        asyncio.run(both_cores(report, b.port))
        case_reload(report, b, keyfile)
        case_crash(report, binary, tmp, brokers)
    except Exception as e:
        report.fail("api", "exception %s: %s" % (type(e).__name__, e))
    return rrtest.finish_suite(report, brokers)


if __name__ == "__main__":
    sys.exit(main())
