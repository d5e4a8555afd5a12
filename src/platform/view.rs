//! Request and response shapes of the operator API's tenant endpoints.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::ObjectBuilder;

use crate::auth::handlers::api_schema;
use crate::auth::users::UserView;
use crate::http::openapi::rules;
use crate::ids::TenantId;
use crate::limits::plans::{Limits, Plans, QuotaOverrides, RateOverrides};
use crate::tenancy::Tenant;
use crate::tenancy::lifecycle::Status;

/// A tenant as operators see it: identity, plan, status, overrides and the limits they add up to.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    /// Tenant id.
    #[schema(value_type = uuid::Uuid)]
    pub id: TenantId,
    /// Subdomain label.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Plan name.
    pub plan: String,
    /// `provisioning`, `active`, `suspended` or `deleted`.
    pub status: String,
    /// Per-tenant quota overrides (absent keys: the plan's value).
    pub quota_overrides: QuotaOverrides,
    /// Per-tenant rate and request-path overrides.
    pub rate_overrides: RateOverrides,
    /// Effective limits: the plan with the overrides laid on top.
    pub limits: Limits,
    /// Record version (also the `ETag`).
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Soft-delete time.
    pub deleted_at: Option<DateTime<Utc>>,
    /// When `tessera platform purge` may remove a deleted tenant's data.
    pub purge_after: Option<DateTime<Utc>>,
}

impl TenantView {
    /// The view of `t` under `plans`.
    pub fn of(t: &Tenant, plans: &Plans) -> Self {
        Self {
            id: t.id,
            slug: t.slug.clone(),
            name: t.name.clone(),
            plan: t.plan.clone(),
            status: t.status.clone(),
            quota_overrides: t.quota_overrides(),
            rate_overrides: t.rate_overrides(),
            limits: t.limits(plans),
            version: t.version,
            created_at: t.created_at,
            updated_at: t.updated_at,
            deleted_at: t.deleted_at,
            purge_after: t.purge_after,
        }
    }
}

/// A tenant's status, as the list filters by it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum StatusFilter {
    /// Reserved by a signup or create that has not finished (never served).
    Provisioning,
    /// Served.
    Active,
    /// Refused with 403 `tenant_suspended`.
    Suspended,
    /// Soft-deleted.
    Deleted,
}

/// A page of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantPage {
    /// Tenants, oldest first.
    pub data: Vec<TenantView>,
    /// Cursor for the next page, null on the last.
    pub next_cursor: Option<String>,
}

/// The new tenant in `POST /v1/platform/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Subdomain label (the rules of signup).
    #[schema(schema_with = api_schema::slug)]
    pub slug: String,
    /// Display name.
    #[schema(schema_with = api_schema::name)]
    pub name: String,
}

/// The first owner in `POST /v1/platform/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOwner {
    /// Login email.
    #[schema(schema_with = api_schema::email)]
    pub email: String,
    /// Display name.
    #[schema(schema_with = api_schema::name)]
    pub name: String,
    /// 12–256 characters; absent: one is generated and returned once.
    #[schema(schema_with = optional_password)]
    pub password: Option<String>,
}

/// `POST /v1/platform/tenants` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The tenant.
    pub tenant: NewTenant,
    /// Its first user, who becomes `owner`.
    pub owner: NewOwner,
    /// Any configured plan (default `free`).
    #[schema(schema_with = plan_name)]
    pub plan: Option<String>,
    /// Quota overrides.
    pub quota_overrides: Option<QuotaOverrides>,
    /// Rate and request-path overrides.
    pub rate_overrides: Option<RateOverrides>,
}

/// `POST /v1/platform/tenants` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedTenant {
    /// The tenant, active.
    pub tenant: TenantView,
    /// Its owner.
    pub owner: UserView,
    /// The owner's generated password, present (once) only when the request gave none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_password: Option<String>,
}

/// `PATCH /v1/platform/tenants/{id}` body. Absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    /// Display name.
    #[schema(schema_with = api_schema::name)]
    pub name: Option<String>,
    /// Any configured plan.
    #[schema(schema_with = plan_name)]
    pub plan: Option<String>,
    /// `active` or `suspended` (deleting is `DELETE`).
    pub status: Option<Status>,
    /// Merged into the current quota overrides: a number sets a key, `null` removes it (back
    /// to the plan's value), absent keys are kept.
    #[schema(value_type = Option<QuotaOverrides>)]
    pub quota_overrides: Option<serde_json::Map<String, serde_json::Value>>,
    /// Merged into the current rate overrides like `quota_overrides`.
    #[schema(value_type = Option<RateOverrides>)]
    pub rate_overrides: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A configured plan and its name.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// Plan name.
    pub name: String,
    /// The plan.
    #[serde(flatten)]
    pub plan: crate::limits::plans::Plan,
}

/// `GET /v1/platform/plans` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanList {
    /// Every configured plan, by name.
    pub data: Vec<PlanView>,
}

/// A password being set, or null.
fn optional_password() -> ObjectBuilder {
    api_schema::new_password()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            utoipa::openapi::schema::Type::String,
            utoipa::openapi::schema::Type::Null,
        ]))
        .pattern(Some(rules::NO_NUL))
}

/// A plan name as plans.toml allows it, or null.
fn plan_name() -> ObjectBuilder {
    rules::string(true)
        .pattern(Some(r"^[a-z_][a-z0-9_]{0,31}$"))
        .description(Some(
            "A plan configured in plans.toml (`GET /v1/platform/plans`); an unknown name is 422.",
        ))
}
