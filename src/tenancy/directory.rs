//! Slug/id → tenant, cached per process so the hot path does not pay a round trip to learn a
//! tenant's status and plan. Misses (unknown slugs) are cached too, so random subdomains cannot
//! hammer the database. Lookups run on the platform path: a slug is resolved before any tenant
//! context exists, and the app role sees no `tenants` row but its own.
//!
//! Entries live `tenancy.cache_secs`, but a change to any tenant reaches every process at once
//! through [`super::invalidation`], which calls [`Directory::clear`] (and while its listener is
//! not connected, no entry older than [`super::invalidation::UNHEARD_MAX_AGE`] is served). Each entry remembers the
//! directory's epoch from before its query ran; an entry older than the latest clear is never
//! served, so a lookup that raced a change (read the old row, finished after the notification)
//! cannot put a stale tenant back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel_async::scoped_futures::ScopedFutureExt;
use moka::future::Cache;

use super::door::PlatformDoor;
use super::invalidation::Listening;
use super::model::{self, Tenant};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;

/// A cached answer, and the epoch its query started in.
#[derive(Clone)]
struct Slot {
    tenant: Option<Arc<Tenant>>,
    epoch: u64,
    loaded: Instant,
}

/// Cached tenant lookups.
#[derive(Clone)]
pub struct Directory {
    door: PlatformDoor,
    by_slug: Cache<String, Slot>,
    by_id: Cache<TenantId, Slot>,
    epoch: Arc<AtomicU64>,
    listening: Listening,
}

/// Which key a lookup uses.
enum Key {
    Slug(String),
    Id(TenantId),
}

impl Directory {
    /// A directory whose entries live `ttl` (while `listening`; see [`Listening`]).
    pub fn new(door: PlatformDoor, ttl: Duration, listening: Listening) -> Self {
        Self {
            door,
            by_slug: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            by_id: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            epoch: Arc::new(AtomicU64::new(0)),
            listening,
        }
    }

    /// The tenant at `slug`, if any.
    pub async fn by_slug(&self, slug: &str) -> AppResult<Option<Arc<Tenant>>> {
        self.lookup(Key::Slug(slug.to_string())).await
    }

    /// The tenant with `id`, if any.
    pub async fn by_id(&self, id: TenantId) -> AppResult<Option<Arc<Tenant>>> {
        self.lookup(Key::Id(id)).await
    }

    /// Forgets what this process knows about a tenant (after signup, in the process that did it).
    pub async fn invalidate(&self, id: TenantId, slug: &str) {
        self.by_id.invalidate(&id).await;
        self.by_slug.invalidate(slug).await;
    }

    /// Forgets every tenant, including lookups still in flight: what a change notification, or
    /// a window in which notifications may have been missed, calls for.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.by_slug.invalidate_all();
        self.by_id.invalidate_all();
    }

    async fn lookup(&self, key: Key) -> AppResult<Option<Arc<Tenant>>> {
        // Twice at most: a slot from before the latest clear is dropped and read again; if the
        // directory is cleared once more meanwhile, the fresh read is answered uncached.
        for _ in 0..2 {
            let epoch = self.epoch.load(Ordering::SeqCst);
            let slot = match &key {
                Key::Slug(slug) => {
                    let door = self.door.clone();
                    let slug = slug.clone();
                    self.by_slug
                        .try_get_with(slug.clone(), load(door, epoch, Key::Slug(slug)))
                        .await
                }
                Key::Id(id) => {
                    let door = self.door.clone();
                    self.by_id
                        .try_get_with(*id, load(door, epoch, Key::Id(*id)))
                        .await
                }
            }
            .map_err(unwrap_shared)?;
            if slot.epoch == self.epoch.load(Ordering::SeqCst) && self.listening.trusts(slot.loaded)
            {
                return Ok(slot.tenant);
            }
            match &key {
                Key::Slug(slug) => self.by_slug.invalidate(slug).await,
                Key::Id(id) => self.by_id.invalidate(id).await,
            }
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        Ok(load(self.door.clone(), epoch, key).await?.tenant)
    }
}

async fn load(door: PlatformDoor, epoch: u64, key: Key) -> AppResult<Slot> {
    let tenant = door
        .tx(true, move |tx| {
            async move {
                Ok(match key {
                    Key::Slug(slug) => model::by_slug(tx.conn(), &slug).await?,
                    Key::Id(id) => model::by_id(tx.conn(), id).await?,
                })
            }
            .scope_boxed()
        })
        .await?;
    Ok(Slot {
        tenant: tenant.map(Arc::new),
        epoch,
        loaded: Instant::now(),
    })
}

/// moka shares one error among all waiters; rebuild an equivalent one for this caller.
fn unwrap_shared(e: Arc<AppError>) -> AppError {
    match &*e {
        AppError::Unavailable(m) => AppError::Unavailable(m.clone()),
        other => AppError::Internal(anyhow::anyhow!("tenant lookup failed: {other}")),
    }
}
