#!/usr/bin/env bash
# The rowlock benchmark, in one command: rowlock vs pgbench on a throwaway PostgreSQL.
#
#   bench/run.sh                      # hot + spread at 1, 8, 64 clients, 10 s each, pool 32,
#                                     # group commit on and off, each hammer run followed by wrk
#   bench/run.sh --pool-size 4,8,16   # also sweep rowlock's pool size (pgbench runs once)
#   bench/run.sh --group-commit on    # only group commit on
#   bench/run.sh transfers            # transfers between 1,000 accounts; also: jobs, pgbouncer
#   bench/run.sh scripts              # print pgbench's scripts, built from rowlock's statements
#   bench/run.sh --help               # every option of the orchestrator (`rowlock bench`)
#
# Builds the release binary first (do not run it while something else is compiling: the
# machine's cores are the benchmark's). Prints one table and writes it as JSON to
# bench/results/bench-<unix time>.json and bench/results/bench-latest.json (other benchmarks: <name>-….json).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
export RUST_LOG="${RUST_LOG:-warn}"
exec target/release/rowlock bench "$@"
