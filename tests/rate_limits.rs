//! The rate limiter against a real Redis (the suite's private one, or a test's own when the test
//! stops it): one budget across replicas, fail-soft through outages and stalls with recovery,
//! the numbers the `RateLimit` headers need, bounded memory, and the auth throttles on top.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use common::redis::{OwnRedis, config, shared_url};
use tessera::auth::throttle::Throttles;
use tessera::ids::TenantId;
use tessera::limits::rate::{Decision, Limiter, Mode, Rate};

/// Counts the bytes live on *this* thread, so a test can weigh what it allocates while other
/// tests run beside it.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}

// SAFETY: every call forwards to `System` unchanged; the counting only reads sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        track(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn unique(what: &str) -> String {
    format!("test:{what}:{}", uuid::Uuid::new_v4().simple())
}

/// Runs `checks` decisions on `key`, returning how many were allowed.
async fn admitted(limiter: &Limiter, key: &str, rate: Rate, checks: usize) -> usize {
    let mut n = 0;
    for _ in 0..checks {
        n += usize::from(limiter.check(key, rate).await.allowed);
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_limiters_on_one_redis_share_one_budget() {
    // Generous timeouts: a slow answer here would be decided locally and spoil the count.
    let cfg = config(
        &shared_url(),
        Duration::from_secs(2),
        Duration::from_secs(1),
    );
    let replicas = [Limiter::new(&cfg).unwrap(), Limiter::new(&cfg).unwrap()];
    let (key, rate) = (unique("share"), Rate::per_second(20, 10));
    let run_for = Duration::from_millis(1500);
    let start = Instant::now();
    let tasks: Vec<_> = replicas
        .iter()
        .cloned()
        .map(|limiter| {
            let key = key.clone();
            tokio::spawn(async move {
                let mut n = 0u32;
                while start.elapsed() < run_for {
                    n += u32::from(limiter.check(&key, rate).await.allowed);
                }
                n
            })
        })
        .collect();
    let mut each = Vec::new();
    for t in tasks {
        each.push(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let total: u32 = each.iter().sum();
    // One budget: the burst plus what the rate refilled while both hammered it, and no more.
    // Two budgets would have admitted about twice that.
    let expected = 10.0 + 20.0 * elapsed;
    assert!(
        f64::from(total) <= expected + 1.0 && f64::from(total) >= expected - 3.0,
        "admitted {each:?} = {total} in {elapsed:.3}s; one shared budget allows {expected:.1}"
    );
    assert!(
        each.iter().all(|&n| n > 0),
        "both replicas were served: {each:?}"
    );
    for limiter in &replicas {
        let stats = limiter.stats();
        assert_eq!((stats.mode, stats.redis_failures), (Mode::Shared, 0));
        assert_eq!(stats.local_keys, 0, "nothing was decided locally");
    }
}

/// The header numbers, the same from Redis and from the process: 1/s, burst 3.
async fn assert_header_numbers(limiter: &Limiter) {
    let (key, rate) = (unique("numbers"), Rate::per_second(1, 3));
    let second = Duration::from_secs(1);
    let slack = Duration::from_millis(200);
    for (remaining, full_in) in [(2, 1), (1, 2), (0, 3)] {
        let d = limiter.check(&key, rate).await;
        assert!(d.allowed && d.retry_after.is_none(), "{d:?}");
        assert_eq!((d.burst, d.remaining), (3, remaining), "{d:?}");
        let full = second * full_in;
        assert!(
            d.reset_after <= full && d.reset_after > full - slack,
            "{d:?}"
        );
    }
    let refused: Decision = limiter.check(&key, rate).await;
    assert!(!refused.allowed && refused.remaining == 0, "{refused:?}");
    let retry = refused.retry_after.expect("a refusal says when to retry");
    assert!(retry <= second && retry > second - slack, "{refused:?}");
    let rest = refused.reset_after - retry;
    assert!(
        rest.abs_diff(2 * second) < Duration::from_millis(2),
        "{refused:?}"
    );
}

#[tokio::test]
async fn shared_and_local_budgets_report_the_same_header_numbers() {
    let cfg = config(
        &shared_url(),
        Duration::from_secs(2),
        Duration::from_secs(1),
    );
    let shared = Limiter::new(&cfg).unwrap();
    assert_header_numbers(&shared).await;
    assert_eq!(shared.stats().mode, Mode::Shared);
    assert_eq!(shared.stats().local_keys, 0);
    let local = Limiter::local();
    assert_header_numbers(&local).await;
    assert_eq!(local.stats().mode, Mode::Local);
}

#[tokio::test]
async fn redis_outage_falls_back_to_local_budgets_and_recovers_by_itself() {
    let redis = OwnRedis::start();
    let retry = Duration::from_millis(300);
    let limiter = Limiter::new(&config(&redis.url(), Duration::from_secs(2), retry)).unwrap();
    let (key, rate) = (unique("outage"), Rate::per_second(1, 5));

    // Redis holds the budget: five at once, then refused.
    assert_eq!(admitted(&limiter, &key, rate, 8).await, 5);
    assert_eq!(limiter.stats().mode, Mode::Shared);

    redis.stop();
    // Every request is still answered, now from this process's own (full) budget.
    let started = Instant::now();
    let during = admitted(&limiter, &key, rate, 200).await;
    let took = started.elapsed();
    assert!((5..=6).contains(&during), "{during} admitted locally");
    let stats = limiter.stats();
    assert_eq!((stats.mode, stats.outages), (Mode::Local, 1), "{stats:?}");
    // One failure to notice, then one probe per retry interval at most — not one per request.
    let probes = (took.as_millis() / retry.as_millis()) as u64 + 1;
    assert!(
        (1..=1 + probes).contains(&stats.redis_failures),
        "{stats:?} over {took:?}"
    );
    assert_eq!(stats.local_keys, 1);

    // Back on the same port: the next probe finds it, and the shared budget decides again
    // (fresh, since the private Redis keeps nothing; the local one for this key is spent).
    redis.start_again();
    tokio::time::sleep(retry + Duration::from_millis(50)).await;
    let d = limiter.check(&key, rate).await;
    assert!(d.allowed && d.remaining == 4, "{d:?}");
    let stats = limiter.stats();
    assert_eq!((stats.mode, stats.outages), (Mode::Shared, 1), "{stats:?}");
}

#[tokio::test]
async fn a_stalled_redis_costs_one_timeout_per_retry_interval() {
    let redis = OwnRedis::start();
    let timeout = Duration::from_millis(300);
    let retry = Duration::from_secs(5);
    let limiter = Limiter::new(&config(&redis.url(), timeout, retry)).unwrap();
    let (key, rate) = (unique("stall"), Rate::per_second(100, 100));
    assert!(limiter.check(&key, rate).await.allowed);

    // Paused, it accepts nothing and answers nothing: every command would wait for its timeout.
    let pid = redis.pid().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let started = Instant::now();
    assert_eq!(admitted(&limiter, &key, rate, 50).await, 50);
    let took = started.elapsed();
    signal("-CONT");
    // The first request waited out the timeout; the other 49 went straight to the local budget.
    assert!(
        took >= timeout && took < timeout * 2,
        "50 decisions took {took:?} (timeout {timeout:?})"
    );
    let stats = limiter.stats();
    assert_eq!(
        (stats.mode, stats.redis_failures, stats.outages),
        (Mode::Local, 1, 1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn idle_keys_are_evicted_and_memory_stays_bounded() {
    const KEYS: usize = 10_000;
    let limiter = Limiter::local();
    // A 1 ms interval: a key used once is idle (its budget full again) a millisecond later.
    let brief = Rate::per_second(1000, 1);
    let busy = Rate::per(1, Duration::from_secs(3600));
    limiter.check("busy", busy).await;
    limiter.check("warm-up", brief).await;

    let before = live_bytes();
    for _ in 0..KEYS {
        let key = format!("tenant:{}", uuid::Uuid::new_v4());
        assert!(limiter.check(&key, brief).await.allowed);
    }
    let grown = live_bytes() - before;
    let per_key = grown / KEYS as isize;
    println!("{KEYS} keys held {grown} bytes: {per_key} bytes per key");
    assert!(limiter.stats().local_keys >= KEYS);
    assert!(
        (32..=256).contains(&per_key),
        "{per_key} bytes per key (src/limits/rate/local.rs states 97, measured here)"
    );

    std::thread::sleep(Duration::from_millis(20));
    limiter.prune();
    // Only the key whose budget is still in use stays, and the memory goes back.
    assert_eq!(limiter.stats().local_keys, 1);
    let left = live_bytes() - before;
    assert!(
        left < grown / 20,
        "{left} of {grown} bytes still held after prune"
    );
    // The key still in use kept its state (its one cell is gone for the hour).
    assert!(limiter.check("busy", busy).await.retry_after.is_some());
}

#[tokio::test]
async fn auth_throttles_hold_across_replicas_sharing_redis() {
    let cfg = config(
        &shared_url(),
        Duration::from_secs(2),
        Duration::from_secs(1),
    );
    let mut auth = common::base_config().auth;
    auth.signup_ip_per_hour = 3;
    auth.login_failures_per_account_ip_per_minute = 4;
    auth.login_failures_per_account_per_hour = 1000;
    let replicas = [
        Throttles::new(&auth, &Limiter::new(&cfg).unwrap()),
        Throttles::new(&auth, &Limiter::new(&cfg).unwrap()),
    ];

    // Per-IP throttles: one budget, exactly, however requests are spread.
    let ip = unique("ip");
    let mut signups = 0;
    for i in 0..10 {
        signups += usize::from(replicas[i % 2].signup_ip.check(&ip).await.is_ok());
    }
    assert_eq!(signups, 3);

    // Login failures: counted once across replicas. A replica learns of a block from its own
    // next failure, so two replicas let through at most one more than the limit (separate
    // budgets would let through 8).
    let (tenant, email) = (TenantId::new(), "owner@x.test");
    let mut failures = 0;
    for i in 0..12 {
        if let Ok(attempt) = replicas[i % 2].login.begin(tenant, email, &ip).await {
            attempt.failed().await;
            failures += 1;
        }
    }
    assert!(
        (4..=5).contains(&failures),
        "{failures} failures let through"
    );
    for r in &replicas {
        assert!(r.login.begin(tenant, email, &ip).await.is_err());
    }
}
