//! Contact queries. Every function takes a [`TenantTx`]: RLS scopes them to the transaction's
//! tenant, and the explicit `tenant_id` predicates let Postgres use the composite indexes.

use chrono::Utc;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde_json::Value;
use uuid::Uuid;

use super::model::{Contact, ContactValues};
use crate::crm::list::{self, Cursor, Fingerprint, Page, Paging, SortKey};
use crate::db::schema::contacts;
use crate::error::{AppError, AppResult, FieldError};
use crate::ids::ContactId;
use crate::tenancy::TenantTx;

/// Fields a list can be sorted by.
pub const SORTABLE: &[&str] = &[
    "created_at",
    "updated_at",
    "last_name",
    "first_name",
    "email",
];

/// Simple list filters (all optional, ANDed).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// Exact email (case-insensitive).
    pub email: Option<String>,
    /// Account.
    pub account_id: Option<Uuid>,
    /// Owner.
    pub owner_id: Option<Uuid>,
    /// Lifecycle stage.
    pub lifecycle_stage: Option<String>,
    /// Has this tag.
    pub tag: Option<String>,
    /// Prefix of first name, last name or email (case-insensitive).
    pub q: Option<String>,
}

impl Filters {
    /// What a cursor is bound to: the filters as parsed (so `?q=%20` and no `q` are one list,
    /// as are a UUID in upper and lower case). Every field must be listed here, or a cursor
    /// from one filtered list would continue another.
    pub fn fingerprint(&self) -> Fingerprint {
        let Self {
            email,
            account_id,
            owner_id,
            lifecycle_stage,
            tag,
            q,
        } = self;
        let uuid = |u: &Option<Uuid>| u.map(|u| u.to_string());
        let pairs = [
            ("email", email.clone()),
            ("account_id", uuid(account_id)),
            ("owner_id", uuid(owner_id)),
            ("lifecycle_stage", lifecycle_stage.clone()),
            ("tag", tag.clone()),
            ("q", q.clone()),
        ];
        Fingerprint::of(pairs.into_iter().filter_map(|(k, v)| Some((k, v?))))
    }
}

/// The query behind `GET /v1/contacts/{id}`, built for [`crate::tenancy::Door::read_one`].
pub fn find_live(
    conn: &mut diesel_async::AsyncPgConnection,
    tenant: crate::ids::TenantId,
    id: ContactId,
) -> futures_util::future::BoxFuture<'static, QueryResult<Option<Contact>>> {
    use futures_util::FutureExt;
    contacts::table
        .filter(contacts::tenant_id.eq(tenant))
        .filter(contacts::id.eq(id))
        .filter(contacts::deleted_at.is_null())
        .select(Contact::as_select())
        .first(conn)
        .map(|r| r.optional())
        .boxed()
}

/// A live contact by id, or `None` (missing, deleted, or another tenant's: indistinguishable),
/// locking the row for the rest of the transaction.
pub async fn get_for_update(tx: &mut TenantTx<'_>, id: ContactId) -> AppResult<Option<Contact>> {
    locked(tx, id, false).await
}

/// The contact `id`, live or (`deleted`) deleted, locked for the rest of the transaction.
async fn locked(tx: &mut TenantTx<'_>, id: ContactId, deleted: bool) -> AppResult<Option<Contact>> {
    let tenant = tx.tenant_id();
    // Found by primary key; the deleted-or-not test only filters that one row.
    Ok(contacts::table
        .filter(contacts::tenant_id.eq(tenant))
        .filter(contacts::id.eq(id))
        .filter(contacts::deleted_at.is_not_null().eq(deleted))
        .select(Contact::as_select())
        .for_update()
        .first(tx.conn())
        .await
        .optional()?)
}

/// The writable columns of a contact, borrowed from [`ContactValues`]: one definition serves
/// both the insert and the update, so the two cannot drift apart.
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = contacts, treat_none_as_null = true)]
struct Writable<'a> {
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    email: Option<&'a str>,
    phone: Option<&'a str>,
    title: Option<&'a str>,
    account_id: Option<Uuid>,
    owner_id: Option<Uuid>,
    lifecycle_stage: Option<&'a str>,
    tags: &'a [String],
    custom: Value,
}

impl<'a> From<&'a ContactValues> for Writable<'a> {
    fn from(v: &'a ContactValues) -> Self {
        Self {
            first_name: v.first_name.as_deref(),
            last_name: v.last_name.as_deref(),
            email: v.email.as_deref(),
            phone: v.phone.as_deref(),
            title: v.title.as_deref(),
            account_id: v.account_id,
            owner_id: v.owner_id,
            lifecycle_stage: v.lifecycle_stage.as_deref(),
            tags: &v.tags,
            custom: Value::Object(v.custom.clone()),
        }
    }
}

/// Inserts a contact.
pub async fn insert(tx: &mut TenantTx<'_>, v: &ContactValues) -> AppResult<Contact> {
    let tenant = tx.tenant_id();
    diesel::insert_into(contacts::table)
        .values((
            contacts::tenant_id.eq(tenant),
            contacts::id.eq(ContactId::new()),
            Writable::from(v),
        ))
        .returning(Contact::as_returning())
        .get_result(tx.conn())
        .await
        .map_err(write_error)
}

/// Writes `v` over a locked contact, bumping its version.
pub async fn update(
    tx: &mut TenantTx<'_>,
    current: &Contact,
    v: &ContactValues,
) -> AppResult<Contact> {
    let tenant = tx.tenant_id();
    diesel::update(contacts::table)
        .filter(contacts::tenant_id.eq(tenant))
        .filter(contacts::id.eq(current.id))
        .set((
            Writable::from(v),
            contacts::updated_at.eq(Utc::now()),
            contacts::version.eq(current.version + 1),
        ))
        .returning(Contact::as_returning())
        .get_result(tx.conn())
        .await
        .map_err(write_error)
}

/// A deleted contact by id, locked, or `None` (live, missing, or another tenant's).
pub async fn get_deleted_for_update(
    tx: &mut TenantTx<'_>,
    id: ContactId,
) -> AppResult<Option<Contact>> {
    locked(tx, id, true).await
}

/// Brings a locked, deleted contact back; a live contact holding its email → 409.
pub async fn restore(tx: &mut TenantTx<'_>, current: &Contact) -> AppResult<Contact> {
    let tenant = tx.tenant_id();
    diesel::update(contacts::table)
        .filter(contacts::tenant_id.eq(tenant))
        .filter(contacts::id.eq(current.id))
        .set((
            contacts::deleted_at.eq(None::<chrono::DateTime<Utc>>),
            contacts::updated_at.eq(Utc::now()),
            contacts::version.eq(current.version + 1),
        ))
        .returning(Contact::as_returning())
        .get_result(tx.conn())
        .await
        .map_err(write_error)
}

/// Soft-deletes a locked contact.
pub async fn soft_delete(tx: &mut TenantTx<'_>, current: &Contact) -> AppResult<()> {
    let tenant = tx.tenant_id();
    let now = Utc::now();
    diesel::update(contacts::table)
        .filter(contacts::tenant_id.eq(tenant))
        .filter(contacts::id.eq(current.id))
        .set((
            contacts::deleted_at.eq(now),
            contacts::updated_at.eq(now),
            contacts::version.eq(current.version + 1),
        ))
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Maps integrity errors to client errors. The constraints all lead with `tenant_id`, so what
/// they reveal is about this tenant's own data only.
fn write_error(e: DieselError) -> AppError {
    match &e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if crate::db::violates(info.as_ref(), "contacts_email_live") =>
        {
            AppError::Conflict("A contact with this email already exists.".into())
        }
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info)
            if crate::db::constraint_of(info.as_ref()).is_some_and(|c| c.contains("owner_id")) =>
        {
            AppError::Validation(vec![FieldError::new(
                "owner_id",
                "not_found",
                "no such user",
            )])
        }
        _ => e.into(),
    }
}

/// The SQL expression a sort field orders by (text sorts are case-insensitive, nulls as '').
fn sort_expr(field: &str) -> &'static str {
    match field {
        "updated_at" => "updated_at",
        "last_name" => "coalesce(lower(last_name), '')",
        "first_name" => "coalesce(lower(first_name), '')",
        "email" => "coalesce(lower(email), '')",
        _ => "created_at",
    }
}

/// What the query also selects for the cursor: the text sort key exactly as Postgres computes
/// it (Rust's `to_lowercase` differs from Postgres's `lower()` for some letters, e.g. `İ` and a
/// final `Σ`, which would make the next page skip or repeat rows). Timestamps need nothing extra.
fn cursor_key_sql(field: &str) -> &'static str {
    match field {
        "last_name" | "first_name" | "email" => sort_expr(field),
        _ => "NULL::text",
    }
}

fn sort_value(c: &Contact, field: &str, db_key: Option<String>) -> SortKey {
    match field {
        "updated_at" => SortKey::Time(c.updated_at),
        "created_at" => SortKey::Time(c.created_at),
        _ => SortKey::Text(db_key.unwrap_or_default()),
    }
}

/// Escapes LIKE wildcards so `q` is a literal prefix. Lower-casing is left to Postgres
/// (`LIKE lower($1)`), so the pattern folds case exactly like the `lower(column)` it matches.
fn like_prefix(q: &str) -> String {
    let mut s = String::with_capacity(q.len() + 1);
    for ch in q.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(ch);
    }
    s.push('%');
    s
}

/// One page of live contacts, keyset-paginated on (sort value, id).
pub async fn list(tx: &mut TenantTx<'_>, f: &Filters, paging: &Paging) -> AppResult<Page<Contact>> {
    let tenant = tx.tenant_id();
    let field = paging.sort.field;
    let mut query = contacts::table
        .filter(contacts::tenant_id.eq(tenant))
        .filter(contacts::deleted_at.is_null())
        .select((
            Contact::as_select(),
            sql::<Nullable<Text>>(cursor_key_sql(field)),
        ))
        .into_boxed();
    if let Some(email) = &f.email {
        query = query.filter(
            sql::<Bool>("lower(email) = lower(")
                .bind::<Text, _>(email.clone())
                .sql(")"),
        );
    }
    if let Some(a) = f.account_id {
        query = query.filter(contacts::account_id.eq(a));
    }
    if let Some(o) = f.owner_id {
        query = query.filter(contacts::owner_id.eq(o));
    }
    if let Some(s) = &f.lifecycle_stage {
        query = query.filter(contacts::lifecycle_stage.eq(s.clone()));
    }
    if let Some(t) = &f.tag {
        query = query.filter(contacts::tags.contains(vec![t.clone()]));
    }
    if let Some(q) = &f.q {
        let p = like_prefix(q);
        query = query.filter(
            sql::<Bool>("(lower(first_name) LIKE lower(")
                .bind::<Text, _>(p.clone())
                .sql(") OR lower(last_name) LIKE lower(")
                .bind::<Text, _>(p.clone())
                .sql(") OR lower(email) LIKE lower(")
                .bind::<Text, _>(p)
                .sql("))"),
        );
    }
    let expr = sort_expr(field);
    let (cmp, dir) = if paging.sort.desc {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(after) = &paging.after {
        // Row comparison `(expr, id) > (v, id)` is exactly what the (tenant_id, expr, id) index
        // can seek to.
        let head = format!("({expr}, id) {cmp} (");
        query = match (&after.key, matches!(field, "created_at" | "updated_at")) {
            (SortKey::Time(v), true) => query.filter(
                sql::<Bool>(&head)
                    .bind::<Timestamptz, _>(*v)
                    .sql(", ")
                    .bind::<SqlUuid, _>(after.id)
                    .sql(")"),
            ),
            (SortKey::Text(v), false) => query.filter(
                sql::<Bool>(&head)
                    .bind::<Text, _>(v.clone())
                    .sql(", ")
                    .bind::<SqlUuid, _>(after.id)
                    .sql(")"),
            ),
            // A timestamp key for a text sort or the reverse: the binding includes the sort, so
            // only a server bug could seal one, but a cursor that cannot be used is still a 400.
            _ => return Err(list::invalid_cursor()),
        };
    }
    let mut rows: Vec<(Contact, Option<String>)> = query
        .order(sql::<Text>(&format!("{expr} {dir}, id {dir}")))
        .limit(paging.limit + 1)
        .load(tx.conn())
        .await?;
    let next = if rows.len() as i64 > paging.limit {
        rows.truncate(paging.limit as usize);
        rows.last().map(|(last, key)| Cursor {
            key: sort_value(last, field, key.clone()),
            id: last.id.as_uuid(),
        })
    } else {
        None
    };
    Ok(Page {
        data: rows.into_iter().map(|(c, _)| c).collect(),
        next,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(super::like_prefix("A_b%\\"), "A\\_b\\%\\\\%");
    }
}
