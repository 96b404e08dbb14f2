#!/bin/bash
# Kept for existing callers: the scenarios now live in bench/scenarios (see
# bench/README.md). usage: bench/scenarios.sh [-q] BROKER BENCH [OUTDIR]
#   -q   quick: bench/scenarios --quick
set -u
args=()
if [ "${1:-}" = "-q" ]; then
	args+=(--quick)
	shift
fi
broker=${1:?usage: scenarios.sh [-q] BROKER BENCH [OUTDIR]}
bench=${2:?usage: scenarios.sh [-q] BROKER BENCH [OUTDIR]}
args+=(--broker "$broker" --bench "$bench")
[ -n "${3:-}" ] && args+=(--out "$3")
exec "$(dirname "$0")/scenarios" "${args[@]}"
