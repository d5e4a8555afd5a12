#!/usr/bin/env bash
# Instructions per request, A against B, counted by callgrind: what a hot-path stage costs the
# server, free of the machine's timing noise (here ±20% between 10-second wrk rounds, which hides
# anything under about 10%). Counts are repeatable for the same binary, inputs and environment.
#
# Each binary serves N1 and then N2 sequential GET /v1/contacts/{id} (random tenant and contact,
# fixed seed) under `valgrind --tool=callgrind`; the server's instructions per request are
# (I(N2) - I(N1)) / (N2 - N1), so start-up and shut-down cancel out. Only the server process is
# counted, not PostgreSQL.
#
# Usage: bench/instructions.sh A_BINARY B_BINARY
#   Needs the bench database as bench/run.sh leaves it (run that once first). Knobs: N1 (300),
#   N2 (1300), PG_PORT/PG_DIR (as run.sh), PORT (58090), TENANTS (100), CONTACTS (10000), LABEL.
set -euo pipefail

SCRIPT=instructions.sh
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib/seeded.sh
source "$BENCH_DIR/lib/seeded.sh"
cd "$ROOT"

A=${1:?usage: bench/instructions.sh A_BINARY B_BINARY}
B=${2:?usage: bench/instructions.sh A_BINARY B_BINARY}
N1=${N1:-300}
N2=${N2:-1300}
PORT=${PORT:-58090}
WORK=$ROOT/target/bench-instructions/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$WORK"
for bin in "$A" "$B"; do [[ -x $bin ]] || die "no binary at $bin"; done
command -v valgrind >/dev/null 2>&1 || die "valgrind missing (apt-get install valgrind)"

SERVER_PID=""
cleanup() {
    set +e
    [[ -n $SERVER_PID ]] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    "$A" devdb stop --dir "$PG_DIR" >/dev/null 2>&1
}
trap cleanup EXIT

# Unpinned: callgrind counts instructions, which CPU placement does not change.
PIN=0
seeded_db "$A"
# One signing key for every server, so tokens minted once (logins are argon2: slow under
# valgrind) are good on all of them.
server_env "$WORK/signing-key.pem"
export TESSERA_HTTP__BIND=127.0.0.1:$PORT TESSERA_HTTP__WORKERS=1
# Work that follows the clock rather than the requests would not cancel out between the two runs
# (valgrind slows the server down, so a run lasts minutes): caches that expire and reload, the
# purge timer. Long TTLs and no purge keep the count about requests.
export TESSERA_AUTH__PRINCIPAL_CACHE_SECS=3600 TESSERA_TENANCY__CACHE_SECS=3600
export TESSERA_MAINTENANCE__PURGE_INTERVAL_SECS=0

"$A" serve >"$WORK/login-server.log" 2>&1 &
SERVER_PID=$!
python3 "$BENCH_DIR/lib/client.py" ready --port "$PORT" --pid "$SERVER_PID" --timeout 60
python3 "$BENCH_DIR/lib/client.py" login --port "$PORT" --tenants "$TENANTS" \
    --password "$BENCH_PASSWORD" --out "$WORK/tokens.tsv" >&2
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""

# count BINARY REQUESTS: the server's total instructions serving REQUESTS reads.
count() {
    local bin=$1 n=$2 out
    out=$WORK/callgrind-$(basename "$bin")-$n.out
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" serve >"$out.log" 2>&1 &
    SERVER_PID=$!
    python3 "$BENCH_DIR/lib/client.py" ready --port "$PORT" --pid "$SERVER_PID" --timeout 300 >&2
    python3 - "$PORT" "$WORK/tokens.tsv" "$CONTACTS" "$n" "$BENCH_DIR/lib" <<'PY' >&2
import http.client, random, sys
port, tokens_path, ncontacts, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, sys.argv[5])
from client import contact_id  # the seed's id scheme, written once
tenants = [l.rstrip("\n").split("\t") for l in open(tokens_path) if l.strip()]
rng = random.Random(20261202)
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for _ in range(n):
    i, slug, token = rng.choice(tenants)
    c = rng.randint(1, ncontacts)
    cid = contact_id(int(i), c)
    conn.request("GET", f"/v1/contacts/{cid}", headers={
        "Host": f"{slug}.localhost:{port}", "Authorization": f"Bearer {token}"})
    res = conn.getresponse()
    res.read()
    if res.status != 200:
        sys.exit(f"GET {cid} as {slug}: {res.status}")
PY
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

declare -A per_request=()
for side in A B; do
    bin=${!side}
    i1=$(count "$bin" "$N1")
    i2=$(count "$bin" "$N2")
    per_request[$side]=$(((i2 - i1) / (N2 - N1)))
    echo "$side: $i1 instructions for $N1 requests, $i2 for $N2: ${per_request[$side]} per request" >&2
done
report_block "Instructions per request" "$(
    # shellcheck disable=SC2016  # the backticks are Markdown
    printf -- '- callgrind, server process only, one worker, sequential GET /v1/contacts/{id}; (I(%s) - I(%s)) / %s\n\n' \
        "$N2" "$N1" "$((N2 - N1))"
    printf '| binary | instructions per request |\n|---|---|\n'
    # shellcheck disable=SC2016  # the backticks are Markdown
    printf '| A `%s` | %s |\n| B `%s` | %s |\n' "${A#"$ROOT"/}" "${per_request[A]}" "${B#"$ROOT"/}" "${per_request[B]}"
    python3 -c "import sys; a, b = map(int, sys.argv[1:]); print(f'\nB / A: **{b / a:.3f}** ({b - a:+,} instructions per request)')" \
        "${per_request[A]}" "${per_request[B]}"
)"
