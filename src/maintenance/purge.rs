//! Deletes expired idempotency keys and refresh tokens, tenant by tenant.
//!
//! There is no cross-tenant database role yet (the platform role comes later, with its own pool
//! and least-privilege policies), so the purge goes through the door like a request does: it pages
//! through tenant ids on the platform path (`tenants` has no RLS) and deletes each tenant's
//! expired rows in tenant transactions. Every statement names one tenant (`tenant_id = $1`), so
//! each routes to a single shard on Citus.
//!
//! What counts as expired:
//! - an idempotency key past `expires_at`: a retry after that is a new request anyway
//!   (`idempotency::claim` already takes such a key over);
//! - a refresh token past `expires_at`, whatever its state. A consumed or revoked token is kept
//!   until then, because reuse detection must still recognise a consumed token while presenting
//!   it could matter. Deleting expired tokens never ends a live session: the newest token of a
//!   session was minted with its newest access token and outlives it
//!   (`auth.refresh_ttl_secs` ≥ `auth.access_ttl_secs`), so the grants check still finds it.

use anyhow::Context;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::db::schema::tenants;
use crate::ids::TenantId;
use crate::tenancy::{Door, PlatformDoor, TxScope};

/// Rows deleted per statement (and so per transaction) by the timer: small enough that a tenant
/// with millions of expired rows never holds one long transaction or a long burst of row locks.
pub const BATCH: i64 = 1000;

/// Tenant ids read per platform transaction.
pub const TENANT_PAGE: i64 = 500;

/// What one purge did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Tenants visited.
    pub tenants: u64,
    /// Expired idempotency keys deleted.
    pub idempotency_keys: u64,
    /// Expired refresh tokens deleted.
    pub refresh_tokens: u64,
    /// DELETE statements run, each in its own transaction and bounded by the batch size.
    pub batches: u64,
}

/// A table whose rows die at `expires_at`, its batched delete, and where its count goes.
struct Expiring {
    table: &'static str,
    delete: &'static str,
    count: fn(&mut Purged) -> &mut u64,
}

// The batch's keys are collected first (`= ANY(ARRAY(…))`), so the rows are then found by primary
// key whatever the plan: a semi-join could scan all of a tenant's expired rows for every batch.
// The outer `expires_at < now()` repeats the inner one on purpose: when a row is locked by a
// writer, the DELETE waits and then re-checks its own WHERE against the row as committed, not the
// collected keys'. Without it, a key that `idempotency::claim` took over (new `expires_at`) while
// the purge waited would be deleted under the request now running with it.
const EXPIRING: [Expiring; 2] = [
    Expiring {
        table: "idempotency_keys",
        delete: "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND expires_at < now() \
                 AND key = ANY(ARRAY(SELECT key FROM idempotency_keys \
                                     WHERE tenant_id = $1 AND expires_at < now() LIMIT $2))",
        count: |p| &mut p.idempotency_keys,
    },
    Expiring {
        table: "refresh_tokens",
        delete: "DELETE FROM refresh_tokens WHERE tenant_id = $1 AND expires_at < now() \
                 AND id = ANY(ARRAY(SELECT id FROM refresh_tokens \
                                    WHERE tenant_id = $1 AND expires_at < now() LIMIT $2))",
        count: |p| &mut p.refresh_tokens,
    },
];

/// Purges every tenant's expired rows once, at most `batch` rows per statement, and says how many
/// went. Safe to run concurrently (on several replicas): a row two purges both pick is deleted by
/// one and skipped by the other.
pub async fn purge_expired(
    door: &Door,
    platform: &PlatformDoor,
    batch: i64,
) -> anyhow::Result<Purged> {
    anyhow::ensure!(batch > 0, "purge batch size must be positive");
    let mut purged = Purged::default();
    let mut after = TenantId(Uuid::nil());
    loop {
        let page = tenant_page(platform, after).await?;
        for &tenant in &page {
            purge_tenant(door, tenant, batch, &mut purged)
                .await
                .with_context(|| format!("purging expired rows of tenant {tenant}"))?;
        }
        purged.tenants += page.len() as u64;
        match page.last() {
            Some(&last) if page.len() as i64 == TENANT_PAGE => after = last,
            _ => return Ok(purged),
        }
    }
}

/// The next page of tenant ids after `after`, in id order. Every tenant, suspended and deleted
/// ones too: their expired rows are just as dead. Listing tenants is cross-tenant work: the
/// platform path does it.
async fn tenant_page(platform: &PlatformDoor, after: TenantId) -> anyhow::Result<Vec<TenantId>> {
    let page = platform
        .tx(true, |tx| {
            async move {
                Ok(tenants::table
                    .select(tenants::id)
                    .filter(tenants::id.gt(after.as_uuid()))
                    .order(tenants::id)
                    .limit(TENANT_PAGE)
                    .load::<TenantId>(tx.conn())
                    .await?)
            }
            .scope_boxed()
        })
        .await
        .context("listing tenants")?;
    Ok(page)
}

/// Deletes one tenant's expired rows, one short transaction per batch, until a batch comes back
/// short.
async fn purge_tenant(
    door: &Door,
    tenant: TenantId,
    batch: i64,
    purged: &mut Purged,
) -> anyhow::Result<()> {
    for expiring in &EXPIRING {
        let sql = expiring.delete;
        loop {
            let deleted = door
                .write(TxScope::tenant(tenant), |tx| {
                    async move {
                        Ok(diesel::sql_query(sql)
                            .bind::<SqlUuid, _>(tenant.as_uuid())
                            .bind::<BigInt, _>(batch)
                            .execute(tx.conn())
                            .await?)
                    }
                    .scope_boxed()
                })
                .await
                .with_context(|| format!("deleting from {}", expiring.table))?
                as u64;
            purged.batches += 1;
            *(expiring.count)(purged) += deleted;
            if deleted < batch as u64 {
                break;
            }
        }
    }
    Ok(())
}
