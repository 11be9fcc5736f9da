#!/usr/bin/env bash
# Runs the benchmark suite and writes ../BENCHMARKS.md and chart.png.
#
#   bench/run.sh            the full suite (-count 6; about 4 minutes on 2 cores)
#   bench/run.sh -quick     every benchmark a few iterations, timings not checked,
#                           no report written (for CI)
#   bench/run.sh -only Zipf one group only (see bench/cmd/report)
#
# Redis: REDIS_ADDR if set; otherwise a private redis-server on a free port
# (so that other clients of a shared server do not disturb the figures), or
# 127.0.0.1:6379.
set -euo pipefail
cd "$(dirname "$0")"
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
export BENCH_COMMAND="bench/run.sh${*:+ $*}"
exec go run ./cmd/report "$@"
