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

/// The earliest and latest instants a range may name (Unix seconds): 1970 and 2200.
const EARLIEST: i64 = 0;
const LATEST: i64 = 7_258_118_400;

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
    /// Start (RFC 3339); absent: the start of the current month (UTC). Rounded down to the row's
    /// window.
    #[param(format = DateTime, pattern = r"^[^\u0000]*$", example = "2026-12-01T00:00:00Z")]
    pub from: Option<String>,
    /// End, exclusive (RFC 3339); absent: now.
    #[param(format = DateTime, pattern = r"^[^\u0000]*$")]
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
    /// Reads the range parameters from a query string; any other parameter is a 422
    /// `unknown_parameter`.
    pub fn from_query(query: &str) -> AppResult<Self> {
        let params = crate::crm::list::parse_query(query)?;
        let mut errors = Vec::new();
        crate::crm::list::check_params(&params, &RANGE_PARAMS, &mut errors);
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
        // Usage exists from 1970 on, and past 2200 the window arithmetic (nanoseconds in an i64)
        // would overflow.
        let time = |field: &str, v: &Option<String>, errors: &mut Vec<FieldError>| {
            let s = v.as_deref()?;
            match DateTime::parse_from_rfc3339(s) {
                Ok(t) if (EARLIEST..=LATEST).contains(&t.timestamp()) => Some(t.to_utc()),
                Ok(_) => {
                    errors.push(FieldError::new(
                        field,
                        "out_of_range",
                        "must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z",
                    ));
                    None
                }
                Err(_) => {
                    errors.push(FieldError::new(
                        field,
                        "invalid_format",
                        "expected an RFC 3339 timestamp such as 2026-12-01T00:00:00Z",
                    ));
                    None
                }
            }
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
    tenant_slug: String,
    #[diesel(sql_type = Text)]
    meter: String,
    #[diesel(sql_type = Timestamptz)]
    window_start: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    value: i64,
    #[diesel(sql_type = BigInt)]
    adjustments: i64,
}

/// Which usage to read.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    /// One tenant, or every tenant the connection may see (the platform role).
    pub tenant: Option<Uuid>,
    /// One meter, or all.
    pub meter: Option<Meter>,
    /// The range and granularity.
    pub range: Range,
}

/// Where a page of rows ended: the last row's tenant, meter and row start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    /// Tenant.
    pub tenant: Uuid,
    /// Meter.
    pub meter: Meter,
    /// Start of the last row (a bucket of the filter's granularity).
    pub bucket: DateTime<Utc>,
}

/// Hourly windows (adjustments folded in) matching `filter`, in (tenant, meter, window) order,
/// after `after`'s row, at most `max` of them. One statement: windows and adjustments as a
/// UNION ALL grouped by window. With a tenant it is routed to that tenant's shard on Citus;
/// without one (the platform path) each shard groups its own tenants.
async fn hours(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    after: Option<&After>,
    max: i64,
) -> AppResult<Vec<HourRow>> {
    let Range {
        from,
        to,
        granularity,
    } = filter.range;
    // The same conditions on both sides of the UNION: placeholders numbered as written, values
    // bound in the same order below.
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    let mut sides = Vec::new();
    for (table, adj) in [
        ("usage_windows", "0::bigint"),
        ("usage_adjustments", "value"),
    ] {
        let mut sql = format!(
            "SELECT tenant_id, meter, window_start, value, {adj} AS adj FROM {table} \
             WHERE window_start >= {} AND window_start < {}",
            next(),
            next()
        );
        if filter.tenant.is_some() {
            sql.push_str(&format!(" AND tenant_id = {}", next()));
        }
        if filter.meter.is_some() {
            sql.push_str(&format!(" AND meter = {}", next()));
        }
        if after.is_some() {
            // Strictly after the last row's bucket (row comparison: tenant, meter, window).
            sql.push_str(&format!(
                " AND (tenant_id, meter, window_start) >= ({}, {}, {})",
                next(),
                next(),
                next()
            ));
        }
        sides.push(sql);
    }
    let sql = format!(
        "SELECT u.tenant_id, t.slug AS tenant_slug, u.meter, u.window_start, \
                sum(u.value)::bigint AS value, sum(u.adj)::bigint AS adjustments \
         FROM ({}) u JOIN tenants t ON t.id = u.tenant_id \
         GROUP BY u.tenant_id, t.slug, u.meter, u.window_start \
         ORDER BY u.tenant_id, u.meter, u.window_start LIMIT {}",
        sides.join(" UNION ALL "),
        next()
    );
    let mut q = diesel::sql_query(sql).into_boxed::<diesel::pg::Pg>();
    for _ in 0..2 {
        q = q.bind::<Timestamptz, _>(from).bind::<Timestamptz, _>(to);
        if let Some(t) = filter.tenant {
            q = q.bind::<SqlUuid, _>(t);
        }
        if let Some(m) = filter.meter {
            q = q.bind::<Text, _>(m.name());
        }
        if let Some(a) = after {
            q = q
                .bind::<SqlUuid, _>(a.tenant)
                .bind::<Text, _>(a.meter.name())
                .bind::<Timestamptz, _>(a.bucket + granularity.step());
        }
    }
    Ok(q.bind::<BigInt, _>(max).load(conn).await?)
}

/// One row of usage as billing reads it (API.md §8), plus how much of `value` came as late
/// adjustments and whether the row is final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageRow {
    /// Tenant id.
    pub tenant_id: Uuid,
    /// Tenant slug.
    pub tenant_slug: String,
    /// Meter.
    pub meter: Meter,
    /// Row start.
    pub window_start: DateTime<Utc>,
    /// Row end (exclusive).
    pub window_end: DateTime<Utc>,
    /// Total (counted meters) or peak (gauges), adjustments included.
    pub value: i64,
    /// How much of `value` arrived after its window was final.
    pub adjustments: i64,
    /// Whether the row is final (see [`UsagePoint::is_final`]).
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// Folds hourly rows into rows of `granularity` (sum, or peak for gauges).
fn fold(rows: Vec<HourRow>, granularity: Granularity, grace: TimeDelta) -> Vec<UsageRow> {
    let now = Utc::now();
    let mut out: Vec<UsageRow> = Vec::new();
    for r in rows {
        let Some(meter) = Meter::parse(&r.meter) else {
            continue;
        };
        let bucket = granularity.bucket(r.window_start);
        let end = bucket + granularity.step();
        let hour_final = now >= r.window_start + WINDOW + grace;
        // `value` already holds the adjustments (summed with the window in SQL).
        let value = r.value;
        match out.last_mut() {
            Some(p)
                if p.tenant_id == r.tenant_id && p.meter == meter && p.window_start == bucket =>
            {
                p.value = if meter.is_gauge() {
                    p.value.max(value)
                } else {
                    p.value + value
                };
                p.adjustments += r.adjustments;
                p.is_final &= hour_final;
            }
            _ => out.push(UsageRow {
                tenant_id: r.tenant_id,
                tenant_slug: r.tenant_slug,
                meter,
                window_start: bucket,
                window_end: end,
                value,
                adjustments: r.adjustments,
                // A day is final only once its last hour is, whichever hours have rows.
                is_final: hour_final && now >= end + grace,
            }),
        }
    }
    out
}

/// Usage of one tenant and meter as points of `range.granularity`.
pub type Series = BTreeMap<(Uuid, Meter), Vec<UsagePoint>>;

/// Every row of `filter` as points per (tenant, meter). For one tenant's report: ranges are
/// bounded ([`MAX_HOURLY_DAYS`], [`MAX_DAILY_DAYS`]), so the rows are too.
pub async fn series(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    grace: TimeDelta,
) -> AppResult<Series> {
    let rows = hours(conn, filter, None, i64::MAX).await?;
    let mut out: Series = BTreeMap::new();
    for r in fold(rows, filter.range.granularity, grace) {
        out.entry((r.tenant_id, r.meter))
            .or_default()
            .push(UsagePoint {
                window_start: r.window_start,
                window_end: r.window_end,
                value: r.value,
                adjustments: r.adjustments,
                is_final: r.is_final,
            });
    }
    Ok(out)
}

/// One page of rows of `filter` after `after`: at most `limit` rows, and where the next page
/// starts when there is more.
pub async fn page(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    after: Option<&After>,
    limit: usize,
    grace: TimeDelta,
) -> AppResult<(Vec<UsageRow>, Option<After>)> {
    let per_row = (filter.range.granularity.step().num_hours()).max(1);
    // Enough hours for `limit` full rows plus one more, so a cut never falls inside a row
    // that is then returned.
    let max = (limit as i64 + 1) * per_row;
    let hours = hours(conn, filter, after, max).await?;
    let exhausted = (hours.len() as i64) < max;
    let mut rows = fold(hours, filter.range.granularity, grace);
    if !exhausted {
        // The last row may be missing hours that did not fit: it starts the next page.
        rows.pop();
    }
    let more = !exhausted || rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(|r| After {
            tenant: r.tenant_id,
            meter: r.meter,
            bucket: r.window_start,
        })
    } else {
        None
    };
    Ok((rows, next))
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
