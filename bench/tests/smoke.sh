#!/bin/bash
# Smoke test for ringroom-bench: start the broker on loopback, run every mode
# for about two seconds with small numbers, and check that a healthy broker
# gives a clean run (exit 0, no loss) while --drop-every makes the bench
# report loss and exit 1.
#
# usage: smoke.sh RINGROOM_BINARY BENCH_BINARY
#        smoke.sh --standin BENCH_BINARY   (python3-websockets stand-in server)
set -u
broker=$1
bench=$2
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
tmp=$(mktemp -d)
server_pid=
fails=0
skips=0

cleanup() {
	if [ -n "$server_pid" ]; then
		kill -TERM "$server_pid" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$server_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

[ -x "$bench" ] || { echo "SKIP: no bench binary at $bench"; exit 77; }

# a free port in 20000..39999
for _ in $(seq 50); do
	port=$((20000 + RANDOM % 20000))
	(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null || break
done

if [ "$broker" = "--standin" ]; then
	"$py" "$here/standin_server.py" "$port" >"$tmp/server.log" 2>&1 &
else
	[ -x "$broker" ] || { echo "SKIP: no broker binary at $broker"; exit 77; }
	extra=()
	# a broker with persistence needs a data folder of its own
	"$broker" --help 2>/dev/null | grep -q -- --data-dir && extra=(--data-dir "$tmp/data")
	# and wss:// when it has TLS (a throwaway self-signed certificate). A
	# broker with --tls-cert must get its wss:// checks: a certificate that
	# cannot be made fails the smoke test, it never drops them silently.
	tls_port=
	if ! "$broker" --help 2>/dev/null | grep -q -- --tls-cert; then
		echo "SKIP wss checks: $broker --help lists no --tls-cert (a broker without TLS)"
		skips=$((skips + 1))
	elif ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 1 -subj /CN=localhost \
		>"$tmp/openssl.log" 2>&1; then
		echo "FAIL: wss checks: openssl req could not make a certificate:"
		cat "$tmp/openssl.log"
		fails=$((fails + 1))
	else
		for _ in $(seq 50); do
			tls_port=$((20000 + RANDOM % 20000))
			[ "$tls_port" != "$port" ] || continue
			(exec 3<>/dev/tcp/127.0.0.1/$tls_port) 2>/dev/null || break
		done
		extra+=(--tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" --tls-port "$tls_port")
	fi
	# frequent pings and a short idle timeout: a bench that did not answer
	# pings would see its receive-only connections closed with 4008
	# the output queue limit: 4 MiB lets a reader that reads fall behind by
	# a good half second at the slow case's 6.4 MB/s without a 1013 (a
	# shared machine stalls a process that long), while one that stopped
	# reading passes it within the window (26 MB sent past ~10 MB of kernel
	# buffers); 256 KiB was 40 ms of lag, and closed fast readers under load
	"$broker" --port "$port" --cores 2 --log-level warn --ping-interval 500ms \
		--idle-timeout 2s --max-queued-bytes 4MiB --chat-rate 100000 \
		"${extra[@]}" >"$tmp/server.log" 2>&1 &
fi
server_pid=$!

healthy() {
	if [ "$broker" = "--standin" ]; then
		(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null
		return
	fi
	# braces: a redirection on a bare exec would apply to the whole shell
	{ exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
	printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
	local line
	read -r -t 1 line <&3
	exec 3<&-
	case "$line" in "HTTP/1.1 200"*) return 0 ;; esac
	return 1
}
ready=
for _ in $(seq 50); do
	if healthy; then ready=1; break; fi
	kill -0 "$server_pid" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$ready" ]; then
	echo "FAIL: server did not become ready on port $port"
	cat "$tmp/server.log"
	exit 1
fi

url="ws://127.0.0.1:$port"
common=(--warmup 500ms --duration 2s --drain 2s --quiet --json)

# field NAME FILE: a number from the bench's JSON result
field() {
	"$py" -c 'import json,sys; print(json.load(open(sys.argv[2]))[sys.argv[1]])' "$1" "$2"
}

# run NAME EXPECTED_STATUS ARGS...: run the bench, check its exit status
runs=0
run() {
	local name=$1 want=$2
	shift 2
	runs=$((runs + 1))
	"$bench" "$@" >"$tmp/$name.json" 2>"$tmp/$name.err"
	local rc=$?
	if [ "$rc" != "$want" ]; then
		echo "FAIL: $name: exit $rc, expected $want: $bench $*"
		cat "$tmp/$name.json" "$tmp/$name.err"
		fails=$((fails + 1))
		return 1
	fi
	if ! "$py" -c 'import json,sys; json.load(open(sys.argv[1]))' "$tmp/$name.json"; then
		echo "FAIL: $name: output is not JSON"
		fails=$((fails + 1))
		return 1
	fi
	echo "ok: $name (exit $rc): $(head -c 400 "$tmp/$name.json")"
	return 0
}

# expect NAME PYTHON-EXPR: a condition on the result (r is the JSON object)
expect() {
	if ! "$py" -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
		"$tmp/$1.json" "$2"; then
		echo "FAIL: $1: expected $2"
		fails=$((fails + 1))
	fi
}

if run echo 0 echo --conns 20 "${common[@]}" "$url/echo"; then
	expect echo 'r["measured"] > 100 and r["lost"] == 0 and r["opened"] == 20 and r["latency_ns"]["p99"] > 0'
fi
# 20-byte messages carry the short stamp
if run echo20 0 echo --conns 20 --size 20 "${common[@]}" "$url/echo"; then
	expect echo20 'r["size"] == 20 and r["measured"] > 100 and r["lost"] == 0 and r["errors"] == 0 and r["foreign"] == 0'
fi
if run fanout 0 fanout --rooms 2 --members 20 --rate 100 --procs 2 "${common[@]}" "$url/raw/{room}"; then
	# 2 rooms x 100 msg/s x 19 receivers for 2 s: about 7600 in the window
	expect fanout 'r["measured"] > 3000 and r["lost"] == 0 and r["dup"] == 0 and r["reordered"] == 0 and r["received"] == r["sent"] * 19'
fi
if run idle 0 idle --conns 100 --server-pid "$server_pid" --warmup 500ms --duration 3s --quiet --json "$url/echo"; then
	expect idle 'r["opened"] == 100 and "server_rss_per_conn_bytes" in r and "server_cpu_percent" in r'
fi
if run churn 0 churn --conns 10 "${common[@]}" "$url/echo"; then
	expect churn 'r["cycles"] > 10 and r["failed"] == 0'
fi
# the loss detector must fire: every message the bench drops is counted lost
if run fanout_drop 1 fanout --rooms 2 --members 20 --rate 100 --drop-every 50 "${common[@]}" "$url/raw/{room}"; then
	expect fanout_drop 'r["dropped_on_purpose"] > 0 and r["lost"] == r["dropped_on_purpose"] and not r["ok"]'
	grep -q "DELIVERY CHECK FAILED" "$tmp/fanout_drop.err" || { echo "FAIL: fanout_drop: no loud loss report"; fails=$((fails + 1)); }
fi
if run echo_drop 1 echo --conns 20 --drop-every 25 "${common[@]}" "$url/echo"; then
	expect echo_drop 'r["dropped_on_purpose"] > 0 and r["lost"] == r["dropped_on_purpose"]'
fi
if [ "$broker" != "--standin" ]; then
	# chat: the fanout shape over /chat/ JSON; every member (the sender
	# too) gets each message, and every message is acknowledged
	if run chat 0 chat --rooms 2 --members 10 --rate 50 --procs 2 "${common[@]}" "$url/chat/{room}"; then
		expect chat 'r["measured"] > 500 and r["lost"] == 0 and r["received"] == r["sent"] * 10 and r["acks"] == r["sent"] and r["unacked"] == 0 and r["ack_ns"]["p99"] > 0'
	fi
	# slow readers: the broker closes them with 1013 and that is not an
	# error; the other receivers lose nothing. One member of five stops
	# reading for the 4 s window: 400 x 16 KiB/s piles up past the queue
	# limit; the three that read are never that far behind.
	if run slow 0 fanout --rooms 1 --members 5 --rate 400 --size 16KiB --slow-readers 20 --warmup 500ms --duration 4s --drain 2s --quiet --json "$url/raw/{room}"; then
		expect slow 'r["slow_readers"] == 1 and r["slow_closed_1013"] == 1 and r["lost"] == 0 and r["peer_closed"] == 0'
	fi
fi
if [ -n "${tls_port:-}" ]; then
	# wss://: the same checks through the bench's TLS client, certificate
	# verified against the one the broker serves
	wss="wss://127.0.0.1:$tls_port"
	if run wss_echo 0 echo --conns 10 --size 512 --ca "$tmp/cert.pem" "${common[@]}" "$wss/echo"; then
		expect wss_echo 'r["tls"] and r["measured"] > 100 and r["lost"] == 0 and r["opened"] == 10'
	fi
	if run wss_fanout 0 fanout --rooms 2 --members 20 --rate 100 --procs 2 --insecure "${common[@]}" "$wss/raw/{room}"; then
		expect wss_fanout 'r["measured"] > 3000 and r["lost"] == 0 and r["received"] == r["sent"] * 19'
	fi
	# a CA that did not sign the server's certificate: no connection opens
	if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$tmp/other.key" -out "$tmp/other.pem" -days 1 -subj /CN=other \
		>"$tmp/openssl.log" 2>&1; then
		echo "FAIL: wss_badca: openssl req could not make the other CA:"
		cat "$tmp/openssl.log"
		fails=$((fails + 1))
	elif run wss_badca 1 echo --conns 2 --ca "$tmp/other.pem" "${common[@]}" --connect-timeout 2s "$wss/echo"; then
		expect wss_badca 'r["opened"] == 0'
	fi
	"$bench" echo "$wss/echo" >/dev/null 2>&1
	[ $? = 2 ] || { echo "FAIL: wss:// without --ca or --insecure did not exit 2"; fails=$((fails + 1)); }
fi
# bad usage is status 2
"$bench" fanout --rooms 0 "$url/raw/{room}" >/dev/null 2>&1
[ $? = 2 ] || { echo "FAIL: bad flag did not exit 2"; fails=$((fails + 1)); }

if ! kill -0 "$server_pid" 2>/dev/null; then
	echo "FAIL: the server died during the smoke test"
	cat "$tmp/server.log"
	fails=$((fails + 1))
fi
echo "bench_smoke: $runs cases"
if [ "$fails" -ne 0 ]; then
	echo "$fails smoke check(s) failed"
	exit 1
fi
if [ "$skips" -ne 0 ]; then
	echo "bench smoke: $skips group(s) skipped, the rest ok"
	exit 77
fi
echo "bench smoke: all modes ok"
