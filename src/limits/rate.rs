//! Rate limiting: GCRA budgets, keyed by strings the caller chooses (`tenant:<id>`,
//! `auth:login_ip:<ip>`), shared by every replica through Redis when `redis.url` is set and
//! kept in-process (`governor`) otherwise.
//!
//! A decision never fails. Redis unreachable or slow, the process answers from its own budgets
//! (fail-soft: better N replicas each allowing the limit than refusing everything), logs that
//! once per outage, and tries Redis again at most every `redis.retry_ms`, so an outage costs one
//! timeout per interval rather than one per request. Both paths compute the same numbers
//! (`remaining`, `reset_after`, `retry_after`), so callers cannot tell them apart.

mod local;
mod shared;

use std::sync::Arc;
use std::time::Duration;

use crate::config::RedisConfig;

/// A GCRA budget: `count` cells per `per` sustained, `burst` of them at once.
///
/// The two paths count in whole microseconds (see [`Rate::interval`]), so a rate faster than a
/// million per second is not representable; no plan comes near.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Cells per `per` at the sustained rate (0 is taken as 1).
    pub count: u32,
    /// The period `count` refers to (zero is taken as 1 µs).
    pub per: Duration,
    /// Cells available at once, on a full budget (0 is taken as 1).
    pub burst: u32,
}

impl Rate {
    /// `per_second` sustained, `burst` at once: a plan's `requests_per_second` and `burst`.
    pub const fn per_second(per_second: u32, burst: u32) -> Self {
        Self {
            count: per_second,
            per: Duration::from_secs(1),
            burst,
        }
    }

    /// `count` per `per`, all of it available at once (e.g. 20 signups per hour).
    pub const fn per(count: u32, per: Duration) -> Self {
        Self {
            count,
            per,
            burst: count,
        }
    }

    /// Time between two cells at the sustained rate, in whole microseconds (at least one): the
    /// unit the Redis script counts in, so both paths round alike.
    pub fn interval(&self) -> Duration {
        let micros = self.per.as_micros() / u128::from(self.count.max(1));
        Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX).max(1))
    }

    /// Cells available at once (at least one).
    pub fn burst(&self) -> u32 {
        self.burst.max(1)
    }

    /// How long an empty budget takes to fill up again: `burst × interval` (the window `w` of a
    /// `RateLimit-Policy` header).
    pub fn window(&self) -> Duration {
        self.interval() * self.burst()
    }
}

/// The decision for one request, with what the IETF `RateLimit` headers need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed (it then took one cell).
    pub allowed: bool,
    /// The budget's burst (`RateLimit-Policy` `q`).
    pub burst: u32,
    /// Cells still available right now (`RateLimit` `r`).
    pub remaining: u32,
    /// Time until the budget is full again (draft-11 `t`). The in-process path rounds it up to
    /// a whole interval.
    pub reset_after: Duration,
    /// Only when refused: time until one cell is available (`Retry-After`).
    pub retry_after: Option<Duration>,
}

/// Where decisions come from right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// From Redis: one budget across all replicas.
    Shared,
    /// From this process alone: no Redis configured, or Redis unreachable.
    Local,
}

/// What the limiter has been doing, for health output and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Where decisions come from right now.
    pub mode: Mode,
    /// Redis calls that failed or timed out (each answered locally instead).
    pub redis_failures: u64,
    /// Times Redis went from reachable to unreachable.
    pub outages: u64,
    /// Keys the in-process budgets hold (idle ones leave on [`Limiter::prune`]).
    pub local_keys: usize,
}

/// GCRA rate limiter: shared through Redis when configured, in-process otherwise or as the
/// fallback. Cheap to clone (one `Arc`); every clone shares the same budgets.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    local: local::Local,
    shared: Option<shared::Shared>,
}

impl Limiter {
    /// A limiter for `[redis]`: an empty `url` means in-process budgets only. Nothing connects
    /// yet (the first decision does), so a Redis that is down at start only means local
    /// decisions until it is up.
    pub fn new(cfg: &RedisConfig) -> anyhow::Result<Self> {
        let shared = if cfg.url.is_empty() {
            None
        } else {
            Some(shared::Shared::new(cfg)?)
        };
        Ok(Self {
            inner: Arc::new(Inner {
                local: local::Local::default(),
                shared,
            }),
        })
    }

    /// A limiter with in-process budgets only.
    pub fn local() -> Self {
        Self {
            inner: Arc::new(Inner {
                local: local::Local::default(),
                shared: None,
            }),
        }
    }

    /// Takes one cell from `key`'s budget at `rate`, if there is one. Never fails: when Redis
    /// does not answer in time, this process's own budget decides.
    ///
    /// A key names one budget; use one rate per key (the shared path keeps one state per key
    /// whatever the rate, the local path one per key and rate).
    pub async fn check(&self, key: &str, rate: Rate) -> Decision {
        if let Some(shared) = &self.inner.shared
            && let Some(decision) = shared.check(key, rate).await
        {
            return decision;
        }
        self.inner.local.check(key, rate)
    }

    /// Evicts in-process keys whose budgets are full again (indistinguishable from new ones)
    /// and returns their memory; run on a timer. Redis expires its keys by itself.
    pub fn prune(&self) {
        self.inner.local.prune();
    }

    /// Mode, Redis failures and outages so far, and how many keys are held in-process.
    pub fn stats(&self) -> Stats {
        let local_keys = self.inner.local.keys();
        match &self.inner.shared {
            None => Stats {
                mode: Mode::Local,
                redis_failures: 0,
                outages: 0,
                local_keys,
            },
            Some(shared) => {
                let (up, redis_failures, outages) = shared.health();
                Stats {
                    mode: if up { Mode::Shared } else { Mode::Local },
                    redis_failures,
                    outages,
                    local_keys,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_count_in_whole_microseconds() {
        assert_eq!(
            Rate::per_second(20, 40).interval(),
            Duration::from_millis(50)
        );
        assert_eq!(Rate::per_second(20, 40).window(), Duration::from_secs(2));
        let hourly = Rate::per(20, Duration::from_secs(3600));
        assert_eq!(hourly.interval(), Duration::from_secs(180));
        assert_eq!(hourly.burst(), 20);
        assert_eq!(
            Rate::per_second(3, 1).interval(),
            Duration::from_micros(333_333)
        );
        // Degenerate values are clamped rather than dividing by zero.
        let odd = Rate {
            count: 0,
            per: Duration::ZERO,
            burst: 0,
        };
        assert_eq!((odd.interval(), odd.burst()), (Duration::from_micros(1), 1));
    }
}
