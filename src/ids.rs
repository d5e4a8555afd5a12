//! Newtype ids, so a tenant id can never be passed where a contact id is expected.

use diesel_derive_newtype::DieselNewType;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A text that is not a UUID in canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a UUID in canonical form (lower-case, hyphenated)")]
pub struct NotCanonical;

/// Parses a UUID written the one way we write it: 36 characters, lower-case hex, hyphenated.
/// `Uuid::parse_str` also reads braces, URNs, no hyphens and upper case, which would give one
/// record many URLs (and many cache keys); ids in paths and query strings must be canonical.
pub fn canonical_uuid(s: &str) -> Option<Uuid> {
    let u = Uuid::try_parse(s).ok()?;
    let mut buf = Uuid::encode_buffer();
    (u.hyphenated().encode_lower(&mut buf) == s).then_some(u)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, DieselNewType,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NotCanonical;
            /// Canonical form only; see [`canonical_uuid`].
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                canonical_uuid(s).map(Self).ok_or(NotCanonical)
            }
        }
    };
}

id_type!(
    /// Identifies a tenant (customer organization).
    TenantId
);
id_type!(
    /// Identifies a user within a tenant.
    UserId
);
id_type!(
    /// Identifies a role within a tenant.
    RoleId
);
id_type!(
    /// Identifies a contact record.
    ContactId
);
id_type!(
    /// Identifies an operator's platform key (`platform_keys.id`).
    PlatformKeyId
);
id_type!(
    /// Identifies one login session: the family of refresh tokens rotated from one login.
    SessionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_form_parses() {
        let id = "0193a5c4-7d2e-7b1a-9c3d-2e4f6a8b0c1d";
        assert_eq!(
            canonical_uuid(id).map(|u| u.to_string()).as_deref(),
            Some(id)
        );
        for other in [
            "0193A5C4-7D2E-7B1A-9C3D-2E4F6A8B0C1D",
            "0193a5c47d2e7b1a9c3d2e4f6a8b0c1d",
            "{0193a5c4-7d2e-7b1a-9c3d-2e4f6a8b0c1d}",
            "urn:uuid:0193a5c4-7d2e-7b1a-9c3d-2e4f6a8b0c1d",
            " 0193a5c4-7d2e-7b1a-9c3d-2e4f6a8b0c1d",
            "",
        ] {
            assert_eq!(canonical_uuid(other), None, "{other}");
            assert!(other.parse::<ContactId>().is_err(), "{other}");
        }
    }
}
