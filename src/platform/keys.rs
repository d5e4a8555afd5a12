//! Platform keys: the operator API's credentials.
//!
//! A key is `tpk_` + base64url of 32 random bytes (43 characters), printed once by `tessera
//! platform keys create`. The database keeps only its SHA-256 and a lookup prefix (the first
//! [`PREFIX_LEN`] characters after `tpk_`), so a stolen table lets no one call the API, and
//! verification compares the hashes in constant time ([`Verified`] via [`verify`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::db::schema::platform_keys;
use crate::error::{AppError, AppResult};
use crate::ids::PlatformKeyId;
use crate::tenancy::PlatformDoor;

/// What every platform key starts with.
pub const KEY_PREFIX: &str = "tpk_";
/// Random bytes in a key.
const RAW_LEN: usize = 32;
/// Characters of the encoded random part: base64url without padding of [`RAW_LEN`] bytes.
const ENCODED_LEN: usize = 43;
/// Characters after `tpk_` stored in clear to find the row.
const PREFIX_LEN: usize = 12;

/// What a platform key may do. Handlers ask for one with `PlatformCaller::require`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// List and read tenants, read plans.
    TenantsRead,
    /// Create, change, suspend and delete tenants.
    TenantsWrite,
    /// Read usage and export it.
    UsageRead,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::TenantsRead, Scope::TenantsWrite, Scope::UsageRead];

    /// The scope as written on the command line, stored and named in a 403's `permission`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenantsRead => "tenants:read",
            Self::TenantsWrite => "tenants:write",
            Self::UsageRead => "usage:read",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one of [`Scope::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}` (expected one of tenants:read, tenants:write, usage:read)")]
pub struct UnknownScope(pub String);

impl std::str::FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_string()))
    }
}

/// A key as `keys list` shows it: never the key itself.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = platform_keys, check_for_backend(diesel::pg::Pg))]
pub struct KeyInfo {
    /// Key id (the actor id of its audit events).
    pub id: PlatformKeyId,
    /// Operator-given name.
    pub name: String,
    /// Scope names as stored.
    pub scopes: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key that verified: who is calling and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The key's id.
    pub id: PlatformKeyId,
    /// Its scopes (stored names that no longer parse are dropped).
    pub scopes: Vec<Scope>,
}

/// A new key and its plaintext, which exists only in this value.
pub struct Created {
    /// The stored key.
    pub info: KeyInfo,
    /// `tpk_…`, to print once.
    pub plaintext: String,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The lookup prefix of a well-formed key, or `None` for anything that is not one.
fn lookup_prefix(key: &str) -> Option<&str> {
    let encoded = key.strip_prefix(KEY_PREFIX)?;
    let well_formed = encoded.len() == ENCODED_LEN
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| &encoded[..PREFIX_LEN])
}

/// Creates a key called `name` with `scopes`; the plaintext is returned once.
pub async fn create(platform: &PlatformDoor, name: &str, scopes: &[Scope]) -> AppResult<Created> {
    let mut raw = [0u8; RAW_LEN];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let plaintext = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
    let prefix = lookup_prefix(&plaintext)
        .expect("a generated key is well formed")
        .to_string();
    let hash = digest(&plaintext).to_vec();
    let mut names: Vec<String> = scopes.iter().map(|s| s.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    let name = name.to_string();
    let info = platform
        .tx(false, move |tx| {
            async move {
                Ok(diesel::insert_into(platform_keys::table)
                    .values((
                        platform_keys::id.eq(PlatformKeyId::new()),
                        platform_keys::name.eq(&name),
                        platform_keys::prefix.eq(&prefix),
                        platform_keys::key_hash.eq(&hash),
                        platform_keys::scopes.eq(&names),
                    ))
                    .returning(KeyInfo::as_returning())
                    .get_result(tx.conn())
                    .await?)
            }
            .scope_boxed()
        })
        .await?;
    Ok(Created { info, plaintext })
}

/// Every key, oldest first.
pub async fn list(platform: &PlatformDoor) -> AppResult<Vec<KeyInfo>> {
    platform
        .tx(true, |tx| {
            async move {
                Ok(platform_keys::table
                    .order((platform_keys::created_at, platform_keys::id))
                    .select(KeyInfo::as_select())
                    .load(tx.conn())
                    .await?)
            }
            .scope_boxed()
        })
        .await
}

/// Revokes key `id`; `Ok(false)` when there is no such key. Revoking twice keeps the first time.
pub async fn revoke(platform: &PlatformDoor, id: PlatformKeyId) -> AppResult<bool> {
    platform
        .tx(false, move |tx| {
            async move {
                let exists = platform_keys::table
                    .find(id)
                    .select(platform_keys::id)
                    .first::<PlatformKeyId>(tx.conn())
                    .await
                    .optional()?
                    .is_some();
                diesel::update(platform_keys::table.find(id))
                    .filter(platform_keys::revoked_at.is_null())
                    .set(platform_keys::revoked_at.eq(Utc::now()))
                    .execute(tx.conn())
                    .await?;
                Ok(exists)
            }
            .scope_boxed()
        })
        .await
}

/// Checks a presented key against the database: `None` for a malformed, unknown or revoked key.
/// The stored hash is compared in constant time, so response timing says nothing about how much
/// of a guessed key was right.
pub async fn verify(platform: &PlatformDoor, key: &str) -> AppResult<Option<Verified>> {
    let Some(prefix) = lookup_prefix(key) else {
        return Ok(None);
    };
    let prefix = prefix.to_string();
    let row = platform
        .tx(true, move |tx| {
            async move {
                Ok(platform_keys::table
                    .filter(platform_keys::prefix.eq(&prefix))
                    .filter(platform_keys::revoked_at.is_null())
                    .select((
                        platform_keys::id,
                        platform_keys::key_hash,
                        platform_keys::scopes,
                    ))
                    .first::<(PlatformKeyId, Vec<u8>, Vec<String>)>(tx.conn())
                    .await
                    .optional()?)
            }
            .scope_boxed()
        })
        .await?;
    let Some((id, stored, scopes)) = row else {
        return Ok(None);
    };
    if !bool::from(digest(key).as_slice().ct_eq(&stored)) {
        return Ok(None);
    }
    Ok(Some(Verified {
        id,
        scopes: scopes.iter().filter_map(|s| s.parse().ok()).collect(),
    }))
}

/// The cache key of a presented key: its digest, so no plaintext key sits in memory longer than
/// the request that carried it.
pub fn cache_key(key: &str) -> [u8; 32] {
    digest(key)
}

/// 401 for anything that is not a usable platform key, the same for every reason.
pub fn refused() -> AppError {
    AppError::Unauthenticated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_unknown_names_say_which() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>(), Ok(s));
        }
        let e = "tenants:admin".parse::<Scope>().unwrap_err();
        assert!(e.to_string().contains("`tenants:admin`"), "{e}");
    }

    #[test]
    fn only_well_formed_keys_have_a_lookup_prefix() {
        let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode([7u8; RAW_LEN]));
        assert_eq!(lookup_prefix(&key), Some(&key[4..16]));
        for bad in [
            "",
            "tpk_",
            "tsk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "tpk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "tpk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "tpk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(lookup_prefix(bad), None, "{bad}");
        }
    }
}
