//! Who is calling `/v1/platform/*`: the [`PlatformCaller`] extractor.
//!
//! The operator API lives on the root host only; on a tenant host its routes answer 404 like any
//! unknown route, so a tenant's users never learn it is there. The credential is a platform key
//! (`Authorization: Bearer tpk_…`); anything else — none, malformed, unknown, revoked, a tenant's
//! access token or API key — is the same 401 `unauthenticated`.
//!
//! Verified keys are cached per process for `platform.key_cache_secs` (default 5), keyed by the
//! key's digest: an operator script polling the API does not cost a lookup per call, and a
//! revoked key stops working in every process within that bound.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use moka::future::Cache;

use super::keys::{self, Scope, Verified};
use crate::app::AppState;
use crate::audit::Context as AuditContext;
use crate::error::AppError;
use crate::http::principal::{audit_context, bearer, host_target};
use crate::ids::PlatformKeyId;
use crate::tenancy::PlatformDoor;
use crate::tenancy::host::HostTarget;

/// Verified platform keys, per process.
#[derive(Clone)]
pub struct KeyCache {
    door: PlatformDoor,
    verified: Option<Cache<[u8; 32], Arc<Verified>>>,
}

impl KeyCache {
    /// A cache whose entries live `ttl` (zero: every request asks the database).
    pub fn new(door: PlatformDoor, ttl: Duration) -> Self {
        let verified = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build()
        });
        Self { door, verified }
    }

    /// The key `presented` stands for, if it is a live platform key.
    pub async fn verify(&self, presented: &str) -> Result<Option<Arc<Verified>>, AppError> {
        let digest = keys::cache_key(presented);
        if let Some(hit) = match &self.verified {
            Some(cache) => cache.get(&digest).await,
            None => None,
        } {
            return Ok(Some(hit));
        }
        let Some(found) = keys::verify(&self.door, presented).await? else {
            return Ok(None);
        };
        let found = Arc::new(found);
        if let Some(cache) = &self.verified {
            cache.insert(digest, found.clone()).await;
        }
        Ok(Some(found))
    }
}

/// An operator, authenticated by a platform key. Take it as a handler argument and call
/// [`PlatformCaller::require`] with the scope the action needs.
#[derive(Debug, Clone)]
pub struct PlatformCaller {
    key: Arc<Verified>,
    /// Request metadata for the audit events of this caller's actions.
    pub audit: AuditContext,
}

impl PlatformCaller {
    /// Authorization: 403 `forbidden` with `permission` = the scope unless the key has it.
    pub fn require(&self, scope: Scope) -> Result<(), AppError> {
        if self.key.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(AppError::Forbidden(scope.as_str()))
        }
    }

    /// The key's id: the `actor_id` of every audit event this caller causes.
    pub fn key_id(&self) -> PlatformKeyId {
        self.key.id
    }
}

impl FromRequest for PlatformCaller {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let on_root = host_target(req) == HostTarget::Root;
        let presented = bearer(req);
        let audit = audit_context(req);
        Box::pin(async move {
            // Not "forbidden": on a tenant host the operator API does not exist.
            if !on_root {
                return Err(AppError::NotFound);
            }
            let state = state.ok_or_else(|| AppError::internal(anyhow::anyhow!("no app state")))?;
            let presented = presented?.ok_or_else(keys::refused)?;
            let key = state
                .platform_keys
                .verify(&presented)
                .await?
                .ok_or_else(keys::refused)?;
            Ok(PlatformCaller { key, audit })
        })
    }
}
