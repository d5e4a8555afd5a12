//! The app role and exactly the privileges it needs. Applied by `tessera migrate` after the
//! migrations, because the role's name is configuration.

/// Table privileges of the app role. Nothing else is granted: no ownership, no DDL, no
/// UPDATE/DELETE on the audit trail.
pub const TABLE_GRANTS: &[(&str, &str)] = &[
    ("tenants", "SELECT, INSERT, UPDATE"),
    ("users", "SELECT, INSERT, UPDATE, DELETE"),
    ("roles", "SELECT, INSERT, UPDATE, DELETE"),
    ("role_permissions", "SELECT, INSERT, DELETE"),
    ("user_roles", "SELECT, INSERT, DELETE"),
    ("refresh_tokens", "SELECT, INSERT, UPDATE, DELETE"),
    ("contacts", "SELECT, INSERT, UPDATE"),
    ("audit_heads", "SELECT, INSERT, UPDATE"),
    ("audit_events", "SELECT, INSERT"),
    ("idempotency_keys", "SELECT, INSERT, UPDATE, DELETE"),
    // Read-only, so /readyz can tell whether migrations are current.
    ("__diesel_schema_migrations", "SELECT"),
];

/// SQL that creates `role` if missing (NOLOGIN attributes that could bypass RLS are explicitly
/// off), optionally sets its password, and applies [`TABLE_GRANTS`]. `role` must already be
/// validated as an identifier (see `config::is_sql_identifier`).
pub fn statements(role: &str, password: Option<&str>) -> Vec<String> {
    let mut out = vec![format!(
        "DO $$ BEGIN \
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN \
             CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT; \
           END IF; \
         END $$"
    )];
    if let Some(pw) = password {
        out.push(format!(
            "ALTER ROLE {role} PASSWORD '{}'",
            pw.replace('\'', "''")
        ));
    }
    // Citus propagates SET LOCAL to workers only with this setting; harmless on plain Postgres.
    // Setting a placeholder parameter may be refused to a non-superuser owner: not fatal.
    out.push(format!(
        "DO $$ BEGIN \
           EXECUTE 'ALTER ROLE {role} SET citus.propagate_set_commands = ''local'''; \
         EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'skipping citus.propagate_set_commands'; \
         END $$"
    ));
    out.push(format!("GRANT USAGE ON SCHEMA public TO {role}"));
    for (table, privileges) in TABLE_GRANTS {
        out.push(format!("REVOKE ALL ON {table} FROM {role}"));
        out.push(format!("GRANT {privileges} ON {table} TO {role}"));
    }
    out
}
