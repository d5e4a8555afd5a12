//! Liveness, readiness, and the API description endpoints.

use actix_web::{HttpResponse, get, web};
use diesel::QueryableByName;
use diesel::sql_types::{Nullable, Text};
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;
use serde_json::json;

use crate::app::AppState;
use crate::db::migrate;
use crate::error::{AppError, Problem};

/// The process is up.
#[utoipa::path(tag = "ops", responses((status = 200, description = "Alive")))]
#[get("/livez")]
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Nullable<Text>)]
    version: Option<String>,
}

/// The database is reachable and migrations are current.
#[utoipa::path(
    tag = "ops",
    responses(
        (status = 200, description = "Ready"),
        (status = 503, description = "Database unreachable or migrations behind", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let applied = state
        .door
        .catalog(true, |tx| {
            async move {
                let v: Version = diesel::sql_query(
                    "SELECT max(version) AS version FROM __diesel_schema_migrations",
                )
                .get_result(tx.conn())
                .await?;
                Ok(v.version)
            }
            .scope_boxed()
        })
        .await
        .map_err(|e| match e {
            AppError::Unavailable(m) => AppError::Unavailable(m),
            other => AppError::Unavailable(other.to_string()),
        })?;
    let expected = migrate::latest_version();
    if applied.as_deref() != Some(expected.as_str()) {
        return Err(AppError::Unavailable(format!(
            "migrations not current: applied {applied:?}, expected {expected}"
        )));
    }
    Ok(HttpResponse::Ok().json(json!({"status": "ok", "migration": expected})))
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(tag = "ops", responses((status = 200, description = "OpenAPI document")))]
#[get("/openapi.json")]
pub async fn openapi_json(doc: web::Data<ApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.json.clone())
}

/// Human-readable API reference.
#[utoipa::path(tag = "ops", responses((status = 200, description = "HTML API reference")))]
#[get("/docs")]
pub async fn docs(doc: web::Data<ApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(doc.html.clone())
}

/// The rendered OpenAPI document and docs page, built once per worker.
pub struct ApiJson {
    /// `/openapi.json` body.
    pub json: String,
    /// `/docs` body.
    pub html: String,
}
