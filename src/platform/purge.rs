//! `tessera platform purge`: removes the data of tenants whose grace period is over.
//!
//! A soft-deleted tenant (operator `DELETE`, `tenants apply --prune`) keeps its rows until
//! `purge_after`; then every tenant table listed in [`PURGED`] is emptied of its rows, in its
//! own context (`SET LOCAL app.tenant_id`) and one transaction per tenant. The `tenants` row
//! stays (the slug is never handed out again) and so do the usage tables ([`KEPT`]): billing may
//! still need them. A signup that was reserved but never finished (`provisioning`, older than
//! an hour) is removed entirely, row and slug included: it was never served.
//!
//! Tenants are found on the platform path; their rows are deleted by the owner role
//! (`database.migration_url`), the only one with DELETE on the audit trail, whose trigger admits
//! it for exactly these tenants (migration `2026-12-04-000001_tenant_purge`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;

use crate::db::schema::tenants;
use crate::error::AppResult;
use crate::ids::TenantId;
use crate::tenancy::{Door, PlatformDoor, TxScope};

/// Tenant tables emptied by a purge, children before parents (foreign keys).
pub const PURGED: &[&str] = &[
    "user_roles",
    "role_permissions",
    "refresh_tokens",
    "contacts",
    "idempotency_keys",
    "audit_events",
    "audit_heads",
    "quota_counters",
    "roles",
    "users",
];

/// Tenant tables a purge keeps for billing (removed only with an abandoned signup).
pub const KEPT: &[&str] = &["usage_windows", "usage_receipts", "usage_adjustments"];

/// How long a `provisioning` row may sit before it counts as abandoned.
const ABANDONED_AFTER_HOURS: i64 = 1;

/// One tenant a purge handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedTenant {
    /// The tenant.
    pub id: TenantId,
    /// Its slug.
    pub slug: String,
    /// `deleted` (data removed, row kept) or `provisioning` (abandoned signup, row removed).
    pub status: String,
    /// Rows deleted across its tables.
    pub rows: u64,
}

/// Purges every due tenant; returns what it did, tenant by tenant.
pub async fn run(platform: &PlatformDoor, owner: &Door) -> AppResult<Vec<PurgedTenant>> {
    let now = Utc::now();
    let due = platform
        .tx(true, move |tx| {
            async move { Ok(due(tx.conn(), now).await?) }.scope_boxed()
        })
        .await?;
    let mut out = Vec::with_capacity(due.len());
    for (id, slug, status) in due {
        let abandoned = status == "provisioning";
        let rows = owner
            .write(TxScope::tenant(id), move |tx| {
                async move {
                    let mut rows = 0u64;
                    let tables = PURGED
                        .iter()
                        .chain(abandoned.then_some(KEPT).into_iter().flatten());
                    for table in tables {
                        // Table names come from the constants above, never from input.
                        rows +=
                            diesel::sql_query(format!("DELETE FROM {table} WHERE tenant_id = $1"))
                                .bind::<diesel::sql_types::Uuid, _>(id.as_uuid())
                                .execute(tx.conn())
                                .await? as u64;
                    }
                    if abandoned {
                        diesel::delete(tenants::table.find(id))
                            .filter(tenants::status.eq("provisioning"))
                            .execute(tx.conn())
                            .await?;
                    }
                    Ok(rows)
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(tenant.id = %id, tenant.slug = %slug, %status, rows, "tenant purged");
        out.push(PurgedTenant {
            id,
            slug,
            status,
            rows,
        });
    }
    Ok(out)
}

/// Deleted tenants past `purge_after` (visited on every run: one already purged costs a
/// transaction of empty deletes and reports 0 rows), and abandoned signups.
async fn due(
    conn: &mut diesel_async::AsyncPgConnection,
    now: DateTime<Utc>,
) -> QueryResult<Vec<(TenantId, String, String)>> {
    let abandoned_before = now - chrono::Duration::hours(ABANDONED_AFTER_HOURS);
    tenants::table
        .filter(
            tenants::status
                .eq("deleted")
                .and(tenants::purge_after.lt(now))
                .or(tenants::status
                    .eq("provisioning")
                    .and(tenants::created_at.lt(abandoned_before))),
        )
        .order(tenants::id)
        .select((tenants::id, tenants::slug, tenants::status))
        .load(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::citus::{PLACEMENTS, Placement};

    /// A new tenant table must be either purged or kept on purpose.
    #[test]
    fn every_tenant_table_is_purged_or_kept() {
        for (table, placement) in PLACEMENTS {
            if *placement == Placement::ByTenant {
                assert!(
                    PURGED.contains(table) || KEPT.contains(table),
                    "{table}: add it to PURGED or KEPT in src/platform/purge.rs"
                );
            }
        }
    }
}
