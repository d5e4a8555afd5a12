//! `/v1/platform/usage` and `/v1/platform/usage/export`: every tenant's usage for billing
//! (scope `usage:read`), as pages of JSON rows or as one streamed CSV / NDJSON document.
//!
//! Rows are API.md §8's `{tenant_id, tenant_slug, meter, window_start, window_end, value}` plus
//! `adjustments` (the part of `value` recorded after the window was final) and `final`.
//! A billing system pulls a closed period once its rows are `final`, and later corrections show
//! up as a changed `adjustments` on the same row, never as a silent rewrite of what it read.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{DateTime, TimeDelta, Utc};
use diesel_async::scoped_futures::ScopedFutureExt;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::PlatformCaller;
use super::keys::Scope;
use crate::app::AppState;
use crate::crm::list::{self, Cursor, Fingerprint, ListContext, Sort, SortKey};
use crate::error::{AppError, AppResult, FieldError, Problem};
use crate::ids::TenantId;
use crate::limits::metering::Meter;
use crate::limits::usage::{self, After, Filter, RangeQuery, UsageRow};
use crate::tenancy::PlatformDoor;

const RESOURCE: &str = "platform.usage";
/// Tenant, meter, window: the only order (keyset).
const ORDER: Sort = Sort {
    field: "tenant_meter_window",
    desc: false,
};
/// Rows per database round trip of an export.
const EXPORT_PAGE: usize = 1000;

/// Query parameters of `GET /v1/platform/usage`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct UsageQuery {
    /// Start (RFC 3339); absent: the start of the current month (UTC).
    #[param(format = DateTime, pattern = r"^[^\u0000]*$")]
    from: Option<String>,
    /// End, exclusive (RFC 3339); absent: now.
    #[param(format = DateTime, pattern = r"^[^\u0000]*$")]
    to: Option<String>,
    /// Only this meter.
    #[param(value_type = Option<Meter>)]
    meter: Option<String>,
    /// Only this tenant.
    #[param(pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    tenant_id: Option<String>,
    /// `hour` (default) or `day`.
    #[param(value_type = Option<usage::Granularity>)]
    granularity: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// Opaque cursor from `next_cursor` (of a listing with the same filters; else 400).
    #[param(pattern = r"^[^\u0000]*$")]
    cursor: Option<String>,
}

/// Query parameters of `GET /v1/platform/usage/export`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ExportQuery {
    /// `csv` or `ndjson`.
    #[param(value_type = ExportFormat)]
    format: String,
    /// Start (RFC 3339); absent: the start of the current month (UTC).
    #[param(format = DateTime, pattern = r"^[^\u0000]*$")]
    from: Option<String>,
    /// End, exclusive (RFC 3339); absent: now.
    #[param(format = DateTime, pattern = r"^[^\u0000]*$")]
    to: Option<String>,
    /// Only this meter.
    #[param(value_type = Option<Meter>)]
    meter: Option<String>,
    /// Only this tenant.
    #[param(pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    tenant_id: Option<String>,
    /// `hour` (default) or `day`.
    #[param(value_type = Option<usage::Granularity>)]
    granularity: Option<String>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Comma-separated, a header line first.
    Csv,
    /// One JSON row per line.
    Ndjson,
}

/// A page of usage rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsagePage {
    /// Rows in (tenant, meter, window) order.
    pub data: Vec<UsageRow>,
    /// Cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// The filter parameters shared by the list and the export, validated together.
fn filter_of(params: &HashMap<String, String>, errors: &mut Vec<FieldError>) -> Option<Filter> {
    let meter = params.get("meter").and_then(|m| {
        let parsed = Meter::parse(m);
        if parsed.is_none() {
            errors.push(FieldError::new(
                "meter",
                "invalid_value",
                "one of api_requests, records, seats, webhook_deliveries, import_rows",
            ));
        }
        parsed
    });
    let tenant = params.get("tenant_id").and_then(|t| {
        let id = crate::ids::canonical_uuid(t);
        if id.is_none() {
            errors.push(FieldError::new(
                "tenant_id",
                "invalid_format",
                "must be a UUID in canonical form (lower-case, hyphenated)",
            ));
        }
        id
    });
    let range = RangeQuery {
        from: params.get("from").cloned(),
        to: params.get("to").cloned(),
        granularity: params.get("granularity").cloned(),
    }
    .range();
    match range {
        Ok(range) => Some(Filter {
            tenant,
            meter,
            range,
        }),
        Err(AppError::Validation(mut e)) => {
            errors.append(&mut e);
            None
        }
        Err(_) => None,
    }
}

fn fingerprint(params: &HashMap<String, String>) -> Fingerprint {
    Fingerprint::of(
        ["from", "to", "meter", "tenant_id", "granularity"]
            .into_iter()
            .filter_map(|k| params.get(k).map(|v| (k, v.as_str()))),
    )
}

/// The keyset position as a list cursor: tenant as the id, `meter|bucket` as the text key.
fn cursor_of(a: &After) -> Cursor {
    Cursor {
        key: SortKey::Text(format!("{}|{}", a.meter.name(), a.bucket.to_rfc3339())),
        id: a.tenant,
    }
}

fn after_of(c: &Cursor) -> AppResult<After> {
    let SortKey::Text(text) = &c.key else {
        return Err(list::invalid_cursor());
    };
    let (meter, bucket) = text.split_once('|').ok_or_else(list::invalid_cursor)?;
    Ok(After {
        tenant: c.id,
        meter: Meter::parse(meter).ok_or_else(list::invalid_cursor)?,
        bucket: DateTime::parse_from_rfc3339(bucket)
            .map_err(|_| list::invalid_cursor())?
            .to_utc(),
    })
}

async fn read_page(
    platform: &PlatformDoor,
    filter: Filter,
    after: Option<After>,
    limit: usize,
    grace: TimeDelta,
) -> AppResult<(Vec<UsageRow>, Option<After>)> {
    platform
        .tx(true, move |tx| {
            async move { usage::page(tx.conn(), &filter, after.as_ref(), limit, grace).await }
                .scope_boxed()
        })
        .await
}

/// Every tenant's usage, a page at a time (scope `usage:read`).
#[utoipa::path(
    tag = "platform",
    security(("platform_key" = [])),
    params(UsageQuery),
    responses(
        (status = 200, description = "A page of usage rows", body = UsagePage),
        (status = 400, description = "A cursor the server did not issue for this listing (`malformed_request`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown parameter, a bad `from`/`to`/`granularity`/`meter`/`tenant_id`, a range too long, or `limit` out of range (`validation_failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/platform/usage")]
pub async fn list_usage(
    caller: PlatformCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> AppResult<HttpResponse> {
    caller.require(Scope::UsageRead)?;
    let params = list::parse_query(req.query_string())?;
    let mut errors = Vec::new();
    list::check_params(
        &params,
        &[
            "from",
            "to",
            "meter",
            "tenant_id",
            "granularity",
            "limit",
            "cursor",
        ],
        &mut errors,
    );
    let filter = filter_of(&params, &mut errors);
    let listing = ListContext {
        cursors: &state.cursors,
        resource: RESOURCE,
        // Not one tenant's list: the nil id binds cursors to the platform-wide listing.
        tenant: TenantId(Uuid::nil()),
        filters: fingerprint(&params),
    };
    let paging = list::paging(
        params.get("limit").map(String::as_str),
        None,
        params.get("cursor").map(String::as_str),
        &[ORDER.field],
        ORDER,
        &listing,
        &mut errors,
    )?;
    let (Some(filter), true) = (filter, errors.is_empty()) else {
        return Err(AppError::Validation(errors));
    };
    let after = paging.after.as_ref().map(after_of).transpose()?;
    let grace = TimeDelta::seconds(state.config.metering.grace_secs as i64);
    let (data, next) =
        read_page(&state.platform, filter, after, paging.limit as usize, grace).await?;
    Ok(HttpResponse::Ok().json(UsagePage {
        data,
        next_cursor: listing.next_cursor(ORDER, next.as_ref().map(cursor_of).as_ref())?,
    }))
}

fn csv_line(r: &UsageRow) -> String {
    // Slugs are [a-z0-9-], meters snake_case, the rest numbers and timestamps: nothing to quote.
    format!(
        "{},{},{},{},{},{},{},{}\n",
        r.tenant_id,
        r.tenant_slug,
        r.meter.name(),
        r.window_start
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        r.window_end
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        r.value,
        r.adjustments,
        r.is_final
    )
}

const CSV_HEADER: &str =
    "tenant_id,tenant_slug,meter,window_start,window_end,value,adjustments,final\n";

/// Every tenant's usage in a range as one streamed CSV or NDJSON document (scope
/// `usage:read`). Rows are read a thousand at a time and written as they come, so memory stays
/// flat however long the export; a failure half-way ends the stream early (the client sees a
/// truncated body, never a wrong row).
#[utoipa::path(
    tag = "platform",
    security(("platform_key" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The rows: `text/csv` with a header line, or `application/x-ndjson` with one row per line", content((String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 422, description = "`format` missing or not csv/ndjson, an unknown parameter, or a bad range/meter/tenant_id (`validation_failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/platform/usage/export")]
pub async fn export_usage(
    caller: PlatformCaller,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> AppResult<HttpResponse> {
    caller.require(Scope::UsageRead)?;
    let params = list::parse_query(req.query_string())?;
    let mut errors = Vec::new();
    list::check_params(
        &params,
        &["format", "from", "to", "meter", "tenant_id", "granularity"],
        &mut errors,
    );
    let format = match params.get("format").map(String::as_str) {
        Some("csv") => Some(ExportFormat::Csv),
        Some("ndjson") => Some(ExportFormat::Ndjson),
        _ => {
            errors.push(FieldError::new(
                "format",
                "invalid_value",
                "required: csv or ndjson",
            ));
            None
        }
    };
    let filter = filter_of(&params, &mut errors);
    let (Some(filter), Some(format), true) = (filter, format, errors.is_empty()) else {
        return Err(AppError::Validation(errors));
    };
    let grace = TimeDelta::seconds(state.config.metering.grace_secs as i64);
    let platform = state.platform.clone();
    // State: (next position, first page?, done?).
    let stream =
        futures_util::stream::unfold((None::<After>, true, false), move |(after, first, done)| {
            let platform = platform.clone();
            async move {
                if done {
                    return None;
                }
                let page = read_page(&platform, filter, after, EXPORT_PAGE, grace).await;
                let (rows, next) = match page {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "usage export failed part-way");
                        let err: Result<web::Bytes, actix_web::Error> =
                            Err(actix_web::error::ErrorInternalServerError("export failed"));
                        return Some((err, (None, false, true)));
                    }
                };
                let mut chunk = String::new();
                if first && format == ExportFormat::Csv {
                    chunk.push_str(CSV_HEADER);
                }
                for r in &rows {
                    match format {
                        ExportFormat::Csv => chunk.push_str(&csv_line(r)),
                        ExportFormat::Ndjson => {
                            chunk.push_str(&serde_json::to_string(r).unwrap_or_default());
                            chunk.push('\n');
                        }
                    }
                }
                let done = next.is_none();
                Some((Ok(web::Bytes::from(chunk)), (next, false, done)))
            }
        });
    let content_type = match format {
        ExportFormat::Csv => "text/csv; charset=utf-8",
        ExportFormat::Ndjson => "application/x-ndjson",
    };
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let ext = match format {
        ExportFormat::Csv => "csv",
        ExportFormat::Ndjson => "ndjson",
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"usage-{stamp}.{ext}\""),
        ))
        .streaming(stream))
}
