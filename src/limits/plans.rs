//! Plans and per-tenant limits.
//!
//! A [`Plan`] is what operators sell: quotas (how much a tenant may keep), a rate (how fast it may
//! call), a statement timeout and a cap on requests in flight. They come from `plans.toml` in the
//! config folder, or from the copy built into the binary when that file is missing, and are
//! validated at start like the rest of the configuration. A tenant's effective [`Limits`] are its
//! plan's, with its own overrides ([`QuotaOverrides`], [`RateOverrides`]) laid on top.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::ConfigError;

const EMBEDDED_PLANS: &str = include_str!("../../config/plans.toml");

/// The plan a tenant gets when signup names none.
pub const DEFAULT_PLAN: &str = "free";

/// Plans every deployment must offer (API and docs name them).
const REQUIRED: [&str; 3] = ["free", "pro", "enterprise"];

/// Upper bound on any rate or concurrency number: beyond it a typo (an extra zero) is likelier
/// than intent, and GCRA periods below a microsecond lose precision.
const MAX_RATE: u32 = 1_000_000;

/// The quotas of a plan: how much a tenant may hold or use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Live (not deleted) CRM records.
    pub records: u64,
    /// Active users.
    pub seats: u64,
    /// Webhook endpoints.
    pub webhook_endpoints: u64,
    /// Tenant-scoped API requests per calendar month (UTC).
    pub api_requests_per_month: u64,
}

/// A plan's request rate (GCRA): `requests_per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained requests per second.
    pub requests_per_second: u32,
    /// Requests that may arrive at once after a quiet spell.
    pub burst: u32,
}

/// One plan, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Whether public signup may pick it.
    pub self_serve: bool,
    /// PostgreSQL `statement_timeout` inside this tenant's transactions.
    pub statement_timeout_ms: u64,
    /// Tenant requests in flight at once, per replica.
    pub max_concurrent_requests: u32,
    /// Quotas.
    pub quotas: Quotas,
    /// Request rate.
    pub rate: Rate,
}

/// Every configured plan, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Plans(BTreeMap<String, Plan>);

impl Plans {
    /// Loads `<dir>/plans.toml`, or the embedded copy when the file does not exist, and
    /// validates it. Errors are one line naming the bad key (`plans.pro.rate.burst: …`).
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir.join("plans.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => EMBEDDED_PLANS.to_string(),
            Err(e) => return Err(ConfigError(format!("{}: {e}", path.display()))),
        };
        Self::parse(&text)
    }

    /// Parses and validates plans from TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::new(text);
        let plans: Plans = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let msg = e.inner().message().to_string();
            ConfigError(format!("plans.{key}: {msg}"))
        })?;
        plans.validate()?;
        Ok(plans)
    }

    /// The embedded plans (always valid: a unit test says so).
    pub fn embedded() -> Self {
        Self::parse(EMBEDDED_PLANS).expect("embedded plans.toml is valid")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: String, why: &str| Err(ConfigError(format!("plans.{key}: {why}")));
        for name in REQUIRED {
            if !self.0.contains_key(name) {
                return fail(name.into(), "this plan must be defined");
            }
        }
        for (name, plan) in &self.0 {
            if !crate::config::is_sql_identifier(name) || name.len() > 32 {
                return fail(
                    name.clone(),
                    "plan names are lower-case letters, digits and _ (at most 32)",
                );
            }
            let rate = plan.rate;
            if !(1..=MAX_RATE).contains(&rate.requests_per_second) {
                return fail(
                    format!("{name}.rate.requests_per_second"),
                    "must be between 1 and 1000000",
                );
            }
            if !(1..=MAX_RATE).contains(&rate.burst) {
                return fail(
                    format!("{name}.rate.burst"),
                    "must be between 1 and 1000000",
                );
            }
            if !(1..=MAX_RATE).contains(&plan.max_concurrent_requests) {
                return fail(
                    format!("{name}.max_concurrent_requests"),
                    "must be between 1 and 1000000",
                );
            }
            if !(1..=3_600_000).contains(&plan.statement_timeout_ms) {
                return fail(
                    format!("{name}.statement_timeout_ms"),
                    "must be between 1 and 3600000",
                );
            }
        }
        if !self.0.get(DEFAULT_PLAN).is_some_and(|p| p.self_serve) {
            return fail(
                format!("{DEFAULT_PLAN}.self_serve"),
                "the signup default must be self-serve",
            );
        }
        Ok(())
    }

    /// The plan called `name`.
    pub fn get(&self, name: &str) -> Option<&Plan> {
        self.0.get(name)
    }

    /// Whether public signup may choose `name`.
    pub fn is_self_serve(&self, name: &str) -> bool {
        self.get(name).is_some_and(|p| p.self_serve)
    }

    /// The plan called `name`, to change in place: configuration built in code (tests,
    /// embedding) rather than read from plans.toml. Run [`Plans::parse`]'s rules yourself.
    pub fn plan_mut(&mut self, name: &str) -> Option<&mut Plan> {
        self.0.get_mut(name)
    }

    /// Every plan, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Plan)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The highest statement timeout of any plan (config validation compares it with the
    /// request deadline).
    pub fn max_statement_timeout_ms(&self) -> u64 {
        self.0
            .values()
            .map(|p| p.statement_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// A tenant's effective limits: its plan's, with its overrides on top. A plan name that is no
    /// longer configured (removed from plans.toml while tenants are on it) falls back to the
    /// default plan, so a tenant is never left without limits.
    pub fn limits(&self, plan: &str, quotas: &QuotaOverrides, rate: &RateOverrides) -> Limits {
        let base = self
            .get(plan)
            .or_else(|| self.get(DEFAULT_PLAN))
            .cloned()
            .unwrap_or_else(|| Self::embedded().0[DEFAULT_PLAN].clone());
        Limits {
            quotas: Quotas {
                records: quotas.records.unwrap_or(base.quotas.records),
                seats: quotas.seats.unwrap_or(base.quotas.seats),
                webhook_endpoints: quotas
                    .webhook_endpoints
                    .unwrap_or(base.quotas.webhook_endpoints),
                api_requests_per_month: quotas
                    .api_requests_per_month
                    .unwrap_or(base.quotas.api_requests_per_month),
            },
            rate: Rate {
                requests_per_second: rate
                    .requests_per_second
                    .unwrap_or(base.rate.requests_per_second),
                burst: rate.burst.unwrap_or(base.rate.burst),
            },
            statement_timeout_ms: rate
                .statement_timeout_ms
                .unwrap_or(base.statement_timeout_ms),
            max_concurrent_requests: rate
                .max_concurrent_requests
                .unwrap_or(base.max_concurrent_requests),
        }
    }
}

/// Per-tenant quota overrides (`tenants.quota_overrides`); an absent key keeps the plan's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverrides {
    /// Live CRM records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Active users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u64>,
    /// Webhook endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_endpoints: Option<u64>,
    /// API requests per month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_requests_per_month: Option<u64>,
}

/// Per-tenant overrides of the request-path limits (`tenants.rate_overrides`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateOverrides {
    /// Sustained requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    /// Burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Requests in flight per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u32>,
    /// Statement timeout inside the tenant's transactions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_timeout_ms: Option<u64>,
}

impl RateOverrides {
    /// Field problems (`field`, message), for a 422 or a manifest error.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        let in_range = |v: Option<u32>| v.is_none_or(|v| (1..=MAX_RATE).contains(&v));
        if !in_range(self.requests_per_second) {
            out.push(("requests_per_second", "must be between 1 and 1000000"));
        }
        if !in_range(self.burst) {
            out.push(("burst", "must be between 1 and 1000000"));
        }
        if !in_range(self.max_concurrent_requests) {
            out.push(("max_concurrent_requests", "must be between 1 and 1000000"));
        }
        if self
            .statement_timeout_ms
            .is_some_and(|v| !(1..=3_600_000).contains(&v))
        {
            out.push(("statement_timeout_ms", "must be between 1 and 3600000"));
        }
        out
    }
}

/// A tenant's effective limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Limits {
    /// Quotas.
    pub quotas: Quotas,
    /// Request rate.
    pub rate: Rate,
    /// Statement timeout inside the tenant's transactions.
    pub statement_timeout_ms: u64,
    /// Requests in flight per replica.
    pub max_concurrent_requests: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_plans_are_valid_and_match_the_starting_points() {
        let p = Plans::embedded();
        let rate = |n: &str| p.get(n).unwrap().rate;
        assert_eq!(
            (rate("free").requests_per_second, rate("free").burst),
            (20, 40)
        );
        assert_eq!(
            (rate("pro").requests_per_second, rate("pro").burst),
            (100, 200)
        );
        assert_eq!(
            (
                rate("enterprise").requests_per_second,
                rate("enterprise").burst
            ),
            (500, 1000)
        );
        assert!(p.is_self_serve("free") && p.is_self_serve("pro"));
        assert!(!p.is_self_serve("enterprise"));
        // The file shipped in config/ is the embedded one.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        assert_eq!(Plans::load(&dir).unwrap(), p);
    }

    #[test]
    fn a_missing_file_falls_back_to_the_embedded_plans() {
        let dir = std::env::temp_dir().join(format!("tessera-plans-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Plans::load(&dir).unwrap(), Plans::embedded());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_plans_name_the_key_in_one_line() {
        let good = EMBEDDED_PLANS;
        let cases = [
            (
                good.replace("burst = 200", "burst = 0"),
                "plans.pro.rate.burst",
            ),
            (
                good.replace("burst = 200", "burst = \"lots\""),
                "plans.pro.rate.burst",
            ),
            (
                good.replace("seats = 50\n", "seats = 50\nseets = 1\n"),
                "plans.pro.quotas",
            ),
            (
                good.replace("[enterprise]", "[enterprise_x]")
                    .replace("[enterprise.", "[enterprise_x."),
                "plans.enterprise",
            ),
            (
                good.replacen("self_serve = true", "self_serve = false", 1),
                "plans.free.self_serve",
            ),
            (
                good.replace("statement_timeout_ms = 2000", "statement_timeout_ms = 0"),
                "plans.free.statement_timeout_ms",
            ),
        ];
        for (text, key) in cases {
            let e = Plans::parse(&text).unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn overrides_replace_single_limits() {
        let p = Plans::embedded();
        let l = p.limits(
            "pro",
            &QuotaOverrides {
                records: Some(7),
                ..Default::default()
            },
            &RateOverrides {
                burst: Some(3),
                ..Default::default()
            },
        );
        assert_eq!(l.quotas.records, 7);
        assert_eq!(l.quotas.seats, 50);
        assert_eq!(
            l.rate,
            Rate {
                requests_per_second: 100,
                burst: 3
            }
        );
        // An unknown plan name falls back to the default plan.
        let f = p.limits("gone", &Default::default(), &Default::default());
        assert_eq!(f.rate.requests_per_second, 20);
    }
}
