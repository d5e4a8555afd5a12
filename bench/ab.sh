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

PIDS=()
cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    "$A" devdb stop --dir "$PG_DIR" >/dev/null 2>&1
}
trap cleanup EXIT

seeded_db "$A"
server_env "$WORK/signing-key.pem"
export TESSERA_DATABASE__POOL_SIZE=$CONCURRENCY
for side in A B; do
    bin=${!side} port_var=PORT_$side
    # Not through pin(): a function run with & is a subshell, and $! must be the server itself.
    if [[ $PIN == 1 ]]; then
        TESSERA_HTTP__BIND=127.0.0.1:${!port_var} taskset -c "$SUT_CPUS" "$bin" serve >"$WORK/server-$side.log" 2>&1 &
    else
        TESSERA_HTTP__BIND=127.0.0.1:${!port_var} "$bin" serve >"$WORK/server-$side.log" 2>&1 &
    fi
    PIDS+=($!)
    python3 "$BENCH_DIR/lib/client.py" ready --port "${!port_var}" --pid "$!" --timeout 60 \
        || { cat "$WORK/server-$side.log" >&2; die "server $side did not start"; }
done
python3 "$BENCH_DIR/lib/client.py" login --port "$PORT_A" --tenants "$TENANTS" \
    --password "$BENCH_PASSWORD" --out "$WORK/tokens.tsv" >&2

export TESSERA_BENCH_TOKENS=$WORK/tokens.tsv TESSERA_BENCH_CONTACTS=$CONTACTS
# req/s of one wrk run against PORT; a run with errors counts as invalid (prints 0).
measure() {
    local port=$1 out=$2
    TESSERA_BENCH_PORT=$port pin "$LOADGEN_CPUS" wrk -t"$THREADS" -c"$CONCURRENCY" -d"${DURATION}s" \
        --timeout 10s -s "$BENCH_DIR/wrk/get_contact.lua" "http://127.0.0.1:$port" >"$out" 2>&1
    if grep -qE 'Non-2xx|Socket errors' "$out"; then echo 0; return; fi
    awk '/^Requests\/sec:/ {print $2}' "$out"
}
for port in "$PORT_A" "$PORT_B"; do  # warm both (caches, prepared statements, pool)
    TESSERA_BENCH_PORT=$port pin "$LOADGEN_CPUS" wrk -t"$THREADS" -c"$CONCURRENCY" -d3s \
        -s "$BENCH_DIR/wrk/get_contact.lua" "http://127.0.0.1:$port" >/dev/null 2>&1
done

# measure_side SIDE ROUND: req/s of SIDE's server in ROUND.
measure_side() {
    local port_var=PORT_$1
    measure "${!port_var}" "$WORK/wrk-$1-$2.txt"
}
ROWS=$(interleaved measure_side)

report_block "A/B" "$(
    # shellcheck disable=SC2016  # the backticks are Markdown, not a command
    printf -- '- A: `%s`, B: `%s`; %s rounds of %s s each side, alternating order; wrk -t%s -c%s, GET /v1/contacts/{id}, %s x %s\n\n' \
        "${A#"$ROOT"/}" "${B#"$ROOT"/}" "$ROUNDS" "$DURATION" "$THREADS" "$CONCURRENCY" "$TENANTS" "$CONTACTS"
    ratio_table req/s <<<"$ROWS"
)"
