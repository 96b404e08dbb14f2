#!/usr/bin/python3
"""A stand-in RFC 6455 server for testing ringroom-bench without the broker.

/echo sends every data message back to its sender; /raw/{room} delivers each
data message to every other member of the room (ringroom's /raw semantics).
Slow (python3-websockets), but enough to check the bench's correctness.

usage: standin_server.py PORT [PROCESSES]
(several processes share the port with SO_REUSEPORT, to hold more
connections than one process's fd limit; /raw rooms are then per process,
so use one process for fanout)
"""
import asyncio
import os
import sys

import websockets

rooms = {}


async def handler(ws, path):
    if path == "/echo":
        async for msg in ws:
            await ws.send(msg)
        return
    if path.startswith("/raw/") and len(path) > 5:
        members = rooms.setdefault(path, set())
        members.add(ws)
        try:
            async for msg in ws:
                for m in list(members):
                    if m is not ws:
                        try:
                            await m.send(msg)
                        except websockets.ConnectionClosed:
                            pass
        finally:
            members.discard(ws)
        return
    await ws.close(1008, "unknown path")


async def main(port):
    async with websockets.serve(handler, "127.0.0.1", port, ping_interval=None,
                                max_size=None, max_queue=None, backlog=1024,
                                reuse_port=True):
        print("listening", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    procs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    for _ in range(procs - 1):
        if os.fork() == 0:
            break
    asyncio.run(main(int(sys.argv[1])))
