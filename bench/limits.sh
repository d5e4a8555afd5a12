#!/usr/bin/env bash
# The request path's limit stages (issue 15): what they cost and whether they hold, four
# measurements, each a ratio taken within one run.
#
#   1. stages   W1 through the rate-limit stage, in-flight cap, RateLimit headers and metering
#               (`limits.enforce = true`) against the same binary with them off (`false`): two
#               servers side by side, interleaved rounds, median of on / off req/s.
#   2. tenants  W1 spread over SCALE_TENANTS (10,000) tenants against W1 over SMALL_TENANTS (10):
#               two servers, interleaved rounds, median of 10,000 / 10 req/s; both touch the
#               same number of distinct contacts (10 x 10,000 and 10,000 x 10). RSS of both.
#   3. noisy    tenant B's p99 under a modest paced load, alone and while tenant A offers about
#               10x its limit (NOISY_RPS) on the same server: interleaved rounds, median of
#               p99 with A / p99 alone.
#   4. shared   two servers sharing one private Redis; one tenant (SHARED_RPS, SHARED_BURST)
#               driven well above its limit through both for SHARED_SECONDS: combined admitted
#               (200) rate / the configured rate.
#
# Usage: bench/limits.sh                       # all four
#        MEASURE="1 3" DURATION=3 ROUNDS=1 bench/limits.sh
#   From nothing, like citus.sh: builds unless SKIP_BUILD=1, starts the bench cluster
#   (target/bench-pg, port 55434), migrates and seeds TENANTS x CONTACTS if needed, then adds its
#   own fixture once (kept in the cluster): SCALE_TENANTS tenants `scale-<i>` (i = 20001...) and
#   the tenants `limits-noisy`, `limits-quiet`, `limits-shared` (i = 30001..30003), each made by
#   `tessera tenants apply`, with one owner user and SCALE_CONTACTS contacts. Access tokens for
#   them are signed with the servers' key by `lib/client.py mint` for sessions this script writes
#   to refresh_tokens (10,000 argon2 logins would take many minutes); the bench-NNN tenants log in.
#   The bench-NNN tenants are on the free plan (20 req/s): for the run they get overrides too big
#   to ever limit, and their previous overrides are put back on exit.
# Knobs: MEASURE ("1 2 2off 2short 3 4"; 2off and 2short: controls for 2, the limit stages off,
#   and the tenant and grants caches at their lives before change notifications (60 s, 10 s)), ROUNDS (6), DURATION (10 s), WARM_B (30 s: the
#   10,000-tenant server's warm-up), CONCURRENCY (32), THREADS (2),
#   SCALE_TENANTS (10000), SCALE_CONTACTS (10), SMALL_TENANTS (10), NOISY_RPS/NOISY_BURST
#   (100/100), NOISY_CONNECTIONS/NOISY_DELAY_MS (10/10: about 1,000 req/s offered),
#   QUIET_CONNECTIONS/QUIET_DELAY_MS (4/20: about 200 req/s), SHARED_RPS/SHARED_BURST (200/200),
#   SHARED_SECONDS (20), SHARED_ROUNDS (2), SHARED_CONNECTIONS/SHARED_DELAY_MS (10/20 per
#   replica: about 900 req/s offered in all), REDIS_PORT (56390), REDIS_DIR (target/bench-redis),
#   PIN/SUT_CPUS/LOADGEN_CPUS, PG_PORT/PG_DIR, PORT_A/PORT_B (58081/58082), TESSERA_BIN, LABEL.
# Exit status: 0 when every run was valid, 1 when one was not (an answer other than 200, or 429
#   where a limit is expected, or a socket error), 2 when the setup failed. Missing a goal does
#   not fail the script; the report says "meets" or "misses".
set -euo pipefail

SCRIPT=limits.sh
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib/seeded.sh
source "$BENCH_DIR/lib/seeded.sh"
cd "$ROOT"

BIN=${TESSERA_BIN:-$ROOT/target/release/tessera}
MEASURE=${MEASURE:-1 2 2off 2short 3 4}
# Even, so each side of a pair goes first equally often: the second of a pair measured slower in
# every run (rounds alternate the order), and an odd count tilts the median.
ROUNDS=${ROUNDS:-6}
WARM_B=${WARM_B:-30}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-32}
THREADS=${THREADS:-2}
PORT_A=${PORT_A:-58081}
PORT_B=${PORT_B:-58082}
SCALE_TENANTS=${SCALE_TENANTS:-10000}
SCALE_CONTACTS=${SCALE_CONTACTS:-10}
SMALL_TENANTS=${SMALL_TENANTS:-10}
NOISY_RPS=${NOISY_RPS:-100}
NOISY_BURST=${NOISY_BURST:-100}
NOISY_CONNECTIONS=${NOISY_CONNECTIONS:-10}
NOISY_DELAY_MS=${NOISY_DELAY_MS:-10}
QUIET_CONNECTIONS=${QUIET_CONNECTIONS:-4}
QUIET_DELAY_MS=${QUIET_DELAY_MS:-20}
SHARED_RPS=${SHARED_RPS:-200}
SHARED_BURST=${SHARED_BURST:-200}
SHARED_SECONDS=${SHARED_SECONDS:-20}
SHARED_ROUNDS=${SHARED_ROUNDS:-2}
SHARED_CONNECTIONS=${SHARED_CONNECTIONS:-10}
SHARED_DELAY_MS=${SHARED_DELAY_MS:-20}
REDIS_PORT=${REDIS_PORT:-56390}
REDIS_DIR=${REDIS_DIR:-$ROOT/target/bench-redis}
SCALE_BASE=20000    # scale tenant k is index 20000 + k of the id scheme (seed_contacts.sql)
SPECIAL_BASE=30000  # limits-noisy, limits-quiet, limits-shared: 30001, 30002, 30003
# Overrides that never limit (a million per second, a trillion a month).
UNLIMITED_RATE='{"requests_per_second": 1000000, "burst": 1000000, "max_concurrent_requests": 100000}'
UNLIMITED_QUOTA='{"api_requests_per_month": 1000000000000}'
WORK=$ROOT/target/bench-limits/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$WORK"

for v in ROUNDS WARM_B DURATION CONCURRENCY THREADS SCALE_TENANTS SCALE_CONTACTS SMALL_TENANTS NOISY_RPS \
    NOISY_BURST NOISY_CONNECTIONS NOISY_DELAY_MS QUIET_CONNECTIONS QUIET_DELAY_MS SHARED_RPS \
    SHARED_BURST SHARED_SECONDS SHARED_ROUNDS SHARED_CONNECTIONS SHARED_DELAY_MS REDIS_PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((ROUNDS >= 1 && DURATION >= 1 && SHARED_ROUNDS >= 1 && SHARED_SECONDS >= 3)) \
    || die "ROUNDS, DURATION, SHARED_ROUNDS must be >= 1 and SHARED_SECONDS >= 3"
((SCALE_TENANTS >= 1 && SCALE_TENANTS <= 10000)) || die "SCALE_TENANTS must be 1..10000"
((SMALL_TENANTS >= 1 && SMALL_TENANTS <= TENANTS)) || die "SMALL_TENANTS must be 1..$TENANTS"
((REDIS_PORT != 6379 && PG_PORT != 5432)) || die "6379 and 5432 are the system's; never benchmark on them"

build_and_wrk "$BIN"
python3 -c 'import cryptography' 2>/dev/null || die "python3-cryptography missing (apt-get install python3-cryptography)"

# ------------------------------------------------------------------------------ clean-up trap
INVALID=0
REDIS_STARTED=0
RESTORE_SQL=""
BUSY_PID=""
cleanup() {
    local rc=$?
    set +e
    stop_servers
    [[ -n $BUSY_PID ]] && kill "$BUSY_PID" 2>/dev/null && wait "$BUSY_PID" 2>/dev/null
    ((REDIS_STARTED)) && "$BIN" devredis stop --dir "$REDIS_DIR" >/dev/null 2>&1
    if [[ -n $RESTORE_SQL && -s $RESTORE_SQL ]]; then
        psql "$DB_URL" -X -q -v ON_ERROR_STOP=1 -f "$RESTORE_SQL" >/dev/null \
            || echo "$SCRIPT: could not restore the bench tenants' overrides ($RESTORE_SQL)" >&2
    fi
    "$BIN" devdb stop --dir "$PG_DIR" >/dev/null 2>&1
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Whether other work (compiles, test suites) shared the machine: sampled every 5 s into a file;
# each report states the share of samples in its span that saw any.
BUSY=$WORK/busy.txt
(
    while :; do
        n=$(pgrep -fc 'rustc|cargo test|cargo build|postgres: .*tessera_test' || true)
        echo "$(date +%s) ${n:-0}" >>"$BUSY"
        sleep 5
    done
) &
BUSY_PID=$!
# busy_note SINCE: one line on the other load seen since epoch second SINCE.
busy_note() {
    awk -v since="$1" '$1 >= since { n++; if ($2 > 0) b++ } END {
        if (n == 0) print "other load: not sampled";
        else if (b == 0) printf "machine quiet during the measurement (no compile or test process in %d samples, 5 s apart)\n", n;
        else printf "**measured under load**: a compile or test suite was running in %d of %d samples (5 s apart)\n", b, n }' "$BUSY"
}

# --------------------------------------------------------------------------------- database
log "bench cluster in $PG_DIR (127.0.0.1:$PG_PORT)"
migrate_and_seed "$BIN" "$(pin "$SUT_CPUS" "$BIN" devdb start --dir "$PG_DIR" --port "$PG_PORT" | tail -n 1)"
seeded_db "$BIN"
psql_su() { psql "$DB_URL" -X -q -v ON_ERROR_STOP=1 "$@"; }

# The fixture's tenants, one "<index> <slug>" per line.
fixture_tenants() {
    local k
    for ((k = 1; k <= SCALE_TENANTS; k++)); do echo "$((SCALE_BASE + k)) scale-$((SCALE_BASE + k))"; done
    echo "$((SPECIAL_BASE + 1)) limits-noisy"
    echo "$((SPECIAL_BASE + 2)) limits-quiet"
    echo "$((SPECIAL_BASE + 3)) limits-shared"
}
FIXTURE_COUNT=$((SCALE_TENANTS + 3))
# Ids of the fixture tenants (the seed scheme), as SQL.
FIXTURE_IDS="SELECT ('00000000-0000-7000-8000-' || (100000000000 + i))::uuid FROM (
    SELECT generate_series($((SCALE_BASE + 1)), $((SCALE_BASE + SCALE_TENANTS))) AS i
    UNION ALL SELECT generate_series($((SPECIAL_BASE + 1)), $((SPECIAL_BASE + 3)))) s"

fixture_ready() {
    [[ $(psql_su -tAc "SELECT count(DISTINCT u.tenant_id) FROM users u WHERE u.tenant_id IN ($FIXTURE_IDS)
                        AND u.email LIKE 'owner@%'") == "$FIXTURE_COUNT" ]] &&
        [[ $(psql_su -tAc "SELECT count(*) FROM contacts WHERE tenant_id IN ($FIXTURE_IDS)") \
            == $((FIXTURE_COUNT * SCALE_CONTACTS)) ]]
}

if fixture_ready; then
    log "fixture present: $SCALE_TENANTS scale tenants + 3, x $SCALE_CONTACTS contacts"
else
    log "fixture: $FIXTURE_COUNT tenants by tenants apply, their owners, $SCALE_CONTACTS contacts each"
    started=$SECONDS
    manifests=$WORK/manifests
    mkdir -p "$manifests"
    while read -r i slug; do
        cat >"$manifests/$slug.toml" <<EOF
id = "00000000-0000-7000-8000-$((100000000000 + i))"
slug = "$slug"
name = "Limits bench $i"
plan = "free"

[quota_overrides]
api_requests_per_month = 1000000000000

[rate_overrides]
requests_per_second = 1000000
burst = 1000000
max_concurrent_requests = 100000
EOF
    done < <(fixture_tenants)
    TESSERA_ENV=development TESSERA_DATABASE__MIGRATION_URL=$DB_URL TESSERA_DATABASE__URL=$APP_URL \
        "$BIN" tenants apply "$manifests" >"$WORK/tenants-apply.log" 2>&1 \
        || { tail -n 20 "$WORK/tenants-apply.log" >&2; die "tenants apply failed"; }
    # One owner each, without a password (the bench mints their tokens): the rows provisioning
    # writes for a first owner (users, the owner role, one seat), written here in bulk.
    psql_su <<SQL
BEGIN;
WITH t AS (SELECT id FROM tenants WHERE id IN ($FIXTURE_IDS)
           AND NOT EXISTS (SELECT 1 FROM users u WHERE u.tenant_id = tenants.id)),
     ins AS (INSERT INTO users (tenant_id, id, email, name, password_hash)
             SELECT t.id, gen_random_uuid(), 'owner@' || tn.slug || '.test', 'Limits Owner', NULL
             FROM t JOIN tenants tn ON tn.id = t.id
             RETURNING tenant_id, id)
INSERT INTO user_roles (tenant_id, user_id, role_id)
SELECT ins.tenant_id, ins.id, r.id FROM ins JOIN roles r ON r.tenant_id = ins.tenant_id AND r.name = 'owner';
UPDATE quota_counters q SET seats = (SELECT count(*) FROM users u WHERE u.tenant_id = q.tenant_id AND u.status = 'active')
WHERE q.tenant_id IN ($FIXTURE_IDS);
COMMIT;
DELETE FROM contacts WHERE tenant_id IN ($FIXTURE_IDS);
SQL
    psql_su -v first_tenant=$((SCALE_BASE + 1)) -v last_tenant=$((SCALE_BASE + SCALE_TENANTS)) \
        -v contacts="$SCALE_CONTACTS" -f "$BENCH_DIR/sql/seed_contacts.sql"
    psql_su -v first_tenant=$((SPECIAL_BASE + 1)) -v last_tenant=$((SPECIAL_BASE + 3)) \
        -v contacts="$SCALE_CONTACTS" -f "$BENCH_DIR/sql/seed_contacts.sql"
    psql_su -c "VACUUM (FREEZE, ANALYZE) contacts" -c "ANALYZE tenants" -c "ANALYZE users" \
        -c "ANALYZE user_roles" -c "ANALYZE refresh_tokens" -c "CHECKPOINT"
    fixture_ready || die "the fixture is incomplete after setting it up"
    log "fixture made in $((SECONDS - started))s"
fi

# Sessions: one live refresh-token family per fixture owner, written fresh each run (what a login
# writes; the token itself is random and never used). SESSIONS: the file `client.py mint` reads.
SESSIONS=$WORK/sessions.tsv
psql_su -tA -F $'\t' >"$SESSIONS" <<SQL
BEGIN;
DELETE FROM refresh_tokens WHERE tenant_id IN ($FIXTURE_IDS);
INSERT INTO refresh_tokens (tenant_id, id, family_id, user_id, token_hash, expires_at)
SELECT u.tenant_id, gen_random_uuid(), gen_random_uuid(), u.id, sha256(gen_random_uuid()::text::bytea),
       now() + interval '1 day'
FROM users u WHERE u.tenant_id IN ($FIXTURE_IDS) AND u.email LIKE 'owner@%';
COMMIT;
SELECT right(t.id::text, 12)::bigint - 100000000000, t.slug, t.id, r.user_id, r.family_id
FROM refresh_tokens r JOIN tenants t ON t.id = r.tenant_id
WHERE r.tenant_id IN ($FIXTURE_IDS) ORDER BY 1;
SQL
sed -i '/^\(BEGIN\|DELETE\|INSERT\|COMMIT\)/d;/^$/d' "$SESSIONS"
[[ $(wc -l <"$SESSIONS") == "$FIXTURE_COUNT" ]] || die "expected $FIXTURE_COUNT sessions, got $(wc -l <"$SESSIONS")"

# Overrides for this run, set before any server starts (servers cache tenants for
# tenancy.cache_secs): the bench-NNN tenants unlimited (their old overrides are put back on exit),
# the noisy and the shared tenant at the rates under test.
RESTORE_SQL=$WORK/restore-overrides.sql
psql_su -tAc "SELECT format('UPDATE tenants SET rate_overrides = %L::jsonb, quota_overrides = %L::jsonb WHERE id = %L;',
                            rate_overrides, quota_overrides, id)
              FROM tenants WHERE slug LIKE 'bench-%'" >"$RESTORE_SQL"
psql_su -c "UPDATE tenants SET rate_overrides = '$UNLIMITED_RATE', quota_overrides = '$UNLIMITED_QUOTA' WHERE slug LIKE 'bench-%'" \
    -c "UPDATE tenants SET rate_overrides = '{\"requests_per_second\": $NOISY_RPS, \"burst\": $NOISY_BURST}' WHERE slug = 'limits-noisy'" \
    -c "UPDATE tenants SET rate_overrides = '{\"requests_per_second\": $SHARED_RPS, \"burst\": $SHARED_BURST, \"max_concurrent_requests\": 100000}' WHERE slug = 'limits-shared'"

server_env "$WORK/signing-key.pem"
export TESSERA_DATABASE__POOL_SIZE=$CONCURRENCY
# The purge of expired rows walks every tenant (10,003 here), a transaction each, and its first
# run lands at a random moment in a server's first 5 minutes: in whichever round it falls it
# competes with the load, on one side only. It is not the request path and not what any
# measurement here compares, so it is off (as in instructions.sh).
export TESSERA_MAINTENANCE__PURGE_INTERVAL_SECS=0
ENFORCE_ON=TESSERA_LIMITS__ENFORCE=true
ENFORCE_OFF=TESSERA_LIMITS__ENFORCE=false

# tokens_for SLUG_REGEX OUT: minted tokens of the fixture tenants whose slug matches.
tokens_for() {
    awk -F '\t' -v re="$1" '$2 ~ re' "$SESSIONS" >"$2.sessions"
    python3 "$BENCH_DIR/lib/client.py" mint --key "$WORK/signing-key.pem" --sessions "$2.sessions" --out "$2" >&2
}
# bench_tokens PORT: the bench-NNN owners' tokens, logged in on PORT (again when older than 10 min).
BENCH_TOKENS=$WORK/tokens-bench.tsv
BENCH_TOKENS_AT=-1000
bench_tokens() {
    if ((SECONDS - BENCH_TOKENS_AT > 600)); then
        python3 "$BENCH_DIR/lib/client.py" login --port "$1" --tenants "$TENANTS" \
            --password "$BENCH_PASSWORD" --out "$BENCH_TOKENS" >&2 || die "login failed"
        BENCH_TOKENS_AT=$SECONDS
    fi
}
check_server() {  # PORT TOKENS CONTACTS: the pre-load correctness check of run.sh
    python3 "$BENCH_DIR/lib/client.py" check --port "$1" --tokens "$2" --contacts "$3" >&2 \
        || die "the server on port $1 answered wrongly before any load"
}
# has_header PORT TOKENS NAME: whether a GET of the first tenant's contact 1 answers with header NAME.
has_header() {
    python3 - "$@" <<'PY'
import http.client, sys
port, tokens, name = int(sys.argv[1]), sys.argv[2], sys.argv[3].lower()
i, slug, tok = open(tokens).readline().rstrip("\n").split("\t")
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
c.request("GET", f"/v1/contacts/{10000000 + int(i)}-0000-7000-8000-{100000000000 + 1}",
          headers={"Host": f"{slug}.localhost:{port}", "Authorization": f"Bearer {tok}"})
r = c.getresponse()
r.read()
sys.exit(0 if r.status == 200 and r.getheader(name) is not None else 1)
PY
}
# rss PID: "VmRSS VmHWM" in MB.
rss() { awk '/^VmRSS:/ {r = $2} /^VmHWM:/ {h = $2} END {printf "%.1f %.1f\n", r / 1024, h / 1024}' "/proc/$1/status"; }
# invalid_rounds ROWS: counts rounds with an invalid side (a 0) and flags the run.
check_rows() {
    local bad
    bad=$(awk '$2 == 0 || $3 == 0' <<<"$1" | wc -l)
    if ((bad > 0)); then INVALID=1; echo "$bad invalid rounds" >&2; fi
}

# paced PORT TOKENS CONTACTS CONNECTIONS DELAY_MS SECONDS OUT: a wrk run that counts answers by
# status (and 200s per second), each of CONNECTIONS pausing DELAY_MS before each request; the
# TESSERA_WRK line lands in OUT.
paced() {
    TESSERA_BENCH_TOKENS=$2 TESSERA_BENCH_PORT=$1 TESSERA_BENCH_CONTACTS=$3 TESSERA_BENCH_COUNT=1 \
        TESSERA_BENCH_DELAY_MS=$5 pin "$LOADGEN_CPUS" timeout --foreground -k 5 $(($6 + 30)) \
        wrk -t1 -c"$4" -d"$6s" --timeout 10s -s "$BENCH_DIR/wrk/get_contact.lua" \
        "http://127.0.0.1:$1" >"$7" 2>&1 || echo "wrk exited with $?" >>"$7"
}
# wrk_field OUT FIELD: one field of OUT's TESSERA_WRK line (empty when there is none).
wrk_field() {
    python3 - "$1" "$2" <<'PY'
import json, re, sys
m = re.search(r"^TESSERA_WRK (\{.*\})\s*$", open(sys.argv[1]).read(), re.M)
print(json.loads(m.group(1))[sys.argv[2]] if m else "")
PY
}

# ======================================================================= 1. stages on vs off
measure_stages() {
    local since
    since=$(date +%s)
    log "1. stages on vs off: W1, $TENANTS x $CONTACTS"
    start_server "$BIN" "$PORT_A" "$WORK/m1-server-off.log" "$ENFORCE_OFF"
    start_server "$BIN" "$PORT_B" "$WORK/m1-server-on.log" "$ENFORCE_ON"
    bench_tokens "$PORT_A"
    check_server "$PORT_A" "$BENCH_TOKENS" "$CONTACTS"
    check_server "$PORT_B" "$BENCH_TOKENS" "$CONTACTS"
    # The switch does what it says: RateLimit headers from the "on" server only.
    has_header "$PORT_B" "$BENCH_TOKENS" ratelimit || die "the enforcing server sends no RateLimit header"
    ! has_header "$PORT_A" "$BENCH_TOKENS" ratelimit || die "the server with limits.enforce=false sends RateLimit headers"
    for port in "$PORT_A" "$PORT_B"; do
        [[ $(w1_rate "$port" "$BENCH_TOKENS" 5 "$WORK/m1-warm-$port.txt") != 0 ]] \
            || { cat "$WORK/m1-warm-$port.txt" >&2; die "warm-up on port $port had errors"; }
    done
    m1_side() {
        local port_var=PORT_$1
        w1_rate "${!port_var}" "$BENCH_TOKENS" "$DURATION" "$WORK/m1-wrk-$1-$2.txt"
    }
    local rows
    rows=$(interleaved m1_side)
    check_rows "$rows"
    stop_servers
    report_block "Limits 1: stages on vs off (W1)" "$(
        printf -- '- one binary, two servers side by side: A `limits.enforce = false`, B `true` (rate-limit stage, in-flight cap, RateLimit headers, api_requests metering); bench tenants with overrides that never limit; %s rounds of %s s each side, alternating order; wrk -t%s -c%s, GET /v1/contacts/{id}, %s x %s\n- %s\n\n' \
            "$ROUNDS" "$DURATION" "$THREADS" "$CONCURRENCY" "$TENANTS" "$CONTACTS" "$(busy_note "$since")"
        ratio_table req/s <<<"$rows"
        goal_line "$rows" 0.90 ge "on / off ≥ 0.90 (stages cost ≤ 10 %)"
    )"
}

# goal_line ROWS GOAL ge|le TEXT: the verdict on the median of the per-round ratios B / A.
goal_line() {
    python3 - "$2" "$3" "$4" <<PY
import statistics, sys
goal, how, text = float(sys.argv[1]), sys.argv[2], sys.argv[3]
r = [float(b) / float(a) for _, a, b in (l.split() for l in """$1""".splitlines() if l.strip())
     if float(a) > 0 and float(b) > 0]
if not r:
    print("\nverdict: no valid round")
else:
    m = statistics.median(r)
    ok = m >= goal if how == "ge" else m <= goal
    print(f"\nverdict: median {m:.3f} (rounds {min(r):.3f}–{max(r):.3f}) **{'meets' if ok else 'misses'}** the goal {text}")
PY
}

# ================================================================ 2. 10 tenants vs 10,000 tenants
# measure_tenants VARIANT TITLE NAME=VALUE...: both servers get the settings; VARIANT names the files.
measure_tenants() {
    local variant=$1 title=$2 since pid_a pid_b idle_a idle_b warm_a warm_b
    shift 2
    since=$(date +%s)
    log "2$variant. W1 over $SMALL_TENANTS tenants (x $CONTACTS contacts) vs $SCALE_TENANTS tenants (x $SCALE_CONTACTS), $*"
    start_server "$BIN" "$PORT_A" "$WORK/m2$variant-server-small.log" "$@"
    pid_a=${PIDS[-1]}
    start_server "$BIN" "$PORT_B" "$WORK/m2$variant-server-scale.log" "$@"
    pid_b=${PIDS[-1]}
    idle_a=$(rss "$pid_a")
    idle_b=$(rss "$pid_b")
    bench_tokens "$PORT_A"
    head -n "$SMALL_TENANTS" "$BENCH_TOKENS" >"$WORK/tokens-small.tsv"
    tokens_for '^scale-' "$WORK/tokens-scale.tsv"
    check_server "$PORT_A" "$WORK/tokens-small.tsv" "$CONTACTS"
    check_server "$PORT_B" "$WORK/tokens-scale.tsv" "$SCALE_CONTACTS"
    [[ $(w1_rate "$PORT_A" "$WORK/tokens-small.tsv" 5 "$WORK/m2$variant-warm-A.txt") != 0 ]] \
        || { cat "$WORK/m2$variant-warm-A.txt" >&2; die "warm-up of the 10-tenant side had errors"; }
    # Long enough for every tenant's token, tenant and grants to be cached: requests pick tenants
    # at random, so after n of them about e^(-n/10,000) of the tenants are still unseen; 10 s
    # (about 30,000 requests while cold) left a few percent, and the first round paid for them.
    [[ $(CONTACTS=$SCALE_CONTACTS w1_rate "$PORT_B" "$WORK/tokens-scale.tsv" "$WARM_B" "$WORK/m2$variant-warm-B.txt") != 0 ]] \
        || { cat "$WORK/m2$variant-warm-B.txt" >&2; die "warm-up of the $SCALE_TENANTS-tenant side had errors"; }
    warm_a=$(rss "$pid_a")
    warm_b=$(rss "$pid_b")
    m2_side() {
        if [[ $1 == A ]]; then
            w1_rate "$PORT_A" "$WORK/tokens-small.tsv" "$DURATION" "$WORK/m2$variant-wrk-A-$2.txt"
        else
            CONTACTS=$SCALE_CONTACTS w1_rate "$PORT_B" "$WORK/tokens-scale.tsv" "$DURATION" "$WORK/m2$variant-wrk-B-$2.txt"
        fi
    }
    local rows end_a end_b
    rows=$(interleaved m2_side)
    check_rows "$rows"
    end_a=$(rss "$pid_a")
    end_b=$(rss "$pid_b")
    stop_servers
    report_block "Limits 2$variant: W1 over $SMALL_TENANTS vs $SCALE_TENANTS tenants$title" "$(
        printf -- '- one binary, two servers side by side, both with `%s`: A serves %s tenants x %s contacts (bench-001..), B %s tenants x %s contacts (scale-*); both touch %s distinct contacts, uniformly; every tenant unlimited by override; %s rounds of %s s each side, alternating order; wrk -t%s -c%s, GET /v1/contacts/{id}\n- %s\n\n' \
            "$*" "$SMALL_TENANTS" "$CONTACTS" "$SCALE_TENANTS" "$SCALE_CONTACTS" "$((SMALL_TENANTS * CONTACTS))" \
            "$ROUNDS" "$DURATION" "$THREADS" "$CONCURRENCY" "$(busy_note "$since")"
        ratio_table req/s <<<"$rows"
        goal_line "$rows" 0.90 ge "$SCALE_TENANTS / $SMALL_TENANTS tenants ≥ 0.90"
        printf '\n| server | tenants | VmRSS idle | VmRSS after warm-up | VmRSS at the end | VmHWM | limiter keys (≤ tenants seen since the last 60 s prune) × 97 B |\n|---|---|---|---|---|---|---|\n'
        read -r ia _ <<<"$idle_a"; read -r wa _ <<<"$warm_a"; read -r ea ha <<<"$end_a"
        read -r ib _ <<<"$idle_b"; read -r wb _ <<<"$warm_b"; read -r eb hb <<<"$end_b"
        printf '| A | %s | %s MB | %s MB | %s MB | %s MB | ≤ %s keys, ≤ %s KB |\n' "$SMALL_TENANTS" "$ia" "$wa" "$ea" "$ha" \
            "$SMALL_TENANTS" "$(awk -v n="$SMALL_TENANTS" 'BEGIN {printf "%.1f", n * 97 / 1000}')"
        printf '| B | %s | %s MB | %s MB | %s MB | %s MB | ≤ %s keys, ≤ %s KB |\n' "$SCALE_TENANTS" "$ib" "$wb" "$eb" "$hb" \
            "$SCALE_TENANTS" "$(awk -v n="$SCALE_TENANTS" 'BEGIN {printf "%.1f", n * 97 / 1000}')"
    )"
}

# ========================================================================= 3. noisy neighbour
measure_noisy() {
    local since
    since=$(date +%s)
    log "3. noisy neighbour: limits-noisy at ~$((NOISY_CONNECTIONS * 1000 / NOISY_DELAY_MS)) req/s offered (limit $NOISY_RPS), limits-quiet's p99"
    start_server "$BIN" "$PORT_A" "$WORK/m3-server.log" "$ENFORCE_ON"
    tokens_for '^limits-noisy$' "$WORK/tokens-noisy.tsv"
    tokens_for '^limits-quiet$' "$WORK/tokens-quiet.tsv"
    check_server "$PORT_A" "$WORK/tokens-quiet.tsv" "$SCALE_CONTACTS"
    paced "$PORT_A" "$WORK/tokens-quiet.tsv" "$SCALE_CONTACTS" "$QUIET_CONNECTIONS" "$QUIET_DELAY_MS" 3 "$WORK/m3-warm.txt"
    # m3_side SIDE ROUND: B's p99 in µs, alone (A) or with the noisy tenant (B); 0 when invalid.
    m3_side() {
        local out=$WORK/m3-quiet-$1-$2.txt noisy=$WORK/m3-noisy-$2.txt noisy_pid=""
        if [[ $1 == B ]]; then
            paced "$PORT_A" "$WORK/tokens-noisy.tsv" "$SCALE_CONTACTS" "$NOISY_CONNECTIONS" "$NOISY_DELAY_MS" \
                $((DURATION + 2)) "$noisy" &
            noisy_pid=$!
            sleep 1
        fi
        paced "$PORT_A" "$WORK/tokens-quiet.tsv" "$SCALE_CONTACTS" "$QUIET_CONNECTIONS" "$QUIET_DELAY_MS" "$DURATION" "$out"
        [[ -n $noisy_pid ]] && wait "$noisy_pid"
        local ok p99
        ok=$(wrk_field "$out" status_200)
        p99=$(wrk_field "$out" p99_us)
        # B is never limited: anything but a 200 makes the round invalid.
        if [[ -z $ok ]] || ((ok == 0)) || (($(wrk_field "$out" status_429) + $(wrk_field "$out" status_other) > 0)) \
            || grep -q 'Socket errors\|wrk exited' "$out"; then
            echo 0; return
        fi
        if [[ -n $noisy_pid ]]; then
            if [[ -z $(wrk_field "$noisy" status_200) ]] || (($(wrk_field "$noisy" status_other) > 0)) \
                || grep -q 'Socket errors\|wrk exited' "$noisy"; then
                echo 0; return
            fi
        fi
        echo "$p99"
    }
    local rows
    rows=$(interleaved m3_side)
    check_rows "$rows"
    stop_servers
    report_block "Limits 3: noisy neighbour" "$(
        printf -- '- one enforcing server; tenant A `limits-noisy` (%s req/s, burst %s) offered about %s req/s (wrk -c%s, %s ms pause per request and connection) while tenant B `limits-quiet` (unlimited) runs wrk -c%s with %s ms pauses (about %s req/s); %s rounds of %s s, B alone and B with A noisy in alternating order; the numbers are B'"'"'s p99 in µs\n- %s\n\n' \
            "$NOISY_RPS" "$NOISY_BURST" "$((NOISY_CONNECTIONS * 1000 / NOISY_DELAY_MS))" "$NOISY_CONNECTIONS" "$NOISY_DELAY_MS" \
            "$QUIET_CONNECTIONS" "$QUIET_DELAY_MS" "$((QUIET_CONNECTIONS * 1000 / QUIET_DELAY_MS))" "$ROUNDS" "$DURATION" "$(busy_note "$since")"
        ratio_table 'p99 µs' <<<"$rows"
        goal_line "$rows" 1.20 le "p99 with A noisy / alone ≤ 1.2"
        printf '\n| round | B alone req/s | B alone p50 µs | B with A req/s | B with A p50 µs | A offered req/s | A admitted (200) req/s | A 429s |\n|---|---|---|---|---|---|---|---|\n'
        local r
        for ((r = 1; r <= ROUNDS; r++)); do
            python3 - "$WORK/m3-quiet-A-$r.txt" "$WORK/m3-quiet-B-$r.txt" "$WORK/m3-noisy-$r.txt" "$r" <<'PY'
import json, re, sys
def w(p):
    m = re.search(r"^TESSERA_WRK (\{.*\})\s*$", open(p).read(), re.M)
    return json.loads(m.group(1)) if m else None
a, b, n = (w(p) for p in sys.argv[1:4])
f = lambda d, k, fmt="{:,.0f}": fmt.format(d[k]) if d else "?"
adm = f"{n['status_200'] / n['duration_s']:,.1f}" if n else "?"
print(f"| {sys.argv[4]} | {f(a, 'rps')} | {f(a, 'p50_us')} | {f(b, 'rps')} | {f(b, 'p50_us')} | {f(n, 'rps')} | {adm} | {f(n, 'status_429')} |")
PY
        done
    )"
}

# ==================================================================== 4. two replicas, one Redis
measure_shared() {
    local since redis_url
    since=$(date +%s)
    log "4. two replicas sharing limits-shared's budget ($SHARED_RPS/s, burst $SHARED_BURST) through Redis"
    redis_url=$("$BIN" devredis start --dir "$REDIS_DIR" --port "$REDIS_PORT" | tail -n 1)
    REDIS_STARTED=1
    [[ $redis_url =~ ^redis://127\.0\.0\.1:$REDIS_PORT ]] || die "devredis start printed '$redis_url'"
    start_server "$BIN" "$PORT_A" "$WORK/m4-server-1.log" "$ENFORCE_ON" TESSERA_REDIS__URL="$redis_url"
    start_server "$BIN" "$PORT_B" "$WORK/m4-server-2.log" "$ENFORCE_ON" TESSERA_REDIS__URL="$redis_url"
    tokens_for '^limits-shared$' "$WORK/tokens-shared.tsv"
    check_server "$PORT_A" "$WORK/tokens-shared.tsv" "$SCALE_CONTACTS"
    check_server "$PORT_B" "$WORK/tokens-shared.tsv" "$SCALE_CONTACTS"
    local r table=$WORK/m4-rounds.txt
    : >"$table"
    for ((r = 1; r <= SHARED_ROUNDS; r++)); do
        sleep 3  # the budget fills up again (burst / rate seconds)
        log "round $r: ${SHARED_SECONDS}s through both replicas"
        paced "$PORT_A" "$WORK/tokens-shared.tsv" "$SCALE_CONTACTS" "$SHARED_CONNECTIONS" "$SHARED_DELAY_MS" \
            "$SHARED_SECONDS" "$WORK/m4-wrk-1-$r.txt" &
        local p1=$!
        paced "$PORT_B" "$WORK/tokens-shared.tsv" "$SCALE_CONTACTS" "$SHARED_CONNECTIONS" "$SHARED_DELAY_MS" \
            "$SHARED_SECONDS" "$WORK/m4-wrk-2-$r.txt" &
        local p2=$!
        wait "$p1" "$p2"
        python3 - "$r" "$SHARED_RPS" "$SHARED_BURST" "$WORK/m4-wrk-1-$r.txt" "$WORK/m4-wrk-2-$r.txt" >>"$table" <<'PY'
import collections, json, re, sys
r, rate, burst = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
runs = []
for p in sys.argv[4:]:
    text = open(p).read()
    m = re.search(r"^TESSERA_WRK (\{.*\})\s*$", text, re.M)
    if not m or "Socket errors" in text or "wrk exited" in text:
        print(f"{r} invalid {p}")
        sys.exit(0)
    runs.append(json.loads(m.group(1)))
if any(w["status_other"] for w in runs) or not all(w["status_200"] for w in runs):
    print(f"{r} invalid other={sum(w['status_other'] for w in runs)}")
    sys.exit(0)
secs = collections.Counter()
for w in runs:
    for s, n in w["ok_by_sec"].items():
        secs[int(s)] += n
# Whole wall-clock seconds after the burst: the first second is partial and, with the second,
# holds the burst (a full budget at the start); the last one is partial.
middle = sorted(secs)[2:-1]
steady = sum(secs[s] for s in middle) / len(middle) if middle else 0
dur = max(w["duration_s"] for w in runs)
ok = sum(w["status_200"] for w in runs)
offered = sum(w["rps"] for w in runs)
print(f"{r} ok {offered:.0f} {runs[0]['status_200']} {runs[1]['status_200']} {ok} "
      f"{sum(w['status_429'] for w in runs)} {ok / dur:.1f} {(ok - burst) / dur:.1f} {steady:.1f} {len(middle)}")
PY
    done
    local keys="?"
    command -v redis-cli >/dev/null 2>&1 && keys=$(redis-cli -u "$redis_url" --scan 2>/dev/null | wc -l)
    stop_servers
    "$BIN" devredis stop --dir "$REDIS_DIR" >/dev/null 2>&1 || true
    REDIS_STARTED=0
    grep -q ' invalid' "$table" && INVALID=1
    report_block "Limits 4: two replicas sharing one limit through Redis" "$(
        printf -- '- two enforcing servers with the same `redis.url` (private redis-server, `tessera devredis`, port %s); tenant `limits-shared` at %s req/s, burst %s; each replica driven by its own wrk -c%s with %s ms pauses (about %s req/s per replica) for %s s at once; %s rounds; Redis held %s keys after the run\n- %s\n\n' \
            "$REDIS_PORT" "$SHARED_RPS" "$SHARED_BURST" "$SHARED_CONNECTIONS" "$SHARED_DELAY_MS" \
            "$((SHARED_CONNECTIONS * 1000 / SHARED_DELAY_MS))" "$SHARED_SECONDS" "$SHARED_ROUNDS" "$keys" "$(busy_note "$since")"
        python3 - "$SHARED_RPS" "$table" <<'PY'
import statistics, sys
rate = float(sys.argv[1])
print("| round | offered req/s | 200s via replica 1 | 200s via replica 2 | 200s in all | 429s | admitted req/s over the run | (200s − burst) / run | admitted req/s, whole seconds after the burst | / configured |")
print("|---|---|---|---|---|---|---|---|---|---|")
ratios = []
for line in open(sys.argv[2]):
    f = line.split()
    if f[1] != "ok":
        print(f"| {f[0]} | invalid: {' '.join(f[2:])} | | | | | | | | |")
        continue
    _, _, offered, ok1, ok2, ok, n429, whole, net, steady, nsec = f
    ratio = float(steady) / rate
    ratios.append(ratio)
    print(f"| {f[0]} | {float(offered):,.0f} | {int(ok1):,} | {int(ok2):,} | {int(ok):,} | {int(n429):,} | {float(whole):,.1f} | {float(net):,.1f} | {float(steady):,.1f} ({nsec} s) | {ratio:.3f} |")
if ratios:
    m = statistics.median(ratios)
    ok = abs(m - 1) <= 0.10
    print(f"\nverdict: combined admitted rate / configured rate, median {m:.3f} (rounds {min(ratios):.3f}–{max(ratios):.3f}) "
          f"**{'meets' if ok else 'misses'}** the goal 1 ± 0.10")
else:
    print("\nverdict: no valid round")
PY
    )"
}

for m in $MEASURE; do
    case $m in
        1) measure_stages ;;
        2) measure_tenants "" "" "$ENFORCE_ON" ;;
        # Controls for reading 2: the same with the limit stages off, and with the tenant and
        # grants caches as short-lived as before access changes announced themselves.
        2off) measure_tenants off " (control: limit stages off)" "$ENFORCE_OFF" ;;
        2short) measure_tenants short " (control: tenant cache 60 s, grants cache 10 s)" "$ENFORCE_ON" \
            TESSERA_TENANCY__CACHE_SECS=60 TESSERA_AUTH__PRINCIPAL_CACHE_SECS=10 ;;
        3) measure_noisy ;;
        4) measure_shared ;;
        *) die "unknown measurement '$m' (1 2 2off 2short 3 4)" ;;
    esac
done
if ((INVALID)); then
    echo "$SCRIPT: some runs were INVALID (see above and $WORK)" >&2
    exit 1
fi
