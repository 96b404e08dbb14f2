"""Plain HTTP endpoints: HEAD answers without a body, other methods get 405,
/metrics carries the storage worker's counters."""
import sys

import rrtest


def main():
    binary = rrtest.load_binary_arg("plain_http")
    report = rrtest.Report("plain_http")
    b = rrtest.Broker(binary, [], name="plain-http")
    try:
        b.start()

        def head():
            st, h, body, closed = rrtest.http_request(
                b.port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n", wait_close=3)
            if st != 200:
                return "status %s" % st
            if body:
                return "HEAD answered with a body %r" % body[:20]
            return None if closed else "TCP left open"
        report.run("HEAD /healthz: 200, no body", head)

        def post():
            st, h, body, closed = rrtest.http_request(
                b.port, b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                wait_close=3)
            return None if st == 405 and closed else "status %s closed %s" % (st, closed)
        report.run("POST /healthz: 405", post)

        def metrics():
            st, h, body, _c = rrtest.http_request(b.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            need = [b"ringroom_store_batches_total", b"ringroom_connections ", b"ringroom_upgrades_total{core=\"0\"}"]
            missing = [n for n in need if n not in body]
            return None if st == 200 and not missing else "status %s missing %r" % (st, missing)
        report.run("/metrics has core, connection and storage counters", metrics)
    except Exception as e:
        report.fail("plain http suite", "%s: %s" % (type(e).__name__, e))
    return rrtest.finish_suite(report, [b])


if __name__ == "__main__":
    sys.exit(main())
