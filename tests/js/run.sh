#!/bin/sh
# Run the node suites of ringroom.js against the broker given as $1.
# node 20.10+ has a WebSocket behind --experimental-websocket (22+: always);
# an older node (Debian 12's 18) has none: the suite is skipped (77).
set -u
broker=$1
here=$(dirname "$0")
node=$(command -v node || command -v nodejs) || { echo "node not installed: skipping"; exit 77; }
flag=""
if ! "$node" -e 'if (typeof WebSocket !== "function") process.exit(1)' 2>/dev/null; then
	if "$node" --experimental-websocket -e 'if (typeof WebSocket !== "function") process.exit(1)' 2>/dev/null; then
		flag=--experimental-websocket
	else
		echo "$("$node" --version) has no WebSocket: skipping"
		exit 77
	fi
fi
RINGROOM_BINARY=$(realpath "$broker") exec "$node" $flag --no-warnings --test "$here"/*.test.mjs
