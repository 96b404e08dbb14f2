"""Plain HTTP endpoints: HEAD answers without a body, other methods get 405,
/metrics carries the storage worker's counters."""
import sys
import time

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
            # parsed as Prometheus text; the storage worker's series are
            # there with their types, and none has been used yet: the only
            # traffic so far is plain HTTP
            m = rrtest.get_metrics(b.port)
            for name, typ in (("ringroom_store_batches_total", "counter"),
                              ("ringroom_connections", "gauge"),
                              ("ringroom_upgrades_total", "counter")):
                if m.types.get(name) != typ:
                    return "%s has TYPE %s, want %s" % (name, m.types.get(name), typ)
            if m.sum("ringroom_store_batches_total") != 0:
                return "ringroom_store_batches_total %s before any chat message" % (
                    m.sum("ringroom_store_batches_total"))
            if m.value("ringroom_upgrades_total", core="0") != 0:
                return "ringroom_upgrades_total{core=0} %s with no upgrade" % (
                    m.value("ringroom_upgrades_total", core="0"))
            # the HEAD and POST connections above are closed by the broker
            # on its own time: the gauge comes down to this request alone
            # eventually (30 s: a shared machine, maybe a sanitizer build)
            deadline = time.monotonic() + 30.0
            while m.value("ringroom_connections") != 1 and time.monotonic() < deadline:
                time.sleep(0.05)
                m = rrtest.get_metrics(b.port)
            if m.value("ringroom_connections") != 1:
                return "ringroom_connections %s, want 1 (this request)" % (
                    m.value("ringroom_connections"))
            return None
        report.run("/metrics: Prometheus text with core, connection and storage series at "
                   "their idle values", metrics)
    except Exception as e:
        report.fail("plain http suite", "%s: %s" % (type(e).__name__, e))
    return rrtest.finish_suite(report, [b])


if __name__ == "__main__":
    sys.exit(main())
