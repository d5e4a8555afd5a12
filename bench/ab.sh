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

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
cd "$ROOT"

A=${1:?usage: bench/ab.sh A_BINARY B_BINARY}
B=${2:?usage: bench/ab.sh A_BINARY B_BINARY}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-32}
THREADS=${THREADS:-2}
TENANTS=${TENANTS:-100}
CONTACTS=${CONTACTS:-10000}
PG_PORT=${PG_PORT:-55434}
PG_DIR=${PG_DIR:-$ROOT/target/bench-pg}
PORT_A=${PORT_A:-58081}
PORT_B=${PORT_B:-58082}
PIN=${PIN:-1}
SUT_CPUS=${SUT_CPUS:-0}
LOADGEN_CPUS=${LOADGEN_CPUS:-1}
BENCH_PASSWORD=${BENCH_PASSWORD:-tessera-bench-password-1}
LABEL=${LABEL:-}
WORK=$ROOT/target/bench-ab/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$WORK"

log() { printf '\n== %s\n' "$*" >&2; }
die() { echo "ab.sh: $*" >&2; exit 2; }
pin() { local cpus=$1; shift; if [[ $PIN == 1 ]]; then taskset -c "$cpus" "$@"; else "$@"; fi; }
for bin in "$A" "$B"; do [[ -x $bin ]] || die "no binary at $bin"; done
command -v wrk >/dev/null 2>&1 || die "wrk missing: run bench/run.sh once first"

PIDS=()
cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    "$A" devdb stop --dir "$PG_DIR" >/dev/null 2>&1
}
trap cleanup EXIT

SUPER_URL=$(pin "$SUT_CPUS" "$A" devdb start --dir "$PG_DIR" --port "$PG_PORT" | tail -n 1)
DB_URL=${SUPER_URL%/*}/tessera_bench
[[ $(psql "$DB_URL" -X -tAc "SELECT count(*) FROM tenants WHERE slug LIKE 'bench-%'") == "$TENANTS" ]] \
    || die "the bench database is not seeded with $TENANTS tenants: run bench/run.sh first"

# One signing key for both, so a token is good on either server.
KEY=$WORK/signing-key.pem
python3 - "$KEY" <<'PY'
import base64, os, sys
seed = os.urandom(32)
der = bytes.fromhex("302e020100300506032b657004220420") + seed
pem = "-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PRIVATE KEY-----\n"
open(sys.argv[1], "w").write(pem)
PY
export TESSERA_ENV=development TESSERA_LOG__LEVEL=warn
export TESSERA_AUTH__SIGNING_KEY_FILE=$KEY
TESSERA_DATABASE__URL=$(sed -E 's#^(postgres(ql)?://)[^@/]*@#\1tessera_app@#' <<<"$DB_URL")
export TESSERA_DATABASE__URL
export TESSERA_DATABASE__POOL_SIZE=$CONCURRENCY
export TESSERA_AUTH__LOGIN_IP_PER_MINUTE=100000
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

ROWS=()
for ((r = 1; r <= ROUNDS; r++)); do
    # Alternate which side goes first, so neither always gets the fresher machine.
    if ((r % 2)); then order=(A B); else order=(B A); fi
    declare -A rate=()
    for side in "${order[@]}"; do
        port_var=PORT_$side
        rate[$side]=$(measure "${!port_var}" "$WORK/wrk-$side-$r.txt")
        log "round $r: $side ${rate[$side]} req/s"
    done
    ROWS+=("$r ${rate[A]} ${rate[B]}")
done

report=$(printf '%s\n' "${ROWS[@]}" | python3 -c '
import statistics, sys
rows = [l.split() for l in sys.stdin if l.strip()]
ratios = []
print("| round | A req/s | B req/s | B / A |")
print("|---|---|---|---|")
for r, a, b in rows:
    a, b = float(a), float(b)
    ratio = b / a if a > 0 and b > 0 else float("nan")
    if ratio == ratio: ratios.append(ratio)
    print(f"| {r} | {a:,.0f} | {b:,.0f} | {ratio:.3f} |")
print()
print(f"median B / A: **{statistics.median(ratios):.3f}** over {len(ratios)} valid rounds" if ratios else "no valid round")
')
{
    printf '\n## A/B %s UTC\n' "$(date -u '+%F %T')"
    [[ -n $LABEL ]] && printf -- '- %s\n' "$LABEL"
    # shellcheck disable=SC2016  # the backticks are Markdown, not a command
    printf -- '- A: `%s`, B: `%s`; %s rounds of %s s each side, alternating order; wrk -t%s -c%s, GET /v1/contacts/{id}, %s x %s\n\n' \
        "${A#"$ROOT"/}" "${B#"$ROOT"/}" "$ROUNDS" "$DURATION" "$THREADS" "$CONCURRENCY" "$TENANTS" "$CONTACTS"
    printf '%s\n' "$report"
} | tee -a "$BENCH_DIR/results/$(date -u +%F).md"
