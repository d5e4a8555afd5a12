//! In-process throttles for the unauthenticated endpoints (signup per IP, login per IP, refresh
//! per IP; login failures per account in `login_throttle`), GCRA via `governor`. Per-tenant API
//! rate limits are a separate stage.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::login_throttle::LoginThrottle;
use crate::config::AuthConfig;
use crate::error::AppError;

/// `count` per `per`, all of it available at once.
pub(crate) fn quota(count: u32, per: Duration) -> Quota {
    let n = NonZeroU32::new(count.max(1)).expect("max(1) is non-zero");
    Quota::with_period(per / n.get())
        .expect("period is non-zero")
        .allow_burst(n)
}

/// `Retry-After` seconds for a wait: rounded up, so a client that obeys it is let through.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// One keyed limiter.
#[derive(Clone)]
pub struct Throttle {
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
}

impl Throttle {
    fn new(count: u32, per: Duration) -> Self {
        Self {
            limiter: Arc::new(RateLimiter::keyed(quota(count, per))),
        }
    }

    /// Counts one attempt for `key`; 429 with `Retry-After` when over the limit.
    pub fn check(&self, key: &str) -> Result<(), AppError> {
        self.limiter
            .check_key(&key.to_string())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                AppError::RateLimited(retry_after_secs(wait))
            })
    }

    fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// All auth throttles.
#[derive(Clone)]
pub struct Throttles {
    /// Signups per client IP.
    pub signup_ip: Throttle,
    /// Login failures per account and per (account, client IP).
    pub login: Arc<LoginThrottle>,
    /// Login attempts per client IP, successful or not: limits spraying from one address.
    pub login_ip: Throttle,
    /// Refreshes per client IP.
    pub refresh_ip: Throttle,
}

impl Throttles {
    /// Builds the throttles from `[auth]`.
    pub fn new(cfg: &AuthConfig) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            signup_ip: Throttle::new(cfg.signup_ip_per_hour, Duration::from_secs(3600)),
            login: Arc::new(LoginThrottle::new(cfg)),
            login_ip: Throttle::new(cfg.login_ip_per_minute, minute),
            refresh_ip: Throttle::new(cfg.refresh_ip_per_minute, minute),
        }
    }

    /// Drops state of idle keys so memory does not grow with every IP ever seen.
    pub fn prune(&self) {
        for t in [&self.signup_ip, &self.login_ip, &self.refresh_ip] {
            t.prune();
        }
        self.login.prune();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key() {
        let t = Throttle::new(2, Duration::from_secs(60));
        assert!(t.check("a").is_ok());
        assert!(t.check("a").is_ok());
        assert!(matches!(t.check("a"), Err(AppError::RateLimited(s)) if s >= 1));
        assert!(t.check("b").is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(11_200)), 12);
        assert_eq!(retry_after_secs(Duration::from_secs(12)), 12);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
