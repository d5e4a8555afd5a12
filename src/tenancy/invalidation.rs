//! Tenant and access changes reach every replica at once: PostgreSQL `LISTEN/NOTIFY`.
//!
//! Whoever changes a tenant's plan, status, overrides or name calls [`notify`] inside the same
//! transaction, and whoever changes what a user may do (revokes a session; later roles and user
//! status) calls [`notify_access`]: the notification goes out exactly when (and only if) the
//! change commits. Every server process runs one [`spawn_listener`] task on a connection of its
//! own, which clears the tenant directory on a tenant notification and forgets the user's cached
//! grants on an access one: the very next request, in any replica, reads them again. That is
//! what lets both caches keep entries for minutes (`tenancy.cache_secs`,
//! `auth.principal_cache_secs`): with 10,000 tenants, entries that expired every few seconds
//! turned most requests into two or three transactions.
//!
//! A notification sent while a listener is disconnected is lost, so the listener clears both
//! caches whenever its connection is (re)established and LISTEN is active: a missed message can
//! never leave a stale entry behind. While it is disconnected ([`Listening`] false), the caches
//! trust no entry older than [`UNHEARD_MAX_AGE`]. A heartbeat every [`HEARTBEAT`] notices a
//! connection that died without closing.
//!
//! Clearing the whole directory rather than one tenant costs each cached tenant one lookup per
//! change; operator changes are rare, and the directory's epoch makes the clear also cover
//! lookups that were in flight when the change committed. Access changes (every logout) are not
//! rare, so they forget one user only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use std::time::Instant;

use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

use super::directory::Directory;
use crate::access::grants::GrantsCache;
use crate::error::AppResult;
use crate::ids::{TenantId, UserId};

/// The channel tenant changes are announced on; the payload is the tenant id.
pub const CHANNEL: &str = "tessera_tenants";

/// The channel access changes are announced on; the payload is `<tenant id>:<user id>`.
pub const ACCESS_CHANNEL: &str = "tessera_access";

/// How old a cached tenant or grants entry may be while no listener is connected (at start, or
/// the database unreachable): changes made meanwhile reach this process only through expiry.
pub const UNHEARD_MAX_AGE: Duration = Duration::from_secs(5);

/// Whether this process's listener is connected and LISTENing, shared with the caches it keeps
/// current. False until the listener first connects (and in processes that never start one).
#[derive(Clone, Default)]
pub struct Listening(Arc<AtomicBool>);

impl Listening {
    /// Whether an entry loaded at `loaded` may be served: always while listening (a change would
    /// have been announced), otherwise only within [`UNHEARD_MAX_AGE`].
    pub fn trusts(&self, loaded: Instant) -> bool {
        AtomicBool::load(&self.0, Ordering::SeqCst) || loaded.elapsed() < UNHEARD_MAX_AGE
    }

    fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }
}

/// What the listener keeps current.
#[derive(Clone)]
pub struct Caches {
    /// Tenants by slug and id.
    pub directory: Directory,
    /// Users' grants.
    pub grants: GrantsCache,
    /// Shared with both.
    pub listening: Listening,
}

impl Caches {
    fn clear(&self) {
        self.directory.clear();
        self.grants.clear();
    }
}

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

/// Announces a change to what `user` of `tenant` may do when the current transaction commits.
pub async fn notify_access(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    user: UserId,
) -> AppResult<()> {
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(ACCESS_CHANNEL)
        .bind::<Text, _>(format!("{tenant}:{user}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Starts the listener of this process (on the current tokio runtime): connects to `url`,
/// LISTENs on both channels, and keeps `caches` current on every notification and clears them
/// on every (re)connection, reconnecting with backoff for as long as the runtime lives.
pub fn spawn_listener(url: String, caches: Caches) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut established = false;
            let e = listen(&url, &caches, &mut established).await;
            caches.listening.set(false);
            tracing::warn!(error = %e, "tenant change listener disconnected; reconnecting");
            if established {
                backoff = Duration::from_millis(100);
            }
            // Whatever happened while nobody listened is unknown: forget it all.
            caches.clear();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}

/// One connection's life: LISTEN, clear, then clear again on each notification until the
/// connection fails; returns why. `established` says whether LISTEN ever worked (backoff
/// restarts then).
async fn listen(url: &str, caches: &Caches, established: &mut bool) -> anyhow::Error {
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
                    if tx
                        .send((n.channel().to_string(), n.payload().to_string()))
                        .is_err()
                    {
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
        client
            .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {ACCESS_CHANNEL}"))
            .await?;
        *established = true;
        // Listening from here on: anything that changed before is covered by this clear.
        caches.clear();
        caches.listening.set(true);
        tracing::info!(channel = CHANNEL, "listening for tenant and access changes");
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                payload = notifications.recv() => match payload {
                    Some((channel, payload)) if channel == ACCESS_CHANNEL => {
                        match parse_access(&payload) {
                            Some((tenant, user)) => caches.grants.forget_user(tenant, user),
                            None => {
                                // Not ours to interpret: forgetting everyone is the safe answer.
                                tracing::warn!(%payload, "unreadable access change; clearing grants");
                                caches.grants.clear();
                            }
                        }
                    }
                    Some((_, payload)) => {
                        tracing::debug!(tenant.id = %payload, "tenant changed elsewhere");
                        caches.directory.clear();
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
    caches.listening.set(false);
    match result {
        Ok(()) => anyhow::anyhow!("listener stopped"),
        Err(e) => e,
    }
}

/// `<tenant id>:<user id>` → the two ids.
fn parse_access(payload: &str) -> Option<(TenantId, UserId)> {
    let (tenant, user) = payload.split_once(':')?;
    Some((TenantId(tenant.parse().ok()?), UserId(user.parse().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_payloads_round_trip_and_garbage_is_refused() {
        let (t, u) = (TenantId::new(), UserId::new());
        assert_eq!(parse_access(&format!("{t}:{u}")), Some((t, u)));
        assert_eq!(parse_access("nonsense"), None);
        assert_eq!(parse_access(&format!("{t}:")), None);
    }

    #[test]
    fn unheard_entries_are_trusted_only_briefly() {
        let listening = Listening::default();
        let old = Instant::now() - UNHEARD_MAX_AGE - Duration::from_millis(1);
        assert!(listening.trusts(Instant::now()));
        assert!(!listening.trusts(old));
        listening.set(true);
        assert!(listening.trusts(old));
    }
}
