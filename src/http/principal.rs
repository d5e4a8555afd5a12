//! The request path's first stages as extractors: resolve the tenant (host or credential) →
//! authenticate → (rate limit: the plans issue fills this stage) → authorize
//! ([`Principal::require`]). Handlers receive a [`Principal`] and never look at headers.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use crate::access::grants::Grants;
use crate::app::AppState;
use crate::audit::Context as AuditContext;
use crate::error::AppError;
use crate::ids::{SessionId, TenantId, UserId};
use crate::limits::plans::Limits;
use crate::tenancy::host::HostTarget;
use crate::tenancy::{Tenant, TxScope};

/// The tenant addressed by the `Host` header, if any. Unknown subdomain → 404
/// `tenant_not_found`; suspended → 403 `tenant_suspended`.
pub struct HostTenant(pub Option<Arc<Tenant>>);

impl FromRequest for HostTenant {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let target = host_target(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| AppError::internal(anyhow::anyhow!("no app state")))?;
            match target {
                HostTarget::Root => Ok(HostTenant(None)),
                HostTarget::Tenant(slug) => {
                    let tenant = state.directory.by_slug(&slug).await?;
                    let tenant = tenant
                        .filter(|t| !t.is_gone())
                        .ok_or(AppError::TenantNotFound)?;
                    if tenant.is_suspended() {
                        return Err(AppError::TenantSuspended);
                    }
                    Ok(HostTenant(Some(tenant)))
                }
            }
        })
    }
}

/// What kind of credential authenticated the request. API keys (and platform keys on their
/// own routes) join as variants when they arrive; everything downstream sees one principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A user's access token, from session `session`.
    User {
        /// The user.
        id: UserId,
        /// Their session (refresh family).
        session: SessionId,
    },
}

/// An authenticated caller within one tenant.
pub struct Principal {
    /// The tenant every database access of this request is scoped to.
    pub tenant: Arc<Tenant>,
    /// Who is calling.
    pub actor: Actor,
    /// Roles and permissions.
    pub grants: Arc<Grants>,
    /// The tenant's effective limits (plan plus overrides).
    pub limits: Limits,
    /// Request metadata for audit events.
    pub audit: AuditContext,
}

impl Principal {
    /// Authorization: the one place permissions are checked.
    pub fn require(&self, permission: &'static str) -> Result<(), AppError> {
        if self.grants.allows(permission) {
            Ok(())
        } else {
            Err(AppError::Forbidden(permission))
        }
    }

    /// The acting user.
    pub fn user_id(&self) -> UserId {
        match self.actor {
            Actor::User { id, .. } => id,
        }
    }

    /// The tenant id.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant.id
    }

    /// The transaction scope for this caller.
    pub fn scope(&self) -> TxScope {
        TxScope {
            tenant: self.tenant.id,
            user: Some(self.user_id()),
            statement_timeout_ms: Some(self.limits.statement_timeout_ms),
        }
    }
}

impl FromRequest for Principal {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let host_fut = HostTenant::from_request(req, payload);
        let bearer = bearer(req);
        let audit = audit_context(req);
        let req = req.clone();
        Box::pin(async move {
            let state = state.ok_or_else(|| AppError::internal(anyhow::anyhow!("no app state")))?;
            // Stage 1: the tenant addressed by the host (may be none on the root host).
            let HostTenant(host_tenant) = host_fut.await?;
            // Stage 2: authenticate.
            let token = bearer?.ok_or(AppError::Unauthenticated)?;
            let claims = state.tokens.verify(&state.keys, &token)?;
            let tenant = credential_tenant(&state, host_tenant, TenantId(claims.tid)).await?;
            let user = UserId(claims.sub);
            let session = SessionId(claims.sid);
            let grants = state
                .grants
                .get(tenant.id, user, Some(session))
                .await?
                .ok_or(AppError::Unauthenticated)?;
            let span = tracing::Span::current();
            span.record("tenant.id", tracing::field::display(tenant.id));
            span.record("user.id", tracing::field::display(user));
            let limits = tenant.limits(&state.config.plans);
            // Stage 3: the tenant's rate budget and in-flight cap (429), with the RateLimit
            // headers written on the way out whatever the answer.
            state.admission.admit(&req, tenant.id, &limits).await?;
            // Stage 5, the request quota, is decided here too (authorization, stage 4, is the
            // handler's first line, `Principal::require`): a tenant past its monthly API
            // requests gets 402; an admitted request is metered, whatever its answer.
            let monthly = limits.quotas.api_requests_per_month;
            if !state.config.limits.enforce {
                // Measuring the stages' cost (bench/): neither counted nor capped.
            } else if let Err(used) = state.metering.count_request(tenant.id, monthly) {
                return Err(AppError::QuotaExceeded {
                    quota: "api_requests_per_month",
                    limit: monthly,
                    used,
                });
            }
            Ok(Principal {
                limits,
                tenant,
                actor: Actor::User { id: user, session },
                grants,
                audit,
            })
        })
    }
}

/// The tenant a credential may act in: the host's, which must equal the credential's own
/// (`401 tenant_mismatch`), or on the root host the credential's (gone → 401, suspended → 403).
pub async fn credential_tenant(
    state: &AppState,
    host_tenant: Option<Arc<Tenant>>,
    claimed: TenantId,
) -> Result<Arc<Tenant>, AppError> {
    match host_tenant {
        Some(t) if t.id != claimed => Err(AppError::TenantMismatch),
        Some(t) => Ok(t),
        None => {
            let t = state.directory.by_id(claimed).await?;
            let t = t
                .filter(|t| !t.is_gone())
                .ok_or(AppError::Unauthenticated)?;
            if t.is_suspended() {
                return Err(AppError::TenantSuspended);
            }
            Ok(t)
        }
    }
}

/// Reads `Authorization: Bearer <token>`; `Ok(None)` when absent, 401 when malformed or too big.
pub fn bearer(req: &HttpRequest) -> Result<Option<String>, AppError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    if value.len() > crate::auth::tokens::MAX_TOKEN_LEN + 16 {
        return Err(AppError::Unauthenticated);
    }
    let value = value.to_str().map_err(|_| AppError::Unauthenticated)?;
    let (scheme, token) = value.split_once(' ').ok_or(AppError::Unauthenticated)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AppError::Unauthenticated);
    }
    Ok(Some(token.trim().to_string()))
}

/// The tenant (or root) the request's authority addresses, as the HTTP edge
/// ([`super::edge`]) worked it out once from `Host` or the absolute-form target. Forwarding
/// headers are ignored: nothing but the authority itself selects a tenant by address. A request
/// that did not pass the edge (none in the server) addresses nothing but the root.
pub fn host_target(req: &HttpRequest) -> HostTarget {
    req.extensions()
        .get::<HostTarget>()
        .cloned()
        .unwrap_or(HostTarget::Root)
}

/// The client's IP: the peer address, or, when configured to trust the proxy in front, the
/// address that proxy saw — the *last* `X-Forwarded-For` entry. Proxies append to the header, so
/// everything before their entry came from the client and can be anything; taking the first
/// entry would let every request pick its own address (and its own throttle key).
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let trust = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.config.http.trust_forwarded_for);
    if trust
        && let Some(ip) = req
            .headers()
            .get_all("x-forwarded-for")
            .last()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    req.peer_addr().map(|a| a.ip())
}

/// The client address as throttles count it: an IPv4 address, or an IPv6 address's /64. One
/// IPv6 subscriber is routinely given a whole /64, so keying single addresses would hand an
/// attacker 2^64 fresh keys.
pub fn throttle_key(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(v4) => v4.to_string(),
        None => String::new(),
    }
}

/// Request metadata recorded with audit events.
pub fn audit_context(req: &HttpRequest) -> AuditContext {
    AuditContext {
        request_id: super::request_id::current(),
        ip: client_ip(req).map(|ip| ip.to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect()),
    }
}
