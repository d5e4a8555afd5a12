//! The tenant record (a platform table) and its queries, which run on the platform path.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::schema::tenants;
use crate::ids::TenantId;

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
        }
    }

    /// Whether requests to this tenant are refused with 403.
    pub fn is_suspended(&self) -> bool {
        self.status == "suspended"
    }

    /// Whether the tenant is gone (treated as not found).
    pub fn is_deleted(&self) -> bool {
        self.status == "deleted"
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
