//! Tenants as code: `tessera tenants apply <dir>` reads `*.toml` manifests and creates or updates
//! each tenant, its system roles and its listed users. Applying the same files twice changes
//! nothing the second time.
//!
//! ```toml
//! id = "0193…"                # optional: a fixed tenant id
//! slug = "acme"
//! name = "Acme Corp"
//! plan = "free"               # optional, default "free"
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
use super::model::{self, Tenant};
use super::provision;
use crate::access::roles;
use crate::auth::{password, users};
use crate::db::schema::tenants;
use crate::error::AppError;
use crate::ids::TenantId;
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

/// Reads and validates every `*.toml` in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<Manifest>> {
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
        validate(&m).with_context(|| format!("{}", file.display()))?;
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

fn validate(m: &Manifest) -> anyhow::Result<()> {
    if !valid_slug(&m.slug) {
        bail!("slug `{}` is not a valid tenant slug", m.slug);
    }
    if m.name.trim().is_empty() {
        bail!("name must not be empty");
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
            let t = Tenant::new(tenant_id, &m.slug, &m.name, &m.plan);
            provision::reserve(platform, &t).await.map_err(anyhow_of)?;
            t
        }
        Some(_) => {
            let m2 = m.clone();
            platform
                .tx(false, move |tx| {
                    async move {
                        diesel::update(tenants::table.find(tenant_id))
                            .filter(tenants::name.ne(&m2.name).or(tenants::plan.ne(&m2.plan)))
                            .set((
                                tenants::name.eq(&m2.name),
                                tenants::plan.eq(&m2.plan),
                                tenants::updated_at.eq(chrono::Utc::now()),
                                tenants::version.eq(tenants::version + 1),
                            ))
                            .execute(tx.conn())
                            .await?;
                        model::by_id(tx.conn(), tenant_id)
                            .await?
                            .ok_or(AppError::NotFound)
                    }
                    .scope_boxed()
                })
                .await
                .map_err(anyhow_of)?
        }
    };
    let result = door
        .write(TxScope::tenant(tenant_id), |tx| {
            async move {
                if created {
                    provision::start_counters(tx, 0).await?;
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

fn anyhow_of(e: AppError) -> anyhow::Error {
    match e {
        AppError::Internal(inner) => inner,
        other => anyhow::anyhow!("{other}"),
    }
}
