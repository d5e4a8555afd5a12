//! The tenant door: the only way to a database connection for tenant data.
//!
//! [`Door`] owns the pool and never hands out a bare connection. [`Door::read`] and
//! [`Door::write`] check a connection out, open a transaction whose first statement is
//! `SET LOCAL app.tenant_id = '<uuid>'`, and lend the closure a [`TenantTx`] that cannot outlive
//! the transaction. Because the setting is transaction-local, a pooled connection never carries one
//! tenant's context to the next borrower; because RLS is forced on every tenant table, a query that
//! forgets `WHERE tenant_id = …` still sees only this tenant's rows.

use std::future::Future;
use std::time::{Duration, Instant};

use diesel::QueryResult;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel_async::pooled_connection::deadpool::Object;
use diesel_async::scoped_futures::ScopedBoxFuture;
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
    TransactionManager,
};
use futures_util::future::BoxFuture;

use crate::config::Config;
use crate::db::pool::PgPool;
use crate::error::{AppError, AppResult};
use crate::ids::{TenantId, UserId};

/// Whose data a transaction may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxScope {
    /// The tenant; becomes `app.tenant_id`.
    pub tenant: TenantId,
    /// The acting user, when known; becomes `app.user_id` (for record-level rules later).
    pub user: Option<UserId>,
    /// The tenant's plan's `statement_timeout`, when known. Sent with `SET LOCAL` in the
    /// transaction's first round trip, and only when it differs from the value every pooled
    /// connection already has (`database.statement_timeout_ms`): the common case costs nothing.
    pub statement_timeout_ms: Option<u64>,
}

impl TxScope {
    /// A scope for `tenant` with no acting user (login, signup, manifests).
    pub fn tenant(tenant: TenantId) -> Self {
        Self {
            tenant,
            user: None,
            statement_timeout_ms: None,
        }
    }
}

/// An open transaction with tenant context set. Only [`Door`] can make one.
pub struct TenantTx<'c> {
    conn: &'c mut AsyncPgConnection,
    scope: TxScope,
}

impl TenantTx<'_> {
    /// The connection, inside the tenant transaction.
    pub fn conn(&mut self) -> &mut AsyncPgConnection {
        self.conn
    }

    /// The tenant this transaction is scoped to.
    pub fn tenant_id(&self) -> TenantId {
        self.scope.tenant
    }

    /// The acting user, if any.
    pub fn user_id(&self) -> Option<UserId> {
        self.scope.user
    }
}

/// A transaction with no tenant context: every table behind a tenant policy answers it with zero
/// rows, because the policies match nothing when `app.tenant_id` is unset. On the app role's
/// door ([`Door::catalog`]) that leaves the catalogue and migration bookkeeping; on the
/// [`PlatformDoor`] it also reaches the platform tables its policies open.
pub struct PlatformTx<'c> {
    conn: &'c mut AsyncPgConnection,
}

impl PlatformTx<'_> {
    /// The connection, inside the platform transaction.
    pub fn conn(&mut self) -> &mut AsyncPgConnection {
        self.conn
    }
}

/// How long the door lets database work run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `statement_timeout` of every pooled connection (`db::pool::build`): PostgreSQL cancels a
    /// runaway statement. Also the budget of cleanup that runs after a request's deadline.
    pub statement_timeout_ms: u64,
    /// Client-side bound on one transaction outside a request (CLI, background jobs). Inside a
    /// request the request's deadline ([`crate::deadline`]) bounds it instead. Either way a
    /// database that stops answering without closing the connection cannot hang the caller.
    pub budget: Duration,
}

impl Limits {
    /// The configured limits: the database's statement timeout, and the request deadline as the
    /// budget of work that runs outside a request.
    pub fn of(config: &Config) -> Self {
        Self {
            statement_timeout_ms: config.database.statement_timeout_ms,
            budget: Duration::from_millis(config.http.request_timeout_ms),
        }
    }
}

/// Owner of the pool; see the module docs.
#[derive(Clone)]
pub struct Door {
    pool: PgPool,
    limits: Limits,
}

impl Door {
    /// Takes sole ownership of `pool`.
    pub fn new(pool: PgPool, limits: Limits) -> Self {
        Self { pool, limits }
    }

    /// The limits this door applies.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A door over a new lazy pool for `url` (the server's role for requests; the owner's for
    /// the CLI's administrative paths), with the configured limits.
    pub fn connect(url: &str, config: &Config) -> anyhow::Result<Self> {
        let pool = crate::db::pool::build(url, &config.database)?;
        Ok(Self::new(pool, Limits::of(config)))
    }

    /// Runs `f` in a READ ONLY tenant transaction.
    pub async fn read<'a, R, F>(&self, scope: TxScope, f: F) -> AppResult<R>
    where
        F: for<'r> FnOnce(&'r mut TenantTx<'_>) -> ScopedBoxFuture<'a, 'r, AppResult<R>>
            + Send
            + 'a,
        R: Send + 'a,
    {
        self.tenant_tx(scope, true, f).await
    }

    /// Runs `f` in a read-write tenant transaction; commits if it returns `Ok`.
    pub async fn write<'a, R, F>(&self, scope: TxScope, f: F) -> AppResult<R>
    where
        F: for<'r> FnOnce(&'r mut TenantTx<'_>) -> ScopedBoxFuture<'a, 'r, AppResult<R>>
            + Send
            + 'a,
        R: Send + 'a,
    {
        self.tenant_tx(scope, false, f).await
    }

    /// Runs `f` in a transaction without tenant context (catalogue checks, `/readyz`). On the
    /// app role's door no tenant row, `tenants` included, is visible there.
    pub async fn catalog<'a, R, F>(&self, read_only: bool, f: F) -> AppResult<R>
    where
        F: for<'r> FnOnce(&'r mut PlatformTx<'_>) -> ScopedBoxFuture<'a, 'r, AppResult<R>>
            + Send
            + 'a,
        R: Send + 'a,
    {
        self.bounded(async {
            let mut obj = self.checkout().await?;
            let conn: &mut AsyncPgConnection = &mut obj;
            let begin = if read_only {
                "BEGIN READ ONLY"
            } else {
                "BEGIN"
            };
            AnsiTransactionManager::begin_transaction_sql(conn, begin)
                .await
                .map_err(|e| self.db_error(e))?;
            let mut tx = PlatformTx { conn };
            let result = f(&mut tx).await;
            finish(tx.conn, result).await
        })
        .await
    }

    /// A read-only tenant transaction around exactly one query, sent as one pipelined round
    /// trip: `BEGIN READ ONLY; SET LOCAL …` (one simple-protocol message), the query (a prepared
    /// statement, cached per connection), `COMMIT`. `f` only *builds* the query future; the door
    /// sends the context first, so the query can never run without it — and if ordering ever
    /// failed, RLS would answer "no rows", never another tenant's rows.
    ///
    /// Any failure, or the request being dropped half-way, takes the connection out of the pool
    /// instead of returning it in an unknown transaction state.
    pub async fn read_one<R, F>(&self, scope: TxScope, f: F) -> AppResult<R>
    where
        F: FnOnce(&mut AsyncPgConnection) -> BoxFuture<'static, QueryResult<R>>,
        R: Send,
    {
        self.bounded(async {
            let mut guard = Checkout(Some(self.checkout().await?));
            let conn: &mut AsyncPgConnection = guard.0.as_mut().expect("checked out");
            // The query and COMMIT futures do not borrow the connection; they are polled after
            // the BEGIN batch by join!, which polls in argument order, so they are sent after it.
            let query = f(conn);
            let commit = Commit.execute(conn);
            let begin_sql = begin_sql(scope, true, self.limits);
            let (begun, result, committed) =
                futures_util::join!(conn.batch_execute(&begin_sql), query, commit);
            if let Err(e) = begun {
                return Err(self.db_error(e));
            }
            let value = result.map_err(AppError::from)?;
            committed.map_err(AppError::from)?;
            guard.release();
            Ok(value)
        })
        .await
    }

    async fn tenant_tx<'a, R, F>(&self, scope: TxScope, read_only: bool, f: F) -> AppResult<R>
    where
        F: for<'r> FnOnce(&'r mut TenantTx<'_>) -> ScopedBoxFuture<'a, 'r, AppResult<R>>
            + Send
            + 'a,
        R: Send + 'a,
    {
        self.bounded(async {
            let mut obj = self.checkout().await?;
            let conn: &mut AsyncPgConnection = &mut obj;
            let begin = begin_sql(scope, read_only, self.limits);
            AnsiTransactionManager::begin_transaction_sql(conn, &begin)
                .await
                .map_err(|e| self.db_error(e))?;
            let mut tx = TenantTx { conn, scope };
            let result = f(&mut tx).await;
            finish(tx.conn, result).await
        })
        .await
    }

    /// Runs `work` until the request's deadline (or the door's own budget outside a request).
    /// Past it the work is dropped: a connection left inside a transaction is flagged broken by
    /// diesel-async (or detached by [`Checkout`]) and never returns to the pool, and the caller
    /// answers 503.
    async fn bounded<R>(&self, work: impl Future<Output = AppResult<R>>) -> AppResult<R> {
        let deadline =
            crate::deadline::current().unwrap_or_else(|| Instant::now() + self.limits.budget);
        tokio::time::timeout_at(deadline.into(), work)
            .await
            .unwrap_or_else(|_| {
                Err(AppError::Unavailable(
                    "database work did not finish before the deadline".into(),
                ))
            })
    }

    async fn checkout(
        &self,
    ) -> AppResult<diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>> {
        self.pool
            .get()
            .await
            .map_err(|e| AppError::Unavailable(format!("database pool: {e}")))
    }

    fn db_error(&self, e: diesel::result::Error) -> AppError {
        // Failing to even begin means the connection or server is gone: tell the client to retry.
        AppError::Unavailable(format!("begin transaction: {e}"))
    }
}

/// The platform path: its own role (`database.platform_role`), URL and pool, for cross-tenant
/// work — signup, tenant lookups by slug, the operator API, usage flushing and export. The role
/// sees every row only of the tables `db::grants::PLATFORM_POLICIES` opens to it; tenant tables
/// it writes (an operator action's audit event) it reaches through [`PlatformDoor::for_tenant`],
/// bound by the same tenant policy as the app role.
///
/// Tenant request handlers get a [`Door`] through their `Principal`'s scope; this door is held
/// only by the modules that do platform work (`tenancy::directory`, signup, `platform`,
/// `limits::metering`).
#[derive(Clone)]
pub struct PlatformDoor {
    inner: Door,
}

impl PlatformDoor {
    /// A platform door over a new lazy pool for the platform role's `url`.
    pub fn connect(url: &str, config: &Config) -> anyhow::Result<Self> {
        let mut db = config.database.clone();
        db.pool_size = config.database.platform_pool_size;
        let pool = crate::db::pool::build(url, &db)?;
        Ok(Self {
            inner: Door::new(pool, Limits::of(config)),
        })
    }

    /// Runs `f` in a platform transaction (no tenant context).
    pub async fn tx<'a, R, F>(&self, read_only: bool, f: F) -> AppResult<R>
    where
        F: for<'r> FnOnce(&'r mut PlatformTx<'_>) -> ScopedBoxFuture<'a, 'r, AppResult<R>>
            + Send
            + 'a,
        R: Send + 'a,
    {
        self.inner.catalog(read_only, f).await
    }

    /// Runs `f` as the platform role inside `tenant`'s context (`SET LOCAL app.tenant_id`), for
    /// platform work that writes a tenant's own rows: the audit event of an operator action,
    /// usage counted for the tenant.
    pub async fn for_tenant<'a, R, F>(&self, tenant: TenantId, f: F) -> AppResult<R>
    where
        F: for<'r> FnOnce(&'r mut TenantTx<'_>) -> ScopedBoxFuture<'a, 'r, AppResult<R>>
            + Send
            + 'a,
        R: Send + 'a,
    {
        self.inner
            .tenant_tx(TxScope::tenant(tenant), false, f)
            .await
    }
}

/// `BEGIN [READ ONLY]; SET LOCAL app.tenant_id = '…'[; SET LOCAL app.user_id = '…']`: one
/// simple-protocol message, one round trip, each setting its own statement (Citus propagates SET
/// LOCAL only as a plain statement inside BEGIN). The values are formatted from parsed UUIDs,
/// never from request text: SET takes no bind parameters. (`statement_timeout` is already set on
/// the connection, see `db::pool::build`; a plan's own value is added only where it differs.)
fn begin_sql(scope: TxScope, read_only: bool, limits: Limits) -> String {
    let mut sql = String::with_capacity(128);
    sql.push_str(if read_only {
        "BEGIN READ ONLY; "
    } else {
        "BEGIN; "
    });
    sql.push_str(&format!(
        "SET LOCAL app.tenant_id = '{}'",
        scope.tenant.as_uuid()
    ));
    if let Some(user) = scope.user {
        sql.push_str(&format!("; SET LOCAL app.user_id = '{}'", user.as_uuid()));
    }
    if let Some(ms) = scope.statement_timeout_ms
        && ms != limits.statement_timeout_ms
    {
        sql.push_str(&format!("; SET LOCAL statement_timeout = {ms}"));
    }
    sql
}

/// `COMMIT` as a statement diesel-async may prepare once per connection and reuse, so it can
/// ride in the same pipelined write as the query before it.
#[derive(Debug, Clone, Copy, QueryId)]
struct Commit;

impl QueryFragment<diesel::pg::Pg> for Commit {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::pg::Pg>) -> QueryResult<()> {
        out.push_sql("COMMIT");
        Ok(())
    }
}

/// A checked-out connection that goes back to the pool only when [`Checkout::release`] says
/// its transaction finished cleanly; otherwise it is detached and closed.
struct Checkout(Option<Object<AsyncPgConnection>>);

impl Checkout {
    fn release(&mut self) {
        drop(self.0.take());
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(obj) = self.0.take() {
            drop(Object::take(obj));
        }
    }
}

/// Commits on success, rolls back on failure. A rollback failure is logged; the connection is
/// then flagged broken by diesel-async and discarded by the pool rather than reused.
async fn finish<R>(conn: &mut AsyncPgConnection, result: AppResult<R>) -> AppResult<R> {
    match result {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(conn)
                .await
                .map_err(AppError::from)?;
            Ok(value)
        }
        Err(e) => {
            if let Err(rb) = AnsiTransactionManager::rollback_transaction(conn).await {
                tracing::warn!(error = %rb, "rollback failed; connection will be discarded");
            }
            Err(e)
        }
    }
}
