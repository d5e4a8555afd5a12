//! Ed25519 signing keys, their `kid`, and the public JWKS.
//!
//! One key signs; every key in `verifying` is accepted (room for rotation: publish the next key
//! first, switch signing later, keep the old one until its tokens expire).
//!
//! The signing key is also the root of the server's symmetric secrets ([`Keys::derive_secret`]):
//! every replica that shares it derives the same secrets, so no second mandatory secret exists,
//! and rotating it rotates them too (for list cursors: outstanding cursors stop opening).

use std::collections::HashMap;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use hkdf::Hkdf;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, Profile};

/// One public key as published in the JWKS.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: &'static str,
    /// Always `Ed25519`.
    pub crv: &'static str,
    /// Base64url public key.
    pub x: String,
    /// Key id, as in the token header.
    pub kid: String,
    /// Always `EdDSA`.
    pub alg: &'static str,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: &'static str,
}

/// The JWKS document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Jwks {
    /// Public keys.
    pub keys: Vec<Jwk>,
}

/// The server's keys.
pub struct Keys {
    kid: String,
    encoding: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    jwks: Jwks,
    /// HKDF-SHA256 extracted from the signing key's seed, for [`Keys::derive_secret`].
    secrets: Hkdf<Sha256>,
}

impl Keys {
    /// Builds from an Ed25519 PKCS#8 private key in PEM.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let key = SigningKey::from_pkcs8_pem(pem.trim())
            .map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 PEM private key: {e}"))?;
        Self::from_signing_key(&key)
    }

    fn from_signing_key(key: &SigningKey) -> anyhow::Result<Self> {
        let der = key
            .to_pkcs8_der()
            .map_err(|e| anyhow::anyhow!("encoding key: {e}"))?;
        let public = key.verifying_key().to_bytes();
        let x = URL_SAFE_NO_PAD.encode(public);
        // RFC 7638-style thumbprint, shortened: stable across restarts for the same key.
        let thumb = Sha256::digest(format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#));
        let kid = URL_SAFE_NO_PAD.encode(&thumb[..12]);
        let jwk = Jwk {
            kty: "OKP",
            crv: "Ed25519",
            x,
            kid: kid.clone(),
            alg: "EdDSA",
            use_: "sig",
        };
        let mut verifying = HashMap::new();
        verifying.insert(kid.clone(), DecodingKey::from_ed_der(&public));
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            verifying,
            jwks: Jwks { keys: vec![jwk] },
            secrets: Hkdf::new(None, key.as_bytes()),
        })
    }

    /// A fresh random key and its PEM.
    pub fn generate() -> anyhow::Result<(Self, String)> {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding key: {e}"))?;
        Ok((Self::from_signing_key(&key)?, pem.to_string()))
    }

    /// Loads the configured key; in development and test, generates an ephemeral one when none
    /// is configured (tokens then die with the process).
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        if let Some(path) = config.signing_key_path() {
            let pem = std::fs::read_to_string(&path).with_context(|| {
                format!("auth.signing_key_file: cannot read {}", path.display())
            })?;
            return Self::from_pem(&pem).context("auth.signing_key_file");
        }
        if !config.auth.signing_key_pem.is_empty() {
            return Self::from_pem(&config.auth.signing_key_pem).context("auth.signing_key_pem");
        }
        anyhow::ensure!(
            config.profile != Profile::Production,
            "auth.signing_key_file: production needs a signing key"
        );
        tracing::warn!(
            "no signing key configured: using an ephemeral key (tokens die with this process)"
        );
        Ok(Self::generate()?.0)
    }

    /// The signing key's id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing key.
    pub fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The verification key for `kid`, if known.
    pub fn verifying(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.get(kid)
    }

    /// The public JWKS.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// A 32-byte secret for one purpose, derived with HKDF-SHA256 from the signing key. `info`
    /// separates the purposes (and their versions): distinct `info`s give independent secrets,
    /// none of which reveals the signing key or another secret. Same key, same `info`, same
    /// secret, on every replica and across restarts.
    pub fn derive_secret(&self, info: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        // Cannot fail: HKDF-SHA256 yields up to 255 × 32 bytes.
        self.secrets
            .expand(info, &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pem_round_trip_keeps_kid() {
        let (k, pem) = super::Keys::generate().unwrap();
        let k2 = super::Keys::from_pem(&pem).unwrap();
        assert_eq!(k.kid(), k2.kid());
        assert!(super::Keys::from_pem("nonsense").is_err());
    }

    #[test]
    fn derived_secrets_follow_the_key_and_the_purpose() {
        let (k, pem) = super::Keys::generate().unwrap();
        let same = super::Keys::from_pem(&pem).unwrap();
        let other = super::Keys::generate().unwrap().0;
        let a = k.derive_secret(b"purpose a");
        assert_eq!(a, same.derive_secret(b"purpose a"), "replicas agree");
        assert_ne!(a, k.derive_secret(b"purpose b"), "purposes are separated");
        assert_ne!(
            a,
            other.derive_secret(b"purpose a"),
            "a new key, new secrets"
        );
    }
}
