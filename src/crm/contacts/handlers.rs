//! `/v1/contacts` endpoints.

use std::collections::HashMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use diesel_async::scoped_futures::ScopedFutureExt;
use serde::Serialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::model::{
    ContactPatch, ContactValues, ContactView, LIFECYCLE_STAGES, LifecycleStage, NewContact,
};
use super::repo::{self, Filters, SORTABLE};
use crate::access::catalogue::{CONTACTS_DELETE, CONTACTS_READ, CONTACTS_WRITE};
use crate::app::AppState;
use crate::audit::{self, Event};
use crate::crm::list::{self, ListContext, Sort};
use crate::error::{AppError, AppResult, FieldError, Problem};
use crate::http::body::JsonBody;
use crate::http::conditional::{etag, if_match};
use crate::http::idempotency::{self, Claim};
use crate::http::principal::Principal;
use crate::ids::ContactId;
use crate::limits::quota::{self, Quota};

/// A page of contacts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactPage {
    /// Contacts.
    pub data: Vec<ContactView>,
    /// Cursor for the next page, null on the last.
    pub next_cursor: Option<String>,
}

/// Query parameters of `GET /v1/contacts`. Anything else is refused with 422, and so is any value
/// holding NUL (`%00`).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListQuery {
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// Opaque cursor from `next_cursor`; only one the server issued for the same `sort` is
    /// valid (else 400).
    #[param(pattern = r"^[^\u0000]*$")]
    cursor: Option<String>,
    /// `created_at`, `updated_at`, `last_name`, `first_name`, `email`; `-` for descending.
    /// Default `-created_at`.
    #[param(pattern = r"^-?(created_at|updated_at|last_name|first_name|email)$")]
    sort: Option<String>,
    /// Exact email (case-insensitive).
    #[param(pattern = r"^[^\u0000]*$")]
    email: Option<String>,
    /// Account id.
    #[param(pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    account_id: Option<Uuid>,
    /// Owner (user) id.
    #[param(pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    owner_id: Option<Uuid>,
    /// Lifecycle stage.
    #[param(value_type = Option<LifecycleStage>)]
    lifecycle_stage: Option<String>,
    /// Contacts carrying this tag.
    #[param(pattern = r"^[^\u0000]*$")]
    tag: Option<String>,
    /// Prefix of first name, last name or email (trimmed; blank means no filter).
    #[param(pattern = r"^[^\u0000]*$")]
    q: Option<String>,
}

/// The resource name cursors are bound to.
const RESOURCE: &str = "contacts";
const DEFAULT_SORT: Sort = Sort {
    field: "created_at",
    desc: true,
};
const LIST_PARAMS: &[&str] = &[
    "limit",
    "cursor",
    "sort",
    "email",
    "account_id",
    "owner_id",
    "lifecycle_stage",
    "tag",
    "q",
];

/// Path ids that are not canonical UUIDs are simply not found (same answer as any missing id):
/// one record, one URL.
fn contact_id(raw: &str) -> AppResult<ContactId> {
    raw.parse().map_err(|_| AppError::NotFound)
}

/// List contacts.
#[utoipa::path(
    tag = "contacts",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of contacts", body = ContactPage),
        (status = 400, description = "A cursor the server did not issue, or issued for another `sort` (`malformed_request`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown parameter (`unknown_parameter`), a value out of range or of the wrong form (`out_of_range`, `invalid_value`, `invalid_format`), or one holding NUL (`invalid_characters`); `validation_failed`, `errors` names each", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/contacts")]
pub async fn list_contacts(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
) -> AppResult<HttpResponse> {
    principal.require(CONTACTS_READ)?;
    let params: HashMap<String, String> = list::parse_query(req.query_string())?;
    let mut errors = Vec::new();
    list::check_params(&params, LIST_PARAMS, &mut errors);
    let get = |k: &str| params.get(k).map(String::as_str);
    let uuid_param = |k: &str, errors: &mut Vec<FieldError>| -> Option<Uuid> {
        let v = get(k)?;
        let id = crate::ids::canonical_uuid(v);
        if id.is_none() {
            errors.push(FieldError::new(
                k,
                "invalid_format",
                "must be a UUID in canonical form (lower-case, hyphenated)",
            ));
        }
        id
    };
    let filters = Filters {
        email: get("email").map(str::to_owned),
        account_id: uuid_param("account_id", &mut errors),
        owner_id: uuid_param("owner_id", &mut errors),
        lifecycle_stage: get("lifecycle_stage").map(str::to_owned),
        tag: get("tag").map(str::to_owned),
        q: get("q")
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_owned),
    };
    if let Some(s) = &filters.lifecycle_stage
        && !LIFECYCLE_STAGES.contains(&s.as_str())
    {
        errors.push(FieldError::new(
            "lifecycle_stage",
            "invalid_value",
            "unknown lifecycle stage",
        ));
    }
    // The cursor is opened only now, against the filters as parsed: it must belong to exactly
    // this list (tenant, sort, filters), or it is a 400 before any SQL runs.
    let listing = ListContext {
        cursors: &state.cursors,
        resource: RESOURCE,
        tenant: principal.tenant_id(),
        filters: filters.fingerprint(),
    };
    let paging = list::paging(
        get("limit"),
        get("sort"),
        get("cursor"),
        SORTABLE,
        DEFAULT_SORT,
        &listing,
        &mut errors,
    )?;
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let sort = paging.sort;
    let page = state
        .door
        .read(principal.scope(), |tx| {
            async move { repo::list(tx, &filters, &paging).await }.scope_boxed()
        })
        .await?;
    Ok(HttpResponse::Ok().json(ContactPage {
        next_cursor: listing.next_cursor(sort, page.next.as_ref())?,
        data: page.data.into_iter().map(ContactView::from).collect(),
    }))
}

/// Create a contact. Supports `Idempotency-Key`.
#[utoipa::path(
    tag = "contacts",
    security(("bearer" = [])),
    request_body = NewContact,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Retry-safe creation (24 h): 1–255 visible ASCII characters", pattern = r"^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Created", body = ContactView, headers(("Location" = String), ("ETag" = String))),
        (status = 402, description = "The plan's `records` quota is used up (`quota_exceeded`, with `quota`, `limit`, `used`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email taken, or same Idempotency-Key in progress", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule (`validation_failed`, `errors` names each), `owner_id` names no user of this tenant (`not_found`), or the Idempotency-Key was used with another body (`idempotency_key_reused`) or is not 1–255 visible ASCII characters", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/contacts")]
pub async fn create_contact(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    body: JsonBody<NewContact>,
) -> AppResult<HttpResponse> {
    principal.require(CONTACTS_WRITE)?;
    let key = idempotency::Key::from_request(&req, &body.raw)?;
    let values = ContactValues::from_new(body.value);
    let errors = values.validate();
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let scope = principal.scope();
    if let Some(key) = &key
        && let Claim::Replay(stored) = idempotency::claim(&state.door, scope, key).await?
    {
        return Ok(stored.into_response());
    }
    let ctx = principal.audit.clone();
    let actor = principal.user_id().as_uuid();
    let key2 = key.clone();
    let records = principal.limits.quotas.records;
    let result = state
        .door
        .write(scope, |tx| {
            async move {
                quota::take(tx, Quota::Records, records).await?;
                let contact = repo::insert(tx, &values).await?;
                let fields = ContactValues::default().changed_fields(&values);
                audit::record(
                    tx,
                    &ctx,
                    Event::by_user(
                        "contact.created",
                        actor,
                        "contact",
                        contact.id.as_uuid(),
                        json!({ "fields": fields }),
                    ),
                )
                .await?;
                let view = ContactView::from(contact);
                let location = format!("/v1/contacts/{}", view.id);
                let body = serde_json::to_value(&view).map_err(AppError::internal)?;
                if let Some(key) = &key2 {
                    let headers =
                        json!({"Location": location, "ETag": format!("\"{}\"", view.version)});
                    idempotency::complete(tx, key, StatusCode::CREATED, headers, &body).await?;
                }
                Ok((view, location))
            }
            .scope_boxed()
        })
        .await;
    match result {
        Ok((view, location)) => Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, location))
            .insert_header(etag(view.version))
            .json(view)),
        Err(e) => {
            if let Some(key) = &key {
                idempotency::release(&state.door, scope, key).await;
            }
            Err(e)
        }
    }
}

/// Fetch a contact.
#[utoipa::path(
    tag = "contacts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Contact id (canonical: lower-case, hyphenated); any other text is 404", pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses(
        (status = 200, description = "The contact", body = ContactView, headers(("ETag" = String))),
        (status = 404, description = "No such contact (or another tenant's)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/contacts/{id}")]
pub async fn get_contact(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    principal.require(CONTACTS_READ)?;
    let id = contact_id(&path)?;
    let tenant = principal.tenant_id();
    // The hot path: one pipelined round trip (see Door::read_one).
    let contact = state
        .door
        .read_one(principal.scope(), |conn| repo::find_live(conn, tenant, id))
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(contact.version))
        .json(ContactView::from(contact)))
}

/// Partially update a contact. `If-Match: "<version>"` guards against lost updates.
#[utoipa::path(
    tag = "contacts",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Contact id (canonical: lower-case, hyphenated); any other text is 404", pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "Expected version(s): `*`, or a comma-separated list of quoted versions such as `\"3\"`; a weak tag (`W/\"3\"`) or any other text matches nothing (412)", pattern = r#"^[\t ]*(\*|"[0-9]+"([\t ]*,[\t ]*"[0-9]+")*)[\t ]*$"#),
    ),
    request_body = ContactPatch,
    responses(
        (status = 200, description = "Updated", body = ContactView, headers(("ETag" = String))),
        (status = 404, description = "No such contact", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email taken", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` matches no current version (`version_conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule (`validation_failed`, `errors` names each), `owner_id` names no user of this tenant (`not_found`), or the merged `custom` would hold more than 50 keys (`too_many_keys`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/contacts/{id}")]
pub async fn update_contact(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<ContactPatch>,
) -> AppResult<HttpResponse> {
    principal.require(CONTACTS_WRITE)?;
    let id = contact_id(&path)?;
    let expected = if_match(&req);
    let patch = body.value;
    let ctx = principal.audit.clone();
    let actor = principal.user_id().as_uuid();
    let updated = state
        .door
        .write(principal.scope(), |tx| {
            async move {
                let current = repo::get_for_update(tx, id)
                    .await?
                    .ok_or(AppError::NotFound)?;
                if let Some(expected) = &expected
                    && !expected.contains(&current.version)
                {
                    return Err(AppError::VersionConflict);
                }
                let before = ContactValues::of(&current);
                let after = before.clone().patched(patch);
                let errors = after.validate();
                if !errors.is_empty() {
                    return Err(AppError::Validation(errors));
                }
                let changed = after.changed_fields(&before);
                if changed.is_empty() {
                    return Ok(current);
                }
                let contact = repo::update(tx, &current, &after).await?;
                audit::record(
                    tx,
                    &ctx,
                    Event::by_user(
                        "contact.updated",
                        actor,
                        "contact",
                        id.as_uuid(),
                        json!({ "fields": changed }),
                    ),
                )
                .await?;
                Ok(contact)
            }
            .scope_boxed()
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(updated.version))
        .json(ContactView::from(updated)))
}

/// Delete (soft) a contact.
#[utoipa::path(
    tag = "contacts",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Contact id (canonical: lower-case, hyphenated); any other text is 404", pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "Expected version(s): `*`, or a comma-separated list of quoted versions such as `\"3\"`; a weak tag (`W/\"3\"`) or any other text matches nothing (412)", pattern = r#"^[\t ]*(\*|"[0-9]+"([\t ]*,[\t ]*"[0-9]+")*)[\t ]*$"#),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such contact", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` matches no current version (`version_conflict`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/contacts/{id}")]
pub async fn delete_contact(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    principal.require(CONTACTS_DELETE)?;
    let id = contact_id(&path)?;
    let ctx = principal.audit.clone();
    let actor = principal.user_id().as_uuid();
    let expected = if_match(&req);
    state
        .door
        .write(principal.scope(), |tx| {
            async move {
                let current = repo::get_for_update(tx, id)
                    .await?
                    .ok_or(AppError::NotFound)?;
                if expected
                    .as_ref()
                    .is_some_and(|v| !v.contains(&current.version))
                {
                    return Err(AppError::VersionConflict);
                }
                repo::soft_delete(tx, &current).await?;
                quota::give_back(tx, Quota::Records).await?;
                audit::record(
                    tx,
                    &ctx,
                    Event::by_user("contact.deleted", actor, "contact", id.as_uuid(), json!({})),
                )
                .await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Restore a deleted contact. It counts against the `records` quota again, and its email must
/// still be free among live contacts.
#[utoipa::path(
    tag = "contacts",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Contact id (canonical: lower-case, hyphenated); any other text is 404", pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")),
    responses(
        (status = 200, description = "Restored", body = ContactView, headers(("ETag" = String))),
        (status = 402, description = "The plan's `records` quota is used up (`quota_exceeded`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such deleted contact (or another tenant's)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A live contact now has its email (`conflict`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/contacts/{id}/restore")]
pub async fn restore_contact(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    principal.require(CONTACTS_DELETE)?;
    let id = contact_id(&path)?;
    let ctx = principal.audit.clone();
    let actor = principal.user_id().as_uuid();
    let records = principal.limits.quotas.records;
    let view = state
        .door
        .write(principal.scope(), |tx| {
            async move {
                let current = repo::get_deleted_for_update(tx, id)
                    .await?
                    .ok_or(AppError::NotFound)?;
                quota::take(tx, Quota::Records, records).await?;
                let contact = repo::restore(tx, &current).await?;
                audit::record(
                    tx,
                    &ctx,
                    Event::by_user(
                        "contact.restored",
                        actor,
                        "contact",
                        id.as_uuid(),
                        json!({}),
                    ),
                )
                .await?;
                Ok(ContactView::from(contact))
            }
            .scope_boxed()
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(etag(view.version))
        .json(view))
}
