//! Usage metering for billing (API.md §8): hourly windows per tenant per meter.
//!
//! - **`api_requests`** is counted in memory per replica ([`Metering::count_request`], a map
//!   update on the hot path) and flushed every `metering.flush_interval_secs` (at most 10) and on
//!   graceful shutdown. Each flushed amount carries an event id `api:<replica>:<flush seq>:<window>`
//!   and is written together with a **receipt** keyed by that id; a receipt that already exists
//!   means the amount was counted, so a retried flush (the commit's answer lost, the database
//!   down for a while) never counts twice. An amount whose flush failed is retried with the same
//!   id until it lands.
//! - **Gauges** `records` and `seats` are copied from the quota counters into the current window
//!   for every tenant at the first flush of each window, and then by the flushes for the tenants
//!   that made requests, each at most every [`REREAD`]; the window keeps the last value seen.
//! - **Transactional meters** (`webhook_deliveries`, `import_rows`) are written by the action's
//!   own transaction with [`record_in_tx`], under the action's unique event id: the usage exists
//!   if and only if the action committed.
//! - A window is **final** once its end plus `metering.grace_secs` has passed. An amount that
//!   arrives later is not added to the final total: it becomes an adjustment row for that window
//!   (`usage_adjustments`), so a billing system that pulled the final totals can pull the
//!   corrections separately, and nothing it read is ever silently rewritten.
//!
//! What a crash can lose: the `api_requests` a replica counted since its last successful flush
//! (at most `flush_interval_secs` of them, plus any whose flush was still failing). What cannot
//! happen: an amount counted twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use diesel::sql_types::{Array, BigInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::scoped_futures::ScopedFutureExt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::config::MeteringConfig;
use crate::error::AppResult;
use crate::ids::TenantId;
use crate::tenancy::{PlatformDoor, TenantTx};

/// Length of a usage window.
pub const WINDOW: TimeDelta = TimeDelta::hours(1);

/// Amounts (or tenants) per transaction of a flush: a few milliseconds of database work each.
pub const FLUSH_CHUNK: usize = 1_000;

/// A usage meter (API.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Meter {
    /// Tenant-scoped API requests (count).
    ApiRequests,
    /// Live CRM records (gauge).
    Records,
    /// Active users (gauge).
    Seats,
    /// Webhook deliveries (count).
    WebhookDeliveries,
    /// Imported rows (count).
    ImportRows,
}

impl Meter {
    /// Every meter, in the order reports list them.
    pub const ALL: [Meter; 5] = [
        Self::ApiRequests,
        Self::Records,
        Self::Seats,
        Self::WebhookDeliveries,
        Self::ImportRows,
    ];

    /// The stored and reported name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ApiRequests => "api_requests",
            Self::Records => "records",
            Self::Seats => "seats",
            Self::WebhookDeliveries => "webhook_deliveries",
            Self::ImportRows => "import_rows",
        }
    }

    /// The meter called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether the meter is a gauge (a level, not a sum): days report its peak hour.
    pub fn is_gauge(self) -> bool {
        matches!(self, Self::Records | Self::Seats)
    }
}

/// The start of the window holding `t`.
pub fn window_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(WINDOW)
        .expect("an hour divides any timestamp")
}

/// One amount to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount {
    /// Whose usage.
    pub tenant: TenantId,
    /// Which meter.
    pub meter: Meter,
    /// The window it belongs to.
    pub window_start: DateTime<Utc>,
    /// The dedupe key: the same id is never counted twice for a tenant.
    pub event_id: String,
    /// How much.
    pub value: i64,
}

/// Where a recorded amount went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Added to its open window.
    Window,
    /// Its window was final: written as an adjustment.
    Adjustment,
    /// Its event id was already counted: nothing written.
    Duplicate,
}

/// Counts `amount` on `conn` inside an open transaction (platform role, or the app role in the
/// tenant's context): receipt first, then the window or an adjustment. Times are passed as
/// parameters (Citus refuses `now()` in `ON CONFLICT`).
async fn record_on(
    conn: &mut AsyncPgConnection,
    amount: &Amount,
    now: DateTime<Utc>,
    grace: TimeDelta,
) -> AppResult<Recorded> {
    let tenant = amount.tenant.as_uuid();
    let fresh = diesel::sql_query(
        "INSERT INTO usage_receipts (tenant_id, event_id, recorded_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, event_id) DO NOTHING",
    )
    .bind::<SqlUuid, _>(tenant)
    .bind::<Text, _>(&amount.event_id)
    .bind::<Timestamptz, _>(now)
    .execute(conn)
    .await?;
    if fresh == 0 {
        return Ok(Recorded::Duplicate);
    }
    if is_open(amount.window_start, now, grace) {
        diesel::sql_query(
            "INSERT INTO usage_windows (tenant_id, meter, window_start, value, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, meter, window_start) \
             DO UPDATE SET value = usage_windows.value + EXCLUDED.value, \
                           updated_at = EXCLUDED.updated_at",
        )
        .bind::<SqlUuid, _>(tenant)
        .bind::<Text, _>(amount.meter.name())
        .bind::<Timestamptz, _>(amount.window_start)
        .bind::<BigInt, _>(amount.value)
        .bind::<Timestamptz, _>(now)
        .execute(conn)
        .await?;
        Ok(Recorded::Window)
    } else {
        diesel::sql_query(
            "INSERT INTO usage_adjustments \
               (tenant_id, id, meter, window_start, value, event_id, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind::<SqlUuid, _>(tenant)
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<Text, _>(amount.meter.name())
        .bind::<Timestamptz, _>(amount.window_start)
        .bind::<BigInt, _>(amount.value)
        .bind::<Text, _>(&amount.event_id)
        .bind::<Timestamptz, _>(now)
        .execute(conn)
        .await?;
        Ok(Recorded::Adjustment)
    }
}

/// Counts a transactional meter in the action's own transaction (`tx` is the tenant's), under
/// `event_id` (unique per action, e.g. the delivery id): the usage commits with the action or
/// not at all, and a replayed action adds nothing.
pub async fn record_in_tx(
    tx: &mut TenantTx<'_>,
    meter: Meter,
    event_id: &str,
    value: i64,
    grace: Duration,
) -> AppResult<Recorded> {
    let now = Utc::now();
    let amount = Amount {
        tenant: tx.tenant_id(),
        meter,
        window_start: window_of(now),
        event_id: event_id.to_string(),
        value,
    };
    let grace = TimeDelta::from_std(grace).unwrap_or(TimeDelta::zero());
    record_on(tx.conn(), &amount, now, grace).await
}

/// Counts `amounts` in one platform transaction; returns where each went, in order.
///
/// A flush carries one amount per tenant that made requests, so with thousands of tenants a
/// statement per amount would be tens of thousands of round trips every few seconds. Instead it
/// is three multi-row statements per [`ROWS_PER_STATEMENT`] amounts: the receipts (`RETURNING`
/// the ids that were new), the open windows (summed per window first: one `ON CONFLICT DO
/// UPDATE` may not touch a row twice), and the adjustments. Multi-row `VALUES`, not `INSERT …
/// SELECT FROM unnest(…)`: Citus runs the latter through `COPY`, which row-level security
/// refuses, while it splits a `VALUES` list into one routed `INSERT` per shard.
pub async fn record(
    platform: &PlatformDoor,
    amounts: Vec<Amount>,
    grace: Duration,
) -> AppResult<Vec<Recorded>> {
    #[derive(diesel::QueryableByName)]
    struct Receipt {
        #[diesel(sql_type = SqlUuid)]
        tenant_id: Uuid,
        #[diesel(sql_type = Text)]
        event_id: String,
    }
    if amounts.is_empty() {
        return Ok(Vec::new());
    }
    let grace = TimeDelta::from_std(grace).unwrap_or(TimeDelta::zero());
    platform
        .tx(false, move |tx| {
            async move {
                let now = Utc::now();
                let mut new: HashSet<(Uuid, String)> = HashSet::new();
                for part in amounts.chunks(ROWS_PER_STATEMENT) {
                    let mut q = diesel::sql_query(format!(
                        "INSERT INTO usage_receipts (tenant_id, event_id, recorded_at) \
                         VALUES {} ON CONFLICT (tenant_id, event_id) DO NOTHING \
                         RETURNING tenant_id, event_id",
                        values_list(part.len(), 3)
                    ))
                    .into_boxed();
                    for a in part {
                        q = q
                            .bind::<SqlUuid, _>(a.tenant.as_uuid())
                            .bind::<Text, _>(a.event_id.clone())
                            .bind::<Timestamptz, _>(now);
                    }
                    let rows: Vec<Receipt> = q.load(tx.conn()).await?;
                    new.extend(rows.into_iter().map(|r| (r.tenant_id, r.event_id)));
                }
                // An id given twice in one batch is new once: the first occurrence counts.
                let out: Vec<Recorded> = amounts
                    .iter()
                    .map(|a| {
                        if !new.remove(&(a.tenant.as_uuid(), a.event_id.clone())) {
                            Recorded::Duplicate
                        } else if is_open(a.window_start, now, grace) {
                            Recorded::Window
                        } else {
                            Recorded::Adjustment
                        }
                    })
                    .collect();
                let mut windows: BTreeMap<(Uuid, &'static str, DateTime<Utc>), i64> =
                    BTreeMap::new();
                let mut late = Vec::new();
                for (a, r) in amounts.iter().zip(&out) {
                    match r {
                        Recorded::Window => {
                            *windows
                                .entry((a.tenant.as_uuid(), a.meter.name(), a.window_start))
                                .or_insert(0) += a.value;
                        }
                        Recorded::Adjustment => late.push(a),
                        Recorded::Duplicate => {}
                    }
                }
                let windows: Vec<_> = windows.into_iter().collect();
                for part in windows.chunks(ROWS_PER_STATEMENT) {
                    let mut q = diesel::sql_query(format!(
                        "INSERT INTO usage_windows \
                           (tenant_id, meter, window_start, value, updated_at) \
                         VALUES {} ON CONFLICT (tenant_id, meter, window_start) \
                         DO UPDATE SET value = usage_windows.value + EXCLUDED.value, \
                                       updated_at = EXCLUDED.updated_at",
                        values_list(part.len(), 5)
                    ))
                    .into_boxed();
                    for ((tenant, meter, window_start), value) in part {
                        q = q
                            .bind::<SqlUuid, _>(*tenant)
                            .bind::<Text, _>(*meter)
                            .bind::<Timestamptz, _>(*window_start)
                            .bind::<BigInt, _>(*value)
                            .bind::<Timestamptz, _>(now);
                    }
                    q.execute(tx.conn()).await?;
                }
                for part in late.chunks(ROWS_PER_STATEMENT) {
                    let mut q = diesel::sql_query(format!(
                        "INSERT INTO usage_adjustments \
                           (tenant_id, id, meter, window_start, value, event_id, recorded_at) \
                         VALUES {}",
                        values_list(part.len(), 7)
                    ))
                    .into_boxed();
                    for a in part {
                        q = q
                            .bind::<SqlUuid, _>(a.tenant.as_uuid())
                            .bind::<SqlUuid, _>(Uuid::now_v7())
                            .bind::<Text, _>(a.meter.name())
                            .bind::<Timestamptz, _>(a.window_start)
                            .bind::<BigInt, _>(a.value)
                            .bind::<Text, _>(a.event_id.clone())
                            .bind::<Timestamptz, _>(now);
                    }
                    q.execute(tx.conn()).await?;
                }
                Ok(out)
            }
            .scope_boxed()
        })
        .await
}

/// Rows per multi-row `INSERT` of [`record`]: 7,000 parameters at most (PostgreSQL allows 65,535).
const ROWS_PER_STATEMENT: usize = 1_000;

/// `($1, $2), ($3, $4)` for `rows` = 2, `cols` = 2: the placeholders of a multi-row `VALUES`.
fn values_list(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the window starting at `start` still takes amounts at `now` (its end plus `grace`
/// has not passed); later amounts become adjustments.
fn is_open(start: DateTime<Utc>, now: DateTime<Utc>, grace: TimeDelta) -> bool {
    now < start + WINDOW + grace
}

/// Copies the quota counters of `tenants` into the gauge meters' window `window`: one
/// co-located `INSERT … SELECT` per gauge (a statement per tenant would be thousands of round
/// trips per flush). A level that did not change is not rewritten (`updated_at` is when the
/// window last changed), so a flush for thousands of requesting tenants writes few gauge rows.
async fn snapshot_gauges(
    platform: &PlatformDoor,
    tenants: &[Uuid],
    window: DateTime<Utc>,
) -> AppResult<()> {
    let tenants = tenants.to_vec();
    platform
        .tx(false, move |tx| {
            async move {
                let now = Utc::now();
                for (meter, column) in [(Meter::Records, "records"), (Meter::Seats, "seats")] {
                    diesel::sql_query(format!(
                        "INSERT INTO usage_windows \
                           (tenant_id, meter, window_start, value, updated_at) \
                         SELECT tenant_id, $1, $2, {column}, $3 FROM quota_counters \
                         WHERE tenant_id = ANY($4) \
                         ON CONFLICT (tenant_id, meter, window_start) \
                         DO UPDATE SET value = EXCLUDED.value, \
                                       updated_at = EXCLUDED.updated_at \
                         WHERE usage_windows.value <> EXCLUDED.value"
                    ))
                    .bind::<Text, _>(meter.name())
                    .bind::<Timestamptz, _>(window)
                    .bind::<Timestamptz, _>(now)
                    .bind::<Array<SqlUuid>, _>(&tenants)
                    .execute(tx.conn())
                    .await?;
                }
                Ok(())
            }
            .scope_boxed()
        })
        .await
}

/// Every tenant with quota counters (every provisioned tenant): whose gauges the first flush of
/// a window snapshots.
async fn counted_tenants(platform: &PlatformDoor) -> AppResult<Vec<Uuid>> {
    use crate::db::schema::quota_counters;
    use diesel::QueryDsl;
    platform
        .tx(true, |tx| {
            async move {
                Ok(quota_counters::table
                    .select(quota_counters::tenant_id)
                    .load(tx.conn())
                    .await?)
            }
            .scope_boxed()
        })
        .await
}

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Amounts written to windows.
    pub windows: usize,
    /// Amounts written as adjustments (their window was already final).
    pub adjustments: usize,
    /// Amounts found already counted (a retry of a flush that had landed).
    pub duplicates: usize,
}

/// This replica's in-memory `api_requests` counts and their flushing.
pub struct Metering {
    platform: PlatformDoor,
    cfg: MeteringConfig,
    /// Names this process's event ids; new at every start, so ids never collide across runs.
    replica: Uuid,
    seq: AtomicU64,
    counts: Mutex<HashMap<(TenantId, DateTime<Utc>), i64>>,
    /// Amounts whose flush failed, retried with their ids unchanged.
    unacked: tokio::sync::Mutex<Vec<Amount>>,
    /// The window whose all-tenant gauge snapshot this replica has taken.
    snapshotted: Mutex<Option<DateTime<Utc>>>,
    /// `api_requests` of the current month per tenant as of the last flush (for the monthly
    /// quota), and the month it is for.
    month: Mutex<(DateTime<Utc>, HashMap<TenantId, i64>)>,
    /// When each tenant's month total and gauges were last read from the database by a flush
    /// (both at most every [`REREAD`]); cleared at every hour's first flush.
    reread: Mutex<HashMap<Uuid, Instant>>,
}

/// How often a flush re-reads a requesting tenant's stored month total (which includes other
/// replicas' flushes) and copies its gauges; in between, the flush adds what it wrote itself.
/// At 10,000 requesting tenants doing both at every 10 s flush was a tenth of a database core.
pub const REREAD: Duration = Duration::from_secs(60);

impl Metering {
    /// Metering over `platform`.
    pub fn new(platform: PlatformDoor, cfg: MeteringConfig) -> Arc<Self> {
        Arc::new(Self {
            platform,
            cfg,
            replica: Uuid::now_v7(),
            seq: AtomicU64::new(0),
            counts: Mutex::new(HashMap::new()),
            unacked: tokio::sync::Mutex::new(Vec::new()),
            snapshotted: Mutex::new(None),
            month: Mutex::new((DateTime::<Utc>::MIN_UTC, HashMap::new())),
            reread: Mutex::new(HashMap::new()),
        })
    }

    /// Admits and counts one tenant-scoped request, unless the tenant has used its monthly
    /// `limit` of API requests: then `Err(used)` and nothing is counted. Hot path: two hash
    /// lookups and an increment under short locks.
    ///
    /// "Used" is the month's stored total (re-read at most every [`REREAD`], plus what this
    /// replica flushed since) plus this replica's unflushed count; other replicas' requests are
    /// visible once flushed and re-read, so the monthly quota may be overshot by at most about a
    /// minute and a flush interval of the other replicas' requests.
    pub fn count_request(&self, tenant: TenantId, limit: u64) -> Result<(), u64> {
        let now = Utc::now();
        let window = window_of(now);
        let month_start = month_of(now);
        let flushed = {
            let month = self.month.lock().expect("metering lock");
            if month.0 == month_start {
                month.1.get(&tenant).copied().unwrap_or(0)
            } else {
                0
            }
        };
        let mut counts = self.counts.lock().expect("metering lock");
        // The previous window is still in memory only between an hour's turn and the next flush.
        let previous = window - WINDOW;
        let earlier = if previous >= month_start {
            counts.get(&(tenant, previous)).copied().unwrap_or(0)
        } else {
            0
        };
        let current = counts.entry((tenant, window)).or_insert(0);
        let used = (flushed + earlier + *current).max(0) as u64;
        if used >= limit {
            return Err(used);
        }
        *current += 1;
        Ok(())
    }

    /// This replica's not yet written `api_requests` of the tenant this month (for reports that
    /// add them to the flushed total).
    pub fn unflushed_this_month(&self, tenant: TenantId) -> u64 {
        let month_start = month_of(Utc::now());
        self.counts
            .lock()
            .expect("metering lock")
            .iter()
            .filter(|((t, w), _)| *t == tenant && *w >= month_start)
            .map(|(_, n)| (*n).max(0) as u64)
            .sum()
    }

    /// Writes everything counted so far (and any earlier failed amounts). On failure the
    /// amounts are kept, with their ids, for the next flush.
    pub async fn flush(&self) -> AppResult<Flushed> {
        let mut unacked = self.unacked.lock().await;
        let drained: Vec<((TenantId, DateTime<Utc>), i64)> = {
            let mut counts = self.counts.lock().expect("metering lock");
            // Zero entries are left by requests refused for the monthly quota.
            counts.drain().filter(|(_, n)| *n > 0).collect()
        };
        if !drained.is_empty() {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            for ((tenant, window), n) in drained {
                unacked.push(Amount {
                    tenant,
                    meter: Meter::ApiRequests,
                    window_start: window,
                    event_id: format!("api:{}:{seq}:{}", self.replica, window.timestamp()),
                    value: n,
                });
            }
        }
        let grace = Duration::from_secs(self.cfg.grace_secs);
        let mut flushed = Flushed::default();
        let tenants: Vec<Uuid> = {
            let mut t: Vec<Uuid> = unacked.iter().map(|a| a.tenant.as_uuid()).collect();
            t.sort();
            t.dedup();
            t
        };
        // In chunks, each its own transaction: one statement over ten thousand tenants' amounts
        // ran past `statement_timeout` on a saturated database (its backend gets a small share
        // of the CPU among the request transactions), and a failed flush retries a bigger batch.
        // A chunk that lands is acknowledged at once; the rest keep their ids for the next tick.
        // What this flush wrote of this month's api_requests, per tenant.
        let month_start = month_of(Utc::now());
        let mut landed: HashMap<Uuid, i64> = HashMap::new();
        while !unacked.is_empty() {
            let n = unacked.len().min(FLUSH_CHUNK);
            let results = record(&self.platform, unacked[..n].to_vec(), grace).await?;
            for (a, r) in unacked[..n].iter().zip(results) {
                match r {
                    Recorded::Window => flushed.windows += 1,
                    Recorded::Adjustment => flushed.adjustments += 1,
                    Recorded::Duplicate => flushed.duplicates += 1,
                }
                if r != Recorded::Duplicate && a.window_start >= month_start {
                    *landed.entry(a.tenant.as_uuid()).or_insert(0) += a.value;
                }
            }
            unacked.drain(..n);
        }
        let window = window_of(Utc::now());
        let first_of_window = *self.snapshotted.lock().expect("metering lock") != Some(window);
        // Tenants due a re-read: every requesting tenant at the hour's first flush, otherwise
        // those not re-read for REREAD.
        let due: Vec<Uuid> = {
            let mut reread = self.reread.lock().expect("metering lock");
            if first_of_window {
                reread.clear();
            }
            let now = Instant::now();
            tenants
                .iter()
                .copied()
                .filter(|t| match reread.get(t) {
                    Some(at) if now.duration_since(*at) < REREAD => false,
                    _ => {
                        reread.insert(*t, now);
                        true
                    }
                })
                .collect()
        };
        let gauged = if first_of_window {
            counted_tenants(&self.platform).await?
        } else {
            due.clone()
        };
        for chunk in gauged.chunks(FLUSH_CHUNK) {
            snapshot_gauges(&self.platform, chunk, window).await?;
        }
        if first_of_window {
            self.forget_receipts().await?;
            *self.snapshotted.lock().expect("metering lock") = Some(window);
        }
        {
            // Not due: the stored total this replica knows plus what it just wrote. (A tenant
            // due is re-read below, which includes it.)
            let due: HashSet<&Uuid> = due.iter().collect();
            let mut month = self.month.lock().expect("metering lock");
            if month.0 == month_start {
                for (t, n) in &landed {
                    if !due.contains(t) {
                        *month.1.entry(TenantId(*t)).or_insert(0) += n;
                    }
                }
            }
        }
        for chunk in due.chunks(FLUSH_CHUNK) {
            self.refresh_month(chunk.to_vec()).await?;
        }
        Ok(flushed)
    }

    /// Deletes receipts older than `metering.receipt_retention_days` (once an hour per replica):
    /// the table stays the size of the retention window. An amount is retried only while its
    /// replica lives and keeps failing to write it, far shorter than any retention allowed.
    async fn forget_receipts(&self) -> AppResult<u64> {
        let cutoff =
            Utc::now() - TimeDelta::days(i64::from(self.cfg.receipt_retention_days.max(1)));
        let n = self
            .platform
            .tx(false, move |tx| {
                async move {
                    Ok(
                        diesel::sql_query("DELETE FROM usage_receipts WHERE recorded_at < $1")
                            .bind::<Timestamptz, _>(cutoff)
                            .execute(tx.conn())
                            .await?,
                    )
                }
                .scope_boxed()
            })
            .await?;
        Ok(n as u64)
    }

    /// Re-reads this month's `api_requests` of `tenants` (for the monthly quota).
    async fn refresh_month(&self, tenants: Vec<Uuid>) -> AppResult<()> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = SqlUuid)]
            tenant_id: Uuid,
            #[diesel(sql_type = BigInt)]
            total: i64,
        }
        let month_start = month_of(Utc::now());
        let rows: Vec<Row> = self
            .platform
            .tx(true, move |tx| {
                async move {
                    Ok(diesel::sql_query(
                        // The month's total as `usage::month_requests` counts it for the
                        // tenant's own report: windows and late adjustments alike.
                        "SELECT tenant_id, sum(value)::bigint AS total FROM ( \
                           SELECT tenant_id, value FROM usage_windows \
                           WHERE meter = 'api_requests' AND window_start >= $1 \
                             AND tenant_id = ANY($2) \
                           UNION ALL \
                           SELECT tenant_id, value FROM usage_adjustments \
                           WHERE meter = 'api_requests' AND window_start >= $1 \
                             AND tenant_id = ANY($2)) u GROUP BY tenant_id",
                    )
                    .bind::<Timestamptz, _>(month_start)
                    .bind::<Array<SqlUuid>, _>(&tenants)
                    .load(tx.conn())
                    .await?)
                }
                .scope_boxed()
            })
            .await?;
        let mut month = self.month.lock().expect("metering lock");
        if month.0 != month_start {
            *month = (month_start, HashMap::new());
        }
        for r in rows {
            month.1.insert(TenantId(r.tenant_id), r.total);
        }
        Ok(())
    }

    /// Amounts waiting for a flush to succeed (counted requests not yet written).
    pub async fn pending(&self) -> usize {
        self.unacked.lock().await.len() + self.counts.lock().expect("metering lock").len()
    }

    /// Flushes every `metering.flush_interval_secs` until the process ends; a failed flush is
    /// logged and retried at the next tick with the same event ids.
    pub fn spawn(self: &Arc<Self>) -> actix_web::rt::task::JoinHandle<()> {
        let me = self.clone();
        actix_web::rt::spawn(async move {
            let period = Duration::from_secs(me.cfg.flush_interval_secs);
            let mut tick = actix_web::rt::time::interval_at(
                (std::time::Instant::now() + period).into(),
                period,
            );
            loop {
                tick.tick().await;
                if let Err(e) = me.flush().await {
                    tracing::warn!(error = %e, "usage flush failed; retrying at the next tick");
                }
            }
        })
    }
}

/// The start of the calendar month (UTC) holding `t`.
pub fn month_of(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::{Datelike, TimeZone};
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .expect("the first of a month exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_months_start_on_the_hour_and_the_first() {
        let t = DateTime::parse_from_rfc3339("2026-12-02T10:51:26.5Z")
            .unwrap()
            .to_utc();
        assert_eq!(window_of(t).to_rfc3339(), "2026-12-02T10:00:00+00:00");
        assert_eq!(month_of(t).to_rfc3339(), "2026-12-01T00:00:00+00:00");
    }

    #[test]
    fn values_lists_number_placeholders_row_by_row() {
        assert_eq!(super::values_list(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::values_list(1, 1), "($1)");
    }

    #[test]
    fn meters_round_trip_their_names() {
        for m in Meter::ALL {
            assert_eq!(Meter::parse(m.name()), Some(m));
        }
        assert_eq!(Meter::parse("nope"), None);
    }
}
