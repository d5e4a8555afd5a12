//! Operator changes to a tenant: plan, status, overrides, name, and the soft delete. Shared by
//! the operator API and `tenants apply`.
//!
//! Each change is one transaction on the platform path in the tenant's own context
//! ([`PlatformDoor::for_tenant`]): the row is locked, checked and updated, the change is recorded
//! in the tenant's audit trail (`actor_type = "platform"`), and [`invalidation::notify`] makes
//! every replica forget the tenant when it commits. Change, event and notification commit
//! together or not at all.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::door::PlatformDoor;
use super::invalidation;
use super::model::Tenant;
use crate::audit::{self, Context as AuditContext, Event};
use crate::db::schema::tenants;
use crate::error::{AppError, AppResult};
use crate::ids::{PlatformKeyId, TenantId};
use crate::limits::plans::{QuotaOverrides, RateOverrides};
use crate::tenancy::TenantTx;

/// The statuses an operator may set; `deleted` only comes from [`soft_delete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Served.
    Active,
    /// Every request answers 403 `tenant_suspended`.
    Suspended,
}

impl Status {
    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

/// Who is changing the tenant, for its audit trail.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The platform key, when the change came through the operator API.
    pub key: Option<PlatformKeyId>,
    /// `api` or `manifest`: recorded with the event.
    pub via: &'static str,
    /// Request metadata (empty for the CLI).
    pub context: AuditContext,
}

/// Fields to change; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    /// Display name (already validated).
    pub name: Option<String>,
    /// Plan name (already checked against the configured plans).
    pub plan: Option<String>,
    /// Status.
    pub status: Option<Status>,
    /// Quota overrides.
    pub quota_overrides: Option<Overrides<QuotaOverrides>>,
    /// Rate overrides.
    pub rate_overrides: Option<Overrides<RateOverrides>>,
}

/// How overrides change: replaced as a whole (manifests declare the full set), or merged key by
/// key (the API's PATCH: a number sets a key, `null` removes it, absent keys stay).
#[derive(Debug, Clone, PartialEq)]
pub enum Overrides<T> {
    /// The new overrides.
    Replace(T),
    /// A JSON merge patch over the current overrides, already validated by the caller.
    Merge(serde_json::Map<String, serde_json::Value>),
}

impl<T: Serialize + serde::de::DeserializeOwned + Clone> Overrides<T> {
    /// The overrides after this change, given the `current` ones.
    pub fn resolve(&self, current: &T) -> AppResult<T> {
        match self {
            Self::Replace(v) => Ok(v.clone()),
            Self::Merge(patch) => {
                let mut merged = match to_json(current)? {
                    serde_json::Value::Object(m) => m,
                    _ => serde_json::Map::new(),
                };
                for (k, v) in patch {
                    if v.is_null() {
                        merged.remove(k);
                    } else {
                        merged.insert(k.clone(), v.clone());
                    }
                }
                serde_json::from_value(serde_json::Value::Object(merged))
                    .map_err(|e| AppError::Malformed(format!("overrides: {e}")))
            }
        }
    }
}

impl Change {
    /// The names of the fields that would differ from `t`, in a fixed order.
    pub fn differences(&self, t: &Tenant) -> AppResult<Vec<&'static str>> {
        let (quota, rate) = self.overrides(t)?;
        let mut out = Vec::new();
        if self.name.as_ref().is_some_and(|n| *n != t.name) {
            out.push("name");
        }
        if self.plan.as_ref().is_some_and(|p| *p != t.plan) {
            out.push("plan");
        }
        if self.status.is_some_and(|s| s.as_str() != t.status) {
            out.push("status");
        }
        if quota != t.quota_overrides() {
            out.push("quota_overrides");
        }
        if rate != t.rate_overrides() {
            out.push("rate_overrides");
        }
        Ok(out)
    }

    /// The overrides `t` would have after this change.
    pub fn overrides(&self, t: &Tenant) -> AppResult<(QuotaOverrides, RateOverrides)> {
        let quota = match &self.quota_overrides {
            Some(o) => o.resolve(&t.quota_overrides())?,
            None => t.quota_overrides(),
        };
        let rate = match &self.rate_overrides {
            Some(o) => o.resolve(&t.rate_overrides())?,
            None => t.rate_overrides(),
        };
        Ok((quota, rate))
    }
}

/// Applies `change` to tenant `id`. `expected` is an `If-Match` list (412 unless the version is
/// in it). Unknown or still-provisioning tenants are 404; a deleted tenant cannot be changed
/// (409). A change that changes nothing writes nothing and returns the tenant as it is.
pub async fn update(
    platform: &PlatformDoor,
    id: TenantId,
    change: Change,
    expected: Option<Vec<i64>>,
    operator: &Operator,
) -> AppResult<Tenant> {
    let operator = operator.clone();
    platform
        .for_tenant(id, move |tx| {
            async move {
                let current = locked(tx, id, expected.as_deref()).await?;
                if current.status == "deleted" {
                    return Err(AppError::Conflict("the tenant is deleted".into()));
                }
                let fields = change.differences(&current)?;
                if fields.is_empty() {
                    return Ok(current);
                }
                let (quota, rate) = change.overrides(&current)?;
                let status = change
                    .status
                    .map_or(current.status.clone(), |s| s.as_str().to_string());
                let updated = diesel::update(tenants::table.find(id))
                    .set((
                        tenants::name.eq(change.name.as_ref().unwrap_or(&current.name)),
                        tenants::plan.eq(change.plan.as_ref().unwrap_or(&current.plan)),
                        tenants::status.eq(status),
                        tenants::quota_overrides.eq(to_json(&quota)?),
                        tenants::rate_overrides.eq(to_json(&rate)?),
                        tenants::updated_at.eq(now()),
                        tenants::version.eq(tenants::version + 1),
                    ))
                    .returning(Tenant::as_returning())
                    .get_result(tx.conn())
                    .await?;
                let action = match change.status {
                    Some(s) if fields.contains(&"status") => match s {
                        Status::Active => "tenant.reactivated",
                        Status::Suspended => "tenant.suspended",
                    },
                    _ => "tenant.updated",
                };
                record(tx, &operator, action, id, json!({ "fields": fields })).await?;
                invalidation::notify(tx.conn(), id).await?;
                Ok(updated)
            }
            .scope_boxed()
        })
        .await
}

/// Soft-deletes tenant `id`: status `deleted`, `deleted_at` now, `purge_after` now plus
/// `grace_days`. Its hosts answer 404 from the next request on; `tessera platform purge`
/// removes its data after the grace period. Deleting a deleted tenant changes nothing.
pub async fn soft_delete(
    platform: &PlatformDoor,
    id: TenantId,
    grace_days: u32,
    expected: Option<Vec<i64>>,
    operator: &Operator,
) -> AppResult<Tenant> {
    let operator = operator.clone();
    platform
        .for_tenant(id, move |tx| {
            async move {
                let current = locked(tx, id, expected.as_deref()).await?;
                if current.status == "deleted" {
                    return Ok(current);
                }
                let now = now();
                let purge_after = now + chrono::Duration::days(i64::from(grace_days));
                let deleted = diesel::update(tenants::table.find(id))
                    .set((
                        tenants::status.eq("deleted"),
                        tenants::deleted_at.eq(Some(now)),
                        tenants::purge_after.eq(Some(purge_after)),
                        tenants::updated_at.eq(now),
                        tenants::version.eq(tenants::version + 1),
                    ))
                    .returning(Tenant::as_returning())
                    .get_result(tx.conn())
                    .await?;
                let changes = json!({ "fields": ["status"], "purge_after": purge_after });
                record(tx, &operator, "tenant.deleted", id, changes).await?;
                invalidation::notify(tx.conn(), id).await?;
                Ok(deleted)
            }
            .scope_boxed()
        })
        .await
}

/// The tenant's row, locked for the rest of the transaction; 404 if absent or provisioning,
/// 412 if `expected` does not list its version.
async fn locked(
    tx: &mut TenantTx<'_>,
    id: TenantId,
    expected: Option<&[i64]>,
) -> AppResult<Tenant> {
    let current = tenants::table
        .find(id)
        .select(Tenant::as_select())
        .for_update()
        .first(tx.conn())
        .await
        .optional()?
        .filter(|t| t.status != "provisioning")
        .ok_or(AppError::NotFound)?;
    if let Some(expected) = expected
        && !expected.contains(&current.version)
    {
        return Err(AppError::VersionConflict);
    }
    Ok(current)
}

/// Records an operator action in the tenant's own audit trail.
pub async fn record(
    tx: &mut TenantTx<'_>,
    operator: &Operator,
    action: &str,
    tenant: TenantId,
    mut changes: serde_json::Value,
) -> AppResult<()> {
    changes["via"] = json!(operator.via);
    audit::record(
        tx,
        &operator.context,
        Event {
            action,
            actor_type: "platform",
            actor_id: operator.key.map(|k| k.as_uuid()),
            target_type: Some("tenant"),
            target_id: Some(tenant.as_uuid()),
            changes,
        },
    )
    .await
}

fn to_json<T: Serialize>(value: &T) -> AppResult<serde_json::Value> {
    serde_json::to_value(value).map_err(AppError::internal)
}

/// Now, to the microsecond Postgres keeps, so a response shows what is stored.
fn now() -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(Utc::now(), 6)
}
