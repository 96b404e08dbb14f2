#!/usr/bin/env bash
# Checks the deployment kit (tools/systemd, tools/haproxy) against the tools
# that read it and against the broker it runs:
#   - ringroom.service: the keys issue 12 requires (Type=notify, LimitNOFILE,
#     ExecReload sending SIGHUP, KillSignal=SIGTERM, TimeoutStopSec above the
#     broker's --drain-timeout default, a dedicated user, StateDirectory);
#   - its system-call filter still allows io_uring_setup/enter/register, with
#     the groups expanded by this machine's systemd-analyze;
#   - systemd-analyze verify reports nothing (the ExecStart path is pointed at
#     the built broker);
#   - haproxy -c accepts tools/haproxy/ringroom.cfg, when an haproxy binary is installed.
# Usage: test_deploy_kit.sh <source root> <ringroom binary>
# Exits 0 when every check that can run here passes; a check whose tool is
# missing is reported as skipped (the key checks always run).
set -uo pipefail
root=$1
broker=$(realpath "$2")
unit=$root/tools/systemd/ringroom.service
fail=0
bad() {
	echo "FAIL: $*"
	fail=1
}

key() { # the last value of a key in the unit (systemd: the last one wins)
	sed -n "s/^$1=//p" "$unit" | tail -1
}

[ "$(key Type)" = notify ] || bad "Type=notify"
[ -n "$(key LimitNOFILE)" ] || bad "LimitNOFILE"
key ExecReload | grep -q -- '-HUP \$MAINPID' || bad "ExecReload sends SIGHUP to \$MAINPID"
[ "$(key KillSignal)" = SIGTERM ] || bad "KillSignal=SIGTERM"
[ -n "$(key User)" ] && [ "$(key User)" != root ] || bad "a dedicated User="
[ -n "$(key StateDirectory)" ] || bad "StateDirectory="
key EnvironmentFile | grep -q ringroom.env || bad "EnvironmentFile= names ringroom.env"

# TimeoutStopSec (seconds) above the --drain-timeout default
drain=$("$broker" --help 2>&1 | sed -n 's/.*--drain-timeout.*default: \([0-9]*\)s).*/\1/p')
stop=$(key TimeoutStopSec | sed 's/s$//')
if [ -z "$drain" ] || [ -z "$stop" ]; then
	bad "could not read --drain-timeout ($drain) or TimeoutStopSec ($stop)"
elif [ "$stop" -le "$drain" ]; then
	bad "TimeoutStopSec=$stop is not above --drain-timeout $drain s"
fi

# every flag the env file passes is one the broker knows about, or one
# issue 12 adds (listed so a typo still fails)
pending="--proxy-protocol --proxy-from --api-key-file"
help=$("$broker" --help 2>&1)
for f in $(grep -o -- '--[a-z-]*' "$root/tools/systemd/ringroom.env" | sort -u); do
	if ! grep -q -- "  $f " <<<"$help" && ! grep -qw -- "$f" <<<"$pending"; then
		bad "ringroom.env uses $f, which ringroom --help does not list"
	fi
done

if command -v systemd-analyze >/dev/null; then
	# io_uring stays allowed: expand the allow list, check nothing denies it
	allow=$(sed -n 's/^SystemCallFilter=\([^~]\)/\1/p' "$unit" | tr ' ' '\n')
	deny=$(sed -n 's/^SystemCallFilter=~//p' "$unit" | tr ' ' '\n')
	expand() {
		local g
		for g in $1; do
			case $g in
			@*) systemd-analyze syscall-filter "$g" 2>/dev/null |
				sed -n '2,$s/^ \{1,\}\([a-z_0-9@-]\{1,\}\)$/\1/p' |
				while read -r s; do
					case $s in @*) expand "$s" ;; *) echo "$s" ;; esac
				done ;;
			*) echo "$g" ;;
			esac
		done
	}
	allowed=$(expand "$allow" | sort -u)
	denied=$(expand "$deny" | sort -u)
	for s in io_uring_setup io_uring_enter io_uring_register sched_setaffinity; do
		grep -qx "$s" <<<"$allowed" || bad "SystemCallFilter does not allow $s"
		grep -qx "$s" <<<"$denied" && bad "SystemCallFilter=~ denies $s"
	done

	tmp=$(mktemp -d)
	sed "s|^ExecStart=/usr/local/bin/ringroom|ExecStart=$broker|" "$unit" >"$tmp/ringroom.service"
	out=$(cd "$tmp" && systemd-analyze verify ./ringroom.service 2>&1)
	[ -z "$out" ] || bad "systemd-analyze verify: $out"
	rm -rf "$tmp"
else
	echo "skipped: systemd-analyze not installed (filter expansion, verify)"
fi

hap=$(command -v haproxy || true)
if [ -n "$hap" ]; then
	tmp=$(mktemp)
	# the user and group exist only where the haproxy package is installed
	sed -e '/^\tuser /d' -e '/^\tgroup /d' "$root/tools/haproxy/ringroom.cfg" >"$tmp"
	"$hap" -c -q -f "$tmp" || bad "haproxy -c rejects tools/haproxy/ringroom.cfg"
	rm -f "$tmp"
else
	echo "skipped: haproxy not installed (haproxy -c)"
fi

[ $fail = 0 ] && echo "deploy kit: ok"
exit $fail
