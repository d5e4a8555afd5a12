//! Login throttling that slows password guessing without letting anyone lock an owner out.
//!
//! Only failures count, and they count twice: per (account, client IP), so one address cannot
//! guess fast, and per account, so many addresses together cannot either. The account-wide limit
//! is not applied to an IP that logged into the account recently (a "known IP"): an attacker can
//! slow an account down for newcomers, never lock its owner out of the places they use.
//!
//! Every check happens before the password is verified, so a throttled attempt learns nothing
//! about it. A rate limiter has no "peek": a cell is consumed only when an attempt fails, and a
//! key whose last cell went is remembered as blocked until its next one is due; the pre-check
//! reads that. Attempts on one account take turns (a striped lock), so a burst of parallel
//! guesses cannot all pass the pre-check before the first failure is recorded.
//!
//! Failures are counted in the application's [`Limiter`], so with Redis every replica counts
//! against one budget. What is remembered beside it stays per process: a replica learns that a
//! key is blocked from its own next failure there (the shared budget refuses it), so N replicas
//! let through at most N − 1 extra failures per blocked interval, not N times the limit; and an
//! IP is known only to the replicas it logged in through (elsewhere the stricter rule applies).

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};

use super::throttle::retry_after_secs;
use crate::config::AuthConfig;
use crate::error::AppError;
use crate::ids::TenantId;
use crate::limits::rate::{Limiter, Rate};

/// Blocked keys and known IPs remembered at most; both expire on their own well before that
/// matters, the bound only caps memory under a flood of distinct keys.
const MAX_REMEMBERED: u64 = 100_000;
/// Turns are taken per stripe of accounts; unrelated accounts rarely share one.
const STRIPES: usize = 256;

/// A keyed GCRA limit that counts only failures and can say "blocked?" without consuming.
struct FailureLimit {
    limiter: Limiter,
    /// Keys live in the limiter as `auth:<name>:<key>`.
    name: &'static str,
    rate: Rate,
    /// Keys out of failures, and when their next one is due.
    blocked: moka::sync::Cache<String, Instant>,
}

impl FailureLimit {
    fn new(limiter: &Limiter, name: &'static str, count: u32, per: Duration) -> Self {
        let rate = Rate::per(count, per);
        Self {
            limiter: limiter.clone(),
            name,
            rate,
            // A block never outlasts one interval (see `record`).
            blocked: moka::sync::Cache::builder()
                .max_capacity(MAX_REMEMBERED)
                .time_to_live(rate.interval())
                .build(),
        }
    }

    /// How long `key` must still wait, if it is out of failures.
    fn wait(&self, key: &str) -> Option<Duration> {
        let until = self.blocked.get(key)?;
        until
            .checked_duration_since(Instant::now())
            .filter(|w| !w.is_zero())
    }

    /// Counts one failure; when it took the last cell, blocks `key` until the next is due.
    async fn record(&self, key: &str) {
        let decision = self
            .limiter
            .check(&format!("auth:{}:{key}", self.name), self.rate)
            .await;
        let wait = match decision.retry_after {
            None if decision.remaining > 0 => return,
            // The next cell is due within one interval (exactly that after a burst); waiting
            // the whole interval errs on the safe side.
            None => self.rate.interval(),
            // Already out: failures from known IPs, or through other replicas, still count.
            Some(wait) => wait,
        };
        self.blocked.insert(key.to_owned(), Instant::now() + wait);
    }

    fn prune(&self) {
        self.blocked.run_pending_tasks();
    }
}

/// Failure throttles for `POST /v1/auth/login` (the per-IP attempt throttle is in `Throttles`).
pub struct LoginThrottle {
    account_ip: FailureLimit,
    account: FailureLimit,
    /// (account, IP) pairs that logged in successfully within `auth.login_known_ip_days`.
    known_ips: moka::sync::Cache<String, ()>,
    /// One lock per stripe of accounts: an account's attempts are checked and settled in turn.
    turns: Box<[Mutex<()>]>,
    /// Random per process, so nobody can aim many accounts at one stripe.
    hasher: RandomState,
}

impl LoginThrottle {
    /// Builds the limits from `[auth]`, counting failures in `limiter`.
    pub fn new(cfg: &AuthConfig, limiter: &Limiter) -> Self {
        Self::with_limits(
            limiter,
            cfg.login_failures_per_account_ip_per_minute,
            cfg.login_failures_per_account_per_hour,
            Duration::from_secs(u64::from(cfg.login_known_ip_days) * 86_400),
        )
    }

    fn with_limits(
        limiter: &Limiter,
        per_account_ip_minute: u32,
        per_account_hour: u32,
        known_ttl: Duration,
    ) -> Self {
        Self {
            account_ip: FailureLimit::new(
                limiter,
                "login_failures_account_ip",
                per_account_ip_minute,
                Duration::from_secs(60),
            ),
            account: FailureLimit::new(
                limiter,
                "login_failures_account",
                per_account_hour,
                Duration::from_secs(3600),
            ),
            known_ips: moka::sync::Cache::builder()
                .max_capacity(MAX_REMEMBERED)
                .time_to_live(known_ttl)
                .build(),
            turns: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Waits for the account's turn, then refuses with 429 `rate_limited` if the attempt is
    /// throttled. `email` must already be normalized, so its case cannot dodge the key.
    pub async fn begin(
        &self,
        tenant: TenantId,
        email: &str,
        ip: &str,
    ) -> Result<LoginAttempt<'_>, AppError> {
        let account = format!("{tenant}:{email}");
        let stripe = self.hasher.hash_one(&account) as usize % self.turns.len();
        let turn = self.turns[stripe].lock().await;
        // An IP never contains `|`, so splitting at the last one gives the pair back: no two
        // pairs share a key.
        let account_ip = format!("{account}|{ip}");
        let mut wait = self.account_ip.wait(&account_ip);
        if !self.known_ips.contains_key(&account_ip) {
            wait = wait.max(self.account.wait(&account));
        }
        match wait {
            Some(w) => Err(AppError::RateLimited(retry_after_secs(w))),
            None => Ok(LoginAttempt {
                throttle: self,
                account,
                account_ip,
                _turn: turn,
            }),
        }
    }

    /// Drops expired blocks and known IPs (the limiter's keys are pruned with the limiter).
    pub fn prune(&self) {
        self.account_ip.prune();
        self.account.prune();
        self.known_ips.run_pending_tasks();
    }
}

/// A login attempt that passed the throttle. It holds the account's turn until it is settled;
/// dropped unsettled (a database error, say), it counts nothing.
pub struct LoginAttempt<'a> {
    throttle: &'a LoginThrottle,
    account: String,
    account_ip: String,
    _turn: MutexGuard<'a, ()>,
}

impl LoginAttempt<'_> {
    /// Wrong password or unknown account: one failure for the (account, IP) and the account.
    pub async fn failed(self) {
        let t = self.throttle;
        tokio::join!(
            t.account_ip.record(&self.account_ip),
            t.account.record(&self.account)
        );
    }

    /// Right password: nothing is counted, and the IP is now known for this account.
    pub fn succeeded(self) {
        self.throttle.known_ips.insert(self.account_ip, ());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_ip: u32, per_account: u32) -> LoginThrottle {
        LoginThrottle::with_limits(
            &Limiter::local(),
            per_ip,
            per_account,
            Duration::from_secs(3600),
        )
    }

    async fn fail(t: &LoginThrottle, tenant: TenantId, email: &str, ip: &str) {
        t.begin(tenant, email, ip).await.unwrap().failed().await;
    }

    #[tokio::test]
    async fn failures_block_successes_do_not() {
        let t = throttle(2, 100);
        let tenant = TenantId::new();
        for _ in 0..5 {
            t.begin(tenant, "a@x.test", "1.1.1.1")
                .await
                .unwrap()
                .succeeded();
        }
        fail(&t, tenant, "a@x.test", "1.1.1.1").await;
        fail(&t, tenant, "a@x.test", "1.1.1.1").await;
        let refused = t.begin(tenant, "a@x.test", "1.1.1.1").await;
        assert!(matches!(refused, Err(AppError::RateLimited(s)) if (1..=30).contains(&s)));
        // Another IP, another account: unaffected.
        assert!(t.begin(tenant, "a@x.test", "2.2.2.2").await.is_ok());
        assert!(t.begin(tenant, "b@x.test", "1.1.1.1").await.is_ok());
    }

    #[tokio::test]
    async fn one_email_in_two_tenants_is_two_accounts() {
        let t = throttle(2, 2);
        let (a, b) = (TenantId::new(), TenantId::new());
        fail(&t, a, "same@x.test", "1.1.1.1").await;
        fail(&t, a, "same@x.test", "1.1.1.1").await;
        assert!(t.begin(a, "same@x.test", "1.1.1.1").await.is_err());
        assert!(t.begin(a, "same@x.test", "2.2.2.2").await.is_err());
        // Tenant A's failures never throttle tenant B's account of the same address.
        assert!(t.begin(b, "same@x.test", "1.1.1.1").await.is_ok());
    }

    #[tokio::test]
    async fn account_cap_spares_known_ips() {
        let t = throttle(100, 3);
        let tenant = TenantId::new();
        t.begin(tenant, "a@x.test", "9.9.9.9")
            .await
            .unwrap()
            .succeeded();
        for ip in ["1.1.1.1", "2.2.2.2", "3.3.3.3"] {
            fail(&t, tenant, "a@x.test", ip).await;
        }
        assert!(t.begin(tenant, "a@x.test", "4.4.4.4").await.is_err());
        assert!(t.begin(tenant, "a@x.test", "9.9.9.9").await.is_ok());
    }
}
