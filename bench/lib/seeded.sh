# Sourced by the bench's comparison scripts (ab.sh, instructions.sh, pgbench-extra.sh): they all
# run against the database bench/run.sh seeded, with the same knobs and the same server setup.
# The including script sets SCRIPT (its name, for messages) and calls `seeded_db BIN` first.
# shellcheck shell=bash

BENCH_DIR=${BENCH_DIR:?set BENCH_DIR before sourcing}
ROOT=$(dirname "$BENCH_DIR")
TENANTS=${TENANTS:-100}
CONTACTS=${CONTACTS:-10000}
PG_PORT=${PG_PORT:-55434}
PG_DIR=${PG_DIR:-$ROOT/target/bench-pg}
PIN=${PIN:-1}
SUT_CPUS=${SUT_CPUS:-0}
LOADGEN_CPUS=${LOADGEN_CPUS:-1}
BENCH_PASSWORD=${BENCH_PASSWORD:-tessera-bench-password-1}
LABEL=${LABEL:-}

log() { printf '\n== %s\n' "$*" >&2; }
die() { echo "$SCRIPT: $*" >&2; exit 2; }
pin() { local cpus=$1; shift; if [[ $PIN == 1 ]]; then taskset -c "$cpus" "$@"; else "$@"; fi; }

# seeded_db BIN: starts the bench cluster (pinned to the system-under-test CPUs) with BIN's devdb,
# checks run.sh seeded it, and sets DB_URL (superuser) and APP_URL (tessera_app).
seeded_db() {
    local super
    super=$(pin "$SUT_CPUS" "$1" devdb start --dir "$PG_DIR" --port "$PG_PORT" | tail -n 1)
    DB_URL=${super%/*}/tessera_bench
    APP_URL=$(sed -E 's#^(postgres(ql)?://)[^@/]*@#\1tessera_app@#' <<<"$DB_URL")
    [[ $(psql "$DB_URL" -X -tAc "SELECT count(*) FROM tenants WHERE slug LIKE 'bench-%'") == "$TENANTS" ]] \
        || die "the bench database is not seeded with $TENANTS tenants: run bench/run.sh first"
}

# build_and_wrk BIN: `cargo build --release --locked` unless SKIP_BUILD=1, then BIN must exist;
# wrk is installed with apt-get when missing.
build_and_wrk() {
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
        log "cargo build --release --locked"
        cargo build --release --locked >&2
    fi
    [[ -x $1 ]] || die "no binary at $1"
    if ! command -v wrk >/dev/null 2>&1; then
        local sudo_=()
        [[ $(id -u) -eq 0 ]] || sudo_=(sudo)
        "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >&2 || die "wrk missing"
    fi
}

# migrate_and_seed BIN SUPERUSER_URL: the bench database on that server, migrated and seeded
# with TENANTS x CONTACTS (both steps are no-ops when already done), by BIN.
migrate_and_seed() {
    local bin=$1 super=$2 db=${2%/*}/tessera_bench
    if [[ $(psql "$super" -X -tAc "SELECT 1 FROM pg_database WHERE datname = 'tessera_bench'") != 1 ]]; then
        psql "$super" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE tessera_bench"
    fi
    TESSERA_ENV=development TESSERA_DATABASE__MIGRATION_URL=$db \
        TESSERA_DATABASE__URL=$(sed -E 's#^(postgres(ql)?://)[^@/]*@#\1tessera_app@#' <<<"$db") \
        "$bin" migrate >&2
    TESSERA_BIN=$bin TESSERA_DATABASE__MIGRATION_URL=$db "$BENCH_DIR/seed.sh" "$TENANTS" "$CONTACTS"
}

# server_env KEY_FILE: the environment every compared server runs with: one signing key written
# to KEY_FILE (so a token minted once is good on every server), the bench database, no throttling
# of the bench's own logins.
server_env() {
    python3 - "$1" <<'PY'
import base64, os, sys
der = bytes.fromhex("302e020100300506032b657004220420") + os.urandom(32)  # PKCS#8 Ed25519
open(sys.argv[1], "w").write(
    "-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PRIVATE KEY-----\n")
PY
    export TESSERA_ENV=development TESSERA_LOG__LEVEL=warn TESSERA_AUTH__SIGNING_KEY_FILE=$1
    export TESSERA_DATABASE__URL=$APP_URL TESSERA_AUTH__LOGIN_IP_PER_MINUTE=100000
}

# start_server BIN PORT LOG [NAME=VALUE...]: `BIN serve` on 127.0.0.1:PORT with the extra
# environment, pinned to the system-under-test CPUs when PIN=1; its pid joins PIDS (stop_servers)
# and it answers before this returns.
PIDS=()
start_server() {
    local bin=$1 port=$2 log=$3
    shift 3
    # Not through pin(): a function run with & is a subshell, and $! must be the server itself
    # (env and taskset exec it).
    if [[ $PIN == 1 ]]; then
        env "$@" TESSERA_HTTP__BIND="127.0.0.1:$port" taskset -c "$SUT_CPUS" "$bin" serve >"$log" 2>&1 &
    else
        env "$@" TESSERA_HTTP__BIND="127.0.0.1:$port" "$bin" serve >"$log" 2>&1 &
    fi
    PIDS+=($!)
    python3 "$BENCH_DIR/lib/client.py" ready --port "$port" --pid "$!" --timeout 60 \
        || { cat "$log" >&2; die "the server on port $port did not start"; }
}

# stop_servers: TERM every server start_server started, and wait for it.
stop_servers() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    PIDS=()
}

# w1_rate PORT TOKENS SECONDS OUT: req/s of one W1 wrk run (GET /v1/contacts/{id}, CONCURRENCY
# connections, THREADS threads, pinned to LOADGEN_CPUS) against PORT with the TOKENS file; prints
# 0 when the run had errors (an invalid run). The output stays in OUT.
w1_rate() {
    local port=$1 tokens=$2 seconds=$3 out=$4
    TESSERA_BENCH_TOKENS=$tokens TESSERA_BENCH_PORT=$port TESSERA_BENCH_CONTACTS=$CONTACTS \
        pin "$LOADGEN_CPUS" wrk -t"$THREADS" -c"$CONCURRENCY" -d"${seconds}s" --timeout 10s \
        -s "$BENCH_DIR/wrk/get_contact.lua" "http://127.0.0.1:$port" >"$out" 2>&1
    if grep -qE 'Non-2xx|Socket errors' "$out"; then echo 0; return; fi
    awk '/^Requests\/sec:/ {print $2}' "$out"
}

# report_block TITLE TEXT: appends a block to today's results file and prints it.
report_block() {
    {
        printf '\n## %s %s UTC\n' "$1" "$(date -u '+%F %T')"
        [[ -n $LABEL ]] && printf -- '- %s\n' "$LABEL"
        printf '%s\n' "$2"
    } | tee -a "$BENCH_DIR/results/$(date -u +%F).md"
}

# interleaved MEASURE: ROUNDS rounds of `MEASURE SIDE ROUND` (which prints a rate; 0 marks an
# invalid run) for sides A and B, alternating which goes first so neither always gets the fresher
# machine; prints one line "round A B" per round, for ratio_table.
interleaved() {
    local measure=$1 r side rate a b order
    for ((r = 1; r <= ROUNDS; r++)); do
        if ((r % 2)); then order=(A B); else order=(B A); fi
        for side in "${order[@]}"; do
            rate=$("$measure" "$side" "$r")
            log "round $r: $side $rate"
            if [[ $side == A ]]; then a=$rate; else b=$rate; fi
        done
        echo "$r $a $b"
    done
}

# ratio_table UNIT: reads lines "round A B" (A, B: rates; 0 marks an invalid run) and prints a
# Markdown table of the rounds and the median of the per-round ratios B / A.
ratio_table() {
    python3 -c '
import statistics, sys
unit = sys.argv[1]
rows = [l.split() for l in sys.stdin if l.strip()]
ratios = []
print(f"| round | A {unit} | B {unit} | B / A |")
print("|---|---|---|---|")
for r, a, b in rows:
    a, b = float(a), float(b)
    ratio = b / a if a > 0 and b > 0 else None
    if ratio is not None:
        ratios.append(ratio)
    print(f"| {r} | {a:,.0f} | {b:,.0f} | {ratio:.3f} |" if ratio else f"| {r} | {a:,.0f} | {b:,.0f} | invalid |")
print()
print(f"median B / A: **{statistics.median(ratios):.3f}** over {len(ratios)} valid rounds" if ratios else "no valid round")
' "$1"
}
