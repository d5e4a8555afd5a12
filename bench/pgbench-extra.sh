#!/usr/bin/env bash
# What one more statement in the by-id transaction costs PostgreSQL: pgbench runs the pipelined
# transaction (sql/get_contact_pipelined.sql, the server's shape) as it is (A) and with STATEMENT
# added right after `BEGIN READ ONLY` (B), in alternating rounds; the result is the median of the
# per-round ratios B / A. Before putting another `SET LOCAL` into every transaction's first round
# trip (per-plan settings, say), measure it here.
#
# Usage: bench/pgbench-extra.sh "SELECT set_config('statement_timeout', '5000', true);"
#   Needs the bench database as bench/run.sh leaves it (run that once first).
# Knobs: ROUNDS (3), DURATION (8 s), CONCURRENCY (32), THREADS (2), PIN/SUT_CPUS/LOADGEN_CPUS,
#   PG_PORT/PG_DIR (as run.sh), TESSERA_BIN (target/release/tessera, for devdb), LABEL.
set -euo pipefail

SCRIPT=pgbench-extra.sh
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib/seeded.sh
source "$BENCH_DIR/lib/seeded.sh"
cd "$ROOT"

EXTRA=${1:?usage: bench/pgbench-extra.sh STATEMENT}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONCURRENCY=${CONCURRENCY:-32}
THREADS=${THREADS:-2}
TESSERA_BIN=${TESSERA_BIN:-$ROOT/target/release/tessera}
WORK=$ROOT/target/bench-pgbench-extra/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$WORK"
[[ -x $TESSERA_BIN ]] || die "no binary at $TESSERA_BIN (cargo build --release)"
command -v pgbench >/dev/null 2>&1 || die "pgbench missing: run bench/run.sh once first"
trap '"$TESSERA_BIN" devdb stop --dir "$PG_DIR" >/dev/null 2>&1' EXIT

seeded_db "$TESSERA_BIN"
A_SQL=$BENCH_DIR/sql/get_contact_pipelined.sql
B_SQL=$WORK/with-extra.sql
EXTRA="$EXTRA" python3 - "$A_SQL" "$B_SQL" <<'PY'
import os, sys
text = open(sys.argv[1]).read()
anchor = "BEGIN READ ONLY;\n"
assert text.count(anchor) == 1, "the pipelined script has one BEGIN READ ONLY"
open(sys.argv[2], "w").write(text.replace(anchor, anchor + os.environ["EXTRA"].strip() + "\n"))
PY

# tps of one pgbench run of SCRIPT; a failed run prints 0.
tps() {
    pin "$LOADGEN_CPUS" pgbench -n -M prepared -f "$1" -D ntenants="$TENANTS" -D ncontacts="$CONTACTS" \
        -c "$CONCURRENCY" -j "$THREADS" -T "$DURATION" "$APP_URL" >"$2" 2>&1 || { echo 0; return; }
    awk '/^tps = / {print $3}' "$2"
}
# tps_side SIDE ROUND: TPS of SIDE's script in ROUND.
tps_side() {
    local sql=${1}_SQL
    tps "${!sql}" "$WORK/pgbench-$1-$2.txt"
}
ROWS=$(interleaved tps_side)

report_block "pgbench, one more statement" "$(
    # shellcheck disable=SC2016  # the backticks are Markdown
    printf -- '- A: `sql/get_contact_pipelined.sql`; B: the same with `%s` after BEGIN; pgbench -M prepared -c%s -j%s, %s rounds of %s s each side, alternating order, %s x %s\n\n' \
        "$EXTRA" "$CONCURRENCY" "$THREADS" "$ROUNDS" "$DURATION" "$TENANTS" "$CONTACTS"
    ratio_table TPS <<<"$ROWS"
)"
