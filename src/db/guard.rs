//! The RLS guard: what `serve` checks before it accepts traffic and `tessera doctor` prints.
//! Each check runs as the server's own role, against the live catalogue. On a Citus cluster it
//! also checks the placement of every tenant table and the RLS state of every shard on every
//! worker ([`citus_checks`]).

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Text};
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;

use crate::error::AppResult;
use crate::tenancy::door::PlatformTx;
use crate::tenancy::{Door, PlatformDoor};

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

use super::citus::Item as Row;

#[derive(QueryableByName)]
struct Flags {
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Bool)]
    superuser: bool,
    #[diesel(sql_type = Bool)]
    bypassrls: bool,
}

/// Tables in user schemas that hold tenant rows: those with a `tenant_id` column, and `tenants`
/// itself (keyed by `id`).
const TENANT_TABLES: &str = "SELECT c.oid, n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity, c.relowner \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped \
       AND (a.attname = 'tenant_id' OR (c.relname = 'tenants' AND a.attname = 'id')) \
     WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg_toast%'";

/// The rows' items, comma-separated (offending objects in a check's detail).
fn list(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| r.item.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The catalogue facts about the connected role that both roles are checked on.
struct RoleFacts {
    flags: Flags,
    escalations: Vec<Row>,
    memberships: Vec<Row>,
    owned: Vec<Row>,
}

/// Reads [`RoleFacts`] for `current_user`.
async fn role_facts(tx: &mut PlatformTx<'_>) -> AppResult<RoleFacts> {
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
    // Any other role this one can act as: the other server role (app ↔ platform), the owner,
    // anything with grants of its own. PostgreSQL's predefined pg_* roles grant no table access.
    let memberships: Vec<Row> = diesel::sql_query(
        "SELECT rolname::text AS item FROM pg_roles r \
         WHERE r.rolname <> current_user AND r.rolname NOT LIKE 'pg\\_%' \
           AND pg_has_role(current_user, r.oid, 'MEMBER') ORDER BY 1",
    )
    .load(tx.conn())
    .await?;
    let owned: Vec<Row> = diesel::sql_query(
        "SELECT n.nspname || '.' || c.relname AS item FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg_toast%' AND pg_has_role(current_user, c.relowner, 'MEMBER') \
         ORDER BY 1",
    )
    .load(tx.conn())
    .await?;
    Ok(RoleFacts {
        flags,
        escalations,
        memberships,
        owned,
    })
}

/// Check names, per role.
struct Names {
    superuser: &'static str,
    bypass: &'static str,
    member: &'static str,
    owns: &'static str,
}

const APP_NAMES: Names = Names {
    superuser: "role is not superuser",
    bypass: "role cannot bypass RLS",
    member: "role is a member of no other role",
    owns: "role owns no table",
};

const PLATFORM_NAMES: Names = Names {
    superuser: "platform role is not superuser",
    bypass: "platform role cannot bypass RLS",
    member: "platform role is a member of no other role",
    owns: "platform role owns no table",
};

fn role_checks(facts: &RoleFacts, names: &Names) -> Vec<Check> {
    let RoleFacts {
        flags,
        escalations,
        memberships,
        owned,
    } = facts;
    vec![
        Check {
            name: names.superuser,
            passed: !flags.superuser,
            detail: format!("role {}", flags.role),
        },
        Check {
            name: names.bypass,
            passed: !flags.bypassrls && escalations.is_empty(),
            detail: if flags.bypassrls {
                "role has BYPASSRLS".into()
            } else if !escalations.is_empty() {
                format!("member of privileged roles: {}", list(escalations))
            } else {
                "NOBYPASSRLS, no privileged memberships".into()
            },
        },
        Check {
            name: names.member,
            passed: memberships.is_empty(),
            detail: if memberships.is_empty() {
                "ok".into()
            } else {
                format!("can act as: {}", list(memberships))
            },
        },
        Check {
            name: names.owns,
            passed: owned.is_empty(),
            detail: if owned.is_empty() {
                "ok".into()
            } else {
                format!("owns: {}", list(owned))
            },
        },
    ]
}

/// The one policy expression that may let the app role see a row: the row's tenant is the
/// transaction's (`tenant_id` on tenant tables, `id` on `tenants`), as PostgreSQL prints it back.
const ISOLATING: [&str; 2] = [
    "(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid)",
    "(id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid)",
];

/// Permissive policies that apply to the connected role (directly, through PUBLIC or a role it
/// belongs to) and whose USING or WITH CHECK is anything but [`ISOLATING`]: each would let the
/// role see or write another tenant's rows. Restrictive policies only narrow and are ignored.
fn open_policies_sql() -> String {
    let allowed = ISOLATING
        .iter()
        .map(|e| format!("'{}'", e.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT n.nspname || '.' || c.relname || ' (' || p.polname || ')' AS item \
         FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE p.polpermissive \
           AND (0 = ANY (p.polroles) OR EXISTS (SELECT 1 FROM unnest(p.polroles) r \
                WHERE pg_has_role(current_user, r, 'MEMBER'))) \
           AND (coalesce(pg_get_expr(p.polqual, p.polrelid), '') NOT IN ({allowed}) \
                OR coalesce(pg_get_expr(p.polwithcheck, p.polrelid), \
                            pg_get_expr(p.polqual, p.polrelid)) NOT IN ({allowed})) \
         ORDER BY 1"
    )
}

/// Runs every check of the server's (app) role.
pub async fn run(door: &Door) -> anyhow::Result<Vec<Check>> {
    let result = door
        .catalog(true, |tx| {
            async move {
                let facts = role_facts(tx).await?;
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
                let open: Vec<Row> = diesel::sql_query(open_policies_sql())
                    .load(tx.conn())
                    .await?;
                Ok((facts, unforced, no_policy, count, open))
            }
            .scope_boxed()
        })
        .await
        .map_err(|e| anyhow::anyhow!("running the RLS guard: {e}"))?;
    let (facts, unforced, no_policy, count, open) = result;
    let tables = count.into_iter().next().map(|r| r.item).unwrap_or_default();
    let mut checks = role_checks(&facts, &APP_NAMES);
    checks.extend([
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
        Check {
            name: "no policy opens another tenant's rows to the role",
            passed: open.is_empty(),
            detail: if open.is_empty() {
                "every policy that applies is keyed by app.tenant_id".into()
            } else {
                format!("open: {}", list(&open))
            },
        },
    ]);
    checks.extend(citus_checks(door).await?);
    Ok(checks)
}

/// On Citus (the database has the extension), three more checks; none elsewhere.
///
/// - Every tenant table is hash-distributed by `tenant_id` and co-located with the anchor
///   (`db::citus::ANCHOR`): a tenant table left on the coordinator would work, slowly, and hold
///   every tenant's rows outside the layout the rest of the cluster relies on.
/// - Every shard of every tenant table, on every worker, has RLS enabled and forced and a
///   USING + WITH CHECK policy: a shard is a plain table on its worker, and the checks above
///   only see the coordinator's shell tables. Asked of each worker in one statement through
///   `run_command_on_workers`, as this role. A worker that cannot answer fails the check.
/// - The role's `citus.propagate_set_commands` is `local`, or `SET LOCAL app.tenant_id` would
///   stay on the coordinator and every shard would answer "no rows" (fail closed, but broken).
async fn citus_checks(door: &Door) -> anyhow::Result<Vec<Check>> {
    #[derive(QueryableByName)]
    struct Worker {
        #[diesel(sql_type = Text)]
        node: String,
        #[diesel(sql_type = Bool)]
        success: bool,
        #[diesel(sql_type = Text)]
        result: String,
    }
    let anchor = crate::db::citus::ANCHOR;
    let result = door
        .catalog(true, move |tx| {
            async move {
                let citus: Vec<Row> = diesel::sql_query(crate::db::citus::EXTENSION_QUERY)
                    .load(tx.conn())
                    .await?;
                if citus.is_empty() {
                    return Ok(None);
                }
                let undistributed: Vec<Row> = diesel::sql_query(format!(
                    "SELECT t.nspname || '.' || t.relname AS item FROM ({TENANT_TABLES}) t \
                     WHERE t.relname <> 'tenants' AND NOT EXISTS (SELECT 1 FROM pg_dist_partition p \
                       WHERE p.logicalrelid = t.oid AND p.partmethod = 'h' \
                         AND column_to_column_name(p.logicalrelid, p.partkey) = 'tenant_id' \
                         AND p.colocationid = (SELECT colocationid FROM pg_dist_partition \
                           WHERE logicalrelid = '{anchor}'::regclass))"
                ))
                .load(tx.conn())
                .await?;
                let workers: Vec<Worker> = diesel::sql_query(
                    "SELECT nodename || ':' || nodeport AS node, success, result \
                     FROM run_command_on_workers($q$ \
                       SELECT count(*) FILTER (WHERE ok) || ' ' || \
                              coalesce(string_agg(name, ', ') FILTER (WHERE NOT ok), '') \
                       FROM (SELECT shard_name(s.logicalrelid, s.shardid) AS name, \
                                EXISTS (SELECT 1 FROM pg_class c \
                                  WHERE c.oid = to_regclass(shard_name(s.logicalrelid, s.shardid)) \
                                    AND c.relrowsecurity AND c.relforcerowsecurity \
                                    AND EXISTS (SELECT 1 FROM pg_policy pol \
                                      WHERE pol.polrelid = c.oid AND pol.polcmd = '*' \
                                        AND pol.polqual IS NOT NULL \
                                        AND pol.polwithcheck IS NOT NULL)) AS ok \
                             FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) \
                             WHERE p.groupid = (SELECT groupid FROM pg_dist_local_group) \
                               AND EXISTS (SELECT 1 FROM pg_attribute a \
                                 WHERE a.attrelid = s.logicalrelid AND a.attname = 'tenant_id' \
                                   AND NOT a.attisdropped)) shards \
                     $q$) ORDER BY nodeport",
                )
                .load(tx.conn())
                .await?;
                let propagate: Row = diesel::sql_query(
                    "SELECT current_setting('citus.propagate_set_commands') AS item",
                )
                .get_result(tx.conn())
                .await?;
                Ok(Some((undistributed, workers, propagate.item)))
            }
            .scope_boxed()
        })
        .await
        .map_err(|e| anyhow::anyhow!("running the Citus checks: {e}"))?;
    let Some((undistributed, workers, propagate)) = result else {
        return Ok(Vec::new());
    };
    let mut shards_ok = 0u64;
    let mut bad = Vec::new();
    for w in &workers {
        let parsed = w
            .success
            .then(|| w.result.split_once(' '))
            .flatten()
            .and_then(|(n, rest)| Some((n.parse::<u64>().ok()?, rest)));
        match parsed {
            Some((n, offending)) => {
                shards_ok += n;
                if !offending.is_empty() {
                    bad.push(format!("{}: {offending}", w.node));
                }
            }
            None => bad.push(format!("{} did not answer: {}", w.node, w.result)),
        }
    }
    Ok(vec![
        Check {
            name: "Citus: every tenant table distributed by tenant_id, co-located",
            passed: undistributed.is_empty(),
            detail: if undistributed.is_empty() {
                "ok".into()
            } else {
                format!(
                    "not distributed by tenant_id with {anchor}: {}",
                    list(&undistributed)
                )
            },
        },
        Check {
            name: "Citus: every shard has RLS enabled, forced and a USING + WITH CHECK policy",
            passed: bad.is_empty() && !workers.is_empty() && shards_ok > 0,
            detail: if !bad.is_empty() {
                bad.join("; ")
            } else if workers.is_empty() {
                "no workers registered".into()
            } else {
                format!("{shards_ok} shards on {} workers", workers.len())
            },
        },
        Check {
            name: "Citus: SET LOCAL reaches the workers",
            passed: propagate == "local",
            detail: format!("citus.propagate_set_commands = {propagate} for this role"),
        },
    ])
}

/// The server's `lc_messages`, if its messages are not in English. Transient errors (deadlocks,
/// statement and lock timeouts) are recognised by PostgreSQL's message text
/// ([`crate::error::is_transient`]), so with translated messages they answer 500 instead of a
/// retryable 503. Not a reason to refuse to start: `doctor` and `serve` say so.
pub async fn non_english_messages(door: &Door) -> anyhow::Result<Option<String>> {
    let setting: Row = door
        .catalog(true, |tx| {
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

/// The platform role's checks: not superuser, no BYPASSRLS, a member of no other role (the app
/// role above all), owns no table.
pub async fn run_platform(platform: &PlatformDoor) -> anyhow::Result<Vec<Check>> {
    let facts = platform
        .tx(true, |tx| async move { role_facts(tx).await }.scope_boxed())
        .await
        .map_err(|e| anyhow::anyhow!("running the platform role's guard: {e}"))?;
    Ok(role_checks(&facts, &PLATFORM_NAMES))
}

/// Both roles' checks, as `serve`, `dev` and `doctor` run them.
pub async fn run_all(door: &Door, platform: &PlatformDoor) -> anyhow::Result<Vec<Check>> {
    let mut checks = run(door).await?;
    checks.extend(run_platform(platform).await?);
    Ok(checks)
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
