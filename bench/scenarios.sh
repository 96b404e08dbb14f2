#!/bin/bash
# The standard ringroom benchmark scenarios: starts a fresh broker for each
# scenario, runs ringroom-bench against it, and prints one markdown table of
# the figures (every raw JSON result is kept in OUTDIR/results.jsonl).
#
# usage: bench/scenarios.sh [-q] BROKER_BINARY BENCH_BINARY [OUTDIR]
#   -q   quick: 3 s per scenario and smaller fan-out ramps (a few minutes)
#
# Scenarios (the figures the design promises; see bench/README.md):
#   echo      100 connections x 512 B, and 1000 x 64 B: echoes/s, round trip
#   fanout    1 room x 1000 members, a ramp of publish rates past saturation:
#             deliveries/s and p99 per offered rate (throughput should hold
#             near its peak past saturation; latency grows instead). Past
#             saturation "rate/s" (messages stamped in the window and
#             delivered) falls behind; "arrived/s" is what the server
#             delivered while the window was open.
#   rooms     100 rooms x 10 members, 4 publishers each
#   idle      30000 connections over 2 processes, 30 s: server bytes per
#             connection, CPU while idle (one round of the default 25 s pings)
#   churn     50 concurrent connect/upgrade/close loops: cycles/s
set -u
quick=
if [ "${1:-}" = "-q" ]; then
	quick=1
	shift
fi
broker=${1:?usage: scenarios.sh [-q] BROKER BENCH [OUTDIR]}
bench=${2:?usage: scenarios.sh [-q] BROKER BENCH [OUTDIR]}
out=${3:-$(dirname "$0")/results/$(date -u +%Y%m%dT%H%M%SZ)} # bench/results/ is git-ignored
py=/usr/bin/python3
mkdir -p "$out"
results="$out/results.jsonl"
: >"$results"
dur=10s
warm=2s
ramp="1000 2000 3000 5000 10000"
# longer than the broker's default --ping-interval (25 s), so that the idle
# CPU figure includes one round of pings
idle_dur=30s
if [ -n "$quick" ]; then
	idle_dur=3s
	dur=3s
	warm=1s
	ramp="500 2000"
fi
port=$((30000 + RANDOM % 10000))
url="ws://127.0.0.1:$port"
server_pid=

stop_broker() {
	[ -n "$server_pid" ] || return 0
	kill -TERM "$server_pid" 2>/dev/null
	for _ in $(seq 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$server_pid" 2>/dev/null
	wait "$server_pid" 2>/dev/null
	server_pid=
}
trap stop_broker EXIT

data_args=()
# a broker with persistence needs a data folder of its own
"$broker" --help 2>/dev/null | grep -q -- --data-dir && data_args=(--data-dir "$out/data")

start_broker() {
	"$broker" --port "$port" --cores 2 --log-level warn "${data_args[@]}" "$@" >>"$out/broker.log" 2>&1 &
	server_pid=$!
	for _ in $(seq 100); do
		# braces: a redirection on a bare exec would apply to the whole shell
		if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
			printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
			local line=
			read -r -t 1 line <&3
			exec 3<&-
			case "$line" in "HTTP/1.1 200"*) return 0 ;; esac
		fi
		sleep 0.1
	done
	echo "broker did not become ready; see $out/broker.log" >&2
	exit 1
}

# scenario NAME BENCH-ARGS...: one run on a fresh broker, result appended
scenario() {
	local name=$1
	shift
	start_broker
	echo "== $name: ringroom-bench $*" >&2
	"$bench" "$@" --json --quiet >"$out/$name.json" 2>"$out/$name.err"
	echo "   exit $? ($(tail -n 1 "$out/$name.err"))" >&2
	"$py" -c 'import json,sys; r=json.load(open(sys.argv[1])); r["scenario"]=sys.argv[2]; print(json.dumps(r))' \
		"$out/$name.json" "$name" >>"$results" 2>/dev/null ||
		echo "{\"scenario\":\"$name\",\"ok\":false}" >>"$results"
	stop_broker
}

scenario echo-512B-100 echo --conns 100 --size 512 --warmup $warm --duration $dur "$url/echo"
scenario echo-64B-1000 echo --conns 1000 --size 64 --warmup $warm --duration $dur "$url/echo"
for rate in $ramp; do
	scenario "fanout-1x1000-r$rate" fanout --rooms 1 --members 1000 --rate "$rate" --procs 2 \
		--warmup $warm --duration $dur "$url/raw/{room}"
done
scenario rooms-100x10-p4 fanout --rooms 100 --members 10 --publishers 4 --rate 100 --procs 2 \
	--warmup $warm --duration $dur "$url/raw/{room}"
start_broker
echo "== idle-30000" >&2
"$bench" idle --conns 30000 --procs 2 --rooms 300 --server-pid "$server_pid" --warmup 5s \
	--duration $idle_dur --connect-timeout 30s --json --quiet "$url/raw/{room}" \
	>"$out/idle-30000.json" 2>"$out/idle-30000.err"
"$py" -c 'import json,sys; r=json.load(open(sys.argv[1])); r["scenario"]="idle-30000"; print(json.dumps(r))' \
	"$out/idle-30000.json" >>"$results" 2>/dev/null || echo '{"scenario":"idle-30000","ok":false}' >>"$results"
stop_broker
scenario churn-50 churn --conns 50 --warmup $warm --duration $dur "$url/echo"

"$py" - "$results" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def ms(ns):
    return "%.3f" % (ns / 1e6) if ns else "-"
print("| scenario | rate/s | arrived/s | offered/s | p50 ms | p99 ms | p99.9 ms | max ms | checks |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for r in rows:
    name = r.get("scenario")
    if "mode" not in r:
        print(f"| {name} | run failed | | | | | | | |")
        continue
    lat = r["latency_ns"]
    offered = ""
    if r["mode"] == "fanout":
        offered = "%.0f" % (r["rooms"] * r["rate"] * (r["members"] - 1))
    rate = r.get("cycles_per_s", r.get("per_s", 0))
    checks = "ok" if r["ok"] else "FAIL (lost %d of which undelivered at end %d, dup %d, reordered %d, failed %d, closed %d, errors %d)" % (
        r["lost"], r.get("undelivered_at_end", 0), r["dup"], r["reordered"], r["failed"], r["peer_closed"], r["errors"])
    if r["mode"] == "idle":
        extra = " server %s B/conn, %s%% CPU idle" % (
            r.get("server_rss_per_conn_bytes", "?"), r.get("server_cpu_percent", "?"))
        print(f"| {name} ({r['opened']} conns) | | | | | | | | {checks};{extra} |")
        continue
    if r["mode"] == "churn":
        up = r["upgrade_ns"]
        print(f"| {name} | {rate:.0f} cycles | | | {ms(up['p50'])} (upgrade) | {ms(up['p99'])} | | {ms(up['max'])} | {checks} |")
        continue
    arrived = "%.0f" % r.get("arrived_per_s", 0)
    print(f"| {name} | {rate:.0f} | {arrived} | {offered} | {ms(lat['p50'])} | {ms(lat['p99'])} | {ms(lat['p99_9'])} | {ms(lat['max'])} | {checks} |")
EOF
echo "raw results: $results" >&2
