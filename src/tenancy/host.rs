//! Host → tenant target (API.md §1). Nothing but the host selects a tenant by address; the other
//! way in is the credential.

/// Slugs that always mean the root host.
pub const RESERVED: &[&str] = &[
    "api", "www", "app", "admin", "platform", "auth", "docs", "status", "mail", "static",
];

/// What the `Host` header addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTarget {
    /// The bare base domain, a reserved name, or any host outside the base domain.
    Root,
    /// `{slug}.{base_domain}`.
    Tenant(String),
}

/// Classifies `host` (port ignored, case-insensitive) against `base_domain`.
pub fn target(host: &str, base_domain: &str) -> HostTarget {
    let host = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
    let base = base_domain.trim_end_matches('.').to_ascii_lowercase();
    let Some(label) = host
        .strip_suffix(&base)
        .and_then(|rest| rest.strip_suffix('.'))
    else {
        return HostTarget::Root;
    };
    // Only a single label directly under the base domain names a tenant.
    if label.is_empty() || label.contains('.') || RESERVED.contains(&label) {
        return HostTarget::Root;
    }
    HostTarget::Tenant(label.to_string())
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: never a tenant host.
        return host;
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Whether `slug` is acceptable for a new tenant: `^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$`, not reserved.
pub fn valid_slug(slug: &str) -> bool {
    let b = slug.as_bytes();
    let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=32).contains(&b.len())
        && ok_char(&b[0])
        && ok_char(&b[b.len() - 1])
        && b.iter().all(|c| ok_char(c) || *c == b'-')
        && !RESERVED.contains(&slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_hosts() {
        assert_eq!(
            target("acme.localhost:8080", "localhost"),
            HostTarget::Tenant("acme".into())
        );
        assert_eq!(
            target("ACME.Example.com", "example.com"),
            HostTarget::Tenant("acme".into())
        );
        assert_eq!(target("localhost:8080", "localhost"), HostTarget::Root);
        assert_eq!(target("api.localhost", "localhost"), HostTarget::Root);
        assert_eq!(target("a.b.localhost", "localhost"), HostTarget::Root);
        assert_eq!(target("evil.com", "localhost"), HostTarget::Root);
        assert_eq!(target("acmelocalhost", "localhost"), HostTarget::Root);
        assert_eq!(target("127.0.0.1:8080", "localhost"), HostTarget::Root);
        assert_eq!(target("[::1]:8080", "localhost"), HostTarget::Root);
    }

    #[test]
    fn validates_slugs() {
        assert!(valid_slug("acme"));
        assert!(valid_slug("a-1"));
        assert!(!valid_slug("ab"));
        assert!(!valid_slug("-acme"));
        assert!(!valid_slug("acme-"));
        assert!(!valid_slug("Acme"));
        assert!(!valid_slug("www"));
        assert!(!valid_slug(&"a".repeat(33)));
        assert!(valid_slug(&"a".repeat(32)));
    }
}
