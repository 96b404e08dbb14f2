#!/usr/bin/env bash
# tools/tune against fake /proc trees (--root): values below and above the
# recommendations, --check's lines and exit status, --connections scaling,
# the balancer role, --apply --dry-run's writes (and that it writes nothing),
# --apply's refusal without root, and --apply writing the fake tree as root.
# Usage: test_tune.sh <source root>
set -uo pipefail
src=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
tune=$src/tools/tune
tmp=$(mktemp -d)
chmod 755 "$tmp" # the non-root refusal runs as nobody
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() {
	echo "FAIL: $*"
	fail=1
}

# make_root DIR somaxconn syn netdev "tcp_mem" "wmem" file-max nr_open nofile range tw_reuse
make_root() {
	local d=$1
	mkdir -p "$d/sys/net/core" "$d/sys/net/ipv4" "$d/sys/fs" "$d/self" "$d/irq/40" "$d/irq/41"
	echo "$2" > "$d/sys/net/core/somaxconn"
	echo "$3" > "$d/sys/net/ipv4/tcp_max_syn_backlog"
	echo "$4" > "$d/sys/net/core/netdev_max_backlog"
	printf '%s\n' "$5" | tr ' ' '\t' > "$d/sys/net/ipv4/tcp_mem"
	printf '%s\n' "$6" | tr ' ' '\t' > "$d/sys/net/ipv4/tcp_wmem"
	printf '4096\t131072\t6291456\n' > "$d/sys/net/ipv4/tcp_rmem"
	echo "$7" > "$d/sys/fs/file-max"
	echo "$8" > "$d/sys/fs/nr_open"
	printf '%s\n' "${10}" | tr ' ' '\t' > "$d/sys/net/ipv4/ip_local_port_range"
	echo "${11}" > "$d/sys/net/ipv4/tcp_tw_reuse"
	cat > "$d/self/limits" <<EOF
Limit                     Soft Limit           Hard Limit           Units
Max open files            $9                $9                files
EOF
	printf 'MemTotal:       65536000 kB\nMemFree:        60000000 kB\n' > "$d/meminfo"
	printf 'cpu  1 2 3\ncpu0 1 2 3\ncpu1 1 2 3\ncpu2 1 2 3\ncpu3 1 2 3\nintr 0\n' > "$d/stat"
	cat > "$d/interrupts" <<'EOF'
           CPU0       CPU1       CPU2       CPU3
 40:        100          0          0          0  PCI-MSIX-0000:00:03.0   1-edge      eth0-TxRx-0
 41:          0        100          0          0  PCI-MSIX-0000:00:03.0   2-edge      eth0-TxRx-1
LOC:    1190053    2128842     1     1   Local timer interrupts
EOF
	echo 0 > "$d/irq/40/smp_affinity_list"
	echo 3 > "$d/irq/41/smp_affinity_list"
}

# Below: Debian-like defaults on a small host.
low=$tmp/low
make_root "$low" 128 1024 1000 "93000 124000 186000" "4096 16384 8388608" 100000 1048576 1024 \
	"32768 60999" 2
# Above: everything past the recommendation for 100,000 connections on 4 cores.
high=$tmp/high
make_root "$high" 8192 16384 32768 "600000 800000 3200000" "4096 16384 1048576" 4000000 1048576 \
	1048576 "1024 65535" 1

# 1. --check, values below: exit 1, each LOW named.
out=$("$tune" --check --root "$low" 2>&1)
rc=$?
[ $rc = 1 ] || bad "--check on low values: exit $rc, expected 1"
for s in net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.core.netdev_max_backlog \
	net.ipv4.tcp_mem fs.file-max 'RLIMIT_NOFILE'; do
	echo "$out" | grep -E "^$s.* LOW\$" >/dev/null || bad "--check low: no LOW line for $s"
done
echo "$out" | grep -E '^net.ipv4.tcp_wmem .*HIGH$' >/dev/null || bad "--check low: tcp_wmem max 8 MiB not HIGH"
echo "$out" | grep -E '^net.core.somaxconn +128 +>= 4096 +LOW$' >/dev/null ||
	bad "--check low: somaxconn line should read '128  >= 4096  LOW'"
echo "$out" | grep -E '^fs.nr_open .* ok$' >/dev/null || bad "--check low: fs.nr_open 1048576 should be ok"
echo "$out" | grep -E '^net.ipv4.tcp_rmem .* info$' >/dev/null || bad "--check low: tcp_rmem info line"
echo "$out" | grep -E '^NIC IRQ affinity +40:0\* 41:3\* ' >/dev/null ||
	bad "--check low: IRQs on CPUs 0 and 3 are both on a core's CPU with 4 cores"
out3=$("$tune" --check --root "$low" --cores 3)
echo "$out3" | grep -E '^NIC IRQ affinity +40:0\* 41:3 ' >/dev/null ||
	bad "--check low --cores 3: IRQ 40 on CPU 0 starred, IRQ 41 on CPU 3 not"
echo "$out" | grep -q "settings below the recommendation" || bad "--check low: no summary line"
echo "$out" | grep -q "role broker, 100000 connections, 4 cores" || bad "--check: header (cores from ROOT/stat)"

# 1b. RLIMIT_NOFILE of a ringroom process when there is one (or --pid).
mkdir -p "$low/4242"
echo ringroom > "$low/4242/comm"
printf 'Limit  Soft Limit  Hard Limit  Units\nMax open files            1048576              1048576              files\n' > "$low/4242/limits"
out=$("$tune" --check --root "$low")
echo "$out" | grep -Eq '^RLIMIT_NOFILE \(ringroom pid 4242\) +1048576 .* ok$' ||
	bad "--check: RLIMIT_NOFILE should be read from the ringroom process"
"$tune" --check --root "$low" --pid self >/dev/null 2>&1
[ $? = 2 ] || bad "--pid self: exit 2 expected"
rm -rf "${low:?}/4242"

# 2. --check, values above: exit 0, no LOW/HIGH.
out=$("$tune" --check --root "$high" 2>&1)
rc=$?
[ $rc = 0 ] || { bad "--check on high values: exit $rc, expected 0"; echo "$out"; }
echo "$out" | grep -Eq ' (LOW|HIGH)$' && bad "--check high: a LOW or HIGH line"
echo "$out" | grep -q "all settings meet the recommendation" || bad "--check high: no all-fine line"

# 3. --connections scales: the low tcp_mem (pressure 124000 pages) covers 10,000
#    connections (40,000 pages) but not 100,000 (400,000).
out=$("$tune" --check --root "$low" --connections 10000)
echo "$out" | grep -Eq '^net.ipv4.tcp_mem .* ok$' ||
	bad "--connections 10000: tcp_mem should be ok"
out=$("$tune" --check --root "$high" --connections 1000000)
echo "$out" | grep -Eq '^net.ipv4.tcp_mem .* LOW$' ||
	bad "--connections 1000000: tcp_mem should be LOW"
echo "$out" | grep -Eq '^RLIMIT_NOFILE .* ok$' ||
	bad "--connections 1000000 on 4 cores: 250,064 per core, LimitNOFILE 1048576 should be ok"

# 4. The balancer role: the port range per instance.
out=$("$tune" --check --role balancer --root "$low" --backends 2)
echo "$out" | grep -Eq '^net.ipv4.ip_local_port_range +32768 60999 .*50000 conns per instance.* LOW$' ||
	bad "--role balancer: the default port range should be LOW for 50,000 per instance"
echo "$out" | grep -q RLIMIT_NOFILE && bad "--role balancer: RLIMIT_NOFILE is the broker's"
echo "$out" | grep -Eq '^net.ipv4.tcp_tw_reuse +2 +.* LOW$' ||
	bad "--role balancer: tcp_tw_reuse 2 (loopback only) should be LOW"
"$tune" --check --role balancer --root "$high" --backends 2 >/dev/null ||
	bad "--role balancer on high values should exit 0"
out=$("$tune" --check --role balancer --root "$high" --backends 1 --connections 200000)
echo "$out" | grep -q '4 source addresses' || bad "--role balancer: 200,000 to one instance needs 4 source addresses"

# 5. --apply --dry-run: the right writes, nothing written.
before=$(cd "$low" && find sys -type f | sort | xargs cat | md5sum)
out=$("$tune" --apply --dry-run --root "$low" 2>&1)
rc=$?
[ $rc = 0 ] || bad "--apply --dry-run: exit $rc"
for w in "sysctl -w net.core.somaxconn=4096" \
	"sysctl -w net.ipv4.tcp_max_syn_backlog=8192" \
	"sysctl -w net.core.netdev_max_backlog=16384" \
	"sysctl -w net.ipv4.tcp_mem='300000 400000 1600000'" \
	"sysctl -w net.ipv4.tcp_wmem='4096 16384 4194304'" \
	"sysctl -w fs.file-max=165536"; do
	echo "$out" | grep -qxF "would run: $w" || { bad "--apply --dry-run: missing '$w'"; echo "$out" | head -40; }
done
echo "$out" | grep -q "would run: sysctl -w fs.nr_open" && bad "--apply --dry-run: fs.nr_open is fine"
echo "$out" | grep -q "LimitNOFILE=1048576 in the unit" || bad "--apply --dry-run: RLIMIT_NOFILE advice"
after=$(cd "$low" && find sys -type f | sort | xargs cat | md5sum)
[ "$before" = "$after" ] || bad "--apply --dry-run changed the fake tree"
out=$("$tune" --apply --dry-run --root "$high")
echo "$out" | grep -q "would run" && bad "--apply --dry-run on high values: nothing to write"

# 6. --apply without root refuses; as root it writes the fake tree and
#    --check is then clean for the sysctls.
if [ "$(id -u)" != 0 ]; then
	out=$("$tune" --apply --root "$low" 2>&1)
	rc=$?
	if ! { [ $rc = 2 ] && echo "$out" | grep -q "needs root"; }; then
		bad "--apply as non-root: exit $rc, '$out'"
	fi
else
	if command -v setpriv >/dev/null; then
		# a copy in $tmp: the checkout may sit where nobody cannot read
		install -m 0755 "$tune" "$tmp/tune"
		out=$(setpriv --reuid 65534 --regid 65534 --clear-groups "$tmp/tune" --apply --root "$low" 2>&1)
		rc=$?
		if ! { [ $rc = 2 ] && echo "$out" | grep -q "needs root"; }; then
			bad "--apply as nobody: exit $rc, '$out'"
		fi
	else
		echo "skip: setpriv missing, the non-root refusal is not checked"
	fi
	"$tune" --apply --root "$low" >/dev/null || bad "--apply as root on the fake tree"
	[ "$(cat "$low/sys/net/core/somaxconn")" = 4096 ] || bad "--apply: somaxconn not written"
	[ "$(cat "$low/sys/net/ipv4/tcp_mem")" = "300000 400000 1600000" ] || bad "--apply: tcp_mem not written"
	out=$("$tune" --check --root "$low")
	echo "$out" | grep -E ' (LOW|HIGH)$' | grep -v RLIMIT_NOFILE | grep -q . &&
		bad "--check after --apply: a sysctl still LOW/HIGH"
fi

# 7. Usage errors: exit 2.
"$tune" --check --root "$tmp/none" >/dev/null 2>&1
[ $? = 2 ] || bad "--root without sys/: exit 2 expected"
"$tune" --check --dry-run --root "$low" >/dev/null 2>&1
[ $? = 2 ] || bad "--dry-run without --apply: exit 2 expected"

# 8. --print-conf: a sysctl.d file with the recommendations.
out=$("$tune" --print-conf --root "$low")
echo "$out" | grep -qx 'net.core.netdev_max_backlog = 16384' ||
	bad "--print-conf: netdev_max_backlog line"

[ $fail = 0 ] && echo "ok: tools/tune --check/--apply/--print-conf against fake /proc trees"
exit $fail
