//! Creating a tenant: the one sequence signup, the operator API and manifests share.
//!
//! The `tenants` row is platform data (only the platform role may insert it), while the owner,
//! roles and tokens are the new tenant's own rows (written as the app role in the tenant's
//! context). So creation is three short transactions:
//!
//! 1. [`reserve`] (platform): insert the row with status `provisioning`. The unique slug index
//!    makes a taken slug a 409 without a failed statement. A provisioning tenant is not served:
//!    the directory treats it as not found.
//! 2. the caller's tenant transaction: owner, roles, tokens, the quota counters
//!    ([`start_counters`]), the audit event.
//! 3. [`activate`] (platform) on success, or [`release`] (platform) on failure, which deletes
//!    the reserved row again so the slug is free.
//!
//! A crash between 1 and 3 leaves a `provisioning` row behind: never served, its slug held.
//! `tessera platform purge` removes such rows once they are an hour old.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;

use super::door::PlatformDoor;
use super::invalidation;
use super::model::Tenant;
use crate::access::roles;
use crate::auth::users::{self, User};
use crate::db::schema::{quota_counters, tenants};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::limits::quota::{self, Quota};
use crate::tenancy::TenantTx;

/// Step 1: reserves `tenant`'s slug and id (status `provisioning`); 409 `slug_taken` if the slug
/// is in use (or was, by a deleted tenant).
pub async fn reserve(platform: &PlatformDoor, tenant: &Tenant) -> AppResult<()> {
    let mut row = tenant.clone();
    row.status = "provisioning".into();
    platform
        .tx(false, move |tx| {
            async move {
                let inserted = diesel::insert_into(tenants::table)
                    .values(&row)
                    .on_conflict_do_nothing()
                    .execute(tx.conn())
                    .await?;
                if inserted == 0 {
                    return Err(AppError::SlugTaken);
                }
                Ok(())
            }
            .scope_boxed()
        })
        .await
}

/// Step 2's bookkeeping: the new tenant's quota counters, with `seats` users already counted.
pub async fn start_counters(tx: &mut TenantTx<'_>, seats: i64) -> AppResult<()> {
    diesel::insert_into(quota_counters::table)
        .values((
            quota_counters::tenant_id.eq(tx.tenant_id().as_uuid()),
            quota_counters::seats.eq(seats),
        ))
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Step 2's main part: the new tenant's system roles and quota counters, and its first user,
/// who becomes `owner` (taking one seat under `seats`).
pub async fn first_owner(
    tx: &mut TenantTx<'_>,
    email: &str,
    name: &str,
    password_hash: &str,
    seats: u64,
) -> AppResult<User> {
    let role_ids = roles::ensure_system_roles(tx).await?;
    start_counters(tx, 0).await?;
    quota::take(tx, Quota::Seats, seats).await?;
    let user = users::insert(tx, email, name, Some(password_hash)).await?;
    roles::assign(tx, user.id, role_ids["owner"]).await?;
    Ok(user)
}

/// Step 3 on success: the tenant is served from now on, in every replica (a replica that cached
/// the slug as unknown hears of it through [`super::invalidation`]).
pub async fn activate(platform: &PlatformDoor, id: TenantId) -> AppResult<()> {
    platform
        .tx(false, move |tx| {
            async move {
                diesel::update(tenants::table.find(id))
                    .filter(tenants::status.eq("provisioning"))
                    .set(tenants::status.eq("active"))
                    .execute(tx.conn())
                    .await?;
                invalidation::notify(tx.conn(), id).await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await
}

/// Step 3 on failure: frees the reserved slug. Best effort: if this fails too, the row stays
/// `provisioning` (unserved) until purged, and the caller's own error is what the client sees.
pub async fn release(platform: &PlatformDoor, id: TenantId) {
    let result = platform
        .tx(false, move |tx| {
            async move {
                diesel::delete(tenants::table.find(id))
                    .filter(tenants::status.eq("provisioning"))
                    .execute(tx.conn())
                    .await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(tenant.id = %id, error = %e, "could not release a failed signup's slug");
    }
}
