//! The two roles the server runs as, and exactly the privileges each needs. Applied by
//! `tessera migrate` after the migrations, because the roles' names are configuration.
//!
//! - The **app role** serves tenant requests. Every table it touches is behind RLS keyed by
//!   `app.tenant_id`; on `tenants` it may read its own row and change only the self-service
//!   columns (name, settings), never plan, status or limits.
//! - The **platform role** does cross-tenant work: signup, the operator API, usage flushing and
//!   export. On the platform tables it is given policies `TO` it that open every row
//!   ([`PLATFORM_POLICIES`]); on the tenant tables it touches (the audit trail of operator
//!   actions, usage written in a tenant's context) it is bound by the same tenant policy as the
//!   app role and must set `app.tenant_id` first.
//!
//! Neither role owns anything, is superuser or has BYPASSRLS, and neither is a member of the
//! other: the startup guard (`db::guard`) checks all of it.

/// A role to create and grant to.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    /// Role name (validated as an identifier by `config::is_sql_identifier`).
    pub name: String,
    /// Password to set, if the configured URL carries one.
    pub password: Option<String>,
}

/// Both roles.
#[derive(Debug, Clone)]
pub struct Roles {
    /// The server's tenant-request role.
    pub app: RoleSpec,
    /// The platform (cross-tenant) role.
    pub platform: RoleSpec,
}

impl Roles {
    /// The roles named by `config`, with the passwords its URLs carry for them (so one secret
    /// configures both sides).
    pub fn from_config(config: &crate::config::Config) -> Self {
        let password = |url: &str, role: &str| {
            let url = url::Url::parse(url).ok()?;
            (url.username() == role)
                .then(|| url.password().map(str::to_owned))
                .flatten()
        };
        let app = &config.database.app_role;
        let platform = &config.database.platform_role;
        Self {
            app: RoleSpec {
                name: app.clone(),
                password: password(&config.database.url, app),
            },
            platform: RoleSpec {
                name: platform.clone(),
                password: config
                    .platform_database_url()
                    .ok()
                    .and_then(|u| password(&u, platform)),
            },
        }
    }

    /// The test and development roles, without passwords.
    pub fn named(app: &str, platform: &str) -> Self {
        Self {
            app: RoleSpec {
                name: app.into(),
                password: None,
            },
            platform: RoleSpec {
                name: platform.into(),
                password: None,
            },
        }
    }
}

/// Table privileges of the app role. No ownership, no DDL, no UPDATE/DELETE on the audit trail,
/// no write to a tenant's plan, status or limits.
pub const APP_GRANTS: &[(&str, &str)] = &[
    (
        "tenants",
        "SELECT, UPDATE (name, settings, updated_at, version)",
    ),
    ("users", "SELECT, INSERT, UPDATE, DELETE"),
    ("roles", "SELECT, INSERT, UPDATE, DELETE"),
    ("role_permissions", "SELECT, INSERT, DELETE"),
    ("user_roles", "SELECT, INSERT, DELETE"),
    ("refresh_tokens", "SELECT, INSERT, UPDATE, DELETE"),
    ("contacts", "SELECT, INSERT, UPDATE"),
    ("audit_heads", "SELECT, INSERT, UPDATE"),
    ("audit_events", "SELECT, INSERT"),
    ("idempotency_keys", "SELECT, INSERT, UPDATE, DELETE"),
    ("quota_counters", "SELECT, INSERT, UPDATE"),
    // Transactional meters are written in the action's own transaction.
    ("usage_windows", "SELECT, INSERT, UPDATE"),
    ("usage_receipts", "SELECT, INSERT"),
    ("usage_adjustments", "SELECT, INSERT"),
    // Read-only, so /readyz can tell whether migrations are current.
    ("__diesel_schema_migrations", "SELECT"),
];

/// Table privileges of the platform role.
pub const PLATFORM_GRANTS: &[(&str, &str)] = &[
    ("tenants", "SELECT, INSERT, UPDATE, DELETE"),
    ("platform_keys", "SELECT, INSERT, UPDATE"),
    // Gauges (records, seats) are read from the counters when usage is flushed.
    ("quota_counters", "SELECT"),
    ("usage_windows", "SELECT, INSERT, UPDATE"),
    ("usage_receipts", "SELECT, INSERT, DELETE"),
    ("usage_adjustments", "SELECT, INSERT"),
    // Operator actions are audited in the tenant's own trail, in the tenant's context.
    ("audit_heads", "SELECT, INSERT, UPDATE"),
    ("audit_events", "SELECT, INSERT"),
    ("__diesel_schema_migrations", "SELECT"),
];

/// Tables on which the platform role sees every row: a policy `TO` it only, named
/// `platform_access`. Everywhere else it is bound by the tenant policy. (`platform_keys` has no
/// RLS: no tenant role has any privilege on it.)
pub const PLATFORM_POLICIES: &[&str] = &[
    "tenants",
    "quota_counters",
    "usage_windows",
    "usage_receipts",
    "usage_adjustments",
];

/// The name of the policies [`PLATFORM_POLICIES`] creates.
pub const PLATFORM_POLICY: &str = "platform_access";

fn create_role(role: &RoleSpec) -> Vec<String> {
    let name = &role.name;
    let mut out = vec![format!(
        "DO $$ BEGIN \
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN \
             CREATE ROLE {name} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT; \
           END IF; \
         END $$"
    )];
    if let Some(pw) = &role.password {
        out.push(format!(
            "ALTER ROLE {name} PASSWORD '{}'",
            pw.replace('\'', "''")
        ));
    }
    // Citus propagates SET LOCAL to workers only with this setting; harmless on plain Postgres.
    // Setting a placeholder parameter may be refused to a non-superuser owner: not fatal.
    out.push(format!(
        "DO $$ BEGIN \
           EXECUTE 'ALTER ROLE {name} SET citus.propagate_set_commands = ''local'''; \
         EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'skipping citus.propagate_set_commands'; \
         END $$"
    ));
    out.push(format!("GRANT USAGE ON SCHEMA public TO {name}"));
    out
}

fn grant(role: &str, grants: &[(&str, &str)], out: &mut Vec<String>) {
    for (table, privileges) in grants {
        out.push(format!("REVOKE ALL ON {table} FROM {role}"));
        out.push(format!("GRANT {privileges} ON {table} TO {role}"));
    }
}

/// SQL that creates both roles if missing (attributes that could bypass RLS explicitly off),
/// sets passwords, applies the grants, and (re)creates the platform policies. Both names must
/// already be validated identifiers.
pub fn statements(roles: &Roles) -> Vec<String> {
    let (app, platform) = (&roles.app.name, &roles.platform.name);
    let mut out = create_role(&roles.app);
    out.extend(create_role(&roles.platform));
    // Neither role may act as the other; a leftover membership from a hand-made setup is cut.
    for (a, b) in [(app, platform), (platform, app)] {
        out.push(format!(
            "DO $$ BEGIN \
               IF pg_has_role('{a}', '{b}', 'MEMBER') THEN EXECUTE 'REVOKE {b} FROM {a}'; END IF; \
             END $$"
        ));
    }
    // Tables the app role used to reach and no longer may (none yet) would be revoked here.
    for (table, _) in PLATFORM_GRANTS {
        if !APP_GRANTS.iter().any(|(t, _)| t == table) {
            out.push(format!("REVOKE ALL ON {table} FROM {app}"));
        }
    }
    grant(app, APP_GRANTS, &mut out);
    grant(platform, PLATFORM_GRANTS, &mut out);
    for table in PLATFORM_POLICIES {
        out.push(format!(
            "DROP POLICY IF EXISTS {PLATFORM_POLICY} ON {table}"
        ));
        out.push(format!(
            "CREATE POLICY {PLATFORM_POLICY} ON {table} TO {platform} USING (true) WITH CHECK (true)"
        ));
    }
    out
}
