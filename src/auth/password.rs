//! Password hashing with argon2id. Hashing runs on the blocking pool: it is deliberately slow.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::Rng;
use std::sync::LazyLock;

use crate::error::{AppError, AppResult};

/// Minimum password length in characters (../shared/API.md §6).
pub const MIN_LEN: usize = 12;
/// Maximum password length in characters; longer inputs are refused before hashing. Characters,
/// like the minimum, so OpenAPI's `minLength`/`maxLength` describe the policy exactly; 256
/// characters are at most 1 KiB of UTF-8, still a small argon2 input (cost guard).
pub const MAX_LEN: usize = 256;

/// A hash of a random password, verified against when the email is unknown so both failure
/// paths cost the same time.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    Argon2::default()
        .hash_password(generate().as_bytes(), &SaltString::generate(&mut OsRng))
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// At most this many hashes run at once. Each argon2id run takes ~19 MiB and a core for tens
/// of milliseconds; unbounded, a burst of logins would balloon memory (and the allocator keeps
/// it) and starve request handling. Waiting here is the right back-pressure.
static HASHING: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
});

async fn with_hashing_slot<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> AppResult<T> {
    let _slot = HASHING.acquire().await.map_err(AppError::internal)?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(AppError::internal)
}

/// Why a password breaks the length policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Fewer than [`MIN_LEN`] characters.
    #[error("must be at least {MIN_LEN} characters")]
    TooShort,
    /// More than [`MAX_LEN`] characters.
    #[error("must be at most {MAX_LEN} characters")]
    TooLong,
}

impl PolicyError {
    /// The `code` of its field error in a 422.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::TooLong => "too_long",
        }
    }
}

/// Checks the length policy: [`MIN_LEN`]–[`MAX_LEN`] characters.
pub fn check_policy(password: &str) -> Result<(), PolicyError> {
    let n = password.chars().count();
    if n < MIN_LEN {
        Err(PolicyError::TooShort)
    } else if n > MAX_LEN {
        Err(PolicyError::TooLong)
    } else {
        Ok(())
    }
}

/// Whether `password` is longer than any password we accept, so it can be refused without
/// hashing (the same character rule as [`check_policy`]).
pub fn exceeds_max(password: &str) -> bool {
    password.chars().count() > MAX_LEN
}

/// Hashes `password` (argon2id, PHC string).
pub async fn hash(password: String) -> AppResult<String> {
    with_hashing_slot(move || {
        Argon2::default()
            .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
            .map(|h| h.to_string())
            .map_err(|e| AppError::internal(anyhow::anyhow!("argon2: {e}")))
    })
    .await?
}

/// Verifies `password` against `hash`; with no hash, burns the same time and fails.
pub async fn verify(password: String, hash: Option<String>) -> AppResult<bool> {
    with_hashing_slot(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| AppError::internal(anyhow::anyhow!("stored hash: {e}")))?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && known)
    })
    .await?
}

/// A random 24-character password (for generated credentials).
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(
            verify("correct horse battery".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong horse battery".into(), Some(h)).await.unwrap());
        assert!(!verify("anything at all".into(), None).await.unwrap());
    }

    #[test]
    fn policy() {
        assert_eq!(check_policy("short"), Err(PolicyError::TooShort));
        assert!(check_policy("twelve chars").is_ok());
        assert_eq!(check_policy(&"x".repeat(257)), Err(PolicyError::TooLong));
        assert_eq!(PolicyError::TooLong.code(), "too_long");
        assert_eq!(PolicyError::TooShort.code(), "too_short");
        // Characters, not bytes, on both ends: twelve 4-byte characters are not too short,
        // 256 of them (1 KiB) are not too long.
        assert!(check_policy(&"🔑".repeat(12)).is_ok());
        assert!(check_policy(&"🔑".repeat(256)).is_ok());
        assert!(!exceeds_max(&"🔑".repeat(256)));
        assert!(exceeds_max(&"x".repeat(257)));
        assert_eq!(generate().len(), 24);
    }
}
