#!/usr/bin/env bash
# Experiment for kernel-notes/wolfssl-build.md: the broker built against the
# system wolfSSL and against the bundled one, side by side in one run, so
# the machine's load (shared with other builds) hits both alike.
#
#   kernel-notes/experiments/wolfssl_builds.sh idle CONNS [ROUNDS]
#   kernel-notes/experiments/wolfssl_builds.sh fanout RATE [ROUNDS]
#
# Each round starts a fresh broker per configuration (--cores 1, pinned to
# CPU 0 with taskset; the bench pinned to CPU 1) and runs:
#   idle:   ringroom-bench idle --conns CONNS --warmup 3s --duration 3s
#           --server-pid PID over wss:// (the broker's RSS growth per connection)
#   fanout: ringroom-bench fanout --rooms 1 --members 1000 --size 64 --rate RATE
#           --warmup 2s --duration 10s --drain 2s over wss://, and reads the
#           broker's utime+stime from 4 s to 12 s after the bench starts (inside
#           the measured window) for its CPU time per delivery.
# Configurations, in this order every round:
#   s-aes  system build, the client offering only TLS13-AES128-GCM-SHA256
#          (what the system build negotiated before the cipher order followed
#          AES-NI); fanout only
#   s      system build as is (ChaCha20-Poly1305 first: no AES-NI in it)
#   b      bundled build as is (AES-GCM first on AES-NI)
# The same bench binary (BENCH, default the bundled release build's) drives
# every configuration. Every run stops by itself (bench duration, timeout).
# Prints one line per run; JSON results stay in $OUT (default a temp dir).
#
# Builds (release, both with the bench):
#   meson setup build-rel-b --buildtype=release
#   meson setup build-rel-s --buildtype=release -Dtls_lib=system
#   ninja -C build-rel-b src/ringroom bench/ringroom-bench
#   ninja -C build-rel-s src/ringroom
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=${1:?usage: $0 idle CONNS [ROUNDS] | fanout RATE [ROUNDS]}
arg=${2:?}
rounds=${3:-3}
BROKER_S=${BROKER_S:-build-rel-s/src/ringroom}
BROKER_B=${BROKER_B:-build-rel-b/src/ringroom}
BENCH=${BENCH:-build-rel-b/bench/ringroom-bench}
PORT=${PORT:-27080}
TLS_PORT=${TLS_PORT:-27443}
OUT=${OUT:-$(mktemp -d)}
certs=$(mktemp -d)
trap 'rm -rf "$certs"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$certs/key.pem" \
	-out "$certs/cert.pem" -days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
	2>/dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

configs="s b"
[ "$mode" = fanout ] && configs="s-aes s b"
for run in $(seq 1 "$rounds"); do
	for cfg in $configs; do
		broker=$BROKER_B
		[ "${cfg%%-*}" = s ] && broker=$BROKER_S
		ciphers=""
		[ "$cfg" = s-aes ] && ciphers=TLS13-AES128-GCM-SHA256
		taskset -c 0 "$broker" --cores 1 --port "$PORT" --tls-port "$TLS_PORT" \
			--tls-cert "$certs/cert.pem" --tls-key "$certs/key.pem" --log-level warn \
			>"$OUT/$mode-$cfg-$arg-$run.log" 2>&1 &
		pid=$!
		sleep 0.5
		json=$OUT/$mode-$cfg-$arg-$run.json
		if [ "$mode" = idle ]; then
			timeout 120 taskset -c 1 "$BENCH" idle --conns "$arg" --warmup 3s --duration 3s \
				--server-pid "$pid" --ca "$certs/cert.pem" --quiet --json \
				"wss://127.0.0.1:$TLS_PORT/echo" >"$json" || true
			python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("idle %s run %s: %d open, server RSS %d B per connection" % (sys.argv[2], sys.argv[3], d["opened"], d["server_rss_per_conn_bytes"]))' "$json" "$cfg" "$run"
		else
			RINGROOM_BENCH_TLS_CIPHERS=$ciphers timeout 60 taskset -c 1 "$BENCH" fanout \
				--rooms 1 --members 1000 --size 64 --rate "$arg" --warmup 2s --duration 10s \
				--drain 2s --ca "$certs/cert.pem" --quiet --json \
				"wss://127.0.0.1:$TLS_PORT/raw/{room}" >"$json" &
			bpid=$!
			sleep 4
			c0=$(cpu_ticks "$pid")
			sleep 8
			c1=$(cpu_ticks "$pid")
			rc=0
			wait "$bpid" || rc=$?
			python3 -c 'import json,sys,os; d=json.load(open(sys.argv[1])); t=int(sys.argv[4]) / os.sysconf("SC_CLK_TCK"); print("fanout R=%s %s run %s rc=%s: deliveries/s %.0f arrived/s %.0f p50 %.1f ms p99 %.1f ms lost %d, broker CPU %.0f%%, %.0f ns per delivery, load %.1f" % (sys.argv[5], sys.argv[2], sys.argv[3], sys.argv[6], d["per_s"], d.get("arrived_per_s", 0), d["latency_ns"]["p50"] / 1e6, d["latency_ns"]["p99"] / 1e6, d["lost"], t / 8 * 100, t * 1e9 / (d["per_s"] * 8) if d["per_s"] else 0, d["load1"]))' \
				"$json" "$cfg" "$run" "$((c1 - c0))" "$arg" "$rc"
		fi
		kill -TERM "$pid"
		wait "$pid" || true
	done
done
