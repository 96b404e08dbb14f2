#!/bin/sh
# Runs the TLS unit test against a throwaway CA and server certificates made
# with the openssl CLI (C has no easy way to mint them). Usage: tls_test.sh EXE
set -eu
exe="$1"
case "$exe" in /*) ;; *) exe="$PWD/$exe" ;; esac
command -v openssl >/dev/null 2>&1 || { echo "SKIP tls unit test: the openssl CLI is not installed (Debian package openssl)"; exit 77; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/rr-tls-test.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM
cd "$dir"
q() { "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; }

printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >ext.cnf
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-keyout ca.key -out ca.pem -subj /CN=ringroom-test-ca
# EC leaf (ECDHE-ECDSA suites) and RSA leaf (ECDHE-RSA suites), both for localhost
q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout ec.key -out ec.csr -subj /CN=localhost
q openssl x509 -req -in ec.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
	-extfile ext.cnf -out ec.pem
q openssl req -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.csr -subj /CN=localhost
q openssl x509 -req -in rsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
	-extfile ext.cnf -out rsa.pem
# a valid key that belongs to no certificate here
q openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.key
# the leaf followed by its issuer: what a chain file looks like
cat ec.pem ca.pem >ec-chain.pem

RR_TLS_CA="$dir/ca.pem" RR_TLS_EC_CERT="$dir/ec-chain.pem" RR_TLS_EC_KEY="$dir/ec.key" \
RR_TLS_RSA_CERT="$dir/rsa.pem" RR_TLS_RSA_KEY="$dir/rsa.key" RR_TLS_OTHER_KEY="$dir/other.key" \
	"$exe"
