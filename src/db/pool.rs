//! The connection pool. Built once at start and handed straight to the tenant door, which is its
//! only owner: nothing else in the process holds a pool.

use std::time::Duration;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};

use crate::config::DatabaseConfig;

/// The pool type used throughout.
pub type PgPool = Pool<AsyncPgConnection>;

/// Builds a lazy pool for `url`: connections open on first use, checkouts wait at most
/// `acquire_timeout_ms` (then the caller answers 503 instead of hanging).
pub fn build(url: &str, cfg: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let mut manager_config = ManagerConfig::default();
    // `Verified` would add a `SELECT 1` round trip to every checkout. Broken connections are
    // already discarded: diesel-async flags a connection whose transaction was interrupted, and
    // a dead socket fails its next statement, which the request maps to 503.
    manager_config.recycling_method = RecyclingMethod::Fast;
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, manager_config);
    let wait = Duration::from_millis(cfg.acquire_timeout_ms);
    Ok(Pool::builder(manager)
        .max_size(cfg.pool_size)
        .wait_timeout(Some(wait))
        .create_timeout(Some(wait))
        .recycle_timeout(Some(wait))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?)
}
