//! Host → tenant target (../shared/API.md §1). Nothing but the host selects a tenant by address; the other
//! way in is the credential.

/// Slugs that are never a tenant: their hosts mean the root host, and signup refuses them. The
/// contract's names first; then names a visitor would take for the operator's own (`login`,
/// `billing`, `support`, …), infrastructure host names (`localhost`, `mx`, `autodiscover`, …)
/// and environment names, so no tenant can pose as any of them.
pub const RESERVED: &[&str] = &[
    "api",
    "www",
    "app",
    "admin",
    "platform",
    "auth",
    "docs",
    "status",
    "mail",
    "static",
    // the operator's own pages
    "account",
    "accounts",
    "administrator",
    "billing",
    "console",
    "dashboard",
    "help",
    "id",
    "login",
    "logout",
    "oauth",
    "register",
    "root",
    "security",
    "signin",
    "signup",
    "sso",
    "support",
    "system",
    "tessera",
    // infrastructure
    "assets",
    "autoconfig",
    "autodiscover",
    "cdn",
    "files",
    "ftp",
    "imap",
    "internal",
    "localhost",
    "media",
    "metrics",
    "mx",
    "ns",
    "ns1",
    "ns2",
    "pop",
    "smtp",
    "webmail",
    "wpad",
    // environments
    "dev",
    "prod",
    "production",
    "sandbox",
    "staging",
    "test",
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

/// The shape of a tenant slug (also the OpenAPI pattern): lower-case letters and digits, single
/// hyphens between them. No `--` anywhere: labels with hyphens in the third and fourth place are
/// reserved for IDNA (RFC 5891 §4.2.3.1), and `xn--pple-43d` displays as "аpple" with a Cyrillic
/// а — a look-alike of another tenant.
pub const SLUG_PATTERN: &str = "^[a-z0-9]+(-[a-z0-9]+)*$";
/// Shortest slug.
pub const SLUG_MIN: usize = 3;
/// Longest slug.
pub const SLUG_MAX: usize = 32;

/// Whether `slug` is acceptable for a new tenant: [`SLUG_PATTERN`], 3–32 characters, not
/// [`RESERVED`].
pub fn valid_slug(slug: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (SLUG_MIN..=SLUG_MAX).contains(&slug.len())
        && slug
            .split('-')
            .all(|part| !part.is_empty() && part.chars().all(ok_char))
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
        assert_eq!(target("localhost.localhost", "localhost"), HostTarget::Root);
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
        // IDNA look-alikes and every other double hyphen.
        assert!(!valid_slug("xn--pple-43d"));
        assert!(!valid_slug("ab--cd"));
        assert!(!valid_slug("a--b"));
        assert!(valid_slug("a-b-c"));
        assert!(!valid_slug("localhost"));
        assert!(!valid_slug("acme.corp"));
        assert!(!valid_slug("ácme"));
        // The pattern says the same as the check.
        let re = regex::Regex::new(SLUG_PATTERN).unwrap();
        for s in [
            "acme",
            "a-1",
            "xn--pple-43d",
            "-acme",
            "acme-",
            "a--b",
            "Acme",
            "a_b",
        ] {
            let shaped = (SLUG_MIN..=SLUG_MAX).contains(&s.len()) && re.is_match(s);
            assert_eq!(shaped, valid_slug(s), "{s}");
        }
    }
}
