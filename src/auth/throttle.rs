//! Throttles for the unauthenticated endpoints (signup per IP, login per IP, refresh per IP;
//! login failures per account in `login_throttle`), on the shared rate limiter: with
//! `redis.url` set they hold across replicas. Per-tenant API rate limits are a separate stage.

use std::sync::Arc;
use std::time::Duration;

use super::login_throttle::LoginThrottle;
use crate::config::AuthConfig;
use crate::error::AppError;
use crate::limits::rate::{Limiter, Rate};

/// `Retry-After` seconds for a wait: rounded up, so a client that obeys it is let through.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// One keyed limit: its keys live in the limiter as `auth:<name>:<key>`, so two throttles never
/// share a budget even when their rates and keys coincide.
#[derive(Clone)]
pub struct Throttle {
    limiter: Limiter,
    name: &'static str,
    rate: Rate,
}

impl Throttle {
    fn new(limiter: &Limiter, name: &'static str, count: u32, per: Duration) -> Self {
        Self {
            limiter: limiter.clone(),
            name,
            rate: Rate::per(count, per),
        }
    }

    /// Counts one attempt for `key`; 429 with `Retry-After` when over the limit.
    pub async fn check(&self, key: &str) -> Result<(), AppError> {
        let decision = self
            .limiter
            .check(&format!("auth:{}:{key}", self.name), self.rate)
            .await;
        match decision.retry_after {
            None => Ok(()),
            Some(wait) => Err(AppError::RateLimited(retry_after_secs(wait))),
        }
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
    /// Builds the throttles from `[auth]`, counting in `limiter` (the application's one).
    pub fn new(cfg: &AuthConfig, limiter: &Limiter) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            signup_ip: Throttle::new(
                limiter,
                "signup_ip",
                cfg.signup_ip_per_hour,
                Duration::from_secs(3600),
            ),
            login: Arc::new(LoginThrottle::new(cfg, limiter)),
            login_ip: Throttle::new(limiter, "login_ip", cfg.login_ip_per_minute, minute),
            refresh_ip: Throttle::new(limiter, "refresh_ip", cfg.refresh_ip_per_minute, minute),
        }
    }

    /// Drops what the login throttle remembers beside the limiter (blocked keys, known IPs)
    /// once it has expired; the limiter's own keys are pruned with the limiter.
    pub fn prune(&self) {
        self.login.prune();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_per_key_and_per_throttle() {
        let limiter = Limiter::local();
        let minute = Duration::from_secs(60);
        let t = Throttle::new(&limiter, "one", 2, minute);
        assert!(t.check("a").await.is_ok());
        assert!(t.check("a").await.is_ok());
        assert!(
            matches!(t.check("a").await, Err(AppError::RateLimited(s)) if (1..=30).contains(&s))
        );
        assert!(t.check("b").await.is_ok());
        // Same rate, same key, another throttle: its own budget.
        let other = Throttle::new(&limiter, "two", 2, minute);
        assert!(other.check("a").await.is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(11_200)), 12);
        assert_eq!(retry_after_secs(Duration::from_secs(12)), 12);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
