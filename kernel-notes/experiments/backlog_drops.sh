#!/bin/bash
# Fan-out on loopback and the per-CPU input backlog (net.core.netdev_max_backlog),
# for kernel-notes/tuning.md.
#
#   backlog_drops.sh BUILD_DIR [MEMBERS] [RATE] [SIZE]
#
# Runs, in a network namespace of its own (unshare -n, as root), the release
# broker and `ringroom-bench fanout` (1 room, MEMBERS members, RATE msg/s of
# SIZE bytes, 1 s warm-up + 3 s measured), and prints:
#   - the drops of the input backlog during the run: the second column of
#     /proc/net/softnet_stat, summed over CPUs (host-wide: other traffic on the
#     machine counts too; the counter is not per namespace);
#   - TCP retransmissions (TcpRetransSegs, /proc/net/snmp: per namespace, so
#     only this run's);
#   - the bench's deliveries/s and latency.
# On loopback every packet a sender transmits is queued to its own CPU's
# input backlog (enqueue_to_backlog) and processed in softirq; more than
# netdev_max_backlog queued packets are dropped, and TCP retransmits them
# (200 ms minimum RTO), which shows as latency.
# netdev_max_backlog itself is host-wide: this script only reads it. To
# compare, run it once, raise the value (sysctl -w net.core.netdev_max_backlog=N),
# run it again, and restore the value.
set -eu
build=${1:?usage: backlog_drops.sh BUILD_DIR [MEMBERS] [RATE] [SIZE]}
members=${2:-4000}
rate=${3:-2000}
size=${4:-64}
build=$(cd "$build" && pwd)

if [ "${BACKLOG_DROPS_NETNS:-}" != 1 ]; then
	[ "$(id -u)" = 0 ] || { echo "backlog_drops.sh: needs root (unshare -n)" >&2; exit 2; }
	# host-wide, and not visible inside a new namespace: read it here
	exec env BACKLOG_DROPS_NETNS=1 NDMB="$(cat /proc/sys/net/core/netdev_max_backlog)" unshare -n "$0" "$build" "$members" "$rate" "$size"
fi
ip link set lo up

drops() { python3 -c 'import sys; print(sum(int(l.split()[1], 16) for l in open("/proc/net/softnet_stat")))'; }
tcpext() { python3 -c '
import sys
l = open("/proc/net/netstat").read().splitlines()
k, v = l[0].split(), l[1].split()
print(" ".join("%s=%s" % (n, v[k.index(n)]) for n in sys.argv[1:] if n in k))' \
	TCPLossProbes TCPTimeouts TCPFastRetrans ListenOverflows TCPBacklogDrop PruneCalled RcvPruned OfoPruned TCPRcvQDrop TCPZeroWindowDrop TCPMemoryPressures TCPOFODrop; }
retrans() { awk '/^Tcp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RetransSegs") c = i; h = 1 } else print $c }' /proc/net/snmp; }

data=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
"$build/src/ringroom" --bind 127.0.0.1 --port 18765 --cores 2 --data-dir "$data/db" \
	--durability memory --max-connections 20000 --log-level warn &
pid=$!
for _ in $(seq 50); do
	(exec 3<>/dev/tcp/127.0.0.1/18765) 2>/dev/null && break
	sleep 0.1
done

echo "netdev_max_backlog $NDMB; fanout 1 room x $members members, $rate msg/s of $size B"
d0=$(drops); r0=$(retrans); x0=$(tcpext)
"$build/bench/ringroom-bench" fanout --rooms 1 --members "$members" --rate "$rate" \
	--size "$size" --warmup 1s --duration 3s --quiet --json \
	'ws://127.0.0.1:18765/raw/{room}' > "$data/out.json" || echo "bench exit status $?"
d1=$(drops); r1=$(retrans); x1=$(tcpext)
python3 - "$data/out.json" <<'EOF'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception as e:
    print("  (no JSON from the bench: %s)" % e); sys.exit(0)
def find(o, *names):
    for n in names:
        if isinstance(o, dict) and n in o:
            return o[n]
    return None
flat = {}
def walk(o, p=""):
    if isinstance(o, dict):
        for k, v in o.items():
            walk(v, p + k + ".")
    else:
        flat[p[:-1]] = o
walk(j)
keys = [k for k in flat if any(w in k for w in ("deliver", "p50", "p99", "max", "lost"))]
print("  bench: " + ", ".join("%s=%s" % (k, flat[k]) for k in sorted(keys)))
EOF
echo "  input backlog drops (softnet_stat, host-wide): +$((d1 - d0))"
echo "  TCP retransmitted segments (this namespace): +$((r1 - r0))"
echo "  TcpExt before: $x0"
echo "  TcpExt after:  $x1"
