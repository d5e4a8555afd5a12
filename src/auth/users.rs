//! Tenant users: creation and lookup, always inside the tenant door.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::schema::users;
use crate::error::AppResult;
use crate::ids::{TenantId, UserId};
use crate::tenancy::TenantTx;

/// A user row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    /// Tenant.
    pub tenant_id: TenantId,
    /// User id.
    pub id: UserId,
    /// Lower-cased email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: Option<String>,
    /// `active` or `disabled`.
    pub status: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// The public view of a user.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    /// User id.
    #[schema(value_type = uuid::Uuid)]
    pub id: UserId,
    /// Email.
    pub email: String,
    /// Display name.
    pub name: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
        }
    }
}

/// Normalizes an email for storage and lookup.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Longest email, in characters (RFC 5321's 254, counted as the OpenAPI `maxLength` that
/// describes it counts).
pub const MAX_EMAIL: usize = 254;

/// A deliberately simple shape check: one `@`, something on both sides, a dot in the domain.
pub fn validate_email(email: &str) -> Result<(), String> {
    let e = email.trim();
    let valid = e.chars().count() <= MAX_EMAIL
        && !e.contains(char::is_whitespace)
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid {
        Ok(())
    } else {
        Err("is not a valid email address".into())
    }
}

/// Finds a user by email in the transaction's tenant.
pub async fn by_email(tx: &mut TenantTx<'_>, email: &str) -> AppResult<Option<User>> {
    let tenant = tx.tenant_id();
    Ok(users::table
        .filter(users::tenant_id.eq(tenant))
        .filter(users::email.eq(normalize_email(email)))
        .select(User::as_select())
        .first(tx.conn())
        .await
        .optional()?)
}

/// Finds a user by id in the transaction's tenant.
pub async fn by_id(tx: &mut TenantTx<'_>, id: UserId) -> AppResult<Option<User>> {
    let tenant = tx.tenant_id();
    Ok(users::table
        .find((tenant, id))
        .select(User::as_select())
        .first(tx.conn())
        .await
        .optional()?)
}

/// Inserts a user in the transaction's tenant.
pub async fn insert(
    tx: &mut TenantTx<'_>,
    email: &str,
    name: &str,
    password_hash: Option<&str>,
) -> AppResult<User> {
    let tenant = tx.tenant_id();
    Ok(diesel::insert_into(users::table)
        .values((
            users::tenant_id.eq(tenant),
            users::id.eq(UserId::new()),
            users::email.eq(normalize_email(email)),
            users::name.eq(name.trim()),
            users::password_hash.eq(password_hash),
        ))
        .returning(User::as_returning())
        .get_result(tx.conn())
        .await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn emails() {
        assert!(super::validate_email("a@b.co").is_ok());
        assert!(super::validate_email("a@b").is_err());
        assert!(super::validate_email("a b@c.de").is_err());
        assert!(super::validate_email("@c.de").is_err());
        assert_eq!(super::normalize_email(" A@B.co "), "a@b.co");
    }
}
