//! What a user may do right now: active status, live session, roles and permissions — read in one
//! transaction and cached per process (`auth.principal_cache_secs`) until a change announces
//! itself (see [`GrantsCache`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;
use moka::future::Cache;

use crate::db::schema::{refresh_tokens, role_permissions, roles, user_roles, users};
use crate::error::{AppError, AppResult};
use crate::ids::{SessionId, TenantId, UserId};
use crate::tenancy::invalidation::Listening;
use crate::tenancy::{Door, TxScope};

/// A user's effective access.
#[derive(Debug, Clone)]
pub struct Grants {
    /// Role names, sorted.
    pub roles: Vec<String>,
    /// Permission strings, sorted, deduplicated.
    pub permissions: Vec<String>,
}

impl Grants {
    /// Whether `permission` is granted.
    pub fn allows(&self, permission: &str) -> bool {
        self.permissions
            .binary_search_by(|p| p.as_str().cmp(permission))
            .is_ok()
    }
}

type Key = (TenantId, UserId, Option<SessionId>);

/// Users remembered as forgotten before a forget clears the whole cache instead (about 100 bytes
/// each).
const MAX_MARKS: u64 = 100_000;

/// A cached answer and the cache's epoch from before its query ran.
#[derive(Clone)]
struct Slot {
    grants: Option<Arc<Grants>>,
    epoch: u64,
    loaded: Instant,
}

/// Cached grants lookups. `None` means: the user or session is no longer valid.
///
/// Entries live `auth.principal_cache_secs`, but whatever changes a user's access (logout, a
/// reused refresh token; roles and user status as they become editable) announces it through
/// [`notify_access`](crate::tenancy::invalidation::notify_access), and every process's listener calls [`GrantsCache::forget_user`]:
/// the next request anywhere reads the grants again. While no listener is connected, entries
/// older than [`UNHEARD_MAX_AGE`](crate::tenancy::invalidation::UNHEARD_MAX_AGE) are not trusted.
///
/// A lookup that raced a change (read the old rows, stored them after the forget) must not put
/// the old grants back for a whole TTL: every slot remembers the epoch its query started in,
/// every forget bumps the epoch and marks the user with it, and a slot older than its user's
/// mark (or the last [`GrantsCache::clear`]) is read again.
#[derive(Clone)]
pub struct GrantsCache {
    door: Door,
    cache: Cache<Key, Slot>,
    /// The epoch at which each recently forgotten user was forgotten; kept as long as a slot
    /// can live, so no slot from before the forget outlives its mark.
    forgotten: moka::sync::Cache<(TenantId, UserId), u64>,
    epoch: Arc<AtomicU64>,
    /// The epoch of the last [`GrantsCache::clear`].
    cleared: Arc<AtomicU64>,
    listening: Listening,
}

impl GrantsCache {
    /// A cache whose entries live `ttl` (while `listening`; see [`Listening`]).
    pub fn new(door: Door, ttl: Duration, listening: Listening) -> Self {
        Self {
            door,
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            // Not capacity-bounded: a bounded moka cache may evict or refuse a mark, and a lost
            // mark would let a revoked session's slot be served. `forget_user` bounds it instead.
            forgotten: moka::sync::Cache::builder().time_to_live(ttl).build(),
            epoch: Arc::new(AtomicU64::new(0)),
            cleared: Arc::new(AtomicU64::new(0)),
            listening,
        }
    }

    /// Grants of `user` in `tenant` for session `session`; `None` if the user is disabled or
    /// gone, or the session was revoked.
    pub async fn get(
        &self,
        tenant: TenantId,
        user: UserId,
        session: Option<SessionId>,
    ) -> AppResult<Option<Arc<Grants>>> {
        let key = (tenant, user, session);
        // Twice at most: a stale slot is dropped and read again; if the user is forgotten once
        // more meanwhile, the fresh read is answered uncached.
        for _ in 0..2 {
            let epoch = AtomicU64::load(&self.epoch, Ordering::SeqCst);
            let door = self.door.clone();
            let slot = self
                .cache
                .try_get_with(key, async move {
                    let grants = load(&door, tenant, user, session).await?;
                    Ok::<_, AppError>(Slot {
                        grants: grants.map(Arc::new),
                        epoch,
                        loaded: Instant::now(),
                    })
                })
                .await
                .map_err(|e| match &*e {
                    AppError::Unavailable(m) => AppError::Unavailable(m.clone()),
                    other => AppError::Internal(anyhow::anyhow!("loading grants: {other}")),
                })?;
            let mark = AtomicU64::load(&self.cleared, Ordering::SeqCst)
                .max(self.forgotten.get(&(tenant, user)).unwrap_or(0));
            if slot.epoch >= mark && self.listening.trusts(slot.loaded) {
                return Ok(slot.grants);
            }
            self.cache.invalidate(&key).await;
        }
        Ok(load(&self.door, tenant, user, session).await?.map(Arc::new))
    }

    /// Stops serving what this process knows about a user's access (after logout, a revoked
    /// session, role changes), including lookups still in flight.
    pub fn forget_user(&self, tenant: TenantId, user: UserId) {
        if self.forgotten.entry_count() >= MAX_MARKS {
            // More forgets within one entry life than is worth remembering one by one.
            self.clear();
            return;
        }
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.forgotten.insert((tenant, user), epoch);
    }

    /// Stops serving anything cached so far (the listener reconnected: changes may have been
    /// missed).
    pub fn clear(&self) {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.cleared.store(epoch, Ordering::SeqCst);
        self.cache.invalidate_all();
    }
}

async fn load(
    door: &Door,
    tenant: TenantId,
    user: UserId,
    session: Option<SessionId>,
) -> AppResult<Option<Grants>> {
    door.read(
        TxScope {
            tenant,
            user: Some(user),
            statement_timeout_ms: None,
        },
        |tx| {
            async move {
                let active = users::table
                    .find((tenant, user))
                    .select(users::status)
                    .first::<String>(tx.conn())
                    .await
                    .optional()?
                    .is_some_and(|s| s == "active");
                if !active {
                    return Ok(None);
                }
                if let Some(session) = session {
                    let live: i64 = refresh_tokens::table
                        .filter(refresh_tokens::tenant_id.eq(tenant))
                        .filter(refresh_tokens::family_id.eq(session))
                        .filter(refresh_tokens::user_id.eq(user))
                        .filter(refresh_tokens::revoked_at.is_null())
                        .count()
                        .get_result(tx.conn())
                        .await?;
                    if live == 0 {
                        return Ok(None);
                    }
                }
                let rows: Vec<(String, Option<String>)> = user_roles::table
                    .inner_join(
                        roles::table.on(roles::tenant_id
                            .eq(user_roles::tenant_id)
                            .and(roles::id.eq(user_roles::role_id))),
                    )
                    .left_join(
                        role_permissions::table.on(role_permissions::tenant_id
                            .eq(roles::tenant_id)
                            .and(role_permissions::role_id.eq(roles::id))),
                    )
                    .filter(user_roles::tenant_id.eq(tenant))
                    .filter(user_roles::user_id.eq(user))
                    .select((roles::name, role_permissions::permission.nullable()))
                    .load(tx.conn())
                    .await?;
                let mut role_names: Vec<String> = rows.iter().map(|(r, _)| r.clone()).collect();
                role_names.sort();
                role_names.dedup();
                let mut permissions: Vec<String> =
                    rows.into_iter().filter_map(|(_, p)| p).collect();
                permissions.sort();
                permissions.dedup();
                Ok(Some(Grants {
                    roles: role_names,
                    permissions,
                }))
            }
            .scope_boxed()
        },
    )
    .await
}
