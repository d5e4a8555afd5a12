//! Access tokens: EdDSA JWTs with `kid`, ≤ 15 minutes, validated with a pinned algorithm.
//!
//! A valid signature is not enough: a token must also be no longer-lived than the tokens we issue
//! (`exp - iat ≤ auth.access_ttl_secs`) and not issued or valid-from in the future, so a leaked
//! signing key, or a bug that ever signed odd claims, cannot mint a token that outlives its purpose.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::Keys;
use crate::error::AppError;
use crate::ids::{SessionId, TenantId, UserId};

/// Bearer values longer than this are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 5;

/// Access token claims (../shared/API.md §6), plus `sid`, the session (refresh family) it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// User id.
    pub sub: Uuid,
    /// Tenant id.
    pub tid: Uuid,
    /// Tenant slug.
    pub tslug: String,
    /// Issued at. Required: serde refuses a token without it (jsonwebtoken cannot require it),
    /// and the lifetime check needs it.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
    /// Token id.
    pub jti: Uuid,
    /// Session id (refresh family), so logout can revoke it.
    pub sid: Uuid,
}

/// Issues and validates access tokens.
pub struct TokenService {
    issuer: String,
    audience: String,
    /// What we issue, and also the longest lifetime (`exp - iat`) we accept.
    ttl_secs: u64,
    validation: Validation,
    /// Tokens whose signature and claims already checked out. An Ed25519 verification is the
    /// largest CPU cost of an authenticated request; a client sends the same token many times.
    /// Only successes are stored, keyed by the whole token, and `exp` is re-checked on every hit.
    verified: moka::sync::Cache<String, std::sync::Arc<Claims>>,
}

impl TokenService {
    /// A service for the given `iss`/`aud` and lifetime. Tokens claiming a longer lifetime are
    /// refused, so lowering the lifetime refuses outstanding longer-lived tokens (clients refresh).
    pub fn new(issuer: &str, audience: &str, ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            ttl_secs,
            validation,
            verified: moka::sync::Cache::builder()
                .max_capacity(50_000)
                // As long as any token we accept can live: claims never change, `exp` is checked
                // on every hit, and revocation is the grants check's job (a live session). A
                // shorter life only re-verifies the same signatures (10,000 tenants' tokens at a
                // 60 s life were 170 Ed25519 checks a second).
                .time_to_live(std::time::Duration::from_secs(ttl_secs + LEEWAY_SECS))
                .build(),
        }
    }

    /// Lifetime in seconds (`expires_in`).
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Signs a token for `user` in `tenant`, session `sid`.
    pub fn issue(
        &self,
        keys: &Keys,
        user: UserId,
        tenant: TenantId,
        slug: &str,
        sid: SessionId,
    ) -> Result<String, AppError> {
        let now = chrono::Utc::now().timestamp() as u64;
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.as_uuid(),
            tid: tenant.as_uuid(),
            tslug: slug.into(),
            iat: now,
            nbf: now,
            exp: now + self.ttl_secs,
            jti: Uuid::now_v7(),
            sid: sid.as_uuid(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.kid().into());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &claims, keys.encoding()).map_err(AppError::internal)
    }

    /// Validates `token`, answering from the verified-token cache when possible; every failure
    /// is the same 401 (no oracle for attackers).
    pub fn verify(&self, keys: &Keys, token: &str) -> Result<std::sync::Arc<Claims>, AppError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AppError::Unauthenticated);
        }
        if let Some(claims) = self.verified.get(token) {
            let now = chrono::Utc::now().timestamp() as u64;
            return if claims.exp + LEEWAY_SECS > now {
                Ok(claims)
            } else {
                self.verified.invalidate(token);
                Err(AppError::Unauthenticated)
            };
        }
        let claims = std::sync::Arc::new(self.verify_uncached(keys, token)?);
        self.verified.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    /// Full validation: header, key by kid, signature, claims.
    fn verify_uncached(&self, keys: &Keys, token: &str) -> Result<Claims, AppError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AppError::Unauthenticated);
        }
        let header_b64 = token.split('.').next().ok_or(AppError::Unauthenticated)?;
        let raw = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| AppError::Unauthenticated)?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&raw).map_err(|_| AppError::Unauthenticated)?;
        // We understand no critical extensions, so a token that demands one is refused (RFC 7515).
        if header.contains_key("crit")
            || header.get("alg").and_then(|a| a.as_str()) != Some("EdDSA")
        {
            return Err(AppError::Unauthenticated);
        }
        let kid = header
            .get("kid")
            .and_then(|k| k.as_str())
            .ok_or(AppError::Unauthenticated)?;
        // The key comes from our own set by kid, never from the token (`jwk`, `jku` are ignored).
        let key = keys.verifying(kid).ok_or(AppError::Unauthenticated)?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| {
                tracing::debug!(error = %e, "access token rejected");
                AppError::Unauthenticated
            })?;
        // Runs before `verify` caches the claims: only tokens that pass everything are cached.
        self.check_lifetime(&claims, chrono::Utc::now().timestamp() as u64)?;
        Ok(claims)
    }

    /// The checks jsonwebtoken does not make: a signed `exp` a year out, or an `iat` in the
    /// future (which would stretch the window a lifetime check allows), is refused.
    fn check_lifetime(&self, claims: &Claims, now: u64) -> Result<(), AppError> {
        let latest = now + LEEWAY_SECS;
        let reason = if claims.iat > latest {
            "iat in the future"
        } else if claims.nbf > latest {
            "nbf in the future"
        } else if claims.exp.saturating_sub(claims.iat) > self.ttl_secs {
            "lifetime longer than auth.access_ttl_secs"
        } else {
            return Ok(());
        };
        tracing::debug!(reason, "access token rejected");
        Err(AppError::Unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_verify() {
        let (keys, _) = Keys::generate().unwrap();
        let svc = TokenService::new("tessera", "tessera-api", 900);
        let t = svc
            .issue(
                &keys,
                UserId::new(),
                TenantId::new(),
                "acme",
                SessionId::new(),
            )
            .unwrap();
        let c = svc.verify(&keys, &t).unwrap();
        assert_eq!(c.tslug, "acme");
        let other = TokenService::new("tessera", "someone-else", 900);
        assert!(other.verify(&keys, &t).is_err());
        let (other_keys, _) = Keys::generate().unwrap();
        let fresh = TokenService::new("tessera", "tessera-api", 900);
        assert!(fresh.verify(&other_keys, &t).is_err());
        // A cached success is answered from the cache, and still only for the exact token.
        assert!(svc.verify(&keys, &t).is_ok());
        let mut tampered = t.clone();
        tampered.push('x');
        assert!(svc.verify(&keys, &tampered).is_err());
        assert!(svc.verify(&keys, "a.b.c").is_err());
    }

    fn claims(iat: u64, nbf: u64, exp: u64) -> Claims {
        Claims {
            iss: "tessera".into(),
            aud: "tessera-api".into(),
            sub: Uuid::nil(),
            tid: Uuid::nil(),
            tslug: "acme".into(),
            iat,
            nbf,
            exp,
            jti: Uuid::nil(),
            sid: Uuid::nil(),
        }
    }

    #[test]
    fn lifetime_and_future_claims() {
        let svc = TokenService::new("tessera", "tessera-api", 900);
        let now = 1_700_000_000;
        let ok = |c: Claims| svc.check_lifetime(&c, now).is_ok();
        assert!(ok(claims(now, now, now + 900)));
        assert!(ok(claims(now + 5, now + 5, now + 905)), "within the leeway");
        assert!(!ok(claims(now, now, now + 901)), "longer than we issue");
        assert!(!ok(claims(now, now, now + 365 * 86_400)));
        assert!(!ok(claims(now + 6, now, now + 906)), "iat in the future");
        assert!(!ok(claims(now, now + 6, now + 900)), "nbf in the future");
        // A shorter configured lifetime refuses tokens issued under a longer one.
        let short = TokenService::new("tessera", "tessera-api", 300);
        let issued_under_900 = claims(now, now, now + 900);
        assert!(short.check_lifetime(&issued_under_900, now).is_err());
    }
}
