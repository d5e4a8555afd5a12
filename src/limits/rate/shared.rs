//! Budgets shared by every replica: one GCRA script in Redis (`gcra.lua`, on Redis' clock), and
//! the bookkeeping that makes Redis trouble cost little.
//!
//! One multiplexed connection serves every request. A failed or slow call drops it and marks
//! Redis down: from then on requests go straight to the local budgets, except one per
//! `redis.retry_ms`, which reconnects and, when that works, brings every request back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::time::timeout;

use super::{Decision, Rate};
use crate::config::RedisConfig;

/// Redis keys are namespaced, so a Redis shared with other software stays tidy.
const KEY_PREFIX: &str = "tessera:rl:";

/// Why a call to Redis produced no decision.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

pub(super) struct Shared {
    client: redis::Client,
    connection_config: AsyncConnectionConfig,
    connect_timeout: Duration,
    command_timeout: Duration,
    script: redis::Script,
    /// The connection, once made; taken away on failure so the next attempt reconnects.
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    health: Health,
}

/// How a request may use Redis right now.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Redis is up.
    Normal,
    /// Redis is down and this request is the one that tries it again.
    Probe,
}

impl Shared {
    pub(super) fn new(cfg: &RedisConfig) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(cfg.url.as_str()).context("redis.url: not a usable Redis URL")?;
        let info = client.get_connection_info();
        // host:port only: the URL may carry a password, which logs must not.
        let target = info.addr().to_string();
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms);
        let command_timeout = Duration::from_millis(cfg.command_timeout_ms);
        Ok(Self {
            client,
            connection_config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(command_timeout)),
            connect_timeout,
            command_timeout,
            script: redis::Script::new(include_str!("../gcra.lua")),
            connection: tokio::sync::Mutex::new(None),
            health: Health::new(target, Duration::from_millis(cfg.retry_ms)),
        })
    }

    /// The shared decision, or `None` when Redis cannot give one now (the caller decides
    /// locally).
    pub(super) async fn check(&self, key: &str, rate: Rate) -> Option<Decision> {
        let attempt = self.health.attempt()?;
        let mut conn = self.connection(attempt).await?;
        match self.eval(&mut conn, key, rate).await {
            Ok(decision) => {
                self.health.succeeded();
                Some(decision)
            }
            Err(e) => {
                self.fail(e).await;
                None
            }
        }
    }

    /// (up, failures, outages).
    pub(super) fn health(&self) -> (bool, u64, u64) {
        let h = &self.health;
        (
            !h.down.load(Ordering::Acquire),
            h.failures.load(Ordering::Relaxed),
            h.outages.load(Ordering::Relaxed),
        )
    }

    /// The connection, connecting first if there is none. `None` when another request's
    /// connect failed while this one waited: it would only pay the same timeout again.
    async fn connection(&self, attempt: Attempt) -> Option<MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Some(conn.clone());
        }
        if attempt == Attempt::Normal && self.health.down.load(Ordering::Acquire) {
            return None;
        }
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&self.connection_config);
        let result = match timeout(self.connect_timeout, connect).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Timeout(self.connect_timeout)),
        };
        match result {
            Ok(conn) => {
                *slot = Some(conn.clone());
                Some(conn)
            }
            Err(e) => {
                drop(slot);
                self.health.failed(&e);
                None
            }
        }
    }

    async fn eval(
        &self,
        conn: &mut MultiplexedConnection,
        key: &str,
        rate: Rate,
    ) -> Result<Decision, Failure> {
        let interval = rate.interval();
        let mut call = self.script.key(format!("{KEY_PREFIX}{key}"));
        call.arg(u64::try_from(interval.as_micros()).unwrap_or(u64::MAX))
            .arg(rate.burst());
        // The connection's response timeout bounds each round trip; this bounds the decision,
        // which is two round trips when Redis lost the script (EVALSHA, then EVAL).
        let (allowed, remaining, retry_us, reset_us): (i64, i64, i64, i64) =
            timeout(self.command_timeout, call.invoke_async(conn))
                .await
                .map_err(|_| Failure::Timeout(self.command_timeout))??;
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        let allowed = allowed == 1;
        Ok(Decision {
            allowed,
            burst: rate.burst(),
            remaining: u32::try_from(remaining).unwrap_or(0).min(rate.burst()),
            reset_after: micros(reset_us),
            retry_after: (!allowed).then(|| micros(retry_us)),
        })
    }

    /// Forgets the connection (it may be half-broken) and marks Redis down.
    async fn fail(&self, e: Failure) {
        self.connection.lock().await.take();
        self.health.failed(&e);
    }
}

/// Up or down, when to try again, and the counts `Stats` reports.
struct Health {
    /// `host:port`, for the log lines.
    target: String,
    retry: Duration,
    epoch: Instant,
    down: AtomicBool,
    /// Milliseconds since `epoch`: when the outage began, and when the next probe is due.
    down_since_ms: AtomicU64,
    next_probe_ms: AtomicU64,
    failures: AtomicU64,
    outages: AtomicU64,
}

impl Health {
    fn new(target: String, retry: Duration) -> Self {
        Self {
            target,
            retry,
            epoch: Instant::now(),
            down: AtomicBool::new(false),
            down_since_ms: AtomicU64::new(0),
            next_probe_ms: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            outages: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn retry_ms(&self) -> u64 {
        u64::try_from(self.retry.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether this request may use Redis: always while it is up; while down, only the first
    /// request once the retry interval has passed (the compare-exchange elects it).
    fn attempt(&self) -> Option<Attempt> {
        if !self.down.load(Ordering::Acquire) {
            return Some(Attempt::Normal);
        }
        let now = self.now_ms();
        let due = self.next_probe_ms.load(Ordering::Acquire);
        let elected = now >= due
            && self
                .next_probe_ms
                .compare_exchange(
                    due,
                    now + self.retry_ms(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok();
        elected.then_some(Attempt::Probe)
    }

    fn succeeded(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            let since = self.down_since_ms.load(Ordering::Relaxed);
            tracing::info!(
                redis = %self.target,
                outage_ms = self.now_ms().saturating_sub(since),
                "Redis reachable again: rate limits are shared across replicas again"
            );
        }
    }

    fn failed(&self, e: &Failure) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        // The probe time first: a request that sees `down` must also see when to try.
        self.next_probe_ms
            .store(now + self.retry_ms(), Ordering::Release);
        if !self.down.swap(true, Ordering::AcqRel) {
            self.down_since_ms.store(now, Ordering::Relaxed);
            self.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                redis = %self.target,
                error = %e,
                retry_ms = self.retry_ms(),
                "Redis unreachable: rate limits fall back to this process's own budgets until it \
                 answers again"
            );
        }
    }
}
