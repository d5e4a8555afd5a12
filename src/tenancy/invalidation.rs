//! Tenant changes reach every replica at once: PostgreSQL `LISTEN/NOTIFY`.
//!
//! Whoever changes a tenant's plan, status, overrides or name calls [`notify`] inside the same
//! transaction, so the notification goes out exactly when (and only if) the change commits. Every
//! server process runs one [`spawn_listener`] task on a connection of its own, which clears the
//! tenant directory on each notification: the very next request, in any replica, reads the
//! tenant again.
//!
//! A notification sent while a listener is disconnected is lost, so the listener clears the
//! directory whenever its connection is (re)established and LISTEN is active: a missed message
//! can never leave a stale entry behind. While it is disconnected (the database unreachable),
//! entries fall back to expiring after `tenancy.cache_secs`. A heartbeat every
//! [`HEARTBEAT`] notices a connection that died without closing.
//!
//! Clearing the whole directory rather than one tenant costs each cached tenant one lookup per
//! change; operator changes are rare, and the directory's epoch makes the clear also cover
//! lookups that were in flight when the change committed.

use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

use super::directory::Directory;
use crate::error::AppResult;
use crate::ids::TenantId;

/// The channel tenant changes are announced on; the payload is the tenant id.
pub const CHANNEL: &str = "tessera_tenants";

/// How often an idle listener checks that its connection still answers.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Announces a change to tenant `id` when the current transaction commits.
pub async fn notify(conn: &mut AsyncPgConnection, id: TenantId) -> AppResult<()> {
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(CHANNEL)
        .bind::<Text, _>(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Starts the listener of this process (on the current tokio runtime): connects to `url`,
/// LISTENs, and clears `directory` on every notification and every (re)connection, reconnecting
/// with backoff for as long as the runtime lives.
pub fn spawn_listener(url: String, directory: Directory) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut established = false;
            let e = listen(&url, &directory, &mut established).await;
            tracing::warn!(error = %e, "tenant change listener disconnected; reconnecting");
            if established {
                backoff = Duration::from_millis(100);
            }
            // Whatever happened while nobody listened is unknown: forget it all.
            directory.clear();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}

/// One connection's life: LISTEN, clear, then clear again on each notification until the
/// connection fails; returns why. `established` says whether LISTEN ever worked (backoff
/// restarts then).
async fn listen(url: &str, directory: &Directory, established: &mut bool) -> anyhow::Error {
    let (client, mut connection) = match tokio_postgres::connect(url, NoTls).await {
        Ok(c) => c,
        Err(e) => return e.into(),
    };
    let (tx, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    // The connection object yields notifications only while it is polled; drive it on its own.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "tenant change listener connection failed");
                    break;
                }
            }
        }
    });
    let result: anyhow::Result<()> = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        *established = true;
        // Listening from here on: anything that changed before is covered by this clear.
        directory.clear();
        tracing::info!(channel = CHANNEL, "listening for tenant changes");
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                payload = notifications.recv() => match payload {
                    Some(payload) => {
                        tracing::debug!(tenant.id = %payload, "tenant changed elsewhere");
                        directory.clear();
                    }
                    None => anyhow::bail!("listener connection closed"),
                },
                _ = heartbeat.tick() => {
                    tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1"))
                        .await
                        .map_err(|_| anyhow::anyhow!("listener heartbeat timed out"))??;
                }
            }
        }
    }
    .await;
    driver.abort();
    match result {
        Ok(()) => anyhow::anyhow!("listener stopped"),
        Err(e) => e,
    }
}
