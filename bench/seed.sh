#!/usr/bin/env bash
# Seeds the benchmark database: N tenants (each with one owner user) x M contacts.
#
#   TESSERA_DATABASE__MIGRATION_URL=postgres://postgres@127.0.0.1:55434/tessera_bench \
#     bench/seed.sh [N=100] [M=10000]
#
# Needs: a migrated database (`tessera migrate`), TESSERA_DATABASE__MIGRATION_URL pointing at it as
# a superuser (or a BYPASSRLS role: one INSERT writes many tenants' rows past forced RLS), and the
# release binary (TESSERA_BIN, default target/release/tessera). TESSERA_DATABASE__URL (the app role)
# defaults to the migration URL with the user replaced by tessera_app.
#
# Tenants are made the product's way, by `tessera tenants apply` on generated manifests; contacts
# in bulk with one set-based INSERT ... SELECT ... generate_series per batch of tenants
# (bench/sql/seed_contacts.sql), then VACUUM (FREEZE, ANALYZE) and CHECKPOINT so neither side of
# the benchmark pays for hint bits, missing statistics or a checkpoint of the seed.
#
# Ids are deterministic so load scripts compute them from integers without a lookup:
#   tenant  i (1..N): 00000000-0000-7000-8000-{100000000000 + i}, slug bench-%03d,
#                     user owner@<slug>.test, password $BENCH_PASSWORD
#   contact c (1..M): {10000000 + i}-0000-7000-8000-{100000000000 + c}
#
# Idempotent: a finished seed leaves a marker (a comment on the database) naming N, M and a hash of
# the password; the same call again does nothing. SEED_FORCE=1 re-seeds. A different shape deletes
# the bench tenants' contacts and inserts them again (tenants are created or updated in place).
#
# Environment knobs: BENCH_PASSWORD, TESSERA_BIN, SEED_FORCE, SEED_BATCH_ROWS (rows per INSERT,
# default 100000).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

N=${1:-100}
M=${2:-10000}
BENCH_PASSWORD=${BENCH_PASSWORD:-tessera-bench-password-1}
TESSERA_BIN=${TESSERA_BIN:-$ROOT/target/release/tessera}
SEED_FORCE=${SEED_FORCE:-0}
SEED_BATCH_ROWS=${SEED_BATCH_ROWS:-100000}
export BENCH_PASSWORD

die() { echo "seed.sh: $*" >&2; exit 1; }
log() { echo "seed.sh: $*" >&2; }

[[ $N =~ ^[0-9]+$ && $N -ge 1 && $N -le 99999 ]] || die "N must be 1..99999 (got '$N')"
[[ $M =~ ^[0-9]+$ && $M -ge 1 && $M -le 100000000 ]] || die "M must be 1..100000000 (got '$M')"
: "${TESSERA_DATABASE__MIGRATION_URL:?set TESSERA_DATABASE__MIGRATION_URL to the bench database as a superuser}"
if [[ -z ${TESSERA_DATABASE__URL:-} ]]; then
    TESSERA_DATABASE__URL=$(sed -E 's#^(postgres(ql)?://)[^@/]*@#\1tessera_app@#' <<<"$TESSERA_DATABASE__MIGRATION_URL")
fi
export TESSERA_DATABASE__MIGRATION_URL TESSERA_DATABASE__URL
export TESSERA_ENV=${TESSERA_ENV:-development}

if ! command -v psql >/dev/null 2>&1; then
    (apt-get update && apt-get install -y postgresql-client) >&2 || die "psql is missing and could not be installed"
fi

SU_URL=$TESSERA_DATABASE__MIGRATION_URL
psql_su() { psql "$SU_URL" -X -v ON_ERROR_STOP=1 -q "$@"; }

[[ $(psql_su -tAc "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user") == t ]] \
    || die "the TESSERA_DATABASE__MIGRATION_URL role must be a superuser or BYPASSRLS (contacts has forced RLS)"
[[ $(psql_su -tAc "SELECT to_regclass('public.contacts') IS NOT NULL") == t ]] \
    || die "no contacts table: run 'tessera migrate' first"

PW_HASH=$(printf '%s' "$BENCH_PASSWORD" | sha256sum | cut -c1-12)
MARKER="tessera-bench v1 tenants=$N contacts=$M pw=$PW_HASH"
current_marker=$(psql_su -tAc "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = current_database()")
# The bench tenants measure the database path, not the plans: no rate limit, in-flight cap or
# monthly request quota may refuse their load (limits.sh measures those stages on tenants of its
# own). Set on every run, seeded or not, so a database seeded before plans existed gets it too.
unlimit() {
    psql_su -q -c "UPDATE tenants SET \
        rate_overrides = '{\"requests_per_second\": 1000000, \"burst\": 1000000, \"max_concurrent_requests\": 100000}', \
        quota_overrides = '{\"api_requests_per_month\": 1000000000000}' WHERE slug LIKE 'bench-%'"
}
if [[ $current_marker == "$MARKER" && $SEED_FORCE != 1 ]]; then
    unlimit
    log "already seeded ($MARKER); SEED_FORCE=1 to seed again"
    exit 0
fi
[[ -x $TESSERA_BIN ]] || die "no tessera binary at $TESSERA_BIN (cargo build --release --locked)"

started=$SECONDS
db_name=$(psql_su -tAc "SELECT current_database()")
# Until the end, the database does not claim to be seeded.
psql_su -c "COMMENT ON DATABASE \"$db_name\" IS NULL"

# ------------------------------------------------------------------------------ tenants and users
MANIFESTS=$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench-manifests.XXXXXX")
trap 'rm -rf "$MANIFESTS"' EXIT
for ((i = 1; i <= N; i++)); do
    slug=$(printf 'bench-%03d' "$i")
    cat >"$MANIFESTS/$slug.toml" <<EOF
id = "00000000-0000-7000-8000-$((100000000000 + i))"
slug = "$slug"
name = "Bench $(printf '%03d' "$i")"
plan = "free"

[[users]]
email = "owner@$slug.test"
name = "Bench Owner"
roles = ["owner"]
password_env = "BENCH_PASSWORD"
EOF
done
log "applying $N tenant manifests"
"$TESSERA_BIN" tenants apply "$MANIFESTS" >&2

TENANT_IDS_SQL="SELECT ('00000000-0000-7000-8000-' || (100000000000 + i))::uuid FROM generate_series(1, $N) AS i"
found=$(psql_su -tAc "SELECT count(*) FROM tenants WHERE id IN ($TENANT_IDS_SQL) AND status = 'active'")
[[ $found == "$N" ]] || die "expected $N active bench tenants after 'tenants apply', found $found"
# A join, not NOT EXISTS: Citus plans no correlated subquery next to generate_series.
without_user=$(psql_su -tAc "SELECT count(*) FROM ($TENANT_IDS_SQL) AS t(id) LEFT JOIN (SELECT DISTINCT tenant_id FROM users) u ON u.tenant_id = t.id WHERE u.tenant_id IS NULL")
[[ $without_user == 0 ]] || die "$without_user bench tenants have no user after 'tenants apply'"

# ------------------------------------------------------------------------------------- contacts
# Contacts of any bench-scheme tenant (also from an earlier, larger seed) go first.
psql_su -c "DELETE FROM contacts WHERE tenant_id IN (SELECT id FROM tenants WHERE id::text LIKE '00000000-0000-7000-8000-1%' AND slug LIKE 'bench-%')"
batch=$((SEED_BATCH_ROWS / M))
((batch >= 1)) || batch=1
for ((first = 1; first <= N; first += batch)); do
    last=$((first + batch - 1))
    ((last <= N)) || last=$N
    log "contacts for tenants $first..$last ($(((last - first + 1) * M)) rows)"
    psql_su -v first_tenant="$first" -v last_tenant="$last" -v contacts="$M" -f "$BENCH_DIR/sql/seed_contacts.sql"
done

count=$(psql_su -tAc "SELECT count(*) FROM contacts WHERE tenant_id IN ($TENANT_IDS_SQL)")
[[ $count == $((N * M)) ]] || die "expected $((N * M)) contacts, found $count"

log "VACUUM (FREEZE, ANALYZE), CHECKPOINT"
psql_su -c "VACUUM (FREEZE, ANALYZE) contacts"
psql_su -c "ANALYZE tenants" -c "ANALYZE users" -c "ANALYZE roles" -c "ANALYZE user_roles" -c "ANALYZE role_permissions"
psql_su -c "CHECKPOINT"
unlimit
psql_su -c "COMMENT ON DATABASE \"$db_name\" IS '$MARKER'"
log "seeded $N tenants x $M contacts in $((SECONDS - started))s"
