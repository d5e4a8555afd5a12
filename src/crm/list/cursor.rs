//! Sealed keyset cursors: where the previous page ended, encrypted and authenticated under a
//! server key, and bound to the exact list it was issued for.
//!
//! Wire format (then base64url without padding):
//!
//! ```text
//! version 0x01 (1) | nonce (24, random) | ciphertext of the plaintext | Poly1305 tag (16)
//! plaintext: last row's id (16) | kind (1) | key
//!            kind 0x01 = timestamp, key = i64 microseconds since the Unix epoch, big-endian (8)
//!            kind 0x02 = text,      key = UTF-8, no NUL, at most MAX_TEXT_KEY_BYTES
//! ```
//!
//! The AEAD is XChaCha20-Poly1305: a random 192-bit nonce per cursor is safe without any
//! counter shared between replicas. Its associated data is the [`Binding`] (resource, tenant,
//! sort, filter fingerprint), never sent: a cursor used on any other list fails authentication
//! exactly like a forged or damaged one. So the client learns nothing from the cursor (no emails
//! or names in URLs and logs) and can change nothing in it, and every failure is the same
//! [`None`] before any SQL runs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Datelike, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::keys::Keys;
use crate::error::AppError;

/// HKDF `info` of the cursor key: names the purpose and the format version, so the key is
/// independent of every other secret derived from the signing key.
pub const KEY_INFO: &[u8] = b"tessera cursor v1";
/// First byte of every sealed cursor.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const ID_LEN: usize = 16;
const KIND_TIME: u8 = 1;
const KIND_TEXT: u8 = 2;
/// Longest text sort key a cursor carries, in bytes. Contacts' text fields are at most 255
/// characters (≤ 1020 bytes in UTF-8, lower-cased); a resource that sorts on longer text must
/// raise this, and with it [`MAX_CURSOR_LEN`].
pub const MAX_TEXT_KEY_BYTES: usize = 2048;
/// Largest sealed cursor, in bytes before base64.
const MAX_SEALED: usize = 1 + NONCE_LEN + ID_LEN + 1 + MAX_TEXT_KEY_BYTES + TAG_LEN;
/// Longest cursor text accepted. Checked before any decoding, so a huge parameter costs nothing;
/// every cursor [`CursorSealer::seal`] makes fits.
pub const MAX_CURSOR_LEN: usize = (MAX_SEALED * 4).div_ceil(3);

/// The sort value of the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    /// A timestamp sort (`created_at`), to the microsecond as Postgres stores it.
    Time(DateTime<Utc>),
    /// A text sort, exactly as the database computed the key it orders by.
    Text(String),
}

/// Where the previous page ended: the last row's sort key and id (the tie-breaker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Last row's sort key.
    pub key: SortKey,
    /// Last row's id.
    pub id: Uuid,
}

/// A digest of a list's effective filters, computed by the resource. Two requests get the same
/// fingerprint exactly when they filter the same way, whatever order the parameters came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Fingerprint of `(name, value)` pairs: order-independent, unambiguous (every part is
    /// length-prefixed, so `("a", "bc")` and `("ab", "c")` differ). Absent filters are simply
    /// not passed; an empty iterator is "no filters".
    pub fn of<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut pairs: Vec<(K, V)> = pairs.into_iter().collect();
        pairs.sort_by(|a, b| (a.0.as_ref(), a.1.as_ref()).cmp(&(b.0.as_ref(), b.1.as_ref())));
        let mut h = Sha256::new();
        h.update(b"tessera list filters v1");
        for (k, v) in &pairs {
            for part in [k.as_ref(), v.as_ref()] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part.as_bytes());
            }
        }
        Self(h.finalize().into())
    }
}

/// Everything a cursor is valid for, sealed in as associated data: the resource (`contacts`),
/// the tenant, the sort as the client writes it (`-created_at`) and the filters' fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    ad: Vec<u8>,
}

impl Binding {
    /// The binding for one list request.
    pub fn new(resource: &str, tenant: Uuid, sort: &str, filters: Fingerprint) -> Self {
        let mut ad = Vec::with_capacity(64 + resource.len() + sort.len());
        ad.extend_from_slice(KEY_INFO);
        ad.push(VERSION);
        for part in [resource, sort] {
            ad.extend_from_slice(&(part.len() as u64).to_be_bytes());
            ad.extend_from_slice(part.as_bytes());
        }
        ad.extend_from_slice(tenant.as_bytes());
        ad.extend_from_slice(&filters.0);
        Self { ad }
    }
}

/// Seals and opens cursors under the key derived from the signing key. Built once, in
/// `AppState`.
pub struct CursorSealer {
    aead: XChaCha20Poly1305,
}

impl CursorSealer {
    /// A sealer keyed by `key` (tests and fuzzing; the server uses [`CursorSealer::from_keys`]).
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            aead: XChaCha20Poly1305::new(&Key::from(key)),
        }
    }

    /// The server's sealer: its key is derived from the signing key, so every replica sharing
    /// that key opens every other replica's cursors, and rotating it invalidates them all.
    pub fn from_keys(keys: &Keys) -> Self {
        Self::new(keys.derive_secret(KEY_INFO))
    }

    /// The opaque form of `cursor` for the list `binding` describes. Fails (a server bug, never
    /// the client's doing) only for a text key longer than [`MAX_TEXT_KEY_BYTES`].
    pub fn seal(&self, binding: &Binding, cursor: &Cursor) -> Result<String, AppError> {
        let plain = plaintext(cursor).ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "cursor sort key exceeds {MAX_TEXT_KEY_BYTES} bytes"
            ))
        })?;
        Ok(self.seal_bytes(binding, &plain))
    }

    fn seal_bytes(&self, binding: &Binding, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plain,
            aad: &binding.ad,
        };
        // Encryption fails only for messages of ~256 GiB; ours are bounded above.
        let sealed = self
            .aead
            .encrypt(&XNonce::from(nonce), payload)
            .expect("XChaCha20-Poly1305 encrypts any message this small");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The cursor in `text`, if it is one this server sealed for exactly this `binding`. Every
    /// failure (too long, not base64, unknown version, wrong key, other list, tampered,
    /// malformed contents) is the same `None`, so callers cannot tell clients more than "not a
    /// valid cursor".
    pub fn open(&self, binding: &Binding, text: &str) -> Option<Cursor> {
        if text.len() > MAX_CURSOR_LEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(text).ok()?;
        let (&version, rest) = raw.split_first()?;
        if version != VERSION || rest.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (&nonce, sealed) = rest.split_first_chunk::<NONCE_LEN>()?;
        let payload = Payload {
            msg: sealed,
            aad: &binding.ad,
        };
        let plain = self.aead.decrypt(&XNonce::from(nonce), payload).ok()?;
        parse_plaintext(&plain)
    }
}

/// The plaintext layout (module docs), or `None` for a key that may not be sealed.
fn plaintext(cursor: &Cursor) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(ID_LEN + 1 + 8);
    out.extend_from_slice(cursor.id.as_bytes());
    match &cursor.key {
        SortKey::Time(t) => {
            out.push(KIND_TIME);
            out.extend_from_slice(&t.timestamp_micros().to_be_bytes());
        }
        SortKey::Text(s) => {
            if s.len() > MAX_TEXT_KEY_BYTES {
                return None;
            }
            out.push(KIND_TEXT);
            out.extend_from_slice(s.as_bytes());
        }
    }
    Some(out)
}

/// Reads a plaintext back. Only our own seals get here, but it checks everything anyway: a
/// value the database cannot take (NUL in text, a timestamp outside years 1–9999) must never
/// reach SQL, whatever produced it.
fn parse_plaintext(plain: &[u8]) -> Option<Cursor> {
    let (id, rest) = plain.split_first_chunk::<ID_LEN>()?;
    let (&kind, key) = rest.split_first()?;
    let key = match kind {
        KIND_TIME => {
            let micros = i64::from_be_bytes(key.try_into().ok()?);
            let t = DateTime::from_timestamp_micros(micros)?;
            if !(1..=9999).contains(&t.year()) {
                return None;
            }
            SortKey::Time(t)
        }
        KIND_TEXT => {
            if key.len() > MAX_TEXT_KEY_BYTES || key.contains(&0) {
                return None;
            }
            SortKey::Text(String::from_utf8(key.to_vec()).ok()?)
        }
        _ => return None,
    };
    Some(Cursor {
        key,
        id: Uuid::from_bytes(*id),
    })
}

/// The plaintext parser alone, for the fuzz target (`fuzz/`): through [`CursorSealer::open`] a
/// fuzzer never gets past the tag, so it could not reach this code.
#[cfg(fuzzing)]
pub fn fuzz_parse_plaintext(plain: &[u8]) -> Option<Cursor> {
    parse_plaintext(plain)
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> CursorSealer {
        CursorSealer::new([7; 32])
    }

    fn binding() -> Binding {
        Binding::new(
            "contacts",
            Uuid::from_u128(1),
            "-created_at",
            Fingerprint::of([("q", "ada")]),
        )
    }

    fn cursors() -> Vec<Cursor> {
        let id = Uuid::now_v7();
        let now = Utc::now();
        vec![
            Cursor {
                key: SortKey::Time(now),
                id,
            },
            Cursor {
                key: SortKey::Text("ada@example.com".into()),
                id,
            },
            Cursor {
                key: SortKey::Text(String::new()),
                id,
            },
            // The longest contact field, in the widest characters.
            Cursor {
                key: SortKey::Text("𝔸".repeat(255)),
                id,
            },
        ]
    }

    #[test]
    fn seal_open_round_trip_to_the_microsecond_and_byte() {
        let (s, b) = (sealer(), binding());
        for c in cursors() {
            let text = s.seal(&b, &c).unwrap();
            assert!(text.len() <= MAX_CURSOR_LEN);
            let opened = s.open(&b, &text).expect("own cursor opens");
            match (&opened.key, &c.key) {
                (SortKey::Time(a), SortKey::Time(b)) => {
                    assert_eq!(a.timestamp_micros(), b.timestamp_micros())
                }
                _ => assert_eq!(opened, c),
            }
            assert_eq!(opened.id, c.id);
        }
        // Fresh nonce each time: the same position never yields the same text.
        let c = &cursors()[1];
        assert_ne!(s.seal(&b, c).unwrap(), s.seal(&b, c).unwrap());
    }

    #[test]
    fn a_cursor_opens_only_for_its_own_list() {
        let s = sealer();
        let c = &cursors()[1];
        let text = s.seal(&binding(), c).unwrap();
        let t = Uuid::from_u128(1);
        let f = Fingerprint::of([("q", "ada")]);
        let others = [
            Binding::new("accounts", t, "-created_at", f),
            Binding::new("contacts", Uuid::from_u128(2), "-created_at", f),
            Binding::new("contacts", t, "created_at", f),
            Binding::new(
                "contacts",
                t,
                "-created_at",
                Fingerprint::of([("q", "adb")]),
            ),
            Binding::new(
                "contacts",
                t,
                "-created_at",
                Fingerprint::of::<&str, &str>([]),
            ),
        ];
        for other in &others {
            assert_eq!(s.open(other, &text), None, "{other:?}");
        }
        assert!(s.open(&binding(), &text).is_some());
        assert_eq!(CursorSealer::new([8; 32]).open(&binding(), &text), None);
    }

    #[test]
    fn fingerprints_ignore_order_and_keep_boundaries() {
        let ab = Fingerprint::of([("a", "1"), ("b", "2")]);
        assert_eq!(ab, Fingerprint::of([("b", "2"), ("a", "1")]));
        assert_ne!(
            Fingerprint::of([("a", "bc")]),
            Fingerprint::of([("ab", "c")])
        );
        assert_ne!(ab, Fingerprint::of([("a", "1")]));
    }

    #[test]
    fn the_length_cap_applies_before_decoding() {
        let s = sealer();
        assert_eq!(s.open(&binding(), &"A".repeat(MAX_CURSOR_LEN + 1)), None);
        let too_long = Cursor {
            key: SortKey::Text("x".repeat(MAX_TEXT_KEY_BYTES + 1)),
            id: Uuid::nil(),
        };
        assert!(s.seal(&binding(), &too_long).is_err());
        let longest = Cursor {
            key: SortKey::Text("x".repeat(MAX_TEXT_KEY_BYTES)),
            id: Uuid::nil(),
        };
        let text = s.seal(&binding(), &longest).unwrap();
        assert_eq!(text.len(), MAX_CURSOR_LEN);
        assert_eq!(s.open(&binding(), &text), Some(longest));
    }

    #[test]
    fn sealed_plaintexts_the_database_cannot_take_do_not_open() {
        // Only a server bug (or a leaked key) could seal these; they must still not reach SQL.
        let (s, b) = (sealer(), binding());
        let id = [9u8; ID_LEN];
        let with = |kind: u8, key: &[u8]| [&id[..], &[kind], key].concat();
        let bad = [
            with(KIND_TEXT, b"a\0b"),
            with(KIND_TEXT, &[0xff, 0xfe]),
            with(KIND_TIME, &[0; 7]),
            with(KIND_TIME, &[0; 9]),
            with(KIND_TIME, &i64::MAX.to_be_bytes()),
            // Year 10000: valid for chrono, outside what we accept.
            with(KIND_TIME, &253_402_300_800_000_000i64.to_be_bytes()),
            with(3, b""),
            id[..15].to_vec(),
            id.to_vec(),
        ];
        for plain in bad {
            assert_eq!(s.open(&b, &s.seal_bytes(&b, &plain)), None, "{plain:?}");
        }
        assert!(
            s.open(&b, &s.seal_bytes(&b, &with(KIND_TEXT, b"ok")))
                .is_some()
        );
    }
}
