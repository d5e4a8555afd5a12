//! The tenant's own view of itself: `GET /v1/tenant` (plan, status, limits, usage against each
//! quota), `PATCH /v1/tenant` (`tenant:manage`: name and settings only — plan, status and limits
//! belong to the operator) and `GET /v1/tenant/usage` (`billing:read`).

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, get, patch, web};
use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::model::{self, Tenant};
use crate::app::AppState;
use crate::audit::{self, Event};
use crate::db::schema::tenants;
use crate::error::{AppError, AppResult, FieldError, Problem};
use crate::http::body::JsonBody;
use crate::http::conditional::{etag, if_match};
use crate::http::principal::Principal;
use crate::limits::metering::Meter;
use crate::limits::plans::Limits;
use crate::limits::quota;
use crate::limits::usage::{self, RangeQuery, UsagePoint};

const TENANT_MANAGE: &str = "tenant:manage";
const BILLING_READ: &str = "billing:read";

/// Longest tenant name, in characters (as at signup).
const MAX_NAME: usize = 200;
/// Most keys in `settings`.
const MAX_SETTINGS_KEYS: usize = 50;
/// Longest string value in `settings`.
const MAX_SETTING_STRING: usize = 1000;
/// A settings key.
const SETTING_KEY: &str = r"^[a-z][a-z0-9_]{0,63}$";

/// OpenAPI schemas of the PATCH body: exactly what [`settings_problem`] and the name check accept.
mod api_schema {
    use serde_json::json;
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};

    use super::{MAX_NAME, MAX_SETTING_STRING, MAX_SETTINGS_KEYS, SETTING_KEY};
    use crate::http::openapi::rules;

    /// The display name.
    pub fn name() -> ObjectBuilder {
        rules::string(false)
            .pattern(Some(rules::non_blank()))
            .max_length(Some(MAX_NAME))
            .description(Some("1–200 characters once trimmed."))
    }

    /// The settings object.
    pub fn settings() -> ObjectBuilder {
        let value = ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([
                Type::String,
                Type::Number,
                Type::Boolean,
                Type::Null,
            ]))
            .max_length(Some(MAX_SETTING_STRING))
            .pattern(Some(rules::NO_NUL));
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Object))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(SETTING_KEY)),
            ))
            .additional_properties(Some(value))
            .max_properties(Some(MAX_SETTINGS_KEYS))
            .description(Some(
                "Replaces the whole settings object: at most 50 keys matching \
                 `^[a-z][a-z0-9_]{0,63}$`, each a string (at most 1000 characters), number, \
                 boolean or null.",
            ))
            .examples([json!({"locale": "de", "fiscal_year_start": 4})])
    }
}

/// Why `settings` is refused, if it is.
fn settings_problem(v: &Value) -> Option<&'static str> {
    let key = regex::Regex::new(SETTING_KEY).expect("valid pattern");
    let Some(map) = v.as_object() else {
        return Some("must be a JSON object");
    };
    if map.len() > MAX_SETTINGS_KEYS {
        return Some("at most 50 keys");
    }
    for (k, v) in map {
        if !key.is_match(k) {
            return Some("keys must match ^[a-z][a-z0-9_]{0,63}$");
        }
        match v {
            Value::String(s) if s.contains('\0') || s.chars().count() > MAX_SETTING_STRING => {
                return Some("string values: at most 1000 characters, no NUL");
            }
            Value::Array(_) | Value::Object(_) => {
                return Some("values must be strings, numbers, booleans or null");
            }
            _ => {}
        }
    }
    None
}

/// How much of one quota is in use.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Standing {
    /// In use now (this month, for `api_requests_per_month`).
    pub used: u64,
    /// The tenant's limit.
    pub limit: u64,
    /// `limit - used`, never negative.
    pub remaining: u64,
}

impl Standing {
    fn of(used: u64, limit: u64) -> Self {
        Self {
            used,
            limit,
            remaining: limit.saturating_sub(used),
        }
    }
}

/// Usage against each quota.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct QuotaUsage {
    /// Live CRM records.
    pub records: Standing,
    /// Active users.
    pub seats: Standing,
    /// Webhook endpoints.
    pub webhook_endpoints: Standing,
    /// API requests this calendar month (UTC), flushed usage plus this replica's unflushed
    /// count.
    pub api_requests_per_month: Standing,
}

/// `GET /v1/tenant`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentTenant {
    /// Tenant id.
    #[schema(value_type = uuid::Uuid)]
    pub id: crate::ids::TenantId,
    /// Subdomain label.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Plan name.
    pub plan: String,
    /// `active` or `suspended` (a suspended tenant gets 403 before reaching this).
    pub status: String,
    /// Self-service settings (a JSON object the tenant owns).
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Effective limits: the plan's, with the operator's overrides.
    pub limits: Limits,
    /// Usage against each quota.
    pub usage: QuotaUsage,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Record version (`ETag`).
    pub version: i64,
}

/// Reads the tenant's own row and counters (as the app role: RLS shows it this row only).
async fn load(state: &AppState, principal: &Principal) -> AppResult<CurrentTenant> {
    let id = principal.tenant_id();
    let (tenant, counters, month) = state
        .door
        .read(principal.scope(), move |tx| {
            async move {
                let tenant = model::by_id(tx.conn(), id)
                    .await?
                    .ok_or(AppError::NotFound)?;
                let counters = quota::counters(tx).await?;
                let month = usage::month_requests(tx.conn(), id.as_uuid()).await?;
                Ok((tenant, counters, month))
            }
            .scope_boxed()
        })
        .await?;
    Ok(view(state, tenant, counters, month))
}

fn view(state: &AppState, tenant: Tenant, counters: quota::Counters, month: i64) -> CurrentTenant {
    let limits = tenant.limits(&state.config.plans);
    let unflushed = state.metering.unflushed_this_month(tenant.id);
    let q = limits.quotas;
    let n = |v: i64| v.max(0) as u64;
    CurrentTenant {
        usage: QuotaUsage {
            records: Standing::of(n(counters.records), q.records),
            seats: Standing::of(n(counters.seats), q.seats),
            webhook_endpoints: Standing::of(n(counters.webhook_endpoints), q.webhook_endpoints),
            api_requests_per_month: Standing::of(n(month) + unflushed, q.api_requests_per_month),
        },
        limits,
        id: tenant.id,
        slug: tenant.slug,
        name: tenant.name,
        plan: tenant.plan,
        status: tenant.status,
        settings: tenant.settings,
        created_at: tenant.created_at,
        updated_at: tenant.updated_at,
        version: tenant.version,
    }
}

/// The calling tenant: plan, status, effective limits and usage against each quota.
#[utoipa::path(
    tag = "tenant",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenant", body = CurrentTenant, headers(("ETag" = String))),
    )
)]
#[get("/v1/tenant")]
pub async fn get_tenant(
    state: web::Data<AppState>,
    principal: Principal,
) -> AppResult<HttpResponse> {
    let v = load(&state, &principal).await?;
    Ok(HttpResponse::Ok().insert_header(etag(v.version)).json(v))
}

/// `PATCH /v1/tenant` body: the self-service fields only. Plan, status and limits are the
/// operator's (`/v1/platform/tenants/{id}`); sending them is a 422 like any unknown field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CurrentTenantPatch {
    /// Display name, 1–200 characters.
    #[schema(schema_with = api_schema::name)]
    pub name: Option<String>,
    /// Replaces the settings object.
    #[schema(schema_with = api_schema::settings)]
    pub settings: Option<Value>,
}

/// Change the tenant's name or settings (`tenant:manage`).
#[utoipa::path(
    tag = "tenant",
    security(("bearer" = [])),
    request_body = CurrentTenantPatch,
    params(("If-Match" = Option<String>, Header, nullable = false, description = "Expected version(s): `*`, or a comma-separated list of quoted versions such as `\"3\"`; anything else matches nothing (412)", pattern = r#"^[\t ]*(\*|"[0-9]+"([\t ]*,[\t ]*"[0-9]+")*)[\t ]*$"#)),
    responses(
        (status = 200, description = "Updated", body = CurrentTenant, headers(("ETag" = String))),
        (status = 403, description = "Lacks `tenant:manage` (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` matches no current version (`version_conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`name` empty or too long (`invalid_length`), `settings` not an object of at most 50 scalar values under `^[a-z][a-z0-9_]{0,63}$` keys, or an unknown field such as `plan` (`validation_failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/tenant")]
pub async fn update_tenant(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    body: JsonBody<CurrentTenantPatch>,
) -> AppResult<HttpResponse> {
    principal.require(TENANT_MANAGE)?;
    let patch = body.value;
    let mut errors = Vec::new();
    let name = patch.name.as_ref().map(|n| n.trim().to_string());
    if let Some(n) = &name
        && (n.is_empty() || n.chars().count() > MAX_NAME)
    {
        errors.push(FieldError::new(
            "name",
            "invalid_length",
            format!("must be 1–{MAX_NAME} characters"),
        ));
    }
    if let Some(why) = patch.settings.as_ref().and_then(settings_problem) {
        errors.push(FieldError::new("settings", "invalid_value", why));
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let expected = if_match(&req);
    let id = principal.tenant_id();
    let ctx = principal.audit.clone();
    let actor = principal.user_id().as_uuid();
    let settings = patch.settings;
    let (tenant, counters, month) = state
        .door
        .write(principal.scope(), move |tx| {
            async move {
                let current = tenants::table
                    .find(id)
                    .select(Tenant::as_select())
                    .for_update()
                    .first(tx.conn())
                    .await
                    .optional()?
                    .ok_or(AppError::NotFound)?;
                if expected
                    .as_ref()
                    .is_some_and(|v| !v.contains(&current.version))
                {
                    return Err(AppError::VersionConflict);
                }
                let mut fields = Vec::new();
                let name = name.unwrap_or_else(|| current.name.clone());
                if name != current.name {
                    fields.push("name");
                }
                let settings = settings.unwrap_or_else(|| current.settings.clone());
                if settings != current.settings {
                    fields.push("settings");
                }
                let tenant = if fields.is_empty() {
                    current
                } else {
                    // Only these columns are granted to the app role (db::grants).
                    let t = diesel::update(tenants::table.find(id))
                        .set((
                            tenants::name.eq(&name),
                            tenants::settings.eq(&settings),
                            tenants::updated_at.eq(Utc::now()),
                            tenants::version.eq(current.version + 1),
                        ))
                        .returning(Tenant::as_returning())
                        .get_result(tx.conn())
                        .await?;
                    // Other replicas drop their cached copy when this commits.
                    super::invalidation::notify(tx.conn(), id).await?;
                    audit::record(
                        tx,
                        &ctx,
                        Event::by_user(
                            "tenant.updated",
                            actor,
                            "tenant",
                            id.as_uuid(),
                            json!({ "fields": fields }),
                        ),
                    )
                    .await?;
                    t
                };
                let counters = quota::counters(tx).await?;
                let month = usage::month_requests(tx.conn(), id.as_uuid()).await?;
                Ok((tenant, counters, month))
            }
            .scope_boxed()
        })
        .await?;
    state.directory.invalidate(tenant.id, &tenant.slug).await;
    let v = view(&state, tenant, counters, month);
    Ok(HttpResponse::Ok().insert_header(etag(v.version)).json(v))
}

/// One meter's usage in the range, with the quota standing now.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeterUsage {
    /// The meter.
    pub meter: Meter,
    /// Sum over the range (counted meters) or the latest row (gauges).
    pub total: i64,
    /// The quota this meter counts against now (`records`, `seats`, and
    /// `api_requests_per_month` for `api_requests`); absent for unlimited meters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// What is left of that quota now (this month, for `api_requests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// Rows of the requested granularity; windows with no usage are absent.
    pub data: Vec<UsagePoint>,
}

/// `GET /v1/tenant/usage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    /// Range start (rounded down to the granularity).
    pub from: DateTime<Utc>,
    /// Range end (exclusive).
    pub to: DateTime<Utc>,
    /// `hour` or `day`.
    pub granularity: usage::Granularity,
    /// Every meter, in a fixed order.
    pub meters: Vec<MeterUsage>,
}

/// Usage per meter over a range, with limits and what remains (`billing:read`).
#[utoipa::path(
    tag = "tenant",
    security(("bearer" = [])),
    params(RangeQuery),
    responses(
        (status = 200, description = "Usage", body = UsageReport),
        (status = 403, description = "Lacks `billing:read` (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`from`/`to` not RFC 3339 (`invalid_format`), `to` not after `from` or the range too long (over 93 days of hours, 400 of days), or `granularity` not hour/day (`validation_failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/tenant/usage")]
pub async fn get_tenant_usage(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
) -> AppResult<HttpResponse> {
    principal.require(BILLING_READ)?;
    let range = RangeQuery::from_query(req.query_string())?.range()?;
    let grace = TimeDelta::seconds(state.config.metering.grace_secs as i64);
    let tenant = principal.tenant_id();
    let (series, counters, month) = state
        .door
        .read(principal.scope(), move |tx| {
            async move {
                let filter = usage::Filter {
                    tenant: Some(tenant.as_uuid()),
                    meter: None,
                    range,
                };
                let series = usage::series(tx.conn(), &filter, grace).await?;
                let counters = quota::counters(tx).await?;
                let month = usage::month_requests(tx.conn(), tenant.as_uuid()).await?;
                Ok((series, counters, month))
            }
            .scope_boxed()
        })
        .await?;
    let q = principal.limits.quotas;
    let n = |v: i64| v.max(0) as u64;
    let month = n(month) + state.metering.unflushed_this_month(tenant);
    let standing: BTreeMap<Meter, (u64, u64)> = [
        (Meter::ApiRequests, (month, q.api_requests_per_month)),
        (Meter::Records, (n(counters.records), q.records)),
        (Meter::Seats, (n(counters.seats), q.seats)),
    ]
    .into_iter()
    .collect();
    let mut by_meter: BTreeMap<Meter, Vec<UsagePoint>> = series
        .into_iter()
        .map(|((_, meter), points)| (meter, points))
        .collect();
    let meters = Meter::ALL
        .into_iter()
        .map(|meter| {
            let data = by_meter.remove(&meter).unwrap_or_default();
            let total = if meter.is_gauge() {
                data.last().map_or(0, |p| p.value)
            } else {
                data.iter().map(|p| p.value).sum()
            };
            let quota = standing.get(&meter);
            MeterUsage {
                meter,
                total,
                limit: quota.map(|(_, limit)| *limit),
                remaining: quota.map(|(used, limit)| limit.saturating_sub(*used)),
                data,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(UsageReport {
        from: range.from,
        to: range.to,
        granularity: range.granularity,
        meters,
    }))
}
