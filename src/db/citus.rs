//! Citus: where every table lives on a cluster, and making it so.
//!
//! [`PLACEMENTS`] is the one place that says how each table is laid out on Citus. A migration
//! that creates a table adds its line here; `tessera migrate` refuses to run on Citus while a
//! table with a `tenant_id` column has none (and a test on plain PostgreSQL fails first, see
//! `tests/citus.rs`), so a tenant table can never be left on the coordinator alone.
//!
//! On plain PostgreSQL nothing here runs. When the database has the `citus` extension,
//! `tessera migrate` calls [`reconcile`] before the first pending migration and after each one:
//! it places whatever is not placed yet, in one transaction, idempotently:
//!
//! 1. the foreign keys touching those tables are saved and dropped — once a local table holds a
//!    key to a reference table Citus turns it into a "Citus local table", which
//!    `create_distributed_table` then refuses (REFERENCES.md §11);
//! 2. reference tables are created, then tenant tables distributed by `tenant_id`, each
//!    co-located with [`ANCHOR`] so that one tenant's rows of every table share a shard group
//!    (joins and foreign keys stay on one worker);
//! 3. the keys are added back, unchanged.
//!
//! A migration that adds a foreign key *from* an already distributed table *to* a table created
//! in the same migration fails on Citus (the new table is not placed yet); put that key in the
//! next migration (expand, then contract).

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{QueryableByName, RunQueryDsl};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;

/// The migration connection (synchronous wrapper: the migration harness is synchronous).
pub type SyncConn = AsyncConnectionWrapper<AsyncPgConnection>;

/// How a table is laid out on a Citus cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A platform table copied to every node (`create_reference_table`): small, read by tenant
    /// work on every worker, referenced by tenant tables' foreign keys.
    Reference,
    /// A tenant table: hash-distributed by `tenant_id`, co-located with [`ANCHOR`].
    ByTenant,
    /// Stays on the coordinator only: bookkeeping no tenant transaction reads.
    CoordinatorOnly,
}

/// Session settings of the migration connection on Citus.
///
/// - Each migration runs in one transaction, and DDL on a distributed table there (a new
///   constraint, a trigger, a function it uses) must go over one connection per worker, or Citus
///   refuses the next statement that needs one ("there was a parallel operation on a distributed
///   table in the transaction").
/// - Triggers on distributed tables are refused unless allowed. Ours are safe to run on shards:
///   each looks only at the row being written (`NEW`/`OLD`) and raises; none reads or writes
///   another table, which is what makes a trigger unsafe when it fires on a worker's shard.
pub const MIGRATION_SESSION: &str = "SET citus.multi_shard_modify_mode TO 'sequential';      SET citus.enable_unsafe_triggers TO on";

/// The first distributed table; every other tenant table is co-located with it.
pub const ANCHOR: &str = "users";

/// Every table of the schema and its placement, in the order they are placed (reference tables
/// before the tables whose keys point at them, [`ANCHOR`] first among tenant tables).
pub const PLACEMENTS: &[(&str, Placement)] = &[
    ("tenants", Placement::Reference),
    ("users", Placement::ByTenant),
    ("roles", Placement::ByTenant),
    ("role_permissions", Placement::ByTenant),
    ("user_roles", Placement::ByTenant),
    ("refresh_tokens", Placement::ByTenant),
    ("contacts", Placement::ByTenant),
    ("audit_heads", Placement::ByTenant),
    ("audit_events", Placement::ByTenant),
    ("idempotency_keys", Placement::ByTenant),
    ("quota_counters", Placement::ByTenant),
    ("usage_windows", Placement::ByTenant),
    ("usage_receipts", Placement::ByTenant),
    ("usage_adjustments", Placement::ByTenant),
    // Operator credentials: tiny, read once per key and cached; never joined with tenant data.
    ("platform_keys", Placement::CoordinatorOnly),
    ("__diesel_schema_migrations", Placement::CoordinatorOnly),
];

/// The placement `placements` declares for `table`, if any.
fn placement_in(placements: &[(&str, Placement)], table: &str) -> Option<Placement> {
    placements
        .iter()
        .find(|(name, _)| *name == table)
        .map(|(_, p)| *p)
}

/// Names the `citus` extension (one `item` row) when the database has it, nothing otherwise.
pub const EXTENSION_QUERY: &str =
    "SELECT extname::text AS item FROM pg_extension WHERE extname = 'citus'";

/// One text column named `item`: what [`EXTENSION_QUERY`] and the guard's catalogue queries
/// return.
#[derive(QueryableByName)]
pub(crate) struct Item {
    #[diesel(sql_type = Text)]
    pub(crate) item: String,
}

#[derive(QueryableByName)]
struct Placed {
    #[diesel(sql_type = Text)]
    table: String,
    /// `h` hash-distributed, `n` reference or Citus local (see `repmodel`), absent = local.
    #[diesel(sql_type = Text)]
    method: String,
    /// `t` for reference tables.
    #[diesel(sql_type = Text)]
    repmodel: String,
    /// The distribution column, empty for reference tables.
    #[diesel(sql_type = Text)]
    column: String,
    /// The colocation group.
    #[diesel(sql_type = Text)]
    colocation: String,
}

#[derive(QueryableByName)]
struct ForeignKey {
    #[diesel(sql_type = Text)]
    table: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    definition: String,
}

/// Whether the connected database has the `citus` extension.
pub fn is_citus(conn: &mut SyncConn) -> anyhow::Result<bool> {
    let rows: Vec<Item> = diesel::sql_query(EXTENSION_QUERY).load(conn)?;
    Ok(rows.iter().any(|r| r.item == "citus"))
}

/// Tables of the `public` schema, and which of them have a `tenant_id` column.
fn tables(conn: &mut SyncConn) -> anyhow::Result<Vec<(String, bool)>> {
    #[derive(QueryableByName)]
    struct Table {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        tenant: bool,
    }
    let rows: Vec<Table> = diesel::sql_query(
        "SELECT c.relname::text AS name, EXISTS (SELECT 1 FROM pg_attribute a \
             WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) AS tenant \
         FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') \
         ORDER BY 1",
    )
    .load(conn)?;
    Ok(rows.into_iter().map(|t| (t.name, t.tenant)).collect())
}

/// Tables the schema has but [`PLACEMENTS`] does not describe, and tenant tables described as
/// anything but [`Placement::ByTenant`]. Empty when the declaration is complete.
pub fn undeclared(conn: &mut SyncConn) -> anyhow::Result<Vec<String>> {
    undeclared_in(conn, PLACEMENTS)
}

fn undeclared_in(
    conn: &mut SyncConn,
    placements: &[(&str, Placement)],
) -> anyhow::Result<Vec<String>> {
    Ok(tables(conn)?
        .into_iter()
        .filter(|(name, tenant)| match placement_in(placements, name) {
            None => true,
            Some(p) => *tenant && p != Placement::ByTenant,
        })
        .map(|(name, _)| name)
        .collect())
}

/// Places every table that is not yet where [`PLACEMENTS`] says (see the module docs); returns
/// the tables it placed. A no-op on a cluster that is already in shape.
pub fn reconcile(conn: &mut SyncConn) -> anyhow::Result<Vec<String>> {
    reconcile_to(conn, PLACEMENTS)
}

/// [`reconcile`] against another declaration: what the next migration's line in [`PLACEMENTS`]
/// will do, for tests that create a table the real list does not know yet.
pub fn reconcile_to(
    conn: &mut SyncConn,
    placements: &[(&str, Placement)],
) -> anyhow::Result<Vec<String>> {
    let missing = undeclared_in(conn, placements)?;
    if !missing.is_empty() {
        anyhow::bail!(
            "no Citus placement declared for {} (add each to PLACEMENTS in src/db/citus.rs; a \
             table with a tenant_id column must be Placement::ByTenant)",
            missing.join(", ")
        );
    }
    let existing: Vec<String> = tables(conn)?.into_iter().map(|(n, _)| n).collect();
    let placed = placed(conn)?;
    let pending: Vec<(&str, Placement)> = placements
        .iter()
        .filter(|(name, _)| existing.iter().any(|e| e == name))
        .filter(|(name, placement)| !is_placed(&placed, name, *placement))
        .copied()
        .collect();
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = pending.iter().map(|(n, _)| n.to_string()).collect();
    conn.batch_execute("BEGIN")?;
    let result = (|| -> anyhow::Result<()> {
        let keys = foreign_keys(conn, &names)?;
        for key in &keys {
            conn.batch_execute(&format!(
                "ALTER TABLE {} DROP CONSTRAINT {}",
                quote_ident(&key.table),
                quote_ident(&key.name)
            ))?;
        }
        // A table that its key to a reference table had turned into a Citus local table is a
        // plain table again now that the key is gone: Citus undoes that conversion by itself
        // (tests/citus.rs, a_new_tenant_table_with_a_key_to_tenants_…).
        for (name, placement) in &pending {
            let sql = match placement {
                Placement::Reference => {
                    format!("SELECT create_reference_table({})", quote_literal(name))
                }
                Placement::ByTenant if *name == ANCHOR => format!(
                    "SELECT create_distributed_table({}, 'tenant_id')",
                    quote_literal(name)
                ),
                Placement::ByTenant => format!(
                    "SELECT create_distributed_table({}, 'tenant_id', colocate_with => {})",
                    quote_literal(name),
                    quote_literal(ANCHOR)
                ),
                Placement::CoordinatorOnly => continue,
            };
            conn.batch_execute(&sql)?;
        }
        for key in &keys {
            conn.batch_execute(&format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {}",
                quote_ident(&key.table),
                quote_ident(&key.name),
                key.definition
            ))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            conn.batch_execute("COMMIT")?;
            Ok(names)
        }
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK");
            Err(e.context(format!("placing {} on Citus", names.join(", "))))
        }
    }
}

fn placed(conn: &mut SyncConn) -> anyhow::Result<Vec<Placed>> {
    Ok(diesel::sql_query(
        "SELECT c.relname::text AS table, p.partmethod::text AS method, \
                p.repmodel::text AS repmodel, \
                coalesce(column_to_column_name(p.logicalrelid, p.partkey), '') AS column, \
                p.colocationid::text AS colocation \
         FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid \
         WHERE c.relnamespace = 'public'::regnamespace",
    )
    .load(conn)?)
}

fn is_placed(placed: &[Placed], name: &str, placement: Placement) -> bool {
    let found = placed.iter().find(|p| p.table == name);
    match placement {
        Placement::CoordinatorOnly => true,
        Placement::Reference => found.is_some_and(|p| p.method == "n" && p.repmodel == "t"),
        Placement::ByTenant => {
            let anchor = placed.iter().find(|p| p.table == ANCHOR);
            found.is_some_and(|p| {
                p.method == "h"
                    && p.column == "tenant_id"
                    && anchor.is_some_and(|a| a.colocation == p.colocation)
            })
        }
    }
}

/// Foreign keys on or to any of `tables`.
fn foreign_keys(conn: &mut SyncConn, tables: &[String]) -> anyhow::Result<Vec<ForeignKey>> {
    let list = tables
        .iter()
        .map(|t| quote_literal(t))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(diesel::sql_query(format!(
        "SELECT c.conrelid::regclass::text AS table, c.conname::text AS name, \
                pg_get_constraintdef(c.oid) AS definition \
         FROM pg_constraint c \
         WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace \
           AND (c.conrelid::regclass::text IN ({list}) OR c.confrelid::regclass::text IN ({list})) \
         ORDER BY c.conrelid::regclass::text, c.conname"
    ))
    .load(conn)?)
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
