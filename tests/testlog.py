"""Read a `meson test` JSON log for tools/test: count passed, failed and
skipped tests, print the exact cause of every skip and whether
tests/skips.allow allows it, and the case count each suite printed.

Usage:
  testlog.py group <label> <log.json> <skips.allow>
      prints the group's results and ends with the machine-readable line
      "counts <passed> <failed> <skipped> <skips not allowed>"
  testlog.py compare <label A> <A.json> <label B> <B.json>
      compares the "<suite>: N cases" lines of the tests both logs ran;
      prints one line per suite and ends with "mismatches <n>"

A skip is a test meson reports as SKIP (exit 77). Its cause is every line of
its output that starts with "SKIP" (tests/README.md: each skip prints one);
a skip that printed none is reported as such, and is never allowed.

tests/skips.allow: one skip a line, "<label>/<test name>  <reason>", '#'
comments. It is empty on Debian 12 CI, where everything must run.

Standard library only; runs under Debian's /usr/bin/python3.
"""

import json
import re
import sys

CASES_RE = re.compile(r"^([\w.-]+): (\d+) cases$", re.M)


def load(path):
    tests = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                t = json.loads(line)
                t["short"] = t["name"].split(" / ", 1)[-1]
                tests.append(t)
    return tests


def load_allow(path):
    allowed = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line:
                    key, _, reason = line.partition(" ")
                    allowed[key] = reason.strip()
    except FileNotFoundError:
        pass
    return allowed


# What a failed test printed that says why, from the whole of its output in
# the JSON log (meson's --print-errorlogs keeps only the last 100 lines, and
# a suite that fails prints its brokers' stderr after its FAIL lines).
WHY_RE = re.compile(r"^(FAIL|ERROR|[^ ]*:[0-9]+: CHECK|Traceback|[A-Za-z.]*Error: |"
                    r"==[0-9]+==ERROR|.*runtime error: )")
WHY_MAX = 40


def why_failed(out):
    lines = [l[:600] for l in out.splitlines() if WHY_RE.match(l)]
    if not lines:
        lines = ["(no FAIL line; its output ends:)"] + out.rstrip().splitlines()[-10:]
    if len(lines) > WHY_MAX:
        lines = lines[:WHY_MAX] + ["[... %d more lines]" % (len(lines) - WHY_MAX)]
    return lines


def group(label, path, allow_path):
    allowed = load_allow(allow_path)
    passed = failed = skipped = not_allowed = 0
    for t in load(path):
        r = t["result"]
        out = t.get("stdout") or ""
        cases = CASES_RE.findall(out)
        suffix = "" if not cases else " (%s cases)" % ", ".join(n for _s, n in cases)
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
            key = "%s/%s" % (label, t["short"])
            causes = [l.strip() for l in out.splitlines() if l.startswith("SKIP")]
            if not causes:
                causes = ["(printed no SKIP line; last output: %r)" %
                          out.strip().splitlines()[-1:]]
            if key in allowed and causes[0].startswith("SKIP"):
                verdict = "allowed by tests/skips.allow: %s" % allowed[key]
            else:
                verdict = "NOT ALLOWED (tests/skips.allow does not list %s)" % key
                not_allowed += 1
            print("  skipped %s%s: %s" % (t["short"], suffix, verdict))
            for c in causes:
                print("    %s" % c)
            continue
        else:  # FAIL, TIMEOUT, ERROR, UNEXPECTEDPASS
            failed += 1
            print("  %s %s%s" % (r, t["short"], suffix))
            for line in why_failed(out):
                print("    %s" % line)
            continue
        if cases:
            print("  ok %s%s" % (t["short"], suffix))
    print("%s: %d passed, %d failed, %d skipped" % (label, passed, failed, skipped))
    print("counts %d %d %d %d" % (passed, failed, skipped, not_allowed))


def case_counts(path):
    out = {}
    for t in load(path):
        for suite, n in CASES_RE.findall(t.get("stdout") or ""):
            out[t["short"] + ":" + suite] = (int(n), t["result"])
    return out


def compare(la, pa, lb, pb):
    a, b = case_counts(pa), case_counts(pb)
    mismatches = 0
    for key in sorted(set(a) | set(b)):
        na, nb = a.get(key, (None, None))[0], b.get(key, (None, None))[0]
        same = na == nb
        if not same:
            mismatches += 1
        print("  %-40s %s %s, %s %s%s" % (key, la, na, lb, nb,
                                          "" if same else "  <-- differs"))
    print("mismatches %d" % mismatches)


def main(argv):
    if len(argv) == 5 and argv[1] == "group":
        group(argv[2], argv[3], argv[4])
    elif len(argv) == 6 and argv[1] == "compare":
        compare(argv[2], argv[3], argv[4], argv[5])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
