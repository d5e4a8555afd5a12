//! Housekeeping that runs on a timer inside `serve`: today, purging expired idempotency keys and
//! refresh tokens ([`purge`]).
//!
//! Every replica runs the timer; there is no leader. That is harmless because the purge is
//! idempotent (a row two replicas both pick is deleted by one and skipped by the other); the
//! jitter on the first run only keeps them from doing the same work at the same moment.

pub mod purge;

use std::time::{Duration, Instant};

use actix_web::rt::task::JoinHandle;
use rand::Rng;

use crate::config::MaintenanceConfig;
use crate::tenancy::{Door, PlatformDoor};

pub use purge::{BATCH, Purged, TENANT_PAGE, purge_expired};

/// The first purge comes at a random moment within this (or the interval, if shorter).
const MAX_FIRST_DELAY: Duration = Duration::from_secs(300);

/// Spawns the purge timer on the current actix runtime: a first purge after a random delay, then
/// one every `maintenance.purge_interval_secs` after the previous one ends (so runs never
/// overlap in one process). `None` when the interval is 0 (off).
pub fn spawn_purge(
    door: Door,
    platform: PlatformDoor,
    cfg: &MaintenanceConfig,
) -> Option<JoinHandle<()>> {
    if cfg.purge_interval_secs == 0 {
        tracing::info!("purge of expired rows is off (maintenance.purge_interval_secs = 0)");
        return None;
    }
    let every = Duration::from_secs(cfg.purge_interval_secs);
    // Replicas usually start together (a deploy); spread their first, and so every later, run.
    let first = rand::thread_rng().gen_range(Duration::ZERO..=every.min(MAX_FIRST_DELAY));
    Some(actix_web::rt::spawn(async move {
        actix_web::rt::time::sleep(first).await;
        loop {
            purge_once(&door, &platform).await;
            actix_web::rt::time::sleep(every).await;
        }
    }))
}

/// One timed purge, logged; a failure waits for the next interval (the purge resumes where the
/// rows are, so nothing is lost).
async fn purge_once(door: &Door, platform: &PlatformDoor) {
    let started = Instant::now();
    match purge_expired(door, platform, BATCH).await {
        Ok(p) => tracing::info!(
            purge.tenants = p.tenants,
            purge.idempotency_keys = p.idempotency_keys,
            purge.refresh_tokens = p.refresh_tokens,
            purge.batches = p.batches,
            purge.elapsed_ms = started.elapsed().as_millis() as u64,
            "purged expired rows"
        ),
        Err(e) => tracing::warn!(
            error = format!("{e:#}"),
            "purge of expired rows failed; retrying at the next interval"
        ),
    }
}
