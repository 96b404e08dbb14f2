"""The bench's client codec (bench/frame.c, through frame_tool) against the
Python test client's (tests/integration/rrtest.py: encode_frame, xor_mask),
an implementation that shares no code with it or with the broker's codec.

  encoder: for every opcode the bench sends, lengths around each length
           form's edges (0, 1, 125, 126, 127, 65535, 65536, 70000) and
           random ones, and several mask keys, frame_tool's frame must equal
           rrtest.encode_frame's with the same key, byte for byte;
  reader:  server frames built by rrtest.encode_frame(mask=False) - single
           frames, fragmented messages with control frames between the
           fragments, several in one stream - must come out as the messages
           and control frames that went in (length, opcode, first bytes),
           whether the stream is fed whole or one byte at a time; frames a
           server must not send (masked, RSV, unknown opcode, non-minimal
           length, fragmented or long control frames) must be refused.

Usage: frame_oracle.py <frame_tool binary>
Prints one line per case, then "bench_frame_oracle: N cases" and
"bench_frame_oracle: N passed, M failed, 0 skipped"; exits 0 only when all
passed.
"""

import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
import rrtest  # noqa: E402
from rrtest import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG,  # noqa: E402
                    OP_TEXT, encode_frame)

STAMP_LEN = 28  # bench/frame.h RR_BENCH_STAMP_LEN: what ->message shows


class Tool:
    def __init__(self, path):
        self.p = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        answer = self.p.stdout.readline()
        if not answer:
            raise RuntimeError("frame_tool exited (status %s) on %r" % (self.p.poll(), line[:80]))
        return answer.strip()

    def encode(self, op, key, payload):
        return bytes.fromhex(self.ask("E %d %s %s" % (op, key.hex(), payload.hex() or "-")))

    def decode(self, stream):
        return self.ask("D %s" % (stream.hex() or "-"))

    def close(self):
        self.p.stdin.close()
        return self.p.wait()


def expected_events(items):
    """What the reader must report for a list of (kind, op, payload)."""
    out = []
    for kind, op, payload in items:
        if kind == "m":
            shown = payload[:STAMP_LEN]
            out.append("m%d:%d:%s" % (op, len(payload), shown.hex() or "-"))
        else:
            out.append("c%d:%s" % (op, payload.hex() or "-"))
    return " ".join(out)


def encoder_cases(report, tool, rng):
    lens = [0, 1, 2, 3, 4, 5, 7, 8, 9, 125, 126, 127, 128, 65535, 65536, 70000]
    lens += [rng.randrange(0, 70000) for _ in range(12)]
    keys = [bytes(4), b"\x37\xfa\x21\x3d", b"\xff\xff\xff\xff"] + [os.urandom(4) for _ in range(3)]
    for op in (OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
        bad = []
        for n in lens:
            if op >= OP_CLOSE and n > 125:
                continue  # control frames carry at most 125 bytes
            for key in keys:
                payload = os.urandom(n)
                want = encode_frame(op, payload, mask=True, mask_key=key)
                got = tool.encode(op, key, payload)
                if got != want:
                    bad.append("len %d key %s: bench %s..., rrtest %s..." % (
                        n, key.hex(), got[:16].hex(), want[:16].hex()))
        report.check("encoder: opcode %d, %s lengths x %d keys equal rrtest.encode_frame" % (
            op, "control" if op >= OP_CLOSE else "%d" % len(lens), len(keys)),
            "; ".join(bad[:3]) if bad else None)


def reader_cases(report, tool, rng):
    def check(name, items, frames):
        stream = b"".join(frames)
        got = tool.decode(stream)
        want = expected_events(items)
        report.check("reader: " + name, None if got == want else
                     "events %r, want %r" % (got[:300], want[:300]))

    for n in (0, 1, 27, 28, 29, 125, 126, 65535, 65536, 70000):
        for op in (OP_TEXT, OP_BINARY):
            p = os.urandom(n)
            check("one unmasked frame, opcode %d, %d bytes" % (op, n), [("m", op, p)],
                  [encode_frame(op, p, mask=False)])
    for op in (OP_PING, OP_PONG, OP_CLOSE):
        p = rrtest.close_payload(1000, "bye") if op == OP_CLOSE else os.urandom(125)
        check("control frame opcode %d, %d bytes" % (op, len(p)), [("c", op, p)],
              [encode_frame(op, p, mask=False)])
    # fragmented messages with control frames between the fragments, and
    # several messages in one stream
    for trial in range(20):
        items, frames = [], []
        for _m in range(rng.randrange(1, 5)):
            op = rng.choice((OP_TEXT, OP_BINARY))
            body = os.urandom(rng.randrange(0, 3000))
            cuts = sorted(rng.randrange(0, len(body) + 1) for _ in range(rng.randrange(0, 4)))
            pieces = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)])]
            for i, piece in enumerate(pieces):
                frames.append(encode_frame(op if i == 0 else OP_CONT, piece,
                                           fin=i == len(pieces) - 1, mask=False))
                if i < len(pieces) - 1 and rng.random() < 0.5:
                    ping = os.urandom(rng.randrange(0, 126))
                    frames.append(encode_frame(OP_PING, ping, mask=False))
                    items.append(("c", OP_PING, ping))
            items.append(("m", op, body))
        check("stream %d: %d frames, fragmented messages with pings between fragments" % (
            trial, len(frames)), items, frames)
    # frames a server must not send
    refused = [
        ("a masked frame", encode_frame(OP_TEXT, b"hi", mask=True)),
        ("RSV1 set", encode_frame(OP_TEXT, b"hi", rsv=4, mask=False)),
        ("opcode 3", encode_frame(3, b"", mask=False)),
        ("opcode 0xB", encode_frame(0xB, b"", mask=False)),
        ("a continuation with no message open", encode_frame(OP_CONT, b"x", mask=False)),
        ("a fragmented ping", encode_frame(OP_PING, b"x", fin=False, mask=False)),
        ("a 126-byte ping", encode_frame(OP_PING, bytes(126), mask=False)),
        ("a 5-byte payload in the 16-bit form", encode_frame(OP_BINARY, bytes(5), mask=False,
                                                             len_form=16)),
        ("a 200-byte payload in the 64-bit form", encode_frame(OP_BINARY, bytes(200),
                                                               mask=False, len_form=64)),
        ("a new message inside a fragmented one",
         encode_frame(OP_TEXT, b"a", fin=False, mask=False) +
         encode_frame(OP_TEXT, b"b", mask=False)),
    ]
    for name, frame in refused:
        got = tool.decode(frame)
        report.check("reader refuses %s" % name,
                     None if got.startswith("error ") else "got %r" % got[:200])


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    report = rrtest.Report("bench_frame_oracle")
    tool = Tool(sys.argv[1])
    rng = random.Random(6455)
    try:
        encoder_cases(report, tool, rng)
        reader_cases(report, tool, rng)
    except Exception as e:
        report.fail("frame_tool", "%s: %s" % (type(e).__name__, e))
    st = tool.close()
    report.check("frame_tool exits 0", None if st == 0 else "status %s" % st)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
