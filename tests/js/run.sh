#!/bin/sh
# Run the node suites of ringroom.js against the broker given as $1.
# node's own WebSocket is used when it has one (22+, or 20.10+ with
# --experimental-websocket); an older node (Debian 12's 18) runs the same
# tests over tests/js/ws_shim.mjs. RINGROOM_WS_SHIM=1 forces the shim.
set -u
broker=$1
here=$(dirname "$0")
node=$(command -v node || command -v nodejs) || { echo "node not installed: skipping"; exit 77; }
flag=""
if ! "$node" -e 'if (typeof WebSocket !== "function") process.exit(1)' 2>/dev/null &&
	"$node" --experimental-websocket -e 'if (typeof WebSocket !== "function") process.exit(1)' 2>/dev/null; then
	flag=--experimental-websocket
fi
echo "$("$node" --version) $flag"
RINGROOM_BINARY=$(realpath "$broker") exec "$node" $flag --no-warnings --test "$here"/*.test.mjs
