#!/usr/bin/env bash
# A/B: two server binaries on the same data, measured in interleaved rounds, for a hot-path stage
# "on" (B) against "off" (A). run.sh compares the server with PostgreSQL; this compares the server
# with itself, which is what "every new stage on the hot path is measured on vs off" needs: the
# machine's drift over minutes (seen here: 3-5x over a day) hits both sides of every round alike,
# and the result is the median of the per-round ratios B/A.
#
# Usage: bench/ab.sh A_BINARY B_BINARY
#   Needs the bench database as bench/run.sh leaves it (run it once first: it installs the tools
#   and seeds TENANTS x CONTACTS). Both binaries must accept the same configuration.
# Knobs: ROUNDS (5), DURATION (10 s), CONCURRENCY (32), THREADS (2), PIN/SUT_CPUS/LOADGEN_CPUS,
#   PG_PORT/PG_DIR (as run.sh), PORT_A/PORT_B (58081/58082), LABEL (a line for the report).
set -euo pipefail

SCRIPT=ab.sh
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib/seeded.sh
source "$BENCH_DIR/lib/seeded.sh"
cd "$ROOT"

A=${1:?usage: bench/ab.sh A_BINARY B_BINARY}
B=${2:?usage: bench/ab.sh A_BINARY B_BINARY}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-32}
THREADS=${THREADS:-2}
PORT_A=${PORT_A:-58081}
PORT_B=${PORT_B:-58082}
WORK=$ROOT/target/bench-ab/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$WORK"
for bin in "$A" "$B"; do [[ -x $bin ]] || die "no binary at $bin"; done
command -v wrk >/dev/null 2>&1 || die "wrk missing: run bench/run.sh once first"

cleanup() {
    set +e
    stop_servers
    "$A" devdb stop --dir "$PG_DIR" >/dev/null 2>&1
}
trap cleanup EXIT

seeded_db "$A"
server_env "$WORK/signing-key.pem"
export TESSERA_DATABASE__POOL_SIZE=$CONCURRENCY
start_server "$A" "$PORT_A" "$WORK/server-A.log"
start_server "$B" "$PORT_B" "$WORK/server-B.log"
python3 "$BENCH_DIR/lib/client.py" login --port "$PORT_A" --tenants "$TENANTS" \
    --password "$BENCH_PASSWORD" --out "$WORK/tokens.tsv" >&2

for port in "$PORT_A" "$PORT_B"; do  # warm both (caches, prepared statements, pool)
    w1_rate "$port" "$WORK/tokens.tsv" 3 /dev/null >/dev/null
done

# measure_side SIDE ROUND: req/s of SIDE's server in ROUND.
measure_side() {
    local port_var=PORT_$1
    w1_rate "${!port_var}" "$WORK/tokens.tsv" "$DURATION" "$WORK/wrk-$1-$2.txt"
}
ROWS=$(interleaved measure_side)

report_block "A/B" "$(
    # shellcheck disable=SC2016  # the backticks are Markdown, not a command
    printf -- '- A: `%s`, B: `%s`; %s rounds of %s s each side, alternating order; wrk -t%s -c%s, GET /v1/contacts/{id}, %s x %s\n\n' \
        "${A#"$ROOT"/}" "${B#"$ROOT"/}" "$ROUNDS" "$DURATION" "$THREADS" "$CONCURRENCY" "$TENANTS" "$CONTACTS"
    ratio_table req/s <<<"$ROWS"
)"
