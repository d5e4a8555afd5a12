//! Tenants as code: `tessera tenants apply <dir>` reads `*.toml` manifests and creates or updates
//! each tenant (name, plan, overrides), its system roles and its listed users. [`diff`] says
//! what a run would change (`--dry-run` prints only that); applying the same files twice changes
//! nothing the second time. Tenants in no manifest are kept unless `--prune` soft-deletes them
//! ([`prune_candidates`]), like the operator API's DELETE.
//!
//! A manifest declares the whole of what it names: a tenant whose manifest has no
//! `[quota_overrides]` table gets its quota overrides removed. Changes to existing tenants go
//! through [`super::lifecycle`], so they are audited (`actor_type = "platform"`, `via =
//! "manifest"`) and announced to every replica.
//!
//! ```toml
//! id = "0193…"                # optional: a fixed tenant id
//! slug = "acme"
//! name = "Acme Corp"
//! plan = "free"               # optional, default "free"; any plan in plans.toml
//! [quota_overrides]           # optional
//! records = 50000
//! [rate_overrides]            # optional
//! requests_per_second = 50
//! burst = 100
//! [[users]]
//! email = "owner@acme.test"
//! name = "Acme Owner"
//! roles = ["owner"]
//! password_env = "ACME_OWNER_PASSWORD"   # optional: otherwise a password is generated
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;
use serde::Deserialize;

use super::door::{Door, PlatformDoor, TxScope};
use super::host::valid_slug;
use super::lifecycle::{self, Change, Operator, Overrides};
use super::model::{self, Tenant};
use super::{provision, rules};
use crate::access::roles;
use crate::auth::{password, users};
use crate::db::schema::tenants;
use crate::error::AppError;
use crate::ids::TenantId;
use crate::limits::plans::{Plans, QuotaOverrides, RateOverrides};
use crate::limits::quota::{self, Quota};

/// One manifest file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Fixed tenant id (optional).
    pub id: Option<uuid::Uuid>,
    /// Subdomain label.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Plan name.
    #[serde(default = "default_plan")]
    pub plan: String,
    /// Quota overrides (none when absent).
    #[serde(default)]
    pub quota_overrides: QuotaOverrides,
    /// Rate and request-path overrides (none when absent).
    #[serde(default)]
    pub rate_overrides: RateOverrides,
    /// Users to ensure.
    #[serde(default)]
    pub users: Vec<ManifestUser>,
}

fn default_plan() -> String {
    "free".into()
}

/// A user listed in a manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestUser {
    /// Login email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// System role names.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
}

/// What applying one user did.
#[derive(Debug, Clone)]
pub struct AppliedUser {
    /// The user's email.
    pub email: String,
    /// `Some` when a password was generated now (shown once).
    pub generated_password: Option<String>,
    /// Whether the user was created by this run.
    pub created: bool,
}

/// What applying one manifest did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The tenant as it now stands.
    pub tenant: Tenant,
    /// Whether the tenant was created by this run.
    pub created: bool,
    /// Per-user outcome.
    pub users: Vec<AppliedUser>,
}

/// Reads and validates every `*.toml` in `dir`, sorted by file name, against the configured
/// `plans`.
pub fn load_dir(dir: &Path, plans: &Plans) -> anyhow::Result<Vec<Manifest>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading tenant manifests from {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut seen = BTreeMap::new();
    let mut out = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let m: Manifest = toml::from_str(&text)
            .with_context(|| format!("{}: invalid manifest", file.display()))?;
        validate(&m, plans).with_context(|| format!("{}", file.display()))?;
        if let Some(prev) = seen.insert(m.slug.clone(), file.clone()) {
            bail!(
                "slug `{}` appears in both {} and {}",
                m.slug,
                prev.display(),
                file.display()
            );
        }
        out.push(m);
    }
    Ok(out)
}

fn validate(m: &Manifest, plans: &Plans) -> anyhow::Result<()> {
    if !valid_slug(&m.slug) {
        bail!("slug `{}` is not a valid tenant slug", m.slug);
    }
    if !rules::display_name_ok(&m.name) {
        bail!("name must be 1–{} characters", rules::MAX_NAME);
    }
    if plans.get(&m.plan).is_none() {
        bail!(
            "plan `{}` is not configured (plans: {})",
            m.plan,
            plans.iter().map(|(n, _)| n).collect::<Vec<_>>().join(", ")
        );
    }
    if let Some((field, why)) = m.rate_overrides.problems().into_iter().next() {
        bail!("rate_overrides.{field} {why}");
    }
    for u in &m.users {
        users::validate_email(&u.email).map_err(|e| anyhow::anyhow!("user {}: {e}", u.email))?;
        for r in &u.roles {
            if !roles::SYSTEM_ROLES.iter().any(|s| s.name == r) {
                bail!("user {}: unknown role `{r}`", u.email);
            }
        }
    }
    Ok(())
}

/// Applies one manifest: creates or updates the tenant, ensures system roles and users.
/// `password_env` names are looked up in `passwords` first, then in the process environment.
pub async fn apply(
    door: &Door,
    platform: &PlatformDoor,
    m: &Manifest,
    passwords: &BTreeMap<String, String>,
) -> anyhow::Result<Applied> {
    let existing = platform
        .tx(true, |tx| {
            let slug = m.slug.clone();
            async move { Ok(model::by_slug(tx.conn(), &slug).await?) }.scope_boxed()
        })
        .await
        .map_err(anyhow_of)?;
    if let (Some(t), Some(id)) = (&existing, m.id)
        && t.id.as_uuid() != id
    {
        bail!(
            "slug `{}` already belongs to tenant {}, not {id}",
            m.slug,
            t.id
        );
    }
    let tenant_id = existing
        .as_ref()
        .map(|t| t.id)
        .unwrap_or_else(|| match m.id {
            Some(id) => TenantId(id),
            None => TenantId::new(),
        });
    // Hash passwords before the transaction: argon2 is deliberately slow.
    let mut prepared = Vec::new();
    for u in &m.users {
        let (plain, generated) = match &u.password_env {
            Some(var) => (
                passwords
                    .get(var)
                    .cloned()
                    .or_else(|| std::env::var(var).ok())
                    .with_context(|| format!("{}: ${var} is not set", u.email))?,
                false,
            ),
            None => (password::generate(), true),
        };
        password::check_policy(&plain)
            .map_err(|e| anyhow::anyhow!("{}: the password {e}", u.email))?;
        let hash = password::hash(plain.clone()).await.map_err(anyhow_of)?;
        prepared.push((u.clone(), plain, generated, hash));
    }
    let created = existing.is_none();
    // The tenants row is platform data: created (tenancy::provision) or updated on the platform
    // path; users and roles are the tenant's own rows, written in its context.
    let tenant = match &existing {
        None => {
            let mut t = Tenant::new(tenant_id, &m.slug, &m.name, &m.plan);
            t.quota_overrides = serde_json::to_value(m.quota_overrides)?;
            t.rate_overrides = serde_json::to_value(m.rate_overrides)?;
            provision::reserve(platform, &t).await.map_err(anyhow_of)?;
            t
        }
        Some(_) => lifecycle::update(platform, tenant_id, change_of(m), None, &operator())
            .await
            .map_err(anyhow_of)?,
    };
    let result = door
        .write(TxScope::tenant(tenant_id), |tx| {
            async move {
                if created {
                    provision::start_counters(tx, 0).await?;
                    let changes = serde_json::json!({"fields": ["slug", "name", "plan"]});
                    lifecycle::record(tx, &operator(), "tenant.created", tenant_id, changes)
                        .await?;
                }
                let role_ids = roles::ensure_system_roles(tx).await?;
                let mut out = Vec::new();
                for (u, _plain, generated, hash) in prepared {
                    let (user, was_created) = match users::by_email(tx, &u.email).await? {
                        Some(existing) => (existing, false),
                        None => {
                            // Manifests are the operator's word: seats are counted, not capped.
                            quota::take(tx, Quota::Seats, u64::MAX).await?;
                            (
                                users::insert(tx, &u.email, &u.name, Some(&hash)).await?,
                                true,
                            )
                        }
                    };
                    for r in &u.roles {
                        roles::assign(tx, user.id, role_ids[r.as_str()]).await?;
                    }
                    out.push(AppliedUser {
                        email: user.email,
                        generated_password: (was_created && generated).then_some(_plain),
                        created: was_created,
                    });
                }
                Ok(out)
            }
            .scope_boxed()
        })
        .await;
    if created {
        match &result {
            Ok(_) => provision::activate(platform, tenant_id)
                .await
                .map_err(anyhow_of)?,
            Err(_) => provision::release(platform, tenant_id).await,
        }
    }
    let users_out = result.map_err(anyhow_of)?;
    Ok(Applied {
        tenant,
        created,
        users: users_out,
    })
}

/// Manifests act as the platform without a key; their events say `via: manifest`.
fn operator() -> Operator {
    Operator {
        key: None,
        via: "manifest",
        context: Default::default(),
    }
}

/// What `m` declares about an existing tenant, as a change replacing every declared field.
fn change_of(m: &Manifest) -> Change {
    Change {
        name: Some(m.name.clone()),
        plan: Some(m.plan.clone()),
        status: None,
        quota_overrides: Some(Overrides::Replace(m.quota_overrides)),
        rate_overrides: Some(Overrides::Replace(m.rate_overrides)),
    }
}

/// What applying one manifest would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The tenant's slug.
    pub slug: String,
    /// Whether the tenant would be created.
    pub create: bool,
    /// Fields that would change: (field, old, new), values as JSON text.
    pub fields: Vec<(&'static str, String, String)>,
    /// Emails of users that would be created.
    pub users_to_add: Vec<String>,
    /// Roles existing users would be given: (email, role).
    pub roles_to_grant: Vec<(String, String)>,
}

impl Diff {
    /// Whether applying would change nothing.
    pub fn is_empty(&self) -> bool {
        !self.create
            && self.fields.is_empty()
            && self.users_to_add.is_empty()
            && self.roles_to_grant.is_empty()
    }
}

/// Compares `m` with the database, changing nothing. A manifest naming a deleted tenant's slug
/// is an error: the slug is not reusable.
pub async fn diff(door: &Door, platform: &PlatformDoor, m: &Manifest) -> anyhow::Result<Diff> {
    let slug = m.slug.clone();
    let existing = platform
        .tx(true, move |tx| {
            async move { Ok(model::by_slug(tx.conn(), &slug).await?) }.scope_boxed()
        })
        .await
        .map_err(anyhow_of)?;
    let mut out = Diff {
        slug: m.slug.clone(),
        create: existing.is_none(),
        fields: Vec::new(),
        users_to_add: Vec::new(),
        roles_to_grant: Vec::new(),
    };
    let Some(t) = existing else {
        out.users_to_add = m.users.iter().map(|u| u.email.clone()).collect();
        return Ok(out);
    };
    if t.status == "deleted" || t.status == "provisioning" {
        bail!(
            "slug `{}` belongs to a {} tenant ({}) and cannot be used",
            m.slug,
            t.status,
            t.id
        );
    }
    for (field, old, new) in [
        ("name", json(&t.name), json(&m.name)),
        ("plan", json(&t.plan), json(&m.plan)),
        (
            "quota_overrides",
            json(&t.quota_overrides()),
            json(&m.quota_overrides),
        ),
        (
            "rate_overrides",
            json(&t.rate_overrides()),
            json(&m.rate_overrides),
        ),
    ] {
        if old != new {
            out.fields.push((field, old, new));
        }
    }
    let wanted: Vec<(String, Vec<String>)> = m
        .users
        .iter()
        .map(|u| (u.email.clone(), u.roles.clone()))
        .collect();
    (out.users_to_add, out.roles_to_grant) = door
        .read(TxScope::tenant(t.id), |tx| {
            async move {
                let mut missing = Vec::new();
                let mut grants = Vec::new();
                for (email, roles) in wanted {
                    let Some(user) = users::by_email(tx, &email).await? else {
                        missing.push(email);
                        continue;
                    };
                    let held = roles::names_of(tx, user.id).await?;
                    for r in roles {
                        if !held.contains(&r) {
                            grants.push((email.clone(), r));
                        }
                    }
                }
                Ok((missing, grants))
            }
            .scope_boxed()
        })
        .await
        .map_err(anyhow_of)?;
    Ok(out)
}

/// A field's value as a diff line shows it: compact JSON.
fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Live tenants (active or suspended) whose slug is in no manifest: what `--prune` deletes.
pub async fn prune_candidates(
    platform: &PlatformDoor,
    manifests: &[Manifest],
) -> anyhow::Result<Vec<Tenant>> {
    let slugs: Vec<String> = manifests.iter().map(|m| m.slug.clone()).collect();
    platform
        .tx(true, move |tx| {
            async move {
                Ok(tenants::table
                    .filter(tenants::status.eq_any(["active", "suspended"]))
                    .filter(tenants::slug.ne_all(slugs))
                    .order(tenants::slug)
                    .select(Tenant::as_select())
                    .load(tx.conn())
                    .await?)
            }
            .scope_boxed()
        })
        .await
        .map_err(anyhow_of)
}

/// Soft-deletes `tenant` as `--prune` does: like the operator API's DELETE, audited and
/// announced, with the configured grace period before its data may be purged.
pub async fn prune(
    platform: &PlatformDoor,
    tenant: &Tenant,
    grace_days: u32,
) -> anyhow::Result<()> {
    lifecycle::soft_delete(platform, tenant.id, grace_days, None, &operator())
        .await
        .map_err(anyhow_of)?;
    Ok(())
}

fn anyhow_of(e: AppError) -> anyhow::Error {
    match e {
        AppError::Internal(inner) => inner,
        other => anyhow::anyhow!("{other}"),
    }
}
