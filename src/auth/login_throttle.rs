//! Login throttling that slows password guessing without letting anyone lock an owner out.
//!
//! Only failures count, and they count twice: per (account, client IP), so one address cannot
//! guess fast, and per account, so many addresses together cannot either. The account-wide limit
//! is not applied to an IP that logged into the account recently (a "known IP"): an attacker can
//! slow an account down for newcomers, never lock its owner out of the places they use.
//!
//! Every check happens before the password is verified, so a throttled attempt learns nothing
//! about it. governor has no "peek": a cell is consumed only when an attempt fails, and a key
//! whose last cell went is remembered as blocked until its next one is due; the pre-check reads
//! that. Attempts on one account take turns (a striped lock), so a burst of parallel guesses
//! cannot all pass the pre-check before the first failure is recorded.
//!
//! All of this is per process: N replicas allow N times the limits.

use std::hash::{BuildHasher, Hash, RandomState};
use std::time::{Duration, Instant};

use governor::RateLimiter;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use tokio::sync::{Mutex, MutexGuard};

use super::throttle::{quota, retry_after_secs};
use crate::config::AuthConfig;
use crate::error::AppError;
use crate::ids::TenantId;

/// Blocked keys and known IPs remembered at most; both expire on their own well before that
/// matters, the bound only caps memory under a flood of distinct keys.
const MAX_REMEMBERED: u64 = 100_000;
/// Turns are taken per stripe of accounts; unrelated accounts rarely share one.
const STRIPES: usize = 256;

/// `{tenant}:{normalized email}`: one account, whether or not it exists.
type Account = String;
/// (account, client IP).
type AccountIp = (Account, String);

type FailureLimiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// A keyed GCRA limit that counts only failures and can say "blocked?" without consuming.
struct FailureLimit<K: Hash + Eq + Clone + Send + Sync + 'static> {
    limiter: FailureLimiter<K>,
    /// Keys out of failures, and when their next one is due.
    blocked: moka::sync::Cache<K, Instant>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> FailureLimit<K> {
    fn new(count: u32, per: Duration) -> Self {
        let quota = quota(count, per);
        Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            // A block never outlasts one replenish interval (see `record`).
            blocked: moka::sync::Cache::builder()
                .max_capacity(MAX_REMEMBERED)
                .time_to_live(quota.replenish_interval())
                .build(),
        }
    }

    /// How long `key` must still wait, if it is out of failures.
    fn wait(&self, key: &K) -> Option<Duration> {
        let until = self.blocked.get(key)?;
        until
            .checked_duration_since(Instant::now())
            .filter(|w| !w.is_zero())
    }

    /// Counts one failure; when it took the last cell, blocks `key` until the next is due.
    fn record(&self, key: &K) {
        let wait = match self.limiter.check_key(key) {
            Ok(state) if state.remaining_burst_capacity() > 0 => return,
            // The next cell is due within one replenish interval (exactly that after a burst);
            // waiting the whole interval errs on the safe side.
            Ok(state) => state.quota().replenish_interval(),
            // Already out: failures from known IPs still count against the account.
            Err(not_until) => not_until.wait_time_from(self.limiter.clock().now()),
        };
        self.blocked.insert(key.clone(), Instant::now() + wait);
    }

    fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.blocked.run_pending_tasks();
    }
}

/// Failure throttles for `POST /v1/auth/login` (the per-IP attempt throttle is in `Throttles`).
pub struct LoginThrottle {
    account_ip: FailureLimit<AccountIp>,
    account: FailureLimit<Account>,
    /// (account, IP) pairs that logged in successfully within `auth.login_known_ip_days`.
    known_ips: moka::sync::Cache<AccountIp, ()>,
    /// One lock per stripe of accounts: an account's attempts are checked and settled in turn.
    turns: Box<[Mutex<()>]>,
    /// Random per process, so nobody can aim many accounts at one stripe.
    hasher: RandomState,
}

impl LoginThrottle {
    /// Builds the limits from `[auth]`.
    pub fn new(cfg: &AuthConfig) -> Self {
        Self::with_limits(
            cfg.login_failures_per_account_ip_per_minute,
            cfg.login_failures_per_account_per_hour,
            Duration::from_secs(u64::from(cfg.login_known_ip_days) * 86_400),
        )
    }

    fn with_limits(per_account_ip_minute: u32, per_account_hour: u32, known_ttl: Duration) -> Self {
        Self {
            account_ip: FailureLimit::new(per_account_ip_minute, Duration::from_secs(60)),
            account: FailureLimit::new(per_account_hour, Duration::from_secs(3600)),
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
        let account_ip = (account, ip.to_string());
        let mut wait = self.account_ip.wait(&account_ip);
        if !self.known_ips.contains_key(&account_ip) {
            wait = wait.max(self.account.wait(&account_ip.0));
        }
        match wait {
            Some(w) => Err(AppError::RateLimited(retry_after_secs(w))),
            None => Ok(LoginAttempt {
                throttle: self,
                account_ip,
                _turn: turn,
            }),
        }
    }

    /// Drops state of idle keys so memory does not grow with every account ever tried.
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
    account_ip: AccountIp,
    _turn: MutexGuard<'a, ()>,
}

impl LoginAttempt<'_> {
    /// Wrong password or unknown account: one failure for the (account, IP) and the account.
    pub fn failed(self) {
        self.throttle.account_ip.record(&self.account_ip);
        self.throttle.account.record(&self.account_ip.0);
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
        LoginThrottle::with_limits(per_ip, per_account, Duration::from_secs(3600))
    }

    async fn fail(t: &LoginThrottle, tenant: TenantId, email: &str, ip: &str) {
        t.begin(tenant, email, ip).await.unwrap().failed();
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
