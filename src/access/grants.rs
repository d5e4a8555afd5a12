//! What a user may do right now: active status, live session, roles and permissions — read in one
//! query and cached per process for a few seconds (`auth.principal_cache_secs`).

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;
use moka::future::Cache;

use crate::db::schema::{refresh_tokens, role_permissions, roles, user_roles, users};
use crate::error::{AppError, AppResult};
use crate::ids::{SessionId, TenantId, UserId};
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

/// Cached grants lookups. `None` means: the user or session is no longer valid.
#[derive(Clone)]
pub struct GrantsCache {
    door: Door,
    cache: Cache<Key, Option<Arc<Grants>>>,
}

impl GrantsCache {
    /// A cache whose entries live `ttl`.
    pub fn new(door: Door, ttl: Duration) -> Self {
        let cache = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(ttl)
            // Needed for forget_user; without it moka refuses predicate invalidation.
            .support_invalidation_closures()
            .build();
        Self { door, cache }
    }

    /// Grants of `user` in `tenant` for session `session`; `None` if the user is disabled or
    /// gone, or the session was revoked.
    pub async fn get(
        &self,
        tenant: TenantId,
        user: UserId,
        session: Option<SessionId>,
    ) -> AppResult<Option<Arc<Grants>>> {
        let door = self.door.clone();
        self.cache
            .try_get_with((tenant, user, session), async move {
                load(&door, tenant, user, session)
                    .await
                    .map(|g| g.map(Arc::new))
            })
            .await
            .map_err(|e| match &*e {
                AppError::Unavailable(m) => AppError::Unavailable(m.clone()),
                other => AppError::Internal(anyhow::anyhow!("loading grants: {other}")),
            })
    }

    /// Drops every cached entry for a user (after logout, role changes).
    pub async fn forget_user(&self, tenant: TenantId, user: UserId) {
        if let Err(e) = self
            .cache
            .invalidate_entries_if(move |k, _| k.0 == tenant && k.1 == user)
        {
            // Not expected (invalidation closures are enabled); the TTL still bounds the damage.
            tracing::error!(error = %e, "could not invalidate cached grants");
        }
        self.cache.run_pending_tasks().await;
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
