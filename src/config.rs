//! Typed, layered configuration, validated once at start.
//!
//! Layers, later wins: the embedded `config/default.toml` → `<dir>/default.toml` →
//! `<dir>/<profile>.toml` → `TESSERA_<SECTION>__<KEY>` environment variables. `<dir>` is
//! `TESSERA_CONFIG_DIR` or `config`, the profile is `TESSERA_ENV` (development | test | production).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

const EMBEDDED_DEFAULTS: &str = include_str!("../config/default.toml");
const MAX_PURGE_INTERVAL_SECS: u64 = 7 * 24 * 3600;

/// Which set of defaults and safety rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Local development: ephemeral keys allowed, pretty logs.
    Development,
    /// Automated tests.
    Test,
    /// Real deployments: every secret must be configured.
    Production,
}

impl Profile {
    fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "development" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" => Ok(Self::Production),
            other => Err(ConfigError(format!(
                "TESSERA_ENV: expected development, test or production, got `{other}`"
            ))),
        }
    }

    /// Lower-case name, as used for the profile's config file.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Profile the config was loaded for (not read from files).
    #[serde(skip, default = "default_profile")]
    pub profile: Profile,
    /// Public HTTP listener.
    pub http: HttpConfig,
    /// Public naming.
    pub public: PublicConfig,
    /// Database connections.
    pub database: DatabaseConfig,
    /// Tokens, passwords, throttles.
    pub auth: AuthConfig,
    /// Tenant resolution.
    pub tenancy: TenancyConfig,
    /// Background housekeeping.
    pub maintenance: MaintenanceConfig,
    /// Usage metering.
    pub metering: MeteringConfig,
    /// The request path's limit stages.
    pub limits: LimitsConfig,
    /// The operator API and tenant lifecycle.
    pub platform: PlatformConfig,
    /// Plans from `plans.toml` next to the other config files (embedded copy when missing).
    #[serde(skip, default)]
    pub plans: crate::limits::plans::Plans,
    /// The Redis that rate limits share across replicas (none: each process limits alone).
    pub redis: RedisConfig,
    /// Logging.
    pub log: LogConfig,
}

fn default_profile() -> Profile {
    Profile::Development
}

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address, e.g. `127.0.0.1:8080`.
    pub bind: String,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Maximum request body in bytes.
    pub body_limit: usize,
    /// Use `X-Forwarded-For` for the client IP.
    pub trust_forwarded_for: bool,
    /// Graceful shutdown window.
    pub shutdown_timeout_secs: u64,
    /// How long a client may take to send the request line and headers (then 408).
    pub header_timeout_ms: u64,
    /// How long a client may take to send the whole request body (then 408, connection closed).
    pub body_timeout_ms: u64,
    /// Deadline for everything a request does; work still running then is abandoned with 503.
    pub request_timeout_ms: u64,
    /// Open connections allowed per client address; 0 = no cap.
    pub max_connections_per_ip: u32,
}

/// `[public]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicConfig {
    /// Tenant hosts are `{slug}.{base_domain}`.
    pub base_domain: String,
}

/// `[database]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// URL of the server's (non-owner) role.
    pub url: String,
    /// URL of the owner role, for migrations and tenant manifests.
    pub migration_url: String,
    /// Name of the server's role.
    pub app_role: String,
    /// URL of the platform role: the cross-tenant path (signup, the operator API, usage
    /// aggregation and export). Empty: derived from `url` with the user swapped for
    /// `platform_role` (same host, database and password).
    pub platform_url: String,
    /// Name of the platform role `tessera migrate` creates and grants to.
    pub platform_role: String,
    /// Maximum pooled connections of the platform path.
    pub platform_pool_size: usize,
    /// Maximum pooled connections.
    pub pool_size: usize,
    /// Bounded wait for a connection.
    pub acquire_timeout_ms: u64,
    /// `Retry-After` on 503.
    pub retry_after_secs: u64,
    /// `statement_timeout` set on every pooled connection, so PostgreSQL itself cancels a
    /// statement that runs away.
    pub statement_timeout_ms: u64,
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// JWT `iss`.
    pub issuer: String,
    /// JWT `aud`.
    pub audience: String,
    /// Access token lifetime (at most 900).
    pub access_ttl_secs: u64,
    /// Refresh token lifetime.
    pub refresh_ttl_secs: u64,
    /// Path to an Ed25519 PKCS#8 PEM private key.
    pub signing_key_file: String,
    /// Inline Ed25519 PKCS#8 PEM private key.
    pub signing_key_pem: String,
    /// Whether `POST /v1/signup` is open.
    pub public_signup: bool,
    /// Signups per client IP per hour.
    pub signup_ip_per_hour: u32,
    /// Failed logins per (tenant, email, client IP) per minute.
    pub login_failures_per_account_ip_per_minute: u32,
    /// Failed logins per (tenant, email) per hour, from all client IPs; not applied to known IPs.
    pub login_failures_per_account_per_hour: u32,
    /// Days a client IP that logged into an account stays known (exempt from the hourly cap).
    pub login_known_ip_days: u32,
    /// Login attempts per client IP per minute, successful or not.
    pub login_ip_per_minute: u32,
    /// Refresh attempts per client IP per minute.
    pub refresh_ip_per_minute: u32,
    /// TTL of the per-process principal (roles, permissions, session) cache; changes made
    /// through Tessera invalidate it in every process at once (`tenancy::invalidation`).
    pub principal_cache_secs: u64,
}

/// `[tenancy]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenancyConfig {
    /// TTL of the per-process tenant cache.
    pub cache_secs: u64,
}

/// `[maintenance]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Seconds between purges of expired idempotency keys and refresh tokens; 0 turns it off.
    pub purge_interval_secs: u64,
}

/// `[limits]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Whether tenant requests pass the rate-limit stage (GCRA budget, in-flight cap, the
    /// `RateLimit` headers) and are metered. Off only to measure what the stages cost.
    pub enforce: bool,
}

/// `[metering]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeteringConfig {
    /// Seconds between flushes of in-memory `api_requests` counts (at most 10).
    pub flush_interval_secs: u64,
    /// Seconds after a window's end before it is final; later increments become adjustments.
    pub grace_secs: u64,
    /// Days a usage receipt (the dedupe record of one counted event) is kept.
    pub receipt_retention_days: u32,
}

/// `[redis]`: where rate-limit budgets live when several replicas must share them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`; empty means no Redis: every process keeps its own budgets.
    pub url: String,
    /// How long opening a connection may take before Redis counts as unreachable.
    pub connect_timeout_ms: u64,
    /// How long one rate-limit decision may wait for Redis before the local budget answers.
    pub command_timeout_ms: u64,
    /// While Redis is unreachable, how often one request tries it again.
    pub retry_ms: u64,
}

/// `[platform]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// Days between a tenant's soft delete and the moment `tessera platform purge` may remove
    /// its data (`purge_after`).
    pub delete_grace_days: u32,
    /// Seconds a verified platform key is trusted without asking the database again: the upper
    /// bound on how long a revoked key keeps working in a process that used it just before.
    pub key_cache_secs: u64,
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// EnvFilter directive.
    pub level: String,
    /// `json` or `pretty`.
    pub format: String,
}

/// A configuration problem, phrased as one line that names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Loads the layered configuration for the profile named by `TESSERA_ENV`.
    pub fn load() -> Result<Self, ConfigError> {
        let profile =
            Profile::parse(&std::env::var("TESSERA_ENV").unwrap_or_else(|_| "development".into()))?;
        let dir = std::env::var("TESSERA_CONFIG_DIR").unwrap_or_else(|_| "config".into());
        Self::load_from(profile, Path::new(&dir), Env::prefixed("TESSERA_"))
    }

    /// Loads from an explicit directory and environment provider (used by tests).
    pub fn load_from(profile: Profile, dir: &Path, env: Env) -> Result<Self, ConfigError> {
        let figment = Figment::new()
            .merge(Toml::string(EMBEDDED_DEFAULTS))
            .merge(Toml::file(dir.join("default.toml")))
            .merge(Toml::file(dir.join(format!("{}.toml", profile.as_str()))))
            // Only `TESSERA_<SECTION>__<KEY>` variables are configuration; others sharing the
            // prefix (TESSERA_ENV, TESSERA_CONFIG_DIR, tooling's own) are not, and must not fail
            // the start. A typo inside a section (TESSERA_HTTP__BNID) still does.
            .merge(env.filter(|k| k.as_str().contains("__")).split("__"));
        let mut config: Config = figment.extract().map_err(|e| ConfigError(one_line(&e)))?;
        config.profile = profile;
        config.plans = crate::limits::plans::Plans::load(dir)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot: formats, ranges, and what production demands.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if self.http.bind.parse::<SocketAddr>().is_err() {
            return fail("http.bind", "expected host:port, e.g. 127.0.0.1:8080");
        }
        if self.http.body_limit == 0 {
            return fail("http.body_limit", "must be positive");
        }
        for (key, v) in [
            ("http.header_timeout_ms", self.http.header_timeout_ms),
            ("http.body_timeout_ms", self.http.body_timeout_ms),
            ("http.request_timeout_ms", self.http.request_timeout_ms),
            (
                "database.statement_timeout_ms",
                self.database.statement_timeout_ms,
            ),
            ("database.retry_after_secs", self.database.retry_after_secs),
            ("redis.connect_timeout_ms", self.redis.connect_timeout_ms),
            ("redis.command_timeout_ms", self.redis.command_timeout_ms),
            ("redis.retry_ms", self.redis.retry_ms),
        ] {
            if v == 0 {
                return fail(key, "must be at least 1");
            }
        }
        if self.plans.max_statement_timeout_ms() > self.http.request_timeout_ms {
            return fail(
                "plans",
                "a plan's statement_timeout_ms exceeds http.request_timeout_ms (the request \
                 would be abandoned first)",
            );
        }
        if self.database.statement_timeout_ms > self.http.request_timeout_ms {
            return fail(
                "database.statement_timeout_ms",
                "must not exceed http.request_timeout_ms (the request would be abandoned first)",
            );
        }
        // TLS (`rediss://`) is not built in: refusing it here beats a start that fails later.
        let url = &self.redis.url;
        if url.starts_with("rediss://") {
            return fail(
                "redis.url",
                "rediss:// (TLS) is not supported by this build; use redis://",
            );
        }
        if !url.is_empty() && (!url.starts_with("redis://") || url.len() == "redis://".len()) {
            return fail(
                "redis.url",
                "expected empty (no Redis) or redis://host:port, e.g. redis://127.0.0.1:6379",
            );
        }
        let domain = &self.public.base_domain;
        if domain.is_empty() || domain.contains(['/', ':', ' ']) {
            return fail(
                "public.base_domain",
                "expected a bare domain such as example.com",
            );
        }
        if self.database.pool_size == 0 {
            return fail("database.pool_size", "must be at least 1");
        }
        if !is_sql_identifier(&self.database.app_role) {
            return fail("database.app_role", "expected a lower-case SQL identifier");
        }
        if !is_sql_identifier(&self.database.platform_role) {
            return fail(
                "database.platform_role",
                "expected a lower-case SQL identifier",
            );
        }
        if self.database.platform_role == self.database.app_role {
            return fail(
                "database.platform_role",
                "must differ from database.app_role (the platform path is a separate role)",
            );
        }
        if self.database.platform_pool_size == 0 {
            return fail("database.platform_pool_size", "must be at least 1");
        }
        if !(1..=10).contains(&self.metering.flush_interval_secs) {
            return fail(
                "metering.flush_interval_secs",
                "must be between 1 and 10 (a crash loses at most this much api_requests usage)",
            );
        }
        if !(1..=3650).contains(&self.platform.delete_grace_days) {
            return fail("platform.delete_grace_days", "must be between 1 and 3650");
        }
        if self.auth.principal_cache_secs > 3600 {
            return fail(
                "auth.principal_cache_secs",
                "must be at most 3600 (a hand edit in SQL goes unnoticed for up to this long)",
            );
        }
        if self.tenancy.cache_secs > 3600 {
            return fail(
                "tenancy.cache_secs",
                "must be at most 3600 (a hand edit in SQL goes unnoticed for up to this long)",
            );
        }
        if self.platform.key_cache_secs > 60 {
            return fail(
                "platform.key_cache_secs",
                "must be at most 60 (a revoked key works in each process for up to this long)",
            );
        }
        if self.metering.receipt_retention_days == 0 {
            return fail("metering.receipt_retention_days", "must be at least 1");
        }
        if self.auth.access_ttl_secs == 0 || self.auth.access_ttl_secs > 900 {
            return fail(
                "auth.access_ttl_secs",
                "must be between 1 and 900 (15 minutes)",
            );
        }
        if self.auth.refresh_ttl_secs < self.auth.access_ttl_secs {
            return fail(
                "auth.refresh_ttl_secs",
                "must not be shorter than auth.access_ttl_secs",
            );
        }
        for (key, v) in [
            ("auth.signup_ip_per_hour", self.auth.signup_ip_per_hour),
            (
                "auth.login_failures_per_account_ip_per_minute",
                self.auth.login_failures_per_account_ip_per_minute,
            ),
            (
                "auth.login_failures_per_account_per_hour",
                self.auth.login_failures_per_account_per_hour,
            ),
            ("auth.login_ip_per_minute", self.auth.login_ip_per_minute),
            (
                "auth.refresh_ip_per_minute",
                self.auth.refresh_ip_per_minute,
            ),
        ] {
            if v == 0 {
                return fail(key, "must be at least 1");
            }
        }
        // Longer than a week lets expired rows pile up for weeks, and a value that large is more
        // likely milliseconds typed as seconds.
        if self.maintenance.purge_interval_secs > MAX_PURGE_INTERVAL_SECS {
            return fail(
                "maintenance.purge_interval_secs",
                "must be 0 (off) or at most 604800 (7 days)",
            );
        }
        if !(1..=365).contains(&self.auth.login_known_ip_days) {
            return fail("auth.login_known_ip_days", "must be between 1 and 365");
        }
        if !matches!(self.log.format.as_str(), "json" | "pretty") {
            return fail("log.format", "expected json or pretty");
        }
        if self.profile == Profile::Production && !self.has_signing_key() {
            return fail(
                "auth.signing_key_file",
                "production needs a signing key (auth.signing_key_file or auth.signing_key_pem)",
            );
        }
        Ok(())
    }

    /// Whether a signing key is configured (file or inline).
    pub fn has_signing_key(&self) -> bool {
        !self.auth.signing_key_file.is_empty() || !self.auth.signing_key_pem.is_empty()
    }

    /// The signing key file path, if one is configured.
    pub fn signing_key_path(&self) -> Option<PathBuf> {
        (!self.auth.signing_key_file.is_empty()).then(|| PathBuf::from(&self.auth.signing_key_file))
    }

    /// The server's database URL, or a clear error naming the key.
    pub fn app_database_url(&self) -> Result<&str, ConfigError> {
        non_empty(&self.database.url, "database.url (TESSERA_DATABASE__URL)")
    }

    /// The platform role's URL: `database.platform_url`, or `database.url` with the user swapped
    /// for `database.platform_role`.
    pub fn platform_database_url(&self) -> Result<String, ConfigError> {
        if !self.database.platform_url.is_empty() {
            return Ok(self.database.platform_url.clone());
        }
        let app = self.app_database_url()?;
        let mut url = url::Url::parse(app)
            .map_err(|e| ConfigError(format!("database.url: not a URL ({e})")))?;
        url.set_username(&self.database.platform_role)
            .map_err(|()| ConfigError("database.url: cannot carry a user name".into()))?;
        Ok(url.to_string())
    }

    /// The owner's database URL, or a clear error naming the key.
    pub fn migration_database_url(&self) -> Result<&str, ConfigError> {
        non_empty(
            &self.database.migration_url,
            "database.migration_url (TESSERA_DATABASE__MIGRATION_URL)",
        )
    }
}

fn non_empty<'a>(v: &'a str, key: &str) -> Result<&'a str, ConfigError> {
    if v.is_empty() {
        Err(ConfigError(format!("{key}: must be set")))
    } else {
        Ok(v)
    }
}

/// A lower-case identifier that is safe to splice into DDL (`CREATE ROLE <name>`).
pub fn is_sql_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// figment errors can span lines; operators get one line naming the key.
fn one_line(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let msg = e.kind.to_string();
    if key.is_empty() {
        msg
    } else {
        format!("{key}: {msg}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    #[test]
    fn defaults_load() {
        let c = Config::load_from(
            Profile::Development,
            &dir(),
            Env::prefixed("TESSERA_UNSET_"),
        )
        .unwrap();
        assert_eq!(c.http.bind, "127.0.0.1:8080");
        assert_eq!(c.database.app_role, "tessera_app");
        assert_eq!(c.public.base_domain, "localhost");
    }

    #[test]
    fn production_requires_key() {
        let e = Config::load_from(Profile::Production, &dir(), Env::prefixed("TESSERA_UNSET_"))
            .unwrap_err();
        assert!(e.to_string().contains("auth.signing_key_file"), "{e}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the closure's error type
    fn env_overrides_and_bad_values_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TESSERA_JAIL_HTTP__BIND", "0.0.0.0:9000");
            // Prefix-sharing variables that are not `<SECTION>__<KEY>` are not configuration.
            jail.set_env("TESSERA_JAIL_BIN", "/usr/local/bin/tessera");
            let c =
                Config::load_from(Profile::Test, &dir(), Env::prefixed("TESSERA_JAIL_")).unwrap();
            assert_eq!(c.http.bind, "0.0.0.0:9000");
            jail.set_env("TESSERA_JAIL_DATABASE__POOL_SIZE", "lots");
            let e = Config::load_from(Profile::Test, &dir(), Env::prefixed("TESSERA_JAIL_"))
                .unwrap_err();
            assert!(e.to_string().contains("database.pool_size"), "{e}");
            jail.set_env("TESSERA_JAIL_DATABASE__POOL_SIZE", "4");
            jail.set_env("TESSERA_JAIL_HTTP__NOPE", "1");
            let e = Config::load_from(Profile::Test, &dir(), Env::prefixed("TESSERA_JAIL_"))
                .unwrap_err();
            assert!(e.to_string().contains("nope"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn purge_interval_defaults_to_an_hour_zero_disables_and_a_week_is_the_limit() {
        let mut c = Config::load_from(
            Profile::Development,
            &dir(),
            Env::prefixed("TESSERA_UNSET_"),
        )
        .unwrap();
        assert_eq!(c.maintenance.purge_interval_secs, 3600);
        c.maintenance.purge_interval_secs = 0;
        c.validate().unwrap();
        c.maintenance.purge_interval_secs = MAX_PURGE_INTERVAL_SECS;
        c.validate().unwrap();
        c.maintenance.purge_interval_secs = MAX_PURGE_INTERVAL_SECS + 1;
        let e = c.validate().unwrap_err();
        assert!(
            e.to_string().contains("maintenance.purge_interval_secs"),
            "{e}"
        );
    }

    #[test]
    fn login_throttle_keys_are_validated() {
        let base =
            Config::load_from(Profile::Test, &dir(), Env::prefixed("TESSERA_UNSET_")).unwrap();
        let refused = |key: &str, tweak: fn(&mut AuthConfig)| {
            let mut c = base.clone();
            tweak(&mut c.auth);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        };
        refused("auth.login_failures_per_account_ip_per_minute", |a| {
            a.login_failures_per_account_ip_per_minute = 0
        });
        refused("auth.login_failures_per_account_per_hour", |a| {
            a.login_failures_per_account_per_hour = 0
        });
        refused("auth.login_known_ip_days", |a| a.login_known_ip_days = 0);
        refused("auth.login_known_ip_days", |a| a.login_known_ip_days = 366);
    }

    #[test]
    fn redis_keys_are_validated() {
        let base =
            Config::load_from(Profile::Test, &dir(), Env::prefixed("TESSERA_UNSET_")).unwrap();
        assert!(base.redis.url.is_empty(), "no Redis unless configured");
        let check = |tweak: fn(&mut RedisConfig)| {
            let mut c = base.clone();
            tweak(&mut c.redis);
            c.validate().map_err(|e| e.to_string())
        };
        check(|r| r.url = "redis://127.0.0.1:6379/2".into()).unwrap();
        for (key, tweak) in [
            (
                "redis.url",
                (|r| r.url = "127.0.0.1:6379".into()) as fn(&mut RedisConfig),
            ),
            ("redis.url", |r| r.url = "redis://".into()),
            ("redis.url", |r| r.url = "rediss://cache:6380".into()),
            ("redis.connect_timeout_ms", |r| r.connect_timeout_ms = 0),
            ("redis.command_timeout_ms", |r| r.command_timeout_ms = 0),
            ("redis.retry_ms", |r| r.retry_ms = 0),
        ] {
            let e = check(tweak).unwrap_err();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn cache_lives_are_bounded() {
        let base =
            Config::load_from(Profile::Test, &dir(), Env::prefixed("TESSERA_UNSET_")).unwrap();
        let mut c = base.clone();
        c.auth.principal_cache_secs = 3600;
        c.tenancy.cache_secs = 3600;
        c.validate().unwrap();
        c.auth.principal_cache_secs = 3601;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("auth.principal_cache_secs"), "{e}");
        let mut c = base;
        c.tenancy.cache_secs = 3601;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("tenancy.cache_secs"), "{e}");
    }

    #[test]
    fn identifiers() {
        assert!(is_sql_identifier("tessera_app"));
        assert!(!is_sql_identifier("x; drop"));
        assert!(!is_sql_identifier("Upper"));
    }
}
