//! System roles (`owner admin member viewer`), seeded into every tenant, and role assignment.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::catalogue::{ALL, CRM_RESOURCES};
use crate::db::schema::{role_permissions, roles, user_roles};
use crate::error::AppResult;
use crate::ids::{RoleId, UserId};
use crate::tenancy::TenantTx;

/// A built-in role definition.
pub struct SystemRole {
    /// Role name.
    pub name: &'static str,
    /// What it is for.
    pub description: &'static str,
}

/// The four roles every tenant has; they cannot be edited or deleted.
pub const SYSTEM_ROLES: &[SystemRole] = &[
    SystemRole {
        name: "owner",
        description: "Everything, including ownership and tenant deletion.",
    },
    SystemRole {
        name: "admin",
        description: "Everything except ownership transfer and tenant deletion.",
    },
    SystemRole {
        name: "member",
        description: "CRM read/write/delete, reports, user directory.",
    },
    SystemRole {
        name: "viewer",
        description: "CRM read and reports.",
    },
];

/// The permissions a system role grants.
pub fn system_permissions(role: &str) -> Vec<&'static str> {
    let crm = |actions: &[&str]| -> Vec<&'static str> {
        ALL.iter()
            .copied()
            .filter(|p| {
                let (res, act) = p.split_once(':').unwrap_or_default();
                CRM_RESOURCES.contains(&res) && actions.contains(&act)
            })
            .collect()
    };
    match role {
        "owner" => ALL.to_vec(),
        // `tenant:manage` covers ownership transfer and tenant deletion.
        "admin" => ALL
            .iter()
            .copied()
            .filter(|p| *p != "tenant:manage")
            .collect(),
        "member" => {
            let mut v = crm(&["read", "write", "delete"]);
            v.extend(["reports:read", "users:read"]);
            v
        }
        "viewer" => {
            let mut v = crm(&["read"]);
            v.push("reports:read");
            v
        }
        _ => Vec::new(),
    }
}

/// Creates any missing system role (and its permission rows) in the transaction's tenant and
/// returns name → id for all of them. Idempotent.
pub async fn ensure_system_roles(
    tx: &mut TenantTx<'_>,
) -> AppResult<HashMap<&'static str, RoleId>> {
    let tenant = tx.tenant_id();
    // The explicit tenant filter repeats what RLS enforces for the server's role, and is what
    // scopes the query for a role RLS does not bind (the owner in development is a superuser).
    let existing: Vec<(RoleId, String)> = roles::table
        .filter(roles::tenant_id.eq(tenant))
        .filter(roles::is_system.eq(true))
        .select((roles::id, roles::name))
        .load(tx.conn())
        .await?;
    let mut ids = HashMap::new();
    for role in SYSTEM_ROLES {
        let id = match existing.iter().find(|(_, n)| n == role.name) {
            Some((id, _)) => *id,
            None => {
                let id = RoleId::new();
                diesel::insert_into(roles::table)
                    .values((
                        roles::tenant_id.eq(tenant),
                        roles::id.eq(id),
                        roles::name.eq(role.name),
                        roles::description.eq(role.description),
                        roles::is_system.eq(true),
                    ))
                    .execute(tx.conn())
                    .await?;
                id
            }
        };
        // Re-sync permissions so a catalogue that grew reaches existing tenants too.
        let rows: Vec<_> = system_permissions(role.name)
            .into_iter()
            .map(|p| {
                (
                    role_permissions::tenant_id.eq(tenant),
                    role_permissions::role_id.eq(id),
                    role_permissions::permission.eq(p),
                )
            })
            .collect();
        diesel::insert_into(role_permissions::table)
            .values(rows)
            .on_conflict_do_nothing()
            .execute(tx.conn())
            .await?;
        ids.insert(role.name, id);
    }
    Ok(ids)
}

/// The names of the roles `user` holds.
pub async fn names_of(tx: &mut TenantTx<'_>, user: UserId) -> AppResult<Vec<String>> {
    let tenant = tx.tenant_id();
    Ok(user_roles::table
        .inner_join(
            roles::table.on(roles::tenant_id
                .eq(user_roles::tenant_id)
                .and(roles::id.eq(user_roles::role_id))),
        )
        .filter(user_roles::tenant_id.eq(tenant))
        .filter(user_roles::user_id.eq(user))
        .select(roles::name)
        .load(tx.conn())
        .await?)
}

/// Gives `user` the role `role` (no-op if already held).
pub async fn assign(tx: &mut TenantTx<'_>, user: UserId, role: RoleId) -> AppResult<()> {
    let tenant = tx.tenant_id();
    diesel::insert_into(user_roles::table)
        .values((
            user_roles::tenant_id.eq(tenant),
            user_roles::user_id.eq(user),
            user_roles::role_id.eq(role),
        ))
        .on_conflict_do_nothing()
        .execute(tx.conn())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_ladder() {
        let owner = system_permissions("owner");
        let admin = system_permissions("admin");
        let member = system_permissions("member");
        let viewer = system_permissions("viewer");
        assert!(owner.contains(&"tenant:manage") && !admin.contains(&"tenant:manage"));
        assert!(member.contains(&"contacts:delete") && !member.contains(&"users:manage"));
        assert!(viewer.contains(&"contacts:read") && !viewer.contains(&"contacts:write"));
        for p in &viewer {
            assert!(member.contains(p));
        }
    }
}
