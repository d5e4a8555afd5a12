#!/usr/bin/env bash
# Tessera benchmark, from nothing: GET /v1/contacts/{id} through the server (wrk) against the same
# transaction run by pgbench straight on PostgreSQL, at the same concurrency, one after the other
# on the same machine and data; then the server's memory under 256 connections.
#
#   bench/run.sh                      # 100 tenants x 10,000 contacts, 32 connections, 20 s runs
#   CONCURRENCY=64 DURATION=30 bench/run.sh
#
# See bench/README.md for the method and every knob. Exit status: 0 when every run was valid (no
# failed request or transaction, every correctness check passed), 1 otherwise. Meeting the
# performance goals does not change the exit status; the report says whether they are met.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
cd "$ROOT"

# ----------------------------------------------------------------------------------------- knobs
TENANTS=${TENANTS:-100}
CONTACTS=${CONTACTS:-10000}
CONCURRENCY=${CONCURRENCY:-32}
THREADS=${THREADS:-2}                     # wrk -t and pgbench -j
DURATION=${DURATION:-20}                  # seconds per measured run
WARMUP=${WARMUP:-5}                       # seconds of checked warm-up before the first measured run of each kind
ROUNDS=${ROUNDS:-3}                       # interleaved rounds of every measured run (medians reported)
RSS_CONNECTIONS=${RSS_CONNECTIONS:-256}
RSS_DURATION=${RSS_DURATION:-15}
POOL_SIZE=${POOL_SIZE:-$CONCURRENCY}      # server's database pool = pgbench's connection count
PG_PORT=${PG_PORT:-55434}
HTTP_PORT=${HTTP_PORT:-58080}
PG_DIR=${PG_DIR:-$ROOT/target/bench-pg}
WORK=${WORK_DIR:-$ROOT/target/bench-run}
RESULTS_DIR=${RESULTS_DIR:-$BENCH_DIR/results}
PGBENCH_VARIANTS=${PGBENCH_VARIANTS:-simple prepared pipelined pipelined-extended}
GOAL_BASELINES=${GOAL_BASELINES:-simple prepared pipelined}  # the variants the 0.8x goal is judged against
PIN=${PIN:-1}
SUT_CPUS=${SUT_CPUS:-0}                   # server + PostgreSQL (the system under test)
LOADGEN_CPUS=${LOADGEN_CPUS:-1}           # wrk / pgbench
SKIP_BUILD=${SKIP_BUILD:-0}
TESSERA_BIN=${TESSERA_BIN:-$ROOT/target/release/tessera}
BENCH_PASSWORD=${BENCH_PASSWORD:-tessera-bench-password-1}
RATIO_GOAL=0.8
RSS_GOAL_MB=100
DB_NAME=tessera_bench
export BENCH_PASSWORD

log() { printf '\n== %s\n' "$*" >&2; }
die() { echo "run.sh: $*" >&2; exit 2; }

for v in TENANTS CONTACTS CONCURRENCY THREADS DURATION WARMUP ROUNDS RSS_CONNECTIONS RSS_DURATION POOL_SIZE PG_PORT HTTP_PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((CONCURRENCY >= THREADS && RSS_CONNECTIONS >= THREADS)) || die "connections must be >= THREADS"
((DURATION >= 1 && RSS_DURATION >= 1 && ROUNDS >= 1)) || die "DURATION, RSS_DURATION and ROUNDS must be >= 1"
((PG_PORT != 5432)) || die "port 5432 belongs to the system PostgreSQL; never benchmark on it"

# ----------------------------------------------------------------------------------------- tools
apt_updated=0
apt_install() {
    # As root directly; otherwise through sudo (which may ask for a password), like devdb.
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "$* missing; install it (apt-get install -y $*) as root"
        sudo=(sudo env DEBIAN_FRONTEND=noninteractive)
    fi
    if ((apt_updated == 0)); then "${sudo[@]}" apt-get update >&2; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "$@" >&2
}
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v pgbench >/dev/null 2>&1 || apt_install postgresql-client
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
command -v python3 >/dev/null 2>&1 || apt_install python3
command -v taskset >/dev/null 2>&1 || apt_install util-linux
command -v timeout >/dev/null 2>&1 || apt_install coreutils

NCPU=$(nproc)
if [[ $PIN == 1 ]] && ((NCPU < 2)); then
    echo "run.sh: only $NCPU CPU; not pinning" >&2
    PIN=0
fi
# pin CPUS CMD...: run CMD on CPUS when pinning, as is otherwise.
pin() { local cpus=$1; shift; if [[ $PIN == 1 ]]; then taskset -c "$cpus" "$@"; else "$@"; fi; }

# -------------------------------------------------------------------------------- clean-up trap
SERVER_PID=""
PG_STARTED=0
cleanup() {
    local rc=$?
    set +e
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    if ((PG_STARTED)); then
        "$TESSERA_BIN" devdb stop --dir "$PG_DIR" >/dev/null 2>&1 \
            || echo "run.sh: could not stop the bench cluster in $PG_DIR" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$WORK" "$RESULTS_DIR"
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
RUN_DIR=$WORK/$RUN_ID
mkdir -p "$RUN_DIR"
RESULTS=$RUN_DIR/results.jsonl
: >"$RESULTS"
echo "run.sh: raw output in $RUN_DIR" >&2

# ----------------------------------------------------------------------------------------- build
if [[ $SKIP_BUILD != 1 ]]; then
    log "cargo build --release --locked"
    cargo build --release --locked
fi
[[ -x $TESSERA_BIN ]] || die "no binary at $TESSERA_BIN"

# ------------------------------------------------------------------------------------- database
log "private PostgreSQL in $PG_DIR on port $PG_PORT"
PG_STARTED=1
# Started pinned, so the postmaster and every backend it forks inherit the system-under-test CPUs.
SUPER_URL=$(pin "$SUT_CPUS" "$TESSERA_BIN" devdb start --dir "$PG_DIR" --port "$PG_PORT" | tail -n 1)
[[ $SUPER_URL =~ ^postgres(ql)?://[^@/]+@127\.0\.0\.1:([0-9]+)/ ]] || die "devdb start printed '$SUPER_URL', not a URL"
ACTUAL_PG_PORT=${BASH_REMATCH[2]}
((ACTUAL_PG_PORT != 5432)) || die "devdb answered with port 5432 (the system PostgreSQL); refusing"
BASE_URL=${SUPER_URL%/*}
BENCH_SU_URL=$BASE_URL/$DB_NAME
APP_URL=$(sed -E 's#^(postgres(ql)?://)[^@/]*@#\1tessera_app@#' <<<"$BENCH_SU_URL")

# A cluster left running by an earlier run was not started pinned: pin the postmaster and its
# children now (new backends inherit the postmaster's affinity).
PM_PID_FILE=$(find "$PG_DIR" -maxdepth 2 -name postmaster.pid -print -quit)
if [[ $PIN == 1 && -n $PM_PID_FILE ]]; then
    pm_pid=$(head -n 1 "$PM_PID_FILE")
    taskset -pc "$SUT_CPUS" "$pm_pid" >/dev/null
    # shellcheck disable=SC2013 # /proc paths have no spaces
    for status in $(grep -l -E "^PPid:[[:space:]]+$pm_pid\$" /proc/[0-9]*/status 2>/dev/null); do
        child=${status#/proc/}
        taskset -pc "$SUT_CPUS" "${child%/status}" >/dev/null 2>&1 || true
    done
fi

if [[ $(psql "$SUPER_URL" -X -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'") != 1 ]]; then
    psql "$SUPER_URL" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB_NAME"
fi
export TESSERA_ENV=development
export TESSERA_DATABASE__MIGRATION_URL=$BENCH_SU_URL
export TESSERA_DATABASE__URL=$APP_URL
log "tessera migrate"
"$TESSERA_BIN" migrate

log "seed: $TENANTS tenants x $CONTACTS contacts"
TESSERA_BIN=$TESSERA_BIN "$BENCH_DIR/seed.sh" "$TENANTS" "$CONTACTS"

# Every run starts from the same cache state: the contacts heap and the index the lookup uses are
# read into the OS page cache (pg_prewarm 'read'), so whichever run goes first does not pay for a
# cold cache after seeding or after the machine reclaimed memory.
log "prewarm contacts and contacts_pkey"
psql "$BENCH_SU_URL" -X -q -v ON_ERROR_STOP=1 \
    -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
    -c "SELECT pg_prewarm('contacts', 'read'), pg_prewarm('contacts_pkey', 'read')" >/dev/null \
    || die "pg_prewarm failed"

# The app role reads a seeded row under its tenant context and nothing under another: the same
# SELECT pgbench runs, through the same RLS.
log "RLS sanity check as tessera_app"
probe() {
    psql "$APP_URL" -X -tA -v ON_ERROR_STOP=1 \
        -c "BEGIN READ ONLY" \
        -c "SET LOCAL app.tenant_id = '00000000-0000-7000-8000-$((100000000000 + $1))'" \
        -c "SELECT count(*) FROM contacts WHERE tenant_id = '00000000-0000-7000-8000-$((100000000000 + $2))' AND id = '$((10000000 + $2))-0000-7000-8000-$((100000000000 + $3))' AND deleted_at IS NULL" \
        -c "COMMIT" | grep -E '^[0-9]+$'
}
[[ $(probe 1 1 "$CONTACTS") == 1 ]] || die "tessera_app does not see tenant 1's contact $CONTACTS under tenant 1"
if ((TENANTS > 1)); then
    [[ $(probe 2 1 1) == 0 ]] || die "tessera_app sees tenant 1's contact under tenant 2: RLS is not in force"
fi

# ---------------------------------------------------------------------------------------- server
(exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT") 2>/dev/null && die "something already listens on 127.0.0.1:$HTTP_PORT (set HTTP_PORT)"
log "tessera serve on 127.0.0.1:$HTTP_PORT (pool_size $POOL_SIZE)"
export TESSERA_HTTP__BIND=127.0.0.1:$HTTP_PORT
export TESSERA_DATABASE__POOL_SIZE=$POOL_SIZE
export TESSERA_LOG__LEVEL=${TESSERA_LOG__LEVEL:-warn}
export TESSERA_AUTH__LOGIN_IP_PER_MINUTE=100000
export TESSERA_AUTH__LOGIN_FAILURES_PER_ACCOUNT_IP_PER_MINUTE=100000
export TESSERA_AUTH__LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR=100000
export TESSERA_HTTP__SHUTDOWN_TIMEOUT_SECS=${TESSERA_HTTP__SHUTDOWN_TIMEOUT_SECS:-5}
# Not through pin(): a function run with & is a subshell, and $! must be the server itself
# (taskset execs it).
if [[ $PIN == 1 ]]; then
    taskset -c "$SUT_CPUS" "$TESSERA_BIN" serve >"$RUN_DIR/server.log" 2>&1 &
else
    "$TESSERA_BIN" serve >"$RUN_DIR/server.log" 2>&1 &
fi
SERVER_PID=$!
python3 "$BENCH_DIR/lib/client.py" ready --port "$HTTP_PORT" --pid "$SERVER_PID" --timeout 120 \
    || { tail -n 30 "$RUN_DIR/server.log" >&2; die "server did not become ready"; }

TOKENS=$RUN_DIR/tokens.tsv
TOKENS_AT=0
login() {
    log "logging in to $TENANTS tenants"
    python3 "$BENCH_DIR/lib/client.py" login --port "$HTTP_PORT" --tenants "$TENANTS" \
        --password "$BENCH_PASSWORD" --out "$TOKENS" || die "login failed"
    TOKENS_AT=$SECONDS
}
# Access tokens live 15 minutes: log in again before a run that could outlive them.
fresh_tokens() { (((SECONDS - TOKENS_AT) + $1 + 60 < 900)) || login; }
login
python3 "$BENCH_DIR/lib/client.py" check --port "$HTTP_PORT" --tokens "$TOKENS" --contacts "$CONTACTS" \
    || die "the server answered wrongly before any load (see above)"

export TESSERA_BENCH_TOKENS=$TOKENS
export TESSERA_BENCH_CONTACTS=$CONTACTS
export TESSERA_BENCH_PORT=$HTTP_PORT

# run_wrk NAME ROLE CONNECTIONS SECONDS STRICT [ROUND]: one wrk run, recorded in $RESULTS.
run_wrk() {
    local name=$1 role=$2 conns=$3 secs=$4 strict=$5 round=${6:-1} out rc=0 args=()
    out=$RUN_DIR/wrk-$name-$role-$round.txt
    [[ $strict == 1 ]] && args=(--strict)
    cp /proc/stat "$out.stat-before"
    TESSERA_BENCH_STRICT=$strict pin "$LOADGEN_CPUS" timeout --foreground -k 10 $((secs + 60)) \
        wrk -t"$THREADS" -c"$conns" -d"${secs}s" --timeout 10s --latency \
        -s "$BENCH_DIR/wrk/get_contact.lua" "http://127.0.0.1:$HTTP_PORT" >"$out" 2>&1 || rc=$?
    cp /proc/stat "$out.stat-after"
    python3 "$BENCH_DIR/lib/report.py" wrk --name "$name" --role "$role" --round "$round" --out "$RESULTS" \
        --exit-code "$rc" --cpu-before "$out.stat-before" --cpu-after "$out.stat-after" \
        "${args[@]}" <"$out"
}

# run_pgbench VARIANT ROLE SECONDS [ROUND]: one pgbench run as tessera_app, recorded in $RESULTS.
run_pgbench() {
    local variant=$1 role=$2 secs=$3 round=${4:-1} script mode out rc=0 logargs=()
    case $variant in
        simple) script=$BENCH_DIR/sql/get_contact_simple.sql; mode=simple ;;
        prepared) script=$BENCH_DIR/sql/get_contact_prepared.sql; mode=prepared ;;
        pipelined) script=$BENCH_DIR/sql/get_contact_pipelined.sql; mode=prepared ;;
        pipelined-extended) script=$BENCH_DIR/sql/get_contact_pipelined.sql; mode=extended ;;
        *) die "unknown pgbench variant '$variant' (simple, prepared, pipelined, pipelined-extended)" ;;
    esac
    if [[ $role == check && $variant == pipelined* ]]; then
        # pgbench refuses \gset in a pipeline: check the same statements unpipelined, with \gset.
        local check=$RUN_DIR/get_contact_pipelined_check.sql
        sed -e '/^\\startpipeline/d' -e '/^\\endpipeline/d' \
            -e 's/^\(.*deleted_at IS NULL\);$/\1\n\\gset r_/' "$script" >"$check"
        grep -q '^\\gset r_$' "$check" || die "could not derive a checking copy of $script"
        script=$check
    fi
    out=$RUN_DIR/pgbench-$variant-$role-$round.txt
    local prefix=$RUN_DIR/pgbench-$variant-$role-$round-log
    [[ $role == measure ]] && logargs=(--log "--log-prefix=$prefix")
    cp /proc/stat "$out.stat-before"
    pin "$LOADGEN_CPUS" timeout --foreground -k 10 $((secs + 60)) \
        pgbench -n -M "$mode" -f "$script" -D ntenants="$TENANTS" -D ncontacts="$CONTACTS" \
        -c "$CONCURRENCY" -j "$THREADS" -T "$secs" "${logargs[@]}" "$APP_URL" >"$out" 2>&1 || rc=$?
    cp /proc/stat "$out.stat-after"
    python3 "$BENCH_DIR/lib/report.py" pgbench --name "pgbench-$variant" --role "$role" --round "$round" \
        --mode "$mode" --script "${script#"$ROOT"/}" --log-prefix "$prefix" --out "$RESULTS" \
        --exit-code "$rc" --cpu-before "$out.stat-before" --cpu-after "$out.stat-after" <"$out"
    [[ ${KEEP_PGBENCH_LOGS:-0} == 1 ]] || rm -f "$prefix".*
}

# ----------------------------------------------------------------------------------- the runs
log "idle server memory"
cat "/proc/$SERVER_PID/status" >"$RUN_DIR/server-status-idle.txt"
grep -E '^(VmRSS|VmHWM|Threads)' "$RUN_DIR/server-status-idle.txt" >&2

# ROUNDS rounds, each: the server, then every pgbench variant. Interleaving puts each server run
# next to its baselines in time, so the per-round ratios see the same machine state; the report
# takes medians. The checked warm-ups run in round 1 only.
for ((round = 1; round <= ROUNDS; round++)); do
    log "round $round of $ROUNDS: server: wrk -t$THREADS -c$CONCURRENCY, ${DURATION}s measured"
    fresh_tokens $((WARMUP + DURATION))
    if ((round == 1 && WARMUP > 0)); then run_wrk server check "$CONCURRENCY" "$WARMUP" 1; fi
    run_wrk server measure "$CONCURRENCY" "$DURATION" 0 "$round"

    for variant in $PGBENCH_VARIANTS; do
        log "round $round of $ROUNDS: pgbench-$variant: -c$CONCURRENCY -j$THREADS, ${DURATION}s measured"
        # The checked run always goes first (even with WARMUP=0): it proves the script finds rows.
        if ((round == 1)); then run_pgbench "$variant" check $((WARMUP > 0 ? WARMUP : 1)); fi
        run_pgbench "$variant" measure "$DURATION" "$round"
    done
done

log "server RSS under $RSS_CONNECTIONS connections for ${RSS_DURATION}s"
fresh_tokens "$RSS_DURATION"
SAMPLES=$RUN_DIR/rss-samples.txt
: >"$SAMPLES"
(
    end=$((SECONDS + RSS_DURATION + 5))
    while ((SECONDS < end)) && [[ -r /proc/$SERVER_PID/status ]]; do
        awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" >>"$SAMPLES" 2>/dev/null || true
        sleep 0.5
    done
) &
SAMPLER_PID=$!
rss_rc=0
TESSERA_BENCH_STRICT=0 pin "$LOADGEN_CPUS" timeout --foreground -k 10 $((RSS_DURATION + 60)) \
    wrk -t"$THREADS" -c"$RSS_CONNECTIONS" -d"${RSS_DURATION}s" --timeout 10s --latency \
    -s "$BENCH_DIR/wrk/get_contact.lua" "http://127.0.0.1:$HTTP_PORT" >"$RUN_DIR/wrk-rss.txt" 2>&1 || rss_rc=$?
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
cat "/proc/$SERVER_PID/status" >"$RUN_DIR/server-status-after.txt" 2>/dev/null || true
python3 "$BENCH_DIR/lib/report.py" rss --out "$RESULTS" --connections "$RSS_CONNECTIONS" \
    --idle-status "$RUN_DIR/server-status-idle.txt" --load-samples "$SAMPLES" \
    --after-status "$RUN_DIR/server-status-after.txt" \
    --wrk-stdout "$RUN_DIR/wrk-rss.txt" --wrk-exit-code "$rss_rc"

# ---------------------------------------------------------------------------------------- report
if [[ $PIN == 1 ]]; then
    pinning="server and PostgreSQL on CPU $SUT_CPUS, wrk/pgbench on CPU $LOADGEN_CPUS (taskset)"
else
    pinning="none (PIN=0)"
fi
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null | grep -v '^?? target/' || true) ]]; then
    commit="$commit (work tree has changes)"
fi
# shellcheck disable=SC2086 # a list of words on purpose
goal_json=$(printf '"pgbench-%s",' $GOAL_BASELINES)
COMMIT="$commit" PINNING="$pinning" GOALS="[${goal_json%,}]" \
PG_VERSION=$(psql "$APP_URL" -X -tAc "SHOW server_version") \
PG_SETTINGS=$(psql "$APP_URL" -X -tAc "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers', 'max_connections', 'fsync', 'synchronous_commit', 'plan_cache_mode')") \
WRK_VERSION=$(wrk --version 2>&1 | head -n 1 | awk '{print $2}') \
PGBENCH_VERSION=$(pgbench --version | awk '{print $3}') \
python3 - "$RUN_DIR/meta.json" <<EOF
import json, os, platform, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
json.dump({
    "commit": os.environ["COMMIT"], "cpu": cpu, "cores": os.cpu_count(),
    "mem": f"{int(mem) / 1048576:.0f} GiB RAM", "kernel": "Linux " + platform.release(),
    "tenants": $TENANTS, "contacts": $CONTACTS, "concurrency": $CONCURRENCY, "threads": $THREADS,
    "duration": $DURATION, "warmup": $WARMUP, "pool_size": $POOL_SIZE,
    "server_env": "TESSERA_ENV=development, log level $TESSERA_LOG__LEVEL, release build",
    "pinning": os.environ["PINNING"], "pg_version": os.environ["PG_VERSION"],
    "pg_settings": os.environ["PG_SETTINGS"], "wrk_version": os.environ["WRK_VERSION"],
    "pgbench_version": os.environ["PGBENCH_VERSION"], "goal_baselines": json.loads(os.environ["GOALS"]),
    "ratio_goal": $RATIO_GOAL, "rss_goal_mb": $RSS_GOAL_MB,
}, open(sys.argv[1], "w"), indent=1)
EOF

log "results"
report_rc=0
python3 "$BENCH_DIR/lib/report.py" render --results "$RESULTS" --meta "$RUN_DIR/meta.json" \
    --markdown "$RESULTS_DIR/$(date -u +%F).md" || report_rc=$?
if ((report_rc != 0)); then
    echo "run.sh: some runs were INVALID (see above and $RUN_DIR)" >&2
    exit 1
fi
