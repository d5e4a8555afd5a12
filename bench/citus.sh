#!/usr/bin/env bash
# W1 (GET /v1/contacts/{id}, run.sh's workload) on a Citus cluster against W1 on one PostgreSQL,
# in the same run: one server binary, two servers side by side, A on the single-node bench
# database run.sh seeded, B on a private Citus cluster (a coordinator and two workers, started by
# scripts/citus) migrated and seeded with the same TENANTS x CONTACTS. Measured in interleaved
# rounds like ab.sh; the report is the median of the per-round ratios Citus / single node.
#
# The extra hop is expected: on Citus the server talks to the coordinator, which routes each
# statement of the transaction to the worker holding the tenant's shard.
#
# Usage: bench/citus.sh
#   From nothing: installs wrk if missing, builds the release binary unless SKIP_BUILD=1, and
#   migrates and seeds whichever side is not seeded yet (bench/seed.sh, a few minutes per side at
#   100 x 10,000; run.sh's single-node database in target/bench-pg is reused as is). Both
#   clusters keep their data (target/bench-pg, target/bench-citus), so later runs skip seeding.
# Knobs: ROUNDS (5), DURATION (10 s), CONCURRENCY (32), THREADS (2), PIN/SUT_CPUS/LOADGEN_CPUS
#   (all three Citus nodes, the single node and both servers share SUT_CPUS), PG_PORT/PG_DIR (as
#   run.sh), CITUS_PORT (55450; the workers take the next two), CITUS_DIR (target/bench-citus),
#   PORT_A/PORT_B (58081/58082), TESSERA_BIN (target/release/tessera), LABEL.
set -euo pipefail

SCRIPT=citus.sh
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib/seeded.sh
source "$BENCH_DIR/lib/seeded.sh"
cd "$ROOT"

BIN=${TESSERA_BIN:-$ROOT/target/release/tessera}
SKIP_BUILD=${SKIP_BUILD:-0}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-32}
THREADS=${THREADS:-2}
PORT_A=${PORT_A:-58081}
PORT_B=${PORT_B:-58082}
CITUS_PORT=${CITUS_PORT:-55450}
CITUS_DIR=${CITUS_DIR:-$ROOT/target/bench-citus}
WORK=$ROOT/target/bench-citus-run/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$WORK"
build_and_wrk "$BIN"

cleanup() {
    set +e
    stop_servers
    "$BIN" devdb stop --dir "$PG_DIR" >/dev/null 2>&1
    "$ROOT/scripts/citus" stop "$CITUS_DIR" >/dev/null 2>&1
}
trap cleanup EXIT

log "one PostgreSQL in $PG_DIR (127.0.0.1:$PG_PORT)"
migrate_and_seed "$BIN" "$(pin "$SUT_CPUS" "$BIN" devdb start --dir "$PG_DIR" --port "$PG_PORT" | tail -n 1)"
seeded_db "$BIN"
SINGLE_APP_URL=$APP_URL

log "Citus cluster in $CITUS_DIR (127.0.0.1:$CITUS_PORT and the next two ports)"
coordinator=$(pin "$SUT_CPUS" "$ROOT/scripts/citus" start "$CITUS_DIR" "$CITUS_PORT")
"$ROOT/scripts/citus" prepare-db "$coordinator" tessera_bench
migrate_and_seed "$BIN" "$coordinator"
CITUS_APP_URL=$(sed -E 's#^(postgres(ql)?://)[^@/]*@#\1tessera_app@#' <<<"${coordinator%/*}/tessera_bench")

# Both sides start from the same cache state (as in run.sh): the contacts heap and its primary key
# read into the OS page cache; on Citus, every shard of both on its worker.
log "prewarm contacts and contacts_pkey on both sides"
psql "${SINGLE_APP_URL/tessera_app@/postgres@}" -X -q -v ON_ERROR_STOP=1 \
    -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
    -c "SELECT pg_prewarm('contacts', 'read'), pg_prewarm('contacts_pkey', 'read')" >/dev/null
failed=$(psql "${CITUS_APP_URL/tessera_app@/postgres@}" -X -q -tA -v ON_ERROR_STOP=1 \
    -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
    -c "SELECT count(*) FILTER (WHERE NOT success) FROM (
          SELECT success FROM run_command_on_shards('contacts', \$\$SELECT pg_prewarm('%s', 'read')\$\$)
          UNION ALL
          SELECT success FROM run_command_on_shards('contacts',
              \$\$SELECT pg_prewarm(replace('%s', 'contacts_', 'contacts_pkey_'), 'read')\$\$)) r")
[[ $failed == 0 ]] || die "pg_prewarm failed on $failed Citus shards"

server_env "$WORK/signing-key.pem"
export TESSERA_DATABASE__POOL_SIZE=$CONCURRENCY
for side in A B; do
    port_var=PORT_$side
    if [[ $side == A ]]; then url=$SINGLE_APP_URL; else url=$CITUS_APP_URL; fi
    start_server "$BIN" "${!port_var}" "$WORK/server-$side.log" TESSERA_DATABASE__URL="$url"
    # Each side logs in against its own database (user ids differ between the two seeds).
    python3 "$BENCH_DIR/lib/client.py" login --port "${!port_var}" --tenants "$TENANTS" \
        --password "$BENCH_PASSWORD" --out "$WORK/tokens-$side.tsv" >&2
done

# req/s of one wrk run for SIDE; a run with errors counts as invalid (prints 0).
run_wrk() {
    local port_var=PORT_$1
    w1_rate "${!port_var}" "$WORK/tokens-$1.tsv" "$2" "$3"
}
for side in A B; do  # warm both (caches, prepared statements, pools, worker connections)
    [[ $(run_wrk "$side" 10 "$WORK/warmup-$side.txt") != 0 ]] \
        || { cat "$WORK/warmup-$side.txt" >&2; die "warm-up of side $side had errors"; }
done

measure_side() { run_wrk "$1" "$DURATION" "$WORK/wrk-$1-$2.txt"; }
ROWS=$(interleaved measure_side)

report_block "Citus vs one PostgreSQL (W1)" "$(
    printf -- '- A: one PostgreSQL (%s), B: Citus 13.2.2, coordinator + 2 workers on this machine (%s); same binary, %s rounds of %s s each side, alternating order; wrk -t%s -c%s, GET /v1/contacts/{id}, %s x %s\n\n' \
        "$PG_DIR" "$CITUS_DIR" "$ROUNDS" "$DURATION" "$THREADS" "$CONCURRENCY" "$TENANTS" "$CONTACTS"
    ratio_table req/s <<<"$ROWS"
)"
