//! `/v1/platform/tenants`: list, create, read, change and delete tenants.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use super::auth::PlatformCaller;
use super::keys::Scope;
use super::view::{CreateTenant, CreatedTenant, TenantPage, TenantPatch, TenantView};
use crate::app::AppState;
use crate::auth::{password, users};
use crate::crm::list::{self, Cursor, Fingerprint, ListContext, Page, Paging, Sort, SortKey};
use crate::db::schema::tenants;
use crate::error::{AppError, AppResult, FieldError, Problem};
use crate::http::body::JsonBody;
use crate::http::conditional::{etag, if_match};
use crate::ids::TenantId;
use crate::limits::plans::{DEFAULT_PLAN, Plans, QuotaOverrides, RateOverrides};
use crate::tenancy::lifecycle::{self, Change, Operator, Overrides};
use crate::tenancy::{Tenant, TxScope, model, provision, rules};

/// The resource name list cursors are bound to.
const RESOURCE: &str = "platform.tenants";
/// Oldest first, ties by id: new tenants land on the last page, never shift earlier ones.
const ORDER: Sort = Sort {
    field: "created_at",
    desc: false,
};
const LIST_PARAMS: &[&str] = &["limit", "cursor", "status", "plan"];
const STATUSES: &[&str] = &["provisioning", "active", "suspended", "deleted"];

/// Query parameters of `GET /v1/platform/tenants`; anything else is 422.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListQuery {
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// Opaque cursor from `next_cursor` (of a list with the same filters; else 400).
    #[param(pattern = r"^[^\u0000]*$")]
    cursor: Option<String>,
    /// Only tenants with this status.
    #[param(value_type = Option<super::view::StatusFilter>)]
    status: Option<String>,
    /// Only tenants on this plan.
    #[param(pattern = r"^[^\u0000]*$")]
    plan: Option<String>,
}

/// Path ids that are not canonical UUIDs are simply not found.
fn tenant_id(raw: &str) -> AppResult<TenantId> {
    raw.parse().map_err(|_| AppError::NotFound)
}

fn operator(caller: &PlatformCaller) -> Operator {
    Operator {
        key: Some(caller.key_id()),
        via: "api",
        context: caller.audit.clone(),
    }
}

/// List tenants (scope `tenants:read`).
#[utoipa::path(
    tag = "platform",
    security(("platform_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of tenants, oldest first", body = TenantPage),
        (status = 400, description = "A cursor the server did not issue for this list (`malformed_request`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown parameter (`unknown_parameter`), `limit` out of range (`out_of_range`), an unknown `status` (`invalid_value`), or a value holding NUL (`invalid_characters`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/platform/tenants")]
pub async fn list_tenants(
    state: web::Data<AppState>,
    caller: PlatformCaller,
    req: HttpRequest,
) -> AppResult<HttpResponse> {
    caller.require(Scope::TenantsRead)?;
    let params: HashMap<String, String> = list::parse_query(req.query_string())?;
    let mut errors = Vec::new();
    list::check_params(&params, LIST_PARAMS, &mut errors);
    let get = |k: &str| params.get(k).map(String::as_str);
    let status = get("status").map(str::to_owned);
    if status.as_deref().is_some_and(|s| !STATUSES.contains(&s)) {
        errors.push(FieldError::new(
            "status",
            "invalid_value",
            format!("must be one of {}", STATUSES.join(", ")),
        ));
    }
    let plan = get("plan").map(str::to_owned);
    let filters = [("status", &status), ("plan", &plan)];
    let listing = ListContext {
        cursors: &state.cursors,
        resource: RESOURCE,
        // Not one tenant's list: the nil id binds cursors to the platform-wide listing.
        tenant: TenantId(Uuid::nil()),
        filters: Fingerprint::of(
            filters
                .iter()
                .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v))),
        ),
    };
    let paging = list::paging(
        get("limit"),
        None,
        get("cursor"),
        &[ORDER.field],
        ORDER,
        &listing,
        &mut errors,
    )?;
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let page = state
        .platform
        .tx(true, move |tx| {
            async move { page(tx.conn(), status, plan, &paging).await }.scope_boxed()
        })
        .await?;
    let plans = &state.config.plans;
    Ok(HttpResponse::Ok().json(TenantPage {
        next_cursor: listing.next_cursor(ORDER, page.next.as_ref())?,
        data: page.data.iter().map(|t| TenantView::of(t, plans)).collect(),
    }))
}

/// One page of tenants after `paging.after`, in `(created_at, id)` order.
async fn page(
    conn: &mut diesel_async::AsyncPgConnection,
    status: Option<String>,
    plan: Option<String>,
    paging: &Paging,
) -> AppResult<Page<Tenant>> {
    let mut q = tenants::table.select(Tenant::as_select()).into_boxed();
    if let Some(s) = status {
        q = q.filter(tenants::status.eq(s));
    }
    if let Some(p) = plan {
        q = q.filter(tenants::plan.eq(p));
    }
    if let Some(after) = &paging.after {
        let SortKey::Time(at) = after.key else {
            return Err(list::invalid_cursor());
        };
        q = q.filter(
            tenants::created_at
                .gt(at)
                .or(tenants::created_at.eq(at).and(tenants::id.gt(after.id))),
        );
    }
    let mut rows: Vec<Tenant> = q
        .order((tenants::created_at, tenants::id))
        .limit(paging.limit + 1)
        .load(conn)
        .await?;
    let more = rows.len() as i64 > paging.limit;
    rows.truncate(paging.limit as usize);
    let next = more.then(|| rows.last()).flatten().map(|t| Cursor {
        key: SortKey::Time(t.created_at),
        id: t.id.as_uuid(),
    });
    Ok(Page { data: rows, next })
}

/// Field errors of a plan name and overrides, shared by create and PATCH.
fn check_plan(plan: Option<&str>, plans: &Plans, errors: &mut Vec<FieldError>) {
    if let Some(p) = plan
        && plans.get(p).is_none()
    {
        errors.push(FieldError::new(
            "plan",
            "invalid_value",
            "not a configured plan (see GET /v1/platform/plans)",
        ));
    }
}

fn check_rate(rate: &RateOverrides, errors: &mut Vec<FieldError>) {
    for (field, message) in rate.problems() {
        errors.push(FieldError::new(
            format!("rate_overrides.{field}"),
            "out_of_range",
            message,
        ));
    }
}

/// A merge patch of overrides, checked as the overrides it would set: every key known, every
/// value a number in range or `null`.
fn check_merge<T: serde::de::DeserializeOwned>(
    field: &str,
    patch: &serde_json::Map<String, serde_json::Value>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let value = serde_json::Value::Object(patch.clone());
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let at = e.path().to_string();
            let (path, code) = if e.inner().to_string().starts_with("unknown field") {
                let name = e
                    .inner()
                    .to_string()
                    .split('`')
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                (format!("{field}.{name}"), "unknown_field")
            } else {
                (format!("{field}.{at}"), "invalid_value")
            };
            errors.push(FieldError::new(
                path,
                code,
                "must be a known limit set to a non-negative integer in range, or null",
            ));
            None
        }
    }
}

/// Create a tenant with its first owner (scope `tenants:write`). Any configured plan may be
/// chosen. Without `owner.password` a password is generated and returned once.
///
/// `Idempotency-Key` is not honoured: keys are remembered per tenant and there is none yet, and
/// the response can carry a password that must not be stored for replay. A retried create whose
/// first attempt succeeded answers 409 `slug_taken`.
#[utoipa::path(
    tag = "platform",
    security(("platform_key" = [])),
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Tenant created and active", body = CreatedTenant, headers(("Location" = String), ("ETag" = String))),
        (status = 409, description = "Slug taken, now or by a deleted tenant (`slug_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule (`validation_failed`, `errors` names each): `tenant.slug`, `tenant.name`, `owner.email`, `owner.name`, `owner.password`, `plan` (not configured), `rate_overrides.*` (out of range)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/platform/tenants")]
pub async fn create_tenant(
    state: web::Data<AppState>,
    caller: PlatformCaller,
    body: JsonBody<CreateTenant>,
) -> AppResult<HttpResponse> {
    caller.require(Scope::TenantsWrite)?;
    let input = body.value;
    let plans = &state.config.plans;
    let mut errors = Vec::new();
    rules::check_tenant(
        &input.tenant.slug,
        &input.tenant.name,
        "tenant",
        &mut errors,
    );
    rules::check_owner(
        &input.owner.email,
        &input.owner.name,
        input.owner.password.as_deref(),
        "owner",
        &mut errors,
    );
    check_plan(input.plan.as_deref(), plans, &mut errors);
    let quota = input.quota_overrides.unwrap_or_default();
    let rate = input.rate_overrides.unwrap_or_default();
    check_rate(&rate, &mut errors);
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let generated = input.owner.password.is_none().then(password::generate);
    let plain = input
        .owner
        .password
        .clone()
        .or_else(|| generated.clone())
        .unwrap_or_default();
    let hash = password::hash(plain).await?;
    let tenant_id = TenantId::new();
    let mut tenant = Tenant::new(
        tenant_id,
        &input.tenant.slug,
        input.tenant.name.trim(),
        input.plan.as_deref().unwrap_or(DEFAULT_PLAN),
    );
    tenant.quota_overrides = serde_json::to_value(quota).map_err(AppError::internal)?;
    tenant.rate_overrides = serde_json::to_value(rate).map_err(AppError::internal)?;
    let operator = operator(&caller);
    // The same three steps as signup (tenancy::provision): reserve the row on the platform path,
    // the owner and the audit event in the tenant's own transaction, then activate.
    provision::reserve(&state.platform, &tenant).await?;
    let owner = input.owner;
    let result = state
        .door
        .write(TxScope::tenant(tenant_id), |tx| {
            async move {
                // The operator's word: seats are counted, not capped.
                let user =
                    provision::first_owner(tx, &owner.email, &owner.name, &hash, u64::MAX).await?;
                let changes =
                    serde_json::json!({"fields": ["slug", "name", "plan"], "owner": user.id});
                lifecycle::record(tx, &operator, "tenant.created", tenant_id, changes).await?;
                Ok(user)
            }
            .scope_boxed()
        })
        .await;
    match &result {
        Ok(_) => provision::activate(&state.platform, tenant_id).await?,
        Err(_) => provision::release(&state.platform, tenant_id).await,
    }
    let user = result?;
    let tenant = load(&state, tenant_id).await?;
    tracing::info!(tenant.id = %tenant_id, tenant.slug = %tenant.slug, platform_key.id = %caller.key_id(), "tenant created by an operator");
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/platform/tenants/{tenant_id}"),
        ))
        .insert_header(etag(tenant.version))
        .json(CreatedTenant {
            tenant: TenantView::of(&tenant, plans),
            owner: users::UserView::from(&user),
            generated_password: generated,
        }))
}

async fn load(state: &AppState, id: TenantId) -> AppResult<Tenant> {
    state
        .platform
        .tx(true, move |tx| {
            async move { model::by_id(tx.conn(), id).await?.ok_or(AppError::NotFound) }
                .scope_boxed()
        })
        .await
}

/// Fetch a tenant (scope `tenants:read`), whatever its status.
#[utoipa::path(
    tag = "platform",
    security(("platform_key" = [])),
    params(("id" = Uuid, Path, description = "Tenant id (canonical: lower-case, hyphenated); any other text is 404", pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses(
        (status = 200, description = "The tenant", body = TenantView, headers(("ETag" = String))),
        (status = 404, description = "No such tenant (`not_found`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/platform/tenants/{id}")]
pub async fn get_tenant(
    state: web::Data<AppState>,
    caller: PlatformCaller,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    caller.require(Scope::TenantsRead)?;
    let tenant = load(&state, tenant_id(&path)?).await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(tenant.version))
        .json(TenantView::of(&tenant, &state.config.plans)))
}

/// Change a tenant's plan, status, overrides or name (scope `tenants:write`). Takes effect on
/// the next request in every replica. `If-Match: "<version>"` guards against lost updates.
#[utoipa::path(
    tag = "platform",
    security(("platform_key" = [])),
    params(
        ("id" = Uuid, Path, description = "Tenant id (canonical: lower-case, hyphenated); any other text is 404", pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "Expected version(s): `*`, or a comma-separated list of quoted versions such as `\"3\"`; a weak tag or any other text matches nothing (412)", pattern = r#"^[\t ]*(\*|"[0-9]+"([\t ]*,[\t ]*"[0-9]+")*)[\t ]*$"#),
    ),
    request_body = TenantPatch,
    responses(
        (status = 200, description = "The tenant after the change", body = TenantView, headers(("ETag" = String))),
        (status = 404, description = "No such tenant (`not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is deleted (`conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` matches no current version (`version_conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule (`validation_failed`, `errors` names each): `name` (`invalid_length`), `plan` (not configured), `status`, `quota_overrides.*` / `rate_overrides.*` (`unknown_field`, `invalid_value`, `out_of_range`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/platform/tenants/{id}")]
pub async fn update_tenant(
    state: web::Data<AppState>,
    caller: PlatformCaller,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<TenantPatch>,
) -> AppResult<HttpResponse> {
    caller.require(Scope::TenantsWrite)?;
    let id = tenant_id(&path)?;
    let patch = body.value;
    let mut errors = Vec::new();
    if let Some(name) = &patch.name {
        rules::check_name(name, "name", &mut errors);
    }
    check_plan(patch.plan.as_deref(), &state.config.plans, &mut errors);
    if let Some(q) = &patch.quota_overrides {
        check_merge::<QuotaOverrides>("quota_overrides", q, &mut errors);
    }
    if let Some(r) = &patch.rate_overrides
        && let Some(rate) = check_merge::<RateOverrides>("rate_overrides", r, &mut errors)
    {
        check_rate(&rate, &mut errors);
    }
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let change = Change {
        name: patch.name.map(|n| n.trim().to_string()),
        plan: patch.plan,
        status: patch.status,
        quota_overrides: patch.quota_overrides.map(Overrides::Merge),
        rate_overrides: patch.rate_overrides.map(Overrides::Merge),
    };
    let tenant = lifecycle::update(
        &state.platform,
        id,
        change,
        if_match(&req),
        &operator(&caller),
    )
    .await?;
    // This replica at once; the others when the commit's notification reaches them.
    state.directory.clear();
    Ok(HttpResponse::Ok()
        .insert_header(etag(tenant.version))
        .json(TenantView::of(&tenant, &state.config.plans)))
}

/// Soft-delete a tenant (scope `tenants:write`): its hosts answer 404 from the next request on,
/// its slug stays reserved, and `tessera platform purge` removes its data once
/// `platform.delete_grace_days` have passed (`purge_after`). Deleting it again is a no-op.
#[utoipa::path(
    tag = "platform",
    security(("platform_key" = [])),
    params(
        ("id" = Uuid, Path, description = "Tenant id (canonical: lower-case, hyphenated); any other text is 404", pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "Expected version(s): `*`, or a comma-separated list of quoted versions such as `\"3\"`; a weak tag or any other text matches nothing (412)", pattern = r#"^[\t ]*(\*|"[0-9]+"([\t ]*,[\t ]*"[0-9]+")*)[\t ]*$"#),
    ),
    responses(
        (status = 204, description = "Deleted (soft)"),
        (status = 404, description = "No such tenant (`not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` matches no current version (`version_conflict`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/platform/tenants/{id}")]
pub async fn delete_tenant(
    state: web::Data<AppState>,
    caller: PlatformCaller,
    req: HttpRequest,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    caller.require(Scope::TenantsWrite)?;
    let id = tenant_id(&path)?;
    lifecycle::soft_delete(
        &state.platform,
        id,
        state.config.platform.delete_grace_days,
        if_match(&req),
        &operator(&caller),
    )
    .await?;
    state.directory.clear();
    Ok(HttpResponse::NoContent().finish())
}
