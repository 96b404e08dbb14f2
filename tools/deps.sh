# Sourced by tools/run and tools/test: install the Debian 12 packages
# ringroom needs to build, run and test. Set RINGROOM_SKIP_APT=1 to skip
# (e.g. when iterating locally with everything already installed).
RINGROOM_BUILD_PKGS="build-essential meson ninja-build pkg-config liburing-dev libwolfssl-dev librocksdb-dev libjansson-dev libnats-dev"
RINGROOM_TEST_PKGS="python3 python3-websockets openssl clang libclang-rt-14-dev curl gnuplot-nox chromium valgrind haproxy nodejs nats-server"

rr_install() {
	if [ "${RINGROOM_SKIP_APT:-0}" = 1 ]; then
		return 0
	fi
	local sudo=""
	if [ "$(id -u)" != 0 ]; then
		sudo="sudo"
	fi
	echo "== installing packages: $*" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# rr_wolfssl_bundle: the wolfSSL that meson links by default (-Dtls_lib=bundled),
# Debian's source of the installed version built for ringroom by
# tools/wolfssl-bundle and cached outside the checkout. A cache hit costs
# nothing; a miss installs the build tools and builds once (about a minute).
RINGROOM_WOLFSSL_PKGS="dpkg-dev autoconf automake libtool"
rr_wolfssl_bundle() {
	local prefix
	prefix=$(tools/wolfssl-bundle --prefix) || return 1
	if [ -f "$prefix/.complete" ]; then
		return 0
	fi
	# shellcheck disable=SC2086
	rr_install $RINGROOM_WOLFSSL_PKGS || return 1
	tools/wolfssl-bundle >/dev/null
}
