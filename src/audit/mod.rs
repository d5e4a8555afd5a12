//! Audit events, written in the same transaction as the change they describe (so there is never
//! a change without its event, nor an event for a change that rolled back). The read API and the
//! hash chain come with the access-control issue; `seq` is already a gap-free per-tenant sequence
//! for the chain to hang from.

use diesel::sql_types::{Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde_json::Value;
use uuid::Uuid;

use crate::error::AppResult;
use crate::tenancy::TenantTx;

/// Where a request came from (no HTTP types: handlers fill it in).
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The request id.
    pub request_id: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// Client user agent (truncated).
    pub user_agent: Option<String>,
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// `contact.created`, `user.login`, …
    pub action: &'a str,
    /// `user` (later also `api_key`, `platform`, `system`).
    pub actor_type: &'a str,
    /// The acting principal, if any.
    pub actor_id: Option<Uuid>,
    /// What was acted on.
    pub target_type: Option<&'a str>,
    /// Its id.
    pub target_id: Option<Uuid>,
    /// Changed field names and other metadata (no field values: keeps PII out of the trail).
    pub changes: Value,
}

impl<'a> Event<'a> {
    /// An event acted by a user on one target: the shape of every event so far.
    pub fn by_user(
        action: &'a str,
        actor: Uuid,
        target_type: &'a str,
        target_id: Uuid,
        changes: Value,
    ) -> Self {
        Self {
            action,
            actor_type: "user",
            actor_id: Some(actor),
            target_type: Some(target_type),
            target_id: Some(target_id),
            changes,
        }
    }
}

/// Appends `event` to the transaction's tenant trail in one round trip: two statements,
/// pipelined. The first bumps the tenant's head (creating it at 1), which also serializes the
/// tenant's writers until commit (the future hash chain needs that order anyway); the second
/// inserts the event numbered from the head *as this transaction now sees it*. Both run or
/// neither does (same transaction), so `seq` stays gap-free.
///
/// It used to be one statement, a data-modifying CTE feeding `INSERT … SELECT`. Citus executes
/// that shape through `COPY`, which row-level security forbids; both statements here route to the
/// tenant's one shard (`audit_heads` and `audit_events` are co-located and the `SELECT` reads the
/// distribution column it inserts), so they work the same on one PostgreSQL and on a cluster.
pub async fn record(tx: &mut TenantTx<'_>, ctx: &Context, event: Event<'_>) -> AppResult<()> {
    let tenant = tx.tenant_id().as_uuid();
    let conn = tx.conn();
    // Both futures are built before either is polled and own what they send; join! polls them in
    // argument order, so the bump is written first and the insert rides in the same flush.
    let bump = diesel::sql_query(
        "INSERT INTO audit_heads (tenant_id, last_seq) VALUES ($1, 1) \
         ON CONFLICT (tenant_id) DO UPDATE SET last_seq = audit_heads.last_seq + 1",
    )
    .bind::<SqlUuid, _>(tenant)
    .execute(conn);
    let insert = diesel::sql_query(
        "INSERT INTO audit_events (tenant_id, seq, id, action, actor_type, actor_id, target_type, \
             target_id, changes, request_id, ip, user_agent) \
         SELECT h.tenant_id, h.last_seq, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
         FROM audit_heads h WHERE h.tenant_id = $1",
    )
    .bind::<SqlUuid, _>(tenant)
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<Text, _>(event.action)
    .bind::<Text, _>(event.actor_type)
    .bind::<Nullable<SqlUuid>, _>(event.actor_id)
    .bind::<Nullable<Text>, _>(event.target_type)
    .bind::<Nullable<SqlUuid>, _>(event.target_id)
    .bind::<Jsonb, _>(event.changes)
    .bind::<Nullable<Text>, _>(ctx.request_id.as_deref())
    .bind::<Nullable<Text>, _>(ctx.ip.as_deref())
    .bind::<Nullable<Text>, _>(ctx.user_agent.as_deref())
    .execute(conn);
    let (bumped, inserted) = futures_util::join!(bump, insert);
    bumped?;
    if inserted? != 1 {
        return Err(crate::error::AppError::Internal(anyhow::anyhow!(
            "audit event not written: the tenant's head was not visible"
        )));
    }
    Ok(())
}
