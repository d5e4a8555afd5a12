//! The connection pool. Built once at start and handed straight to the tenant door, which is its
//! only owner: nothing else in the process holds a pool.

use std::time::Duration;

use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;

use crate::config::DatabaseConfig;

/// The pool type used throughout.
pub type PgPool = Pool<AsyncPgConnection>;

/// Builds a lazy pool for `url`: connections open on first use, checkouts wait at most
/// `acquire_timeout_ms` (then the caller answers 503 instead of hanging), and every connection
/// starts with `statement_timeout` set to `statement_timeout_ms`.
///
/// Why per connection and not `SET LOCAL` in every transaction: the extra `SET` in each
/// transaction's first round trip measured 3–13% of PostgreSQL's by-id throughput
/// (`bench/pgbench-extra.sh`, bench/README.md). The value is the same for
/// every tenant and every transaction, so it is set once, when the connection is made; a
/// transaction that needs another value (per plan, later) sets it with `SET LOCAL`, which ends
/// with the transaction. A connection never outlives the pool that set it up.
pub fn build(url: &str, cfg: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let mut manager_config = ManagerConfig::default();
    let setup = format!("SET statement_timeout = {}", cfg.statement_timeout_ms);
    manager_config.custom_setup = Box::new(move |url| {
        let setup = setup.clone();
        let url = url.to_string();
        async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            conn.batch_execute(&setup)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
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
