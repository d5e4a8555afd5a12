//! Refresh tokens: opaque, stored only as SHA-256 hashes, rotated on every use. A family is one
//! login session; presenting a consumed token revokes the whole family (RFC 9700).
//!
//! Format: `trt_` + base64url(tenant id (16 bytes) ‖ 32 random bytes). The tenant part lets the
//! root host find the tenant from the credential, as ../shared/API.md §1 requires.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::schema::refresh_tokens;
use crate::error::AppResult;
use crate::ids::{SessionId, TenantId, UserId};
use crate::tenancy::{TenantTx, invalidation};

const PREFIX: &str = "trt_";
/// Bytes behind the prefix: the tenant id (16) and 32 random bytes.
const RAW_LEN: usize = 48;
/// What a refresh token looks like (`trt_` + base64url of [`RAW_LEN`] bytes), for the API
/// description.
pub const TOKEN_PATTERN: &str = "^trt_[A-Za-z0-9_-]{64}$";

/// The tenant a refresh token claims to belong to, if it is well-formed.
pub fn tenant_of(token: &str) -> Option<TenantId> {
    let raw = URL_SAFE_NO_PAD.decode(token.strip_prefix(PREFIX)?).ok()?;
    if raw.len() != RAW_LEN {
        return None;
    }
    Uuid::from_slice(&raw[..16]).ok().map(TenantId)
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Mints and stores a new refresh token in `family`.
pub async fn issue(
    tx: &mut TenantTx<'_>,
    user: UserId,
    family: SessionId,
    ttl_secs: u64,
) -> AppResult<String> {
    let tenant = tx.tenant_id();
    let mut raw = [0u8; RAW_LEN];
    raw[..16].copy_from_slice(tenant.as_uuid().as_bytes());
    rand::rngs::OsRng.fill_bytes(&mut raw[16..]);
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::tenant_id.eq(tenant),
            refresh_tokens::id.eq(Uuid::now_v7()),
            refresh_tokens::family_id.eq(family),
            refresh_tokens::user_id.eq(user),
            refresh_tokens::token_hash.eq(hash(&token)),
            refresh_tokens::expires_at.eq(Utc::now() + Duration::seconds(ttl_secs as i64)),
        ))
        .execute(tx.conn())
        .await?;
    Ok(token)
}

/// What presenting a refresh token led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// Consumed; mint the successor in the same family.
    Rotated {
        /// Token owner.
        user: UserId,
        /// Session.
        family: SessionId,
    },
    /// Already consumed: the family is now revoked.
    Reused {
        /// Owner of the revoked family.
        user: UserId,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Consumes `token` atomically (`UPDATE … WHERE consumed_at IS NULL`), so of two concurrent
/// presentations exactly one rotates and the other is treated as reuse.
pub async fn consume(tx: &mut TenantTx<'_>, token: &str) -> AppResult<Rotation> {
    let h = hash(token);
    let now = Utc::now();
    let tenant = tx.tenant_id();
    let consumed: Option<(UserId, SessionId)> = diesel::update(refresh_tokens::table)
        .filter(refresh_tokens::tenant_id.eq(tenant))
        .filter(refresh_tokens::token_hash.eq(&h))
        .filter(refresh_tokens::consumed_at.is_null())
        .filter(refresh_tokens::revoked_at.is_null())
        .filter(refresh_tokens::expires_at.gt(now))
        .set(refresh_tokens::consumed_at.eq(now))
        .returning((refresh_tokens::user_id, refresh_tokens::family_id))
        .get_result(tx.conn())
        .await
        .optional()?;
    if let Some((user, family)) = consumed {
        return Ok(Rotation::Rotated { user, family });
    }
    type Known = (
        UserId,
        SessionId,
        Option<chrono::DateTime<Utc>>,
        Option<chrono::DateTime<Utc>>,
    );
    let known: Option<Known> = refresh_tokens::table
        .filter(refresh_tokens::tenant_id.eq(tenant))
        .filter(refresh_tokens::token_hash.eq(&h))
        .select((
            refresh_tokens::user_id,
            refresh_tokens::family_id,
            refresh_tokens::consumed_at,
            refresh_tokens::revoked_at,
        ))
        .first(tx.conn())
        .await
        .optional()?;
    match known {
        // Consumed before: reuse, even if an earlier reuse already revoked the family (so every
        // replay, including concurrent ones, gets the same answer). Revoking again is a no-op.
        Some((user, family, Some(_), _)) => {
            revoke_family(tx, family).await?;
            Ok(Rotation::Reused { user })
        }
        _ => Ok(Rotation::Invalid),
    }
}

/// Revokes every token of a session, and announces it (at commit) to every process's grants
/// cache, so the session's access tokens stop working everywhere on their next request.
pub async fn revoke_family(tx: &mut TenantTx<'_>, family: SessionId) -> AppResult<usize> {
    let tenant = tx.tenant_id();
    let mut users: Vec<Uuid> = diesel::update(refresh_tokens::table)
        .filter(refresh_tokens::tenant_id.eq(tenant))
        .filter(refresh_tokens::family_id.eq(family))
        .filter(refresh_tokens::revoked_at.is_null())
        .set(refresh_tokens::revoked_at.eq(Utc::now()))
        .returning(refresh_tokens::user_id)
        .get_results(tx.conn())
        .await?;
    let revoked = users.len();
    users.sort();
    users.dedup();
    for user in users {
        invalidation::notify_access(tx.conn(), tenant, UserId(user)).await?;
    }
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    #[test]
    fn tenant_is_recoverable_and_garbage_is_not() {
        let t = super::TenantId::new();
        let mut raw = [7u8; super::RAW_LEN];
        raw[..16].copy_from_slice(t.as_uuid().as_bytes());
        let token = format!("trt_{}", super::URL_SAFE_NO_PAD.encode(raw));
        assert_eq!(super::tenant_of(&token), Some(t));
        // The pattern the API description states is the shape tokens really have.
        let shape = regex::Regex::new(super::TOKEN_PATTERN).unwrap();
        assert!(shape.is_match(&token), "{token}");
        assert_eq!(super::tenant_of("trt_abc"), None);
        assert_eq!(super::tenant_of("nope"), None);
    }
}
