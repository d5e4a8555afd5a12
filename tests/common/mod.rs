//! Test harness: every test gets its own database cloned from a migrated template, its own app
//! on a random port, and fresh tenants. Talks to the real Postgres named by
//! `TESSERA_TEST_DATABASE_URL` (a superuser URL; `scripts/test` boots a private cluster for it).
#![allow(dead_code)]

pub mod redis;

use std::path::Path;

use actix_web::web;
use figment::providers::Env;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tessera::app::{self, AppState};
use tessera::auth::keys::Keys;
use tessera::config::{Config, Profile};
use tokio_postgres::NoTls;

/// The `tessera` binary with a clean environment: only PATH, the test profile and this
/// repository's `config/`; callers add what the case needs.
pub fn tessera_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TESSERA_ENV", "test")
        .env(
            "TESSERA_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        );
    cmd
}

/// The admin (superuser) URL of the test cluster.
pub fn admin_url() -> String {
    std::env::var("TESSERA_TEST_DATABASE_URL").expect(
        "TESSERA_TEST_DATABASE_URL is not set: run the suite with scripts/test, which boots a private PostgreSQL",
    )
}

fn url_for_db(url: &str, db: &str, user: Option<&str>) -> String {
    let mut u = url::Url::parse(url).expect("valid database URL");
    u.set_path(&format!("/{db}"));
    if let Some(user) = user {
        u.set_username(user).expect("username");
        u.set_password(None).expect("password");
    }
    u.to_string()
}

/// A superuser connection to `db`.
pub async fn admin_conn(db: &str) -> tokio_postgres::Client {
    connect(&url_for_db(&admin_url(), db, None)).await
}

/// A connection to `url`, driven in the background.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to test postgres");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Runs `sql` one statement per query string, like the migrations do: Citus propagates DDL on a
/// distributed table with the whole query string it came in, and its workers refuse one holding
/// several statements.
pub async fn execute_each(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<(), tokio_postgres::Error> {
    for statement in tessera::db::statements::split(sql).expect("SQL that tokenizes") {
        client.batch_execute(statement).await?;
    }
    Ok(())
}

/// `url` with a server setting for every session it opens (`?options=-c name=value`; the space
/// percent-encoded, since libpq-style parsers do not read `+` as one).
pub fn with_options(url: &str, setting: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_query(Some(&format!(
        "options=-c%20{}",
        setting.replace('=', "%3D")
    )));
    u.to_string()
}

/// Template name derived from the contents of everything that shapes a migrated database (the
/// migrations, and the code that runs them: grants, Citus placement), so changing any of it gets
/// a new template. Clusters outlive a test run (target/test-pg, target/test-citus).
fn template_name() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = walk(&root.join("migrations"));
    files.extend(
        [
            "src/db/migrate.rs",
            "src/db/grants.rs",
            "src/db/citus.rs",
            "src/db/statements.rs",
        ]
        .map(|f| root.join(f)),
    );
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        h.update(f.to_string_lossy().as_bytes());
        h.update(std::fs::read(&f).unwrap());
    }
    format!("tessera_tpl_{}", &hex(&h.finalize())[..16])
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh database for one test.
pub struct TestDb {
    /// Database name.
    pub name: String,
    /// The nodes it lives on.
    pub cluster: Cluster,
}

impl TestDb {
    /// Clones the migrated template (creating it once, under an advisory lock shared by every
    /// test process). On a Citus cluster (`scripts/test --citus`) every node gets the database:
    /// see [`Cluster`].
    pub async fn new() -> TestDb {
        let admin = admin_conn("postgres").await;
        let cluster = Cluster::of(&admin).await;
        let tpl = template_name();
        admin
            .execute("SELECT pg_advisory_lock(774411)", &[])
            .await
            .unwrap();
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&tpl])
            .await
            .unwrap()
            .is_some();
        if !exists {
            let building = format!("{tpl}_building");
            cluster.drop_db(&building).await;
            cluster.drop_db(&tpl).await;
            cluster.create_db(&building, None).await;
            tessera::db::migrate::run(
                &url_for_db(&admin_url(), &building, None),
                &tessera::db::grants::Roles::named("tessera_app", "tessera_platform"),
            )
            .await
            .expect("migrate template");
            cluster.seal_template(&building, &tpl).await;
        }
        admin
            .execute("SELECT pg_advisory_unlock(774411)", &[])
            .await
            .unwrap();
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        cluster.create_db(&name, Some(&tpl)).await;
        TestDb { name, cluster }
    }

    /// Environment for the `tessera` binary to work on this database: the app, platform and
    /// owner (migration) URLs.
    pub fn cli_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TESSERA_DATABASE__URL", self.app_url()),
            ("TESSERA_DATABASE__PLATFORM_URL", self.platform_url()),
            ("TESSERA_DATABASE__MIGRATION_URL", self.admin_url()),
        ]
    }

    /// URL of the app role on this database.
    pub fn app_url(&self) -> String {
        url_for_db(&admin_url(), &self.name, Some("tessera_app"))
    }

    /// URL the test server connects with: the app role, and on Citus with every multi-shard
    /// statement turned into an error (`citus.multi_task_query_log_level = error`). So the whole
    /// Citus suite proves that no request the server handles fans out across shards; direct SQL
    /// in tests (which does, on purpose) uses [`TestDb::app_url`].
    pub fn server_url(&self) -> String {
        let url = self.app_url();
        if self.cluster.is_citus() {
            with_options(&url, "citus.multi_task_query_log_level=error")
        } else {
            url
        }
    }

    /// URL of the platform role on this database (the cross-tenant path; no Citus options, its
    /// usage export legitimately spans shards).
    pub fn platform_url(&self) -> String {
        url_for_db(&admin_url(), &self.name, Some("tessera_platform"))
    }

    /// A connection as the platform role.
    pub async fn as_platform(&self) -> tokio_postgres::Client {
        connect(&self.platform_url()).await
    }

    /// Admin URLs of this database on each worker (empty on plain PostgreSQL).
    pub fn worker_urls(&self) -> Vec<String> {
        self.cluster
            .workers
            .iter()
            .map(|w| url_for_db(w, &self.name, None))
            .collect()
    }

    /// URL of the superuser on this database.
    pub fn admin_url(&self) -> String {
        url_for_db(&admin_url(), &self.name, None)
    }

    /// A superuser connection (bypasses RLS: for arranging and inspecting).
    pub async fn admin(&self) -> tokio_postgres::Client {
        connect(&self.admin_url()).await
    }

    /// Every tenant's slug, in order (read as the superuser).
    pub async fn tenant_slugs(&self) -> Vec<String> {
        self.admin()
            .await
            .query("SELECT slug FROM tenants ORDER BY slug", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// A connection as the app role (RLS applies).
    pub async fn as_app(&self) -> tokio_postgres::Client {
        connect(&self.app_url()).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (name, cluster) = (self.name.clone(), self.cluster.clone());
        // Drop runs outside any runtime guarantee; use a private one on a plain thread.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(cluster.drop_db(&name));
        })
        .join();
    }
}

/// The nodes a test database lives on: the server named by `TESSERA_TEST_DATABASE_URL` and, when
/// that is a Citus coordinator (its `postgres` database has the extension and the workers
/// registered, as `scripts/citus start` leaves it), every worker. Citus does not propagate
/// CREATE DATABASE, and each database keeps its own node list, so the harness makes each
/// database on every node, with the extension, and registers the workers in it.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Admin URLs (database `postgres`) of the workers; empty on plain PostgreSQL.
    pub workers: Vec<String>,
}

impl Cluster {
    /// Reads the node list from the coordinator's `postgres` database.
    pub async fn of(admin: &tokio_postgres::Client) -> Cluster {
        let citus = admin
            .query_opt("SELECT 1 FROM pg_extension WHERE extname = 'citus'", &[])
            .await
            .unwrap()
            .is_some();
        let mut workers = Vec::new();
        if citus {
            for row in admin
                .query(
                    "SELECT nodename::text, nodeport FROM pg_dist_node WHERE groupid <> 0 \
                     ORDER BY nodeport",
                    &[],
                )
                .await
                .unwrap()
            {
                let (host, port): (String, i32) = (row.get(0), row.get(1));
                let mut u = url::Url::parse(&admin_url()).unwrap();
                u.set_host(Some(&host)).unwrap();
                u.set_port(Some(port as u16)).unwrap();
                u.set_path("/postgres");
                workers.push(u.to_string());
            }
        }
        Cluster { workers }
    }

    /// Whether the suite runs on Citus.
    pub fn is_citus(&self) -> bool {
        !self.workers.is_empty()
    }

    fn nodes(&self) -> Vec<String> {
        // Workers first: the coordinator's copy is the one the harness looks for.
        let mut nodes = self.workers.clone();
        nodes.push(url_for_db(&admin_url(), "postgres", None));
        nodes
    }

    /// Creates `name` (from `template`, if given) on every node; on Citus a fresh database also
    /// gets the extension and the node list.
    pub async fn create_db(&self, name: &str, template: Option<&str>) {
        let from = template
            .map(|t| format!(" TEMPLATE {t}"))
            .unwrap_or_default();
        for node in self.nodes() {
            let c = connect(&node).await;
            c.batch_execute(&format!("CREATE DATABASE {name}{from}"))
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}{from} at {node}: {e}"));
        }
        if template.is_some() || !self.is_citus() {
            return;
        }
        for node in &self.workers {
            connect(&url_for_db(node, name, None))
                .await
                .batch_execute("CREATE EXTENSION citus")
                .await
                .unwrap();
        }
        let coordinator = connect(&url_for_db(&admin_url(), name, None)).await;
        let u = url::Url::parse(&admin_url()).unwrap();
        let host = u.host_str().unwrap().to_string();
        coordinator
            .batch_execute(&format!(
                "CREATE EXTENSION citus; SELECT citus_set_coordinator_host('{host}', {})",
                u.port().unwrap()
            ))
            .await
            .unwrap();
        for node in &self.workers {
            let w = url::Url::parse(node).unwrap();
            coordinator
                .batch_execute(&format!(
                    "SELECT citus_add_node('{}', {})",
                    w.host_str().unwrap(),
                    w.port().unwrap()
                ))
                .await
                .unwrap();
        }
    }

    /// Turns the migrated `building` into the template `tpl` on every node. On Citus, a
    /// maintenance daemon (and the coordinator's cached connections) stay connected to every
    /// database that used the extension, and CREATE DATABASE … TEMPLATE refuses a source with
    /// other sessions: the template stops accepting connections and its sessions are ended.
    pub async fn seal_template(&self, building: &str, tpl: &str) {
        for node in self.nodes() {
            let c = connect(&node).await;
            if self.is_citus() {
                c.batch_execute(&format!(
                    "ALTER DATABASE {building} ALLOW_CONNECTIONS false; \
                     SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                       WHERE datname = '{building}' AND pid <> pg_backend_pid()"
                ))
                .await
                .unwrap();
            }
            // Renaming waits out sessions that are still ending.
            let mut tries = 0;
            while let Err(e) = c
                .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {tpl}"))
                .await
            {
                tries += 1;
                assert!(tries < 100, "renaming {building} at {node}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }

    /// Drops `name` on every node (forcing sessions out; Citus stops its daemon there).
    pub async fn drop_db(&self, name: &str) {
        for node in self.nodes() {
            if let Ok((c, conn)) = tokio_postgres::connect(&node, NoTls).await {
                tokio::spawn(conn);
                let _ = c
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        }
    }
}

/// The failed checks of a guard run, as "name: detail".
pub fn failed(checks: &[tessera::db::guard::Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect()
}

/// A door with a pool of one connected as `url` (a role other than the app's, or other settings).
pub fn door_for(url: &str) -> tessera::tenancy::Door {
    let mut c = base_config();
    c.database.pool_size = 1;
    tessera::tenancy::Door::connect(url, &c).unwrap()
}

/// The test profile's configuration, no database chosen yet.
pub fn base_config() -> Config {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    Config::load_from(Profile::Test, &dir, Env::prefixed("TESSERA_TEST_NONE_")).unwrap()
}

/// Test configuration: generous throttles unless a test tightens them.
pub fn test_config(db: &TestDb) -> Config {
    let mut c = base_config();
    c.database.url = db.server_url();
    c.database.platform_url = db.platform_url();
    c.database.pool_size = 4;
    c.http.shutdown_timeout_secs = 1;
    c.auth.signup_ip_per_hour = 10_000;
    c.auth.login_failures_per_account_ip_per_minute = 10_000;
    c.auth.login_failures_per_account_per_hour = 10_000;
    c.auth.login_ip_per_minute = 10_000;
    c.auth.refresh_ip_per_minute = 10_000;
    // Suites fire requests as fast as they can; the plans' request rates and in-flight caps
    // would make them flaky. Tests of the limits set their tenant's overrides instead.
    for name in ["free", "pro", "enterprise"] {
        let plan = c.plans.plan_mut(name).unwrap();
        plan.rate.requests_per_second = 100_000;
        plan.rate.burst = 100_000;
        plan.max_concurrent_requests = 10_000;
    }
    c
}

/// A running app on a random port, with its own database.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Port.
    pub port: u16,
    /// The database (shared with [`TestApp::replica`]s).
    pub db: std::sync::Arc<TestDb>,
    /// Shared state (keys, door) for tests that need to reach inside.
    pub state: web::Data<AppState>,
    /// HTTP client (no redirects).
    pub http: reqwest::Client,
    server: actix_web::dev::ServerHandle,
    /// The signing key, so replicas accept each other's tokens.
    pem: String,
}

/// A tenant created through signup, with its owner's credentials.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Tenant id.
    pub id: String,
    /// Slug.
    pub slug: String,
    /// Owner user id.
    pub user_id: String,
    /// Owner email.
    pub email: String,
    /// Owner password.
    pub password: String,
    /// Access token.
    pub access: String,
    /// Refresh token.
    pub refresh: String,
}

impl TestApp {
    /// Starts an app with the default test config.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts an app after `tweak` adjusts the config.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_on(TestDb::new().await, tweak).await
    }

    /// Starts an app on `db` after `tweak` adjusts the config.
    pub async fn spawn_on(db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let (_, pem) = Keys::generate().unwrap();
        Self::start(std::sync::Arc::new(db), pem, tweak).await
    }

    /// A second server process stand-in on the same database with the same signing key (so
    /// tokens work on both), configured by `tweak` from the test defaults: another replica.
    pub async fn replica(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::start(self.db.clone(), self.pem.clone(), tweak).await
    }

    async fn start(
        db: std::sync::Arc<TestDb>,
        pem: String,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        // Server errors (a 500's cause) go to the test's captured output: shown when it fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_test_writer()
            .try_init();
        let mut config = test_config(&db);
        tweak(&mut config);
        let keys = Keys::from_pem(&pem).unwrap();
        let state = web::Data::new(AppState::new(config, keys).unwrap());
        // As `serve` does: the tenant change listener of this "process".
        state.start_background().unwrap();
        let (server, addrs) = app::listen(
            state.clone(),
            &app::Listen {
                bind: "127.0.0.1:0".into(),
                workers: 1,
                signals: false,
            },
        )
        .unwrap();
        let port = addrs[0].port();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        TestApp {
            base: format!("http://127.0.0.1:{port}"),
            port,
            db,
            state,
            http,
            server: handle,
            pem,
        }
    }

    /// A new platform key with `scopes`; returns (key id, key).
    pub async fn platform_key(&self, scopes: &[tessera::platform::Scope]) -> (String, String) {
        let created = tessera::platform::keys::create(&self.state.platform, "test", scopes)
            .await
            .unwrap();
        (created.info.id.to_string(), created.plaintext)
    }

    /// A request to the root host.
    pub fn root(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("host", format!("localhost:{}", self.port))
    }

    /// A request to `{slug}.localhost`.
    pub fn on(&self, slug: &str, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("host", format!("{slug}.localhost:{}", self.port))
    }

    /// A request as `t` on its own host.
    pub fn as_tenant(&self, t: &Tenant, method: Method, path: &str) -> RequestBuilder {
        self.on(&t.slug, method, path).bearer_auth(&t.access)
    }

    /// Signs up a fresh tenant with a unique slug.
    pub async fn signup(&self) -> Tenant {
        let slug = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        self.signup_slug(&slug).await
    }

    /// Signs up tenant `slug`.
    pub async fn signup_slug(&self, slug: &str) -> Tenant {
        let email = format!("owner@{slug}.test");
        let password = "correct horse battery staple".to_string();
        let res = self
            .root(Method::POST, "/v1/signup")
            .json(&json!({
                "tenant": {"slug": slug, "name": format!("Tenant {slug}")},
                "user": {"email": email, "password": password, "name": "Owner"}
            }))
            .send()
            .await
            .unwrap();
        let body = expect(res, StatusCode::CREATED).await;
        Tenant {
            id: body["tenant"]["id"].as_str().unwrap().into(),
            slug: slug.into(),
            user_id: body["user"]["id"].as_str().unwrap().into(),
            email,
            password,
            access: body["tokens"]["access_token"].as_str().unwrap().into(),
            refresh: body["tokens"]["refresh_token"].as_str().unwrap().into(),
        }
    }

    /// Adds a user with system role `role` to tenant `t` and logs them in; returns a Tenant
    /// value carrying that user's credentials.
    pub async fn add_user(&self, t: &Tenant, role: &str) -> Tenant {
        use diesel_async::scoped_futures::ScopedFutureExt;
        use tessera::access::roles;
        use tessera::auth::{password, users};
        let email = format!(
            "{role}-{}@{}.test",
            &uuid::Uuid::new_v4().simple().to_string()[..6],
            t.slug
        );
        let pw = "another long password".to_string();
        let hash = password::hash(pw.clone()).await.unwrap();
        let tenant_id = tessera::ids::TenantId(t.id.parse().unwrap());
        let role = role.to_string();
        let e2 = email.clone();
        self.state
            .door
            .write(tessera::tenancy::TxScope::tenant(tenant_id), |tx| {
                async move {
                    let ids = roles::ensure_system_roles(tx).await?;
                    // Counted like every user (the seats quota), never refused here.
                    tessera::limits::quota::take(
                        tx,
                        tessera::limits::quota::Quota::Seats,
                        u64::MAX,
                    )
                    .await?;
                    let u = users::insert(tx, &e2, "Added", Some(&hash)).await?;
                    roles::assign(tx, u.id, ids[role.as_str()]).await?;
                    Ok(())
                }
                .scope_boxed()
            })
            .await
            .unwrap();
        let tokens = self.login(&t.slug, &email, &pw).await;
        let me = expect(
            self.on(&t.slug, Method::GET, "/v1/me")
                .bearer_auth(&tokens.0)
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        Tenant {
            id: t.id.clone(),
            slug: t.slug.clone(),
            user_id: me["user"]["id"].as_str().unwrap().into(),
            email,
            password: pw,
            access: tokens.0,
            refresh: tokens.1,
        }
    }

    /// Sets tenant `t`'s overrides as the operator would (straight in the database), and makes
    /// this server forget its cached copy.
    pub async fn set_overrides(&self, t: &Tenant, quotas: Value, rates: Value) {
        self.db
            .admin()
            .await
            .execute(
                "UPDATE tenants SET quota_overrides = $2, rate_overrides = $3 WHERE id = $1",
                &[&uuid::Uuid::parse_str(&t.id).unwrap(), &quotas, &rates],
            )
            .await
            .unwrap();
        self.forget(t).await;
    }

    /// Drops tenant `t` from this server's tenant cache.
    pub async fn forget(&self, t: &Tenant) {
        self.state
            .directory
            .invalidate(tessera::ids::TenantId(t.id.parse().unwrap()), &t.slug)
            .await;
    }

    /// Logs in; returns (access, refresh).
    pub async fn login(&self, slug: &str, email: &str, password: &str) -> (String, String) {
        let res = self
            .on(slug, Method::POST, "/v1/auth/login")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        let body = expect(res, StatusCode::OK).await;
        (
            body["access_token"].as_str().unwrap().into(),
            body["refresh_token"].as_str().unwrap().into(),
        )
    }

    /// The OpenAPI document the server serves (asserted 200).
    pub async fn openapi(&self) -> Value {
        let res = self
            .root(Method::GET, "/openapi.json")
            .send()
            .await
            .unwrap();
        expect(res, StatusCode::OK).await
    }

    /// Creates a contact as `t`; returns its JSON.
    pub async fn create_contact(&self, t: &Tenant, body: Value) -> Value {
        let res = self
            .as_tenant(t, Method::POST, "/v1/contacts")
            .json(&body)
            .send()
            .await
            .unwrap();
        expect(res, StatusCode::CREATED).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let h = self.server.clone();
        actix_web::rt::spawn(async move { h.stop(false).await });
    }
}

/// Asserts the status and returns the JSON body (null if empty).
pub async fn expect(res: Response, status: StatusCode) -> Value {
    let got = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    assert_eq!(
        got, status,
        "unexpected status; headers {headers:?}; body: {text}"
    );
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

/// Asserts a problem+json answer with `code`; returns the body.
pub async fn expect_problem(res: Response, status: StatusCode, code: &str) -> Value {
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let rid = res
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    let body = expect(res, status).await;
    assert_eq!(ct, "application/problem+json", "body {body}");
    assert_eq!(body["code"], code, "body {body}");
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["type"], format!("/problems/{code}"));
    assert_eq!(
        body["request_id"].as_str(),
        rid.as_deref(),
        "request_id in body = header"
    );
    body
}

/// A problem body without its per-request fields, for "identical answer" comparisons.
pub fn stable(mut body: Value) -> Value {
    body.as_object_mut().unwrap().remove("request_id");
    body
}

/// A raw HTTP/1.1 exchange, for what a client library would never send: writes `request` on a
/// fresh connection and reads until the server closes it or `wait` passes. Returns what was read
/// and whether the server closed the connection.
pub async fn raw(port: u16, request: &[u8], wait: std::time::Duration) -> (String, bool) {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write request");
    read_until_closed(&mut stream, wait).await
}

/// Reads from `stream` until EOF or `wait` passes; returns the text and whether EOF came.
pub async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    wait: std::time::Duration,
) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

/// The status codes of every HTTP response in a raw exchange, in order.
pub fn statuses(raw: &str) -> Vec<u16> {
    raw.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| raw.get(i + 9..i + 12)?.parse().ok())
        .collect()
}
