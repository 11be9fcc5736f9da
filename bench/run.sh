#!/usr/bin/env bash
# Runs the benchmark suite and writes ../BENCHMARKS.md and chart.png.
#
#   bench/run.sh              the full suite (-count 6; about 9 minutes on 2 cores),
#                             twice: on loopback, then the scenarios that reach
#                             Redis through a delay line of 0.25 ms each way
#                             (0.5 ms round trips); a set of tables for each
#   bench/run.sh -delay 0     loopback only
#   bench/run.sh -delay 1ms   another one-way delay
#   bench/run.sh -quick       every benchmark a few iterations, in both passes,
#                             timings not checked, no report written (for CI)
#   bench/run.sh -only Zipf   one group only (see bench/cmd/report)
#   bench/run.sh -out /tmp/B.md -chart /tmp/c.png   write the report elsewhere
#
# Redis: REDIS_ADDR if set; otherwise a private redis-server on a free port
# (so that other clients of a shared server do not disturb the figures), or
# 127.0.0.1:6379. A group that fails (say an operation timeout on a loaded
# machine) is recorded in the report and the run goes on.
set -euo pipefail
cd "$(dirname "$0")"
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
export BENCH_COMMAND="bench/run.sh${*:+ $*}"
exec go run ./cmd/report "$@"
