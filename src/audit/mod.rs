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
///
/// Both have a static query id, so each connection prepares them once and afterwards sends only
/// Bind/Execute for the two together: one round trip (diesel re-prepares a `sql_query`, and its
/// upsert DSL, every time: one more round trip each, seen on the wire).
pub async fn record(tx: &mut TenantTx<'_>, ctx: &Context, event: Event<'_>) -> AppResult<()> {
    use crate::db::schema::{audit_events as ev, audit_heads as head};
    use diesel::{ExpressionMethods, IntoSql, QueryDsl};

    let tenant = tx.tenant_id().as_uuid();
    let conn = tx.conn();
    // Both futures are built before either is polled and own what they send; join! polls them in
    // argument order, so the bump is written first and the insert rides in the same flush.
    let bump = BumpHead { tenant }.execute(conn);
    let numbered = head::table.filter(head::tenant_id.eq(tenant)).select((
        head::tenant_id,
        head::last_seq,
        Uuid::now_v7().into_sql::<SqlUuid>(),
        event.action.into_sql::<Text>(),
        event.actor_type.into_sql::<Text>(),
        event.actor_id.into_sql::<Nullable<SqlUuid>>(),
        event.target_type.into_sql::<Nullable<Text>>(),
        event.target_id.into_sql::<Nullable<SqlUuid>>(),
        event.changes.into_sql::<Jsonb>(),
        ctx.request_id.as_deref().into_sql::<Nullable<Text>>(),
        ctx.ip.as_deref().into_sql::<Nullable<Text>>(),
        ctx.user_agent.as_deref().into_sql::<Nullable<Text>>(),
    ));
    let insert = diesel::insert_into(ev::table)
        .values(numbered)
        .into_columns((
            ev::tenant_id,
            ev::seq,
            ev::id,
            ev::action,
            ev::actor_type,
            ev::actor_id,
            ev::target_type,
            ev::target_id,
            ev::changes,
            ev::request_id,
            ev::ip,
            ev::user_agent,
        ))
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

/// `INSERT INTO audit_heads … ON CONFLICT (tenant_id) DO UPDATE SET last_seq = last_seq + 1`, as a
/// query type of its own so that its prepared statement is cached per connection (see
/// [`record`]).
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
struct BumpHead {
    tenant: Uuid,
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for BumpHead {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql("INSERT INTO audit_heads (tenant_id, last_seq) VALUES (");
        out.push_bind_param::<SqlUuid, _>(&self.tenant)?;
        out.push_sql(
            ", 1) ON CONFLICT (tenant_id) DO UPDATE SET last_seq = audit_heads.last_seq + 1",
        );
        Ok(())
    }
}
