//! The tenant record (a platform table) and its queries, which run on the platform path.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::schema::tenants;
use crate::ids::TenantId;
use crate::limits::plans::{Limits, Plans, QuotaOverrides, RateOverrides};

/// A customer organization.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, ToSchema)]
#[diesel(table_name = tenants, check_for_backend(diesel::pg::Pg))]
pub struct Tenant {
    /// Tenant id.
    #[schema(value_type = uuid::Uuid)]
    pub id: TenantId,
    /// Subdomain label.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Plan name.
    pub plan: String,
    /// `active`, `suspended` or `deleted`.
    pub status: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(skip)]
    pub updated_at: DateTime<Utc>,
    /// Deletion time.
    #[serde(skip)]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Record version.
    #[serde(skip)]
    pub version: i64,
    /// Self-service settings (`PATCH /v1/tenant`), a JSON object.
    #[serde(skip)]
    pub settings: serde_json::Value,
    /// Per-tenant quota overrides ([`QuotaOverrides`]), written only by the platform path.
    #[serde(skip)]
    pub quota_overrides: serde_json::Value,
    /// Per-tenant rate overrides ([`RateOverrides`]), written only by the platform path.
    #[serde(skip)]
    pub rate_overrides: serde_json::Value,
    /// When a deleted tenant's data may be purged.
    #[serde(skip)]
    pub purge_after: Option<DateTime<Utc>>,
}

impl Tenant {
    /// A new active tenant.
    pub fn new(id: TenantId, slug: &str, name: &str, plan: &str) -> Self {
        // Postgres keeps microseconds: a response must show the timestamp as it is stored.
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        Self {
            id,
            slug: slug.into(),
            name: name.into(),
            plan: plan.into(),
            status: "active".into(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
            settings: serde_json::json!({}),
            quota_overrides: serde_json::json!({}),
            rate_overrides: serde_json::json!({}),
            purge_after: None,
        }
    }

    /// The quota overrides; a malformed value (only a hand edit can make one: every writer
    /// validates) counts as none, and is logged.
    pub fn quota_overrides(&self) -> QuotaOverrides {
        parse_or_default(&self.quota_overrides, self.id, "quota_overrides")
    }

    /// The rate overrides (see [`Tenant::quota_overrides`]).
    pub fn rate_overrides(&self) -> RateOverrides {
        parse_or_default(&self.rate_overrides, self.id, "rate_overrides")
    }

    /// This tenant's effective limits under `plans`.
    pub fn limits(&self, plans: &Plans) -> Limits {
        plans.limits(&self.plan, &self.quota_overrides(), &self.rate_overrides())
    }

    /// Whether requests to this tenant are refused with 403.
    pub fn is_suspended(&self) -> bool {
        self.status == "suspended"
    }

    /// Whether the tenant is not served: deleted, or still being provisioned by a signup that
    /// has not committed its owner (treated as not found either way).
    pub fn is_gone(&self) -> bool {
        self.status == "deleted" || self.status == "provisioning"
    }
}

/// Looks a tenant up by slug.
pub async fn by_slug(
    conn: &mut diesel_async::AsyncPgConnection,
    slug: &str,
) -> QueryResult<Option<Tenant>> {
    tenants::table
        .filter(tenants::slug.eq(slug))
        .select(Tenant::as_select())
        .first(conn)
        .await
        .optional()
}

/// Looks a tenant up by id.
pub async fn by_id(
    conn: &mut diesel_async::AsyncPgConnection,
    id: TenantId,
) -> QueryResult<Option<Tenant>> {
    tenants::table
        .find(id)
        .select(Tenant::as_select())
        .first(conn)
        .await
        .optional()
}

fn parse_or_default<T: serde::de::DeserializeOwned + Default>(
    v: &serde_json::Value,
    tenant: TenantId,
    column: &str,
) -> T {
    <T as serde::Deserialize>::deserialize(v).unwrap_or_else(|e| {
        tracing::error!(tenant.id = %tenant, column, error = %e, "malformed overrides ignored");
        T::default()
    })
}
