//! Embedded migrations, run as the owner role through diesel-async's connection wrapper (no
//! libpq), followed by the app role's grants.

use diesel::Connection;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::grants;

/// The migrations compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Applies pending migrations and the app role's grants; returns the versions applied.
pub async fn run(
    owner_url: &str,
    app_role: &str,
    app_password: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let url = owner_url.to_string();
    let role = app_role.to_string();
    let password = app_password.map(str::to_owned);
    // The harness is synchronous; keep it off the async workers.
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| anyhow::anyhow!("connecting with database.migration_url: {e}"))?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("running migrations: {e}"))?
            .into_iter()
            .map(|v| v.to_string())
            .collect();
        for sql in grants::statements(&role, password.as_deref()) {
            diesel::connection::SimpleConnection::batch_execute(&mut conn, &sql)
                .map_err(|e| anyhow::anyhow!("granting to {role}: {e}"))?;
        }
        Ok(applied)
    })
    .await?
}

/// The newest migration version compiled in.
pub fn latest_version() -> String {
    use diesel::migration::MigrationSource;
    let migrations: Vec<_> =
        MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS).unwrap_or_default();
    migrations
        .iter()
        .map(|m| m.name().version().to_string())
        .max()
        .unwrap_or_default()
}
