//! Quotas: O(1), race-free accounting in the write transaction.
//!
//! Each tenant has one `quota_counters` row. Taking a unit is one statement that increments the
//! counter only while it is below the limit:
//!
//! ```sql
//! INSERT INTO quota_counters (tenant_id, records) VALUES ($1, 1)
//! ON CONFLICT (tenant_id) DO UPDATE SET records = quota_counters.records + 1
//!   WHERE quota_counters.records < $2
//! RETURNING records
//! ```
//!
//! The row lock it takes serialises concurrent writers of one tenant, so 50 creates racing for
//! the last unit admit exactly one; no `COUNT(*)` over the tenant's table runs per request. The
//! counter moves in the same transaction as the row it counts, so a rolled-back create gives its
//! unit back. `tessera usage reconcile` recomputes every counter from the tables and reports (or,
//! with `--fix`, repairs) drift.

use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::RunQueryDsl;

use crate::error::{AppError, AppResult};
use crate::limits::plans::Quotas;
use crate::tenancy::TenantTx;

/// A counted quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Live CRM records (contacts today; every CRM object later).
    Records,
    /// Active users. Signup and manifests take one per user; user management (invitations,
    /// disabling users) will take and give back through the same two calls.
    Seats,
    /// Webhook endpoints (the events issue charges them).
    WebhookEndpoints,
}

impl Quota {
    /// The name clients see (`quota` in a 402 body), also the counter's column.
    pub fn name(self) -> &'static str {
        match self {
            Self::Records => "records",
            Self::Seats => "seats",
            Self::WebhookEndpoints => "webhook_endpoints",
        }
    }

    /// This quota's limit among `quotas`.
    pub fn limit(self, quotas: &Quotas) -> u64 {
        match self {
            Self::Records => quotas.records,
            Self::Seats => quotas.seats,
            Self::WebhookEndpoints => quotas.webhook_endpoints,
        }
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

/// Takes one unit of `quota` for the transaction's tenant, or fails with 402 `quota_exceeded`
/// when the tenant already uses `limit`. Call it in the transaction that creates the counted
/// thing, before or after the insert: either way both commit or neither.
pub async fn take(tx: &mut TenantTx<'_>, quota: Quota, limit: u64) -> AppResult<()> {
    let column = quota.name();
    let limit_i = i64::try_from(limit).unwrap_or(i64::MAX);
    let taken: Option<Count> = if limit_i == 0 {
        None
    } else {
        // The column comes from the enum, never from input.
        diesel::sql_query(format!(
            "INSERT INTO quota_counters (tenant_id, {column}) VALUES ($1, 1) \
             ON CONFLICT (tenant_id) DO UPDATE SET {column} = quota_counters.{column} + 1 \
             WHERE quota_counters.{column} < $2 \
             RETURNING {column} AS value"
        ))
        .bind::<SqlUuid, _>(tx.tenant_id().as_uuid())
        .bind::<BigInt, _>(limit_i)
        .get_result(tx.conn())
        .await
        .optional()?
    };
    match taken {
        Some(_) => Ok(()),
        None => Err(AppError::QuotaExceeded {
            quota: column,
            limit,
            used: used(tx, quota).await?,
        }),
    }
}

/// Gives one unit of `quota` back (the counted thing was deleted or disabled). Never below zero:
/// a counter that drifted low is repaired by `tessera usage reconcile --fix`, not made negative.
pub async fn give_back(tx: &mut TenantTx<'_>, quota: Quota) -> AppResult<()> {
    let column = quota.name();
    diesel::sql_query(format!(
        "UPDATE quota_counters SET {column} = {column} - 1 WHERE tenant_id = $1 AND {column} > 0"
    ))
    .bind::<SqlUuid, _>(tx.tenant_id().as_uuid())
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// How much of `quota` the transaction's tenant uses (0 without a counter row).
pub async fn used(tx: &mut TenantTx<'_>, quota: Quota) -> AppResult<u64> {
    let column = quota.name();
    let row: Option<Count> = diesel::sql_query(format!(
        "SELECT {column} AS value FROM quota_counters WHERE tenant_id = $1"
    ))
    .bind::<SqlUuid, _>(tx.tenant_id().as_uuid())
    .get_result(tx.conn())
    .await
    .optional()?;
    Ok(row.map_or(0, |r| r.value.max(0) as u64))
}

/// Every counter of the transaction's tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName)]
pub struct Counters {
    /// Live CRM records.
    #[diesel(sql_type = BigInt)]
    pub records: i64,
    /// Active users.
    #[diesel(sql_type = BigInt)]
    pub seats: i64,
    /// Webhook endpoints.
    #[diesel(sql_type = BigInt)]
    pub webhook_endpoints: i64,
}

/// The transaction's tenant's counters (zeros without a row).
pub async fn counters(tx: &mut TenantTx<'_>) -> AppResult<Counters> {
    let row: Option<Counters> = diesel::sql_query(
        "SELECT records, seats, webhook_endpoints FROM quota_counters WHERE tenant_id = $1",
    )
    .bind::<SqlUuid, _>(tx.tenant_id().as_uuid())
    .get_result(tx.conn())
    .await
    .optional()?;
    Ok(row.unwrap_or_default())
}

/// What the tables hold, counted the slow way (reconcile only).
pub async fn recount(tx: &mut TenantTx<'_>) -> AppResult<Counters> {
    Ok(diesel::sql_query(
        "SELECT \
           (SELECT count(*) FROM contacts WHERE tenant_id = $1 AND deleted_at IS NULL) AS records, \
           (SELECT count(*) FROM users WHERE tenant_id = $1 AND status = 'active') AS seats, \
           0::bigint AS webhook_endpoints",
    )
    .bind::<SqlUuid, _>(tx.tenant_id().as_uuid())
    .get_result(tx.conn())
    .await?)
}

/// Sets the transaction's tenant's counters to `to` (reconcile `--fix`).
pub async fn overwrite(tx: &mut TenantTx<'_>, to: Counters) -> AppResult<()> {
    diesel::sql_query(
        "INSERT INTO quota_counters (tenant_id, records, seats, webhook_endpoints) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE \
         SET records = $2, seats = $3, webhook_endpoints = $4",
    )
    .bind::<SqlUuid, _>(tx.tenant_id().as_uuid())
    .bind::<BigInt, _>(to.records)
    .bind::<BigInt, _>(to.seats)
    .bind::<BigInt, _>(to.webhook_endpoints)
    .execute(tx.conn())
    .await?;
    Ok(())
}
