//! The RLS guard: what `serve` checks before it accepts traffic and `tessera doctor` prints.
//! Each check runs as the server's own role, against the live catalogue.

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Text};
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;

use crate::tenancy::Door;

/// One check's outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Passed?
    pub passed: bool,
    /// Offending objects, or a short confirmation.
    pub detail: String,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    item: String,
}

#[derive(QueryableByName)]
struct Flags {
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Bool)]
    superuser: bool,
    #[diesel(sql_type = Bool)]
    bypassrls: bool,
}

/// Tables in user schemas that have a `tenant_id` column.
const TENANT_TABLES: &str = "SELECT c.oid, n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity, c.relowner \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped \
     WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg_toast%'";

/// Runs every check.
pub async fn run(door: &Door) -> anyhow::Result<Vec<Check>> {
    let result = door
        .platform(true, |tx| {
            async move {
                let flags: Flags = diesel::sql_query(
                    "SELECT current_user::text AS role, rolsuper AS superuser, rolbypassrls AS bypassrls \
                     FROM pg_roles WHERE rolname = current_user",
                )
                .get_result(tx.conn())
                .await?;
                // Roles this one can become (SET ROLE) and that could bypass RLS.
                let escalations: Vec<Row> = diesel::sql_query(
                    "SELECT rolname::text AS item FROM pg_roles r \
                     WHERE r.rolname <> current_user AND pg_has_role(current_user, r.oid, 'MEMBER') \
                       AND (r.rolsuper OR r.rolbypassrls)",
                )
                .load(tx.conn())
                .await?;
                let owned: Vec<Row> = diesel::sql_query(format!(
                    "SELECT t.nspname || '.' || t.relname AS item FROM ({TENANT_TABLES}) t \
                     WHERE pg_has_role(current_user, t.relowner, 'MEMBER')"
                ))
                .load(tx.conn())
                .await?;
                let unforced: Vec<Row> = diesel::sql_query(format!(
                    "SELECT t.nspname || '.' || t.relname AS item FROM ({TENANT_TABLES}) t \
                     WHERE NOT (t.relrowsecurity AND t.relforcerowsecurity)"
                ))
                .load(tx.conn())
                .await?;
                let no_policy: Vec<Row> = diesel::sql_query(format!(
                    "SELECT t.nspname || '.' || t.relname AS item FROM ({TENANT_TABLES}) t \
                     WHERE NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = t.oid \
                       AND p.polcmd = '*' AND p.polqual IS NOT NULL AND p.polwithcheck IS NOT NULL)"
                ))
                .load(tx.conn())
                .await?;
                let count: Vec<Row> = diesel::sql_query(format!(
                    "SELECT count(*)::text AS item FROM ({TENANT_TABLES}) t"
                ))
                .load(tx.conn())
                .await?;
                Ok((flags, escalations, owned, unforced, no_policy, count))
            }
            .scope_boxed()
        })
        .await
        .map_err(|e| anyhow::anyhow!("running the RLS guard: {e}"))?;
    let (flags, escalations, owned, unforced, no_policy, count) = result;
    let list = |rows: &[Row]| {
        rows.iter()
            .map(|r| r.item.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let tables = count.into_iter().next().map(|r| r.item).unwrap_or_default();
    Ok(vec![
        Check {
            name: "role is not superuser",
            passed: !flags.superuser,
            detail: format!("role {}", flags.role),
        },
        Check {
            name: "role cannot bypass RLS",
            passed: !flags.bypassrls && escalations.is_empty(),
            detail: if flags.bypassrls {
                "role has BYPASSRLS".into()
            } else if !escalations.is_empty() {
                format!("member of privileged roles: {}", list(&escalations))
            } else {
                "NOBYPASSRLS, no privileged memberships".into()
            },
        },
        Check {
            name: "role owns no tenant table",
            passed: owned.is_empty(),
            detail: if owned.is_empty() {
                "ok".into()
            } else {
                format!("owns: {}", list(&owned))
            },
        },
        Check {
            name: "RLS enabled and forced on every tenant table",
            passed: unforced.is_empty() && tables != "0",
            detail: if !unforced.is_empty() {
                format!("not enabled+forced: {}", list(&unforced))
            } else if tables == "0" {
                "no tenant tables visible: run `tessera migrate` first".into()
            } else {
                format!("{tables} tables")
            },
        },
        Check {
            name: "every tenant table has a USING + WITH CHECK policy",
            passed: no_policy.is_empty(),
            detail: if no_policy.is_empty() {
                "ok".into()
            } else {
                format!("missing: {}", list(&no_policy))
            },
        },
    ])
}

/// The server's `lc_messages`, if its messages are not in English. Transient errors (deadlocks,
/// statement and lock timeouts) are recognised by PostgreSQL's message text
/// ([`crate::error::is_transient`]), so with translated messages they answer 500 instead of a
/// retryable 503. Not a reason to refuse to start: `doctor` and `serve` say so.
pub async fn non_english_messages(door: &Door) -> anyhow::Result<Option<String>> {
    let setting: Row = door
        .platform(true, |tx| {
            async move {
                Ok(
                    diesel::sql_query("SELECT current_setting('lc_messages') AS item")
                        .get_result(tx.conn())
                        .await?,
                )
            }
            .scope_boxed()
        })
        .await
        .map_err(|e| anyhow::anyhow!("reading lc_messages: {e}"))?;
    let lc = setting.item;
    Ok((!is_english(&lc)).then_some(lc))
}

/// Whether PostgreSQL writes its messages in English under `lc_messages = lc`.
fn is_english(lc: &str) -> bool {
    lc.is_empty() || lc == "C" || lc == "POSIX" || lc.starts_with("C.") || lc.starts_with("en")
}

#[cfg(test)]
mod tests {
    #[test]
    fn english_locales() {
        for lc in ["", "C", "POSIX", "C.UTF-8", "en_US.UTF-8", "en_GB"] {
            assert!(super::is_english(lc), "{lc}");
        }
        for lc in ["de_DE.UTF-8", "fr_FR", "ja_JP.eucJP"] {
            assert!(!super::is_english(lc), "{lc}");
        }
    }
}
