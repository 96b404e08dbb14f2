#!/usr/bin/python3
"""The backend API (/api/…): keys and JWT permissions, statuses, keep-alive
and pipelining, publishing into /raw/ and /chat/ rooms on their home core,
history, presence, kick, the room list and the key file's reload on SIGHUP.

Usage: test_api.py <ringroom binary>
"""

import asyncio
import json
import os
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
    print("api: 20 cases", flush=True)
    tmp = tempfile.mkdtemp(prefix="ringroom-api-")
    keyfile = os.path.join(tmp, "keys")
    with open(keyfile, "w") as f:
        f.write("%s\n" % KEY)
    off = rrtest.Broker(binary, [], name="api-off")
    b = rrtest.Broker(binary, ["--api-key-file", keyfile, "--auth-secret", SECRET,
                               "--max-message-bytes", "64KiB"], name="api")
    try:
        off.start()
        st, _h, _b = one(off.port, request("GET", "/api/rooms"))
        report.check("without --api-key-file or --auth-secret: /api/ is 404",
                     None if st == 404 else "got %r" % st)
        b.start()
        case_statuses(report, b.port)
        case_pipelined(report, b.port)
        asyncio.run(raw_and_chat(report, b.port))
        case_reload(report, b, keyfile)
    except Exception as e:
        report.fail("api", "exception %s: %s" % (type(e).__name__, e))
    return rrtest.finish_suite(report, [off, b])


if __name__ == "__main__":
    sys.exit(main())
