//! Embedded migrations, run as the owner role through diesel-async's connection wrapper (no
//! libpq), followed by the app role's grants. On a Citus cluster every migration is followed by
//! placing the tables it created ([`super::citus::reconcile`]).

use diesel::Connection;
use diesel::connection::BoxableConnection;
use diesel::migration::{Migration, MigrationMetadata, MigrationName, MigrationSource};
use diesel::pg::Pg;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use include_dir::{Dir, include_dir};

use super::{citus, grants, statements};

/// The migrations compiled into the binary (names, order, down scripts).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The same folder, for the text of each `up.sql`: [`StatementwiseMigrations`] runs it one
/// statement at a time.
static SOURCES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/migrations");

/// [`MIGRATIONS`], each `up.sql` sent one statement per query string (see [`statements`] for why
/// Citus needs that). Inside the harness's per-migration transaction, as before.
pub struct StatementwiseMigrations;

impl MigrationSource<Pg> for StatementwiseMigrations {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<Pg>>>> {
        MigrationSource::<Pg>::migrations(&MIGRATIONS)?
            .into_iter()
            .map(|inner| {
                let path = format!("{}/up.sql", inner.name());
                let sql = SOURCES
                    .get_file(&path)
                    .and_then(|f| f.contents_utf8())
                    .ok_or_else(|| format!("migration {path} is not embedded as UTF-8 text"))?;
                let up = statements::split(sql).map_err(|e| format!("{path}: {e:#}"))?;
                Ok(Box::new(Statementwise { inner, up }) as Box<dyn Migration<Pg>>)
            })
            .collect()
    }
}

struct Statementwise {
    inner: Box<dyn Migration<Pg>>,
    up: Vec<&'static str>,
}

impl Migration<Pg> for Statementwise {
    fn run(&self, conn: &mut dyn BoxableConnection<Pg>) -> diesel::migration::Result<()> {
        for statement in &self.up {
            conn.batch_execute(statement)
                .map_err(|e| format!("{}: {e}\nin statement:\n{statement}", self.inner.name()))?;
        }
        Ok(())
    }

    fn revert(&self, conn: &mut dyn BoxableConnection<Pg>) -> diesel::migration::Result<()> {
        self.inner.revert(conn)
    }

    fn metadata(&self) -> &dyn MigrationMetadata {
        self.inner.metadata()
    }

    fn name(&self) -> &dyn MigrationName {
        self.inner.name()
    }
}

/// Applies pending migrations and both roles' grants; returns the versions applied.
pub async fn run(owner_url: &str, roles: &grants::Roles) -> anyhow::Result<Vec<String>> {
    let url = owner_url.to_string();
    let roles = roles.clone();
    // The harness is synchronous; keep it off the async workers.
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| anyhow::anyhow!("connecting with database.migration_url: {e}"))?;
        let citus = citus::is_citus(&mut conn)?;
        if citus {
            diesel::connection::SimpleConnection::batch_execute(
                &mut conn,
                citus::MIGRATION_SESSION,
            )?;
            citus::reconcile(&mut conn)?;
        }
        let mut applied = Vec::new();
        while conn
            .has_pending_migration(StatementwiseMigrations)
            .map_err(|e| anyhow::anyhow!("reading applied migrations: {e}"))?
        {
            let version = conn
                .run_next_migration(StatementwiseMigrations)
                .map_err(|e| anyhow::anyhow!("running migrations: {e}"))?;
            applied.push(version.to_string());
            if citus {
                citus::reconcile(&mut conn)?;
            }
        }
        for sql in grants::statements(&roles) {
            diesel::connection::SimpleConnection::batch_execute(&mut conn, &sql).map_err(|e| {
                anyhow::anyhow!(
                    "granting to {} and {}: {e}",
                    roles.app.name,
                    roles.platform.name
                )
            })?;
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
