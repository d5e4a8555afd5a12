//! Reading usage back: ranges, granularity, and the rows billing reads (API.md §8).
//!
//! Windows are hourly. A day is the sum of its hours for counted meters and the peak hour for
//! gauges (`records`, `seats`). A window's value includes the adjustments recorded for it after it
//! became final; [`UsagePoint::adjustments`] says how much of the value came that way.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::metering::{Meter, WINDOW, month_of};
use crate::error::{AppError, AppResult, FieldError};

/// Longest range of hourly rows one request may ask for.
pub const MAX_HOURLY_DAYS: i64 = 93;
/// Longest range of daily rows one request may ask for.
pub const MAX_DAILY_DAYS: i64 = 400;

/// Row granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// One row per hourly window.
    #[default]
    Hour,
    /// One row per UTC day.
    Day,
}

impl Granularity {
    /// Length of one row's window.
    pub fn step(self) -> TimeDelta {
        match self {
            Self::Hour => WINDOW,
            Self::Day => TimeDelta::days(1),
        }
    }

    /// The start of the row holding `t`.
    pub fn bucket(self, t: DateTime<Utc>) -> DateTime<Utc> {
        use chrono::DurationRound;
        t.duration_trunc(self.step())
            .expect("hours and days divide timestamps")
    }
}

/// `?from=&to=&granularity=` as sent.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// Start (RFC 3339); default: the start of the current month (UTC). Rounded down to the
    /// row's window.
    #[param(pattern = r"^[^\u0000]*$", example = "2026-12-01T00:00:00Z")]
    pub from: Option<String>,
    /// End, exclusive (RFC 3339); default: now.
    #[param(pattern = r"^[^\u0000]*$")]
    pub to: Option<String>,
    /// `hour` (default) or `day`.
    #[param(value_type = Option<Granularity>)]
    pub granularity: Option<String>,
}

/// A validated range.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    /// First window start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// Row size.
    pub granularity: Granularity,
}

/// The range parameters every usage endpoint takes.
pub const RANGE_PARAMS: [&str; 3] = ["from", "to", "granularity"];

impl RangeQuery {
    /// Reads the range parameters from a query string that may also hold `extra` ones (which
    /// the caller reads itself); any other parameter is a 422 `unknown_parameter`.
    pub fn from_query(query: &str, extra: &[&str]) -> AppResult<Self> {
        let params = parse_query(query)?;
        let allowed: Vec<&str> = RANGE_PARAMS.iter().chain(extra).copied().collect();
        let mut errors = Vec::new();
        crate::crm::list::check_params(&params, &allowed, &mut errors);
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        Ok(Self {
            from: params.get("from").cloned(),
            to: params.get("to").cloned(),
            granularity: params.get("granularity").cloned(),
        })
    }

    /// Validates: RFC 3339 times, `from` before `to`, a known granularity, and at most
    /// [`MAX_HOURLY_DAYS`] of hours or [`MAX_DAILY_DAYS`] of days (422 naming the field).
    pub fn range(&self) -> AppResult<Range> {
        let mut errors = Vec::new();
        let time = |field: &str, v: &Option<String>, errors: &mut Vec<FieldError>| {
            v.as_ref()
                .and_then(|s| match DateTime::parse_from_rfc3339(s) {
                    Ok(t) => Some(t.to_utc()),
                    Err(_) => {
                        errors.push(FieldError::new(
                            field,
                            "invalid_format",
                            "expected an RFC 3339 timestamp such as 2026-12-01T00:00:00Z",
                        ));
                        None
                    }
                })
        };
        let now = Utc::now();
        let from = time("from", &self.from, &mut errors);
        let to = time("to", &self.to, &mut errors);
        let granularity = match self.granularity.as_deref() {
            None | Some("hour") => Granularity::Hour,
            Some("day") => Granularity::Day,
            Some(_) => {
                errors.push(FieldError::new(
                    "granularity",
                    "invalid_value",
                    "expected hour or day",
                ));
                Granularity::Hour
            }
        };
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        let from = granularity.bucket(from.unwrap_or_else(|| month_of(now)));
        let to = to.unwrap_or(now);
        if from >= to {
            return Err(AppError::field("to", "invalid_value", "must be after from"));
        }
        let max = match granularity {
            Granularity::Hour => MAX_HOURLY_DAYS,
            Granularity::Day => MAX_DAILY_DAYS,
        };
        if to - from > TimeDelta::days(max) {
            return Err(AppError::field(
                "to",
                "out_of_range",
                format!("at most {max} days of {granularity:?} rows per request").to_lowercase(),
            ));
        }
        Ok(Range {
            from,
            to,
            granularity,
        })
    }
}

/// One row of one meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsagePoint {
    /// Row start.
    pub window_start: DateTime<Utc>,
    /// Row end (exclusive).
    pub window_end: DateTime<Utc>,
    /// Total (counted meters) or peak (gauges), adjustments included.
    pub value: i64,
    /// How much of `value` arrived after its window was final.
    pub adjustments: i64,
    /// Whether every window in the row is final (its end plus the grace has passed): billing may
    /// take the value as settled; later corrections still arrive as `adjustments`.
    #[serde(rename = "final")]
    pub is_final: bool,
}

#[derive(QueryableByName)]
struct HourRow {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: Uuid,
    #[diesel(sql_type = Text)]
    meter: String,
    #[diesel(sql_type = Timestamptz)]
    window_start: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    value: i64,
    #[diesel(sql_type = BigInt)]
    adjustments: i64,
}

/// Hourly windows (adjustments folded in) of one tenant, or of every tenant the connection may
/// see when `tenant` is `None` (the platform role), in `[from, to)`.
async fn hours(
    conn: &mut AsyncPgConnection,
    tenant: Option<Uuid>,
    meter: Option<Meter>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> AppResult<Vec<HourRow>> {
    // Windows and adjustments are read separately and merged here. Each statement names the
    // tenant when there is one, so on Citus it goes to that tenant's shard only.
    let build = |select: &str, group: &str| {
        let mut q = diesel::sql_query(select.to_string())
            .into_boxed::<diesel::pg::Pg>()
            .sql(" WHERE window_start >= ")
            .bind::<Timestamptz, _>(from)
            .sql(" AND window_start < ")
            .bind::<Timestamptz, _>(to);
        if let Some(t) = tenant {
            q = q.sql(" AND tenant_id = ").bind::<SqlUuid, _>(t);
        }
        if let Some(m) = meter {
            q = q.sql(" AND meter = ").bind::<Text, _>(m.name());
        }
        q.sql(group.to_string())
    };
    let windows: Vec<HourRow> = build(
        "SELECT tenant_id, meter, window_start, value, 0::bigint AS adjustments \
         FROM usage_windows",
        "",
    )
    .load(conn)
    .await?;
    let adjustments: Vec<HourRow> = build(
        "SELECT tenant_id, meter, window_start, 0::bigint AS value, \
                sum(value)::bigint AS adjustments FROM usage_adjustments",
        " GROUP BY tenant_id, meter, window_start",
    )
    .load(conn)
    .await?;
    let mut merged: BTreeMap<(Uuid, String, DateTime<Utc>), HourRow> = BTreeMap::new();
    for r in windows.into_iter().chain(adjustments) {
        let key = (r.tenant_id, r.meter.clone(), r.window_start);
        match merged.get_mut(&key) {
            Some(m) => {
                m.value += r.value;
                m.adjustments += r.adjustments;
            }
            None => {
                merged.insert(key, r);
            }
        }
    }
    Ok(merged.into_values().collect())
}

/// Usage of one tenant and meter as rows of `range.granularity`.
pub type Series = BTreeMap<(Uuid, Meter), Vec<UsagePoint>>;

/// Rows per (tenant, meter) in `range`: hours as stored, or days (sum, or peak for gauges).
/// `grace` decides which windows are final.
pub async fn series(
    conn: &mut AsyncPgConnection,
    tenant: Option<Uuid>,
    meter: Option<Meter>,
    range: Range,
    grace: TimeDelta,
) -> AppResult<Series> {
    let rows = hours(conn, tenant, meter, range.from, range.to).await?;
    let now = Utc::now();
    let mut out: Series = BTreeMap::new();
    for r in rows {
        let Some(meter) = Meter::parse(&r.meter) else {
            continue;
        };
        let bucket = range.granularity.bucket(r.window_start);
        let end = bucket + range.granularity.step();
        let hour_final = now >= r.window_start + WINDOW + grace;
        let value = r.value + r.adjustments;
        let points = out.entry((r.tenant_id, meter)).or_default();
        match points.last_mut() {
            Some(p) if p.window_start == bucket => {
                p.value = if meter.is_gauge() {
                    p.value.max(value)
                } else {
                    p.value + value
                };
                p.adjustments += r.adjustments;
                p.is_final &= hour_final;
            }
            _ => points.push(UsagePoint {
                window_start: bucket,
                window_end: end,
                value,
                adjustments: r.adjustments,
                // A day is final only when its last hour is: a day with a missing (zero) hour
                // still open is not settled.
                is_final: hour_final && now >= end + grace,
            }),
        }
    }
    Ok(out)
}

/// The tenant's `api_requests` so far this month (flushed windows and adjustments).
pub async fn month_requests(conn: &mut AsyncPgConnection, tenant: Uuid) -> AppResult<i64> {
    #[derive(QueryableByName)]
    struct Total {
        #[diesel(sql_type = BigInt)]
        total: i64,
    }
    let start = month_of(Utc::now());
    let t: Total = diesel::sql_query(
        "SELECT (SELECT coalesce(sum(value), 0) FROM usage_windows WHERE tenant_id = $1 \
                  AND meter = 'api_requests' AND window_start >= $2)::bigint \
              + (SELECT coalesce(sum(value), 0) FROM usage_adjustments WHERE tenant_id = $1 \
                  AND meter = 'api_requests' AND window_start >= $2)::bigint AS total",
    )
    .bind::<SqlUuid, _>(tenant)
    .bind::<Timestamptz, _>(start)
    .get_result(conn)
    .await?;
    Ok(t.total)
}

/// A query string as a map; malformed → 400 `malformed_request`.
pub fn parse_query(query: &str) -> AppResult<std::collections::HashMap<String, String>> {
    Ok(
        actix_web::web::Query::<std::collections::HashMap<String, String>>::from_query(query)
            .map_err(|_| AppError::Malformed("query string is malformed".into()))?
            .into_inner(),
    )
}
