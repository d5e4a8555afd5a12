//! In-process budgets: one `governor` keyed limiter per distinct [`Rate`] (plans and throttles
//! use only a handful), keys evicted once their budget is full again.
//!
//! Memory: measured by `tests/rate_limits.rs` (`idle_keys_are_evicted_and_memory_stays_bounded`)
//! with a counting allocator, 10,000 keys like `tenant:<uuid>` (43 bytes) hold 97 bytes each:
//! the key's own heap copy, governor's 8-byte state beside the 24-byte `String` in the map slot,
//! and the slots the map keeps spare; `prune` gives all of it back once they are idle. So 10,000
//! tenants cost about 1 MB, 100,000 about 10 MB.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, PoisonError, RwLock};

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::{Decision, Rate};

/// A keyed limiter that reports the remaining burst on every decision.
type Keyed = DefaultKeyedRateLimiter<String, StateInformationMiddleware>;

/// The in-process budgets, by rate.
#[derive(Default)]
pub(super) struct Local {
    by_rate: RwLock<HashMap<Rate, Arc<Keyed>>>,
}

impl Local {
    /// One cell from `key` at `rate`; the same numbers as `gcra.lua`.
    pub(super) fn check(&self, key: &str, rate: Rate) -> Decision {
        let limiter = self.limiter(rate);
        let (interval, burst) = (rate.interval(), rate.burst());
        match limiter.check_key(&key.to_owned()) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    burst,
                    remaining,
                    // governor does not expose the arrival time itself; the cells in use
                    // bound it from above by less than one interval.
                    reset_after: interval * (burst - remaining.min(burst)),
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let retry = not_until.wait_time_from(limiter.clock().now());
                Decision {
                    allowed: false,
                    burst,
                    remaining: 0,
                    // Refused at the arrival time minus (burst − 1) intervals, exactly.
                    reset_after: retry + interval * (burst - 1),
                    retry_after: Some(retry),
                }
            }
        }
    }

    /// Drops keys whose budget is full again, then the map capacity they held.
    pub(super) fn prune(&self) {
        for limiter in self.snapshot() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Keys held across all rates.
    pub(super) fn keys(&self) -> usize {
        self.snapshot().iter().map(|l| l.len()).sum()
    }

    fn snapshot(&self) -> Vec<Arc<Keyed>> {
        let map = self.by_rate.read().unwrap_or_else(PoisonError::into_inner);
        map.values().cloned().collect()
    }

    fn limiter(&self, rate: Rate) -> Arc<Keyed> {
        if let Some(l) = self
            .by_rate
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&rate)
        {
            return l.clone();
        }
        let mut map = self.by_rate.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(rate)
            .or_insert_with(|| {
                let burst = NonZeroU32::new(rate.burst()).expect("burst() is at least 1");
                let quota = Quota::with_period(rate.interval())
                    .expect("interval() is at least 1 µs")
                    .allow_burst(burst);
                Arc::new(RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>())
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn counts_down_then_refuses_with_the_wait() {
        let local = Local::default();
        let rate = Rate::per_second(1, 3);
        let second = Duration::from_secs(1);
        for (remaining, full_in) in [(2, 1), (1, 2), (0, 3)] {
            let d = local.check("k", rate);
            assert!(d.allowed);
            assert_eq!((d.burst, d.remaining), (3, remaining));
            assert_eq!(d.reset_after, second * full_in);
        }
        let refused = local.check("k", rate);
        assert!(!refused.allowed);
        let retry = refused.retry_after.expect("a refusal says when");
        assert!(
            retry > Duration::from_millis(900) && retry <= second,
            "{retry:?}"
        );
        assert_eq!(refused.reset_after, retry + 2 * second);
        // Another key, another rate: their own budgets.
        assert!(local.check("other", rate).allowed);
        assert!(local.check("k", Rate::per_second(1, 5)).allowed);
        assert_eq!(local.keys(), 3);
    }
}
