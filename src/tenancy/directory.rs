//! Slug/id → tenant, cached per process for a few seconds so the hot path does not pay a round
//! trip to learn a tenant's status and plan. Misses (unknown slugs) are cached too, so random
//! subdomains cannot hammer the database. Lookups run on the platform path: a slug is resolved
//! before any tenant context exists, and the app role sees no `tenants` row but its own.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::scoped_futures::ScopedFutureExt;
use moka::future::Cache;

use super::door::PlatformDoor;
use super::model::{self, Tenant};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;

/// Cached tenant lookups.
#[derive(Clone)]
pub struct Directory {
    door: PlatformDoor,
    by_slug: Cache<String, Option<Arc<Tenant>>>,
    by_id: Cache<TenantId, Option<Arc<Tenant>>>,
}

impl Directory {
    /// A directory whose entries live `ttl`.
    pub fn new(door: PlatformDoor, ttl: Duration) -> Self {
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
        }
    }

    /// The tenant at `slug`, if any.
    pub async fn by_slug(&self, slug: &str) -> AppResult<Option<Arc<Tenant>>> {
        let door = self.door.clone();
        let key = slug.to_string();
        self.by_slug
            .try_get_with(key.clone(), async move {
                door.tx(true, |tx| {
                    async move { Ok(model::by_slug(tx.conn(), &key).await?.map(Arc::new)) }
                        .scope_boxed()
                })
                .await
            })
            .await
            .map_err(unwrap_shared)
    }

    /// The tenant with `id`, if any.
    pub async fn by_id(&self, id: TenantId) -> AppResult<Option<Arc<Tenant>>> {
        let door = self.door.clone();
        self.by_id
            .try_get_with(id, async move {
                door.tx(true, |tx| {
                    async move { Ok(model::by_id(tx.conn(), id).await?.map(Arc::new)) }
                        .scope_boxed()
                })
                .await
            })
            .await
            .map_err(unwrap_shared)
    }

    /// Forgets what this process knows about a tenant (after signup, status changes).
    pub async fn invalidate(&self, id: TenantId, slug: &str) {
        self.by_id.invalidate(&id).await;
        self.by_slug.invalidate(slug).await;
    }
}

/// moka shares one error among all waiters; rebuild an equivalent one for this caller.
fn unwrap_shared(e: Arc<AppError>) -> AppError {
    match &*e {
        AppError::Unavailable(m) => AppError::Unavailable(m.clone()),
        other => AppError::Internal(anyhow::anyhow!("tenant lookup failed: {other}")),
    }
}
