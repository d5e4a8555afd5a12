//! The `tessera` command line: serve, migrate, tenants apply, platform (keys, purge), usage,
//! doctor, dev, devdb, devredis.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

use crate::app::{self, AppState};
use crate::auth::keys::Keys;
use crate::config::{Config, ConfigError};
use crate::db::grants::Roles;
use crate::db::{guard, migrate};
use crate::devdb::PrivatePostgres;
use crate::devredis::PrivateRedis;
use crate::ids::PlatformKeyId;
use crate::platform::keys::{self, Scope};
use crate::platform::purge;
use crate::tenancy::{Door, PlatformDoor, manifest};

/// Tessera: multi-tenant CRM backend.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (refuses to start if its database role could bypass RLS).
    Serve,
    /// Apply database migrations and the app role's grants (uses database.migration_url).
    Migrate,
    /// Tenants as code.
    Tenants {
        /// What to do with tenants.
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Operator tools: platform keys for the operator API, purging deleted tenants.
    Platform {
        /// What to do.
        #[command(subcommand)]
        command: PlatformCommand,
    },
    /// Check configuration, database reachability, migrations and every RLS guard; print each.
    Doctor,
    /// Usage and quota accounting.
    Usage {
        /// What to do.
        #[command(subcommand)]
        command: UsageCommand,
    },
    /// Local development: migrations, demo tenants from tenants/, then serve. Without a
    /// configured database.url it runs a private Postgres in DIR, without a configured
    /// redis.url a private Redis in DIR/redis (both stopped again on exit).
    Dev {
        /// Folder for the private Postgres cluster and Redis, signing key and demo credentials.
        #[arg(long, default_value = ".tessera")]
        dir: PathBuf,
        /// Port of the private Postgres cluster.
        #[arg(long, default_value_t = 55432)]
        pg_port: u16,
        /// Port of the private Redis (rate-limit budgets).
        #[arg(long, default_value_t = 55437)]
        redis_port: u16,
        /// Folder of tenant manifests to apply.
        #[arg(long, default_value = "tenants")]
        tenants: PathBuf,
    },
    /// Manage a private Postgres cluster (used by scripts/test and bench/).
    Devdb {
        /// start | stop.
        #[command(subcommand)]
        command: DevdbCommand,
    },
    /// Manage a private Redis (used by scripts/test and `dev`).
    Devredis {
        /// start | stop.
        #[command(subcommand)]
        command: DevredisCommand,
    },
}

/// `tessera tenants …`
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create or update every tenant described by the `*.toml` manifests in DIR.
    Apply {
        /// Folder of manifests.
        dir: PathBuf,
        /// Print what would change (per tenant: create, `field: old → new`, users to add, and
        /// deletions with --prune) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Soft-delete tenants that are in no manifest (as the operator API's DELETE does).
        /// Without it they are only reported, on stderr, as "not in manifests, kept".
        #[arg(long)]
        prune: bool,
    },
}

/// `tessera platform …`
#[derive(Debug, Subcommand)]
pub enum PlatformCommand {
    /// Platform keys: the operator API's credentials.
    Keys {
        /// create | list | revoke.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Remove the data of tenants deleted more than `platform.delete_grace_days` ago (their
    /// rows and slugs stay, and their usage for billing) and of signups abandoned while
    /// provisioning (older than an hour). Uses database.migration_url (the owner).
    Purge,
}

/// `tessera platform keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it, once. Only its hash is stored.
    Create {
        /// A name saying who or what uses the key.
        #[arg(long)]
        name: String,
        /// A scope the key grants (repeatable): tenants:read, tenants:write, usage:read.
        #[arg(long = "scope", required = true)]
        scopes: Vec<Scope>,
    },
    /// List keys: id, name, scopes, created, revoked (never the key).
    List,
    /// Revoke a key: it stops working within `platform.key_cache_secs` in every server.
    Revoke {
        /// The key's id (from `list`).
        id: PlatformKeyId,
    },
}

/// `tessera usage …`
#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Recompute every tenant's quota counters from the tables and report drift (exit 1 when
    /// some drifted and --fix was not given).
    Reconcile {
        /// Overwrite drifted counters with the recomputed values.
        #[arg(long)]
        fix: bool,
    },
}

/// `tessera devdb …`
#[derive(Debug, Subcommand)]
pub enum DevdbCommand {
    /// Start (initializing if needed) and print the superuser URL on stdout.
    Start {
        /// Cluster folder.
        #[arg(long)]
        dir: PathBuf,
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = 55433)]
        port: u16,
        /// Extra server setting NAME=VALUE for this start (repeatable), e.g.
        /// `shared_preload_libraries=citus` (scripts/citus).
        #[arg(long = "setting", value_name = "NAME=VALUE")]
        settings: Vec<crate::devdb::Setting>,
    },
    /// Stop the cluster in DIR (no-op if not running).
    Stop {
        /// Cluster folder.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// `tessera devredis …`
#[derive(Debug, Subcommand)]
pub enum DevredisCommand {
    /// Start (unless running) and print its URL on stdout.
    Start {
        /// Server folder (config, pidfile, log).
        #[arg(long)]
        dir: PathBuf,
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = 55436)]
        port: u16,
    },
    /// Stop the server in DIR (no-op if not running).
    Stop {
        /// Server folder.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Runs the parsed command. Invalid configuration exits with 2, other failures with 1.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Devdb { command } => devdb(command),
        Command::Devredis { command } => devredis(command),
        Command::Serve => with_config(|c| Box::pin(serve(c))).await,
        Command::Migrate => with_config(|c| Box::pin(migrate_cmd(c))).await,
        Command::Doctor => with_config(|c| Box::pin(doctor(c))).await,
        Command::Usage {
            command: UsageCommand::Reconcile { fix },
        } => with_config(move |c| Box::pin(async move { reconcile(c, fix).await })).await,
        Command::Tenants {
            command:
                TenantsCommand::Apply {
                    dir,
                    dry_run,
                    prune,
                },
        } => {
            with_config(move |c| Box::pin(async move { apply(c, &dir, dry_run, prune).await }))
                .await
        }
        Command::Platform { command } => {
            with_config(move |c| Box::pin(async move { platform(c, command).await })).await
        }
        Command::Dev {
            dir,
            pg_port,
            redis_port,
            tenants,
        } => {
            let ports = DevPorts {
                pg: pg_port,
                redis: redis_port,
            };
            with_config(move |c| Box::pin(async move { dev(c, &dir, ports, &tenants).await })).await
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ConfigError>() {
                eprintln!("{ce}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

type BoxFut = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<ExitCode>>>>;

async fn with_config(f: impl FnOnce(Config) -> BoxFut) -> anyhow::Result<ExitCode> {
    let config = Config::load()?;
    init_logging(&config);
    f(config).await
}

/// Logs go to stderr (stdout stays free for command output such as `devdb start`'s URL).
pub fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log.format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let keys = Keys::load(&config)?;
    let state = AppState::new(config, keys)?;
    let checks = guard::run_all(&state.door, &state.platform).await?;
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
    if !failed.is_empty() {
        for c in &failed {
            eprintln!("refusing to start: {} — {}", c.name, c.detail);
        }
        eprintln!(
            "the server's database role must not be able to bypass row-level security; see `tessera doctor`"
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Ok(Some(lc)) = guard::non_english_messages(&state.door).await {
        tracing::warn!(
            lc_messages = %lc,
            "server messages are not in English: deadlocks and statement timeouts will answer 500, not 503"
        );
    }
    app::serve(state).await?;
    Ok(ExitCode::SUCCESS)
}

async fn migrate_cmd(config: Config) -> anyhow::Result<ExitCode> {
    let owner = config.migration_database_url()?.to_string();
    let roles = Roles::from_config(&config);
    let applied = migrate::run(&owner, &roles).await?;
    if applied.is_empty() {
        println!("migrations: up to date ({})", migrate::latest_version());
    } else {
        println!("migrations applied: {}", applied.join(", "));
    }
    println!(
        "grants applied to roles {} and {}",
        roles.app.name, roles.platform.name
    );
    Ok(ExitCode::SUCCESS)
}

async fn doctor(config: Config) -> anyhow::Result<ExitCode> {
    println!("[pass] configuration ({} profile)", config.profile.as_str());
    let keys = match Keys::load(&config) {
        Ok(k) => {
            println!("[pass] signing key (kid {})", k.kid());
            k
        }
        Err(e) => {
            println!("[FAIL] signing key — {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let state = AppState::new(config, keys)?;
    let checks = match guard::run_all(&state.door, &state.platform).await {
        Ok(c) => {
            println!("[pass] database reachable as the server's role");
            c
        }
        Err(e) => {
            println!("[FAIL] database reachable — {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut ok = true;
    for c in &checks {
        println!(
            "[{}] {} — {}",
            if c.passed { "pass" } else { "FAIL" },
            c.name,
            c.detail
        );
        ok &= c.passed;
    }
    match guard::non_english_messages(&state.door).await {
        Ok(None) => println!("[pass] server messages in English (transient errors answer 503)"),
        Ok(Some(lc)) => println!(
            "[warn] lc_messages is {lc}: deadlocks and statement timeouts are recognised by \
             their English text and would answer 500, not 503; set lc_messages = 'C'"
        ),
        Err(e) => println!("[warn] lc_messages — {e:#}"),
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn apply(config: Config, dir: &Path, dry_run: bool, prune: bool) -> anyhow::Result<ExitCode> {
    let manifests = manifest::load_dir(dir, &config.plans)?;
    // The same two paths the server uses: tenants rows on the platform path, users and roles
    // in each tenant's own transaction as the app role.
    let door = Door::connect(config.app_database_url()?, &config)?;
    let platform = PlatformDoor::connect(&config.platform_database_url()?, &config)?;
    let mut diffs = Vec::with_capacity(manifests.len());
    for m in &manifests {
        let d = manifest::diff(&door, &platform, m)
            .await
            .with_context(|| format!("tenant {}", m.slug))?;
        diffs.push(d);
    }
    let strays = manifest::prune_candidates(&platform, &manifests).await?;
    // stdout is the diff alone (exactly "no changes" when there is none); what is merely
    // noticed goes to stderr.
    let mut changes = 0;
    for d in diffs.iter().filter(|d| !d.is_empty()) {
        changes += 1;
        println!(
            "tenant {}: {}",
            d.slug,
            if d.create { "create" } else { "update" }
        );
        for (field, old, new) in &d.fields {
            println!("  {field}: {old} → {new}");
        }
        for email in &d.users_to_add {
            println!("  user {email}: add");
        }
        for (email, role) in &d.roles_to_grant {
            println!("  user {email}: grant role {role}");
        }
    }
    for t in &strays {
        if prune {
            changes += 1;
            println!("tenant {}: delete (not in manifests)", t.slug);
        } else {
            eprintln!(
                "tenant {}: not in manifests, kept (--prune deletes it)",
                t.slug
            );
        }
    }
    if changes == 0 {
        println!("no changes");
        return Ok(ExitCode::SUCCESS);
    }
    if dry_run {
        println!("dry run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    for (m, d) in manifests.iter().zip(&diffs) {
        if d.is_empty() {
            continue;
        }
        let applied = manifest::apply(&door, &platform, m, &Default::default())
            .await
            .with_context(|| format!("tenant {}", m.slug))?;
        for u in &applied.users {
            if let Some(pw) = &u.generated_password {
                println!(
                    "tenant {}: user {} password (shown once): {pw}",
                    m.slug, u.email
                );
            }
        }
    }
    if prune {
        for t in &strays {
            manifest::prune(&platform, t, config.platform.delete_grace_days)
                .await
                .with_context(|| format!("tenant {}", t.slug))?;
        }
    }
    println!("applied {changes} change(s)");
    Ok(ExitCode::SUCCESS)
}

async fn platform(config: Config, command: PlatformCommand) -> anyhow::Result<ExitCode> {
    let platform = PlatformDoor::connect(&config.platform_database_url()?, &config)?;
    match command {
        PlatformCommand::Keys {
            command: KeysCommand::Create { name, scopes },
        } => {
            let created = keys::create(&platform, &name, &scopes).await?;
            println!("platform key {} ({})", created.info.id, created.info.name);
            println!("scopes: {}", created.info.scopes.join(" "));
            println!("the key, shown once — store it now:");
            println!("{}", created.plaintext);
        }
        PlatformCommand::Keys {
            command: KeysCommand::List,
        } => {
            println!("id\tname\tscopes\tcreated\trevoked");
            for k in keys::list(&platform).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.name,
                    k.scopes.join(","),
                    k.created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    k.revoked_at.map_or("-".into(), |t| t
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
            }
        }
        PlatformCommand::Keys {
            command: KeysCommand::Revoke { id },
        } => {
            if !keys::revoke(&platform, id).await? {
                eprintln!("error: no platform key {id}");
                return Ok(ExitCode::FAILURE);
            }
            println!(
                "revoked platform key {id} (servers stop accepting it within {} s)",
                config.platform.key_cache_secs
            );
        }
        PlatformCommand::Purge => {
            let owner = Door::connect(config.migration_database_url()?, &config)?;
            let purged = purge::run(&platform, &owner).await?;
            for p in &purged {
                match p.status.as_str() {
                    "provisioning" => println!(
                        "tenant {} ({}): abandoned signup removed, {} row(s)",
                        p.slug, p.id, p.rows
                    ),
                    _ => println!(
                        "tenant {} ({}): data purged, {} row(s); tenant row and usage kept",
                        p.slug, p.id, p.rows
                    ),
                }
            }
            println!("purged {} tenant(s)", purged.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn reconcile(config: Config, fix: bool) -> anyhow::Result<ExitCode> {
    let door = Door::connect(config.app_database_url()?, &config)?;
    let platform = PlatformDoor::connect(&config.platform_database_url()?, &config)?;
    let report = crate::limits::reconcile::run(&door, &platform, fix)
        .await
        .map_err(|e| anyhow::anyhow!("reconciling usage counters: {e}"))?;
    for d in &report.drifted {
        println!(
            "tenant {} ({}): {}{}",
            d.slug,
            d.tenant,
            d.describe(),
            if fix { " — fixed" } else { "" }
        );
    }
    println!(
        "{} tenant(s) checked, {} drifted{}",
        report.tenants,
        report.drifted.len(),
        if fix && !report.drifted.is_empty() {
            ", all fixed"
        } else {
            ""
        }
    );
    Ok(if report.drifted.is_empty() || fix {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn devdb(command: DevdbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DevdbCommand::Start {
            dir,
            port,
            settings,
        } => {
            let pg = PrivatePostgres::ensure_running_with(&dir, port, &settings)?;
            // stdout is the URL alone (scripts capture it); where the cluster lives goes to stderr.
            eprintln!(
                "private PostgreSQL in {} (127.0.0.1:{})",
                pg.root().display(),
                pg.port()
            );
            println!("{}", pg.superuser_url("postgres"));
        }
        DevdbCommand::Stop { dir } => PrivatePostgres::stop_at(&dir)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn devredis(command: DevredisCommand) -> anyhow::Result<ExitCode> {
    match command {
        DevredisCommand::Start { dir, port } => {
            let redis = PrivateRedis::ensure_running(&dir, port)?;
            // stdout is the URL alone (scripts capture it); where it lives goes to stderr.
            eprintln!(
                "private Redis in {} (127.0.0.1:{})",
                redis.root().display(),
                redis.port()
            );
            println!("{}", redis.url());
        }
        DevredisCommand::Stop { dir } => PrivateRedis::stop_at(&dir)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates database `name` on the cluster at `admin_url` unless it exists.
pub async fn ensure_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        crate::config::is_sql_identifier(name),
        "bad database name {name}"
    );
    let mut conn = AsyncPgConnection::establish(admin_url).await?;
    // CREATE DATABASE cannot run in a transaction or a DO block; tolerate "already exists".
    match conn.batch_execute(&format!("CREATE DATABASE {name}")).await {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().contains("already exists") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Ports of the private servers `dev` starts.
#[derive(Debug, Clone, Copy)]
struct DevPorts {
    pg: u16,
    redis: u16,
}

async fn dev(
    mut config: Config,
    dir: &Path,
    ports: DevPorts,
    tenants: &Path,
) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir.join("dev"))?;
    // A configured Redis is used as is; otherwise one of our own, so `dev` shares rate limits
    // through Redis the way a deployment with several replicas does.
    let redis = if config.redis.url.is_empty() {
        eprintln!("==> private Redis");
        let redis = PrivateRedis::ensure_running(&dir.join("redis"), ports.redis)?;
        eprintln!(
            "==> private Redis in {} (127.0.0.1:{})",
            redis.root().display(),
            redis.port()
        );
        config.redis.url = redis.url();
        Some(redis)
    } else {
        eprintln!("==> configured Redis (redis.url)");
        None
    };
    let served = dev_database(config, dir, ports.pg, tenants).await;
    // Like the database: this command's, so stopping the server stops it too.
    if let Some(redis) = redis {
        eprintln!("==> stopping private Redis");
        if let Err(e) = redis.stop() {
            eprintln!("warning: could not stop the private Redis: {e:#}");
        }
    }
    served
}

/// The configured database, or a private PostgreSQL started (and stopped again) for the run.
async fn dev_database(
    mut config: Config,
    dir: &Path,
    pg_port: u16,
    tenants: &Path,
) -> anyhow::Result<ExitCode> {
    if !config.database.url.is_empty() {
        // A configured database is used as is: migrations and demo tenants go to it, and
        // nothing is started or stopped.
        eprintln!("==> configured database (database.url)");
        return dev_serve(config, dir, tenants).await;
    }
    eprintln!("==> private PostgreSQL");
    let pg = PrivatePostgres::ensure_running(&dir.join("pg"), pg_port)?;
    eprintln!(
        "==> private PostgreSQL in {} (127.0.0.1:{})",
        pg.root().display(),
        pg.port()
    );
    ensure_database(&pg.superuser_url("postgres"), "tessera").await?;
    let role = config.database.app_role.clone();
    config.database.migration_url = pg.superuser_url("tessera");
    config.database.url = format!("postgres://{role}@127.0.0.1:{}/tessera", pg.port());
    let served = dev_serve(config, dir, tenants).await;
    // The cluster is this command's: stopping the server (Ctrl-C) stops it too, so nothing is
    // left listening. The next `dev` starts it again in about a second, data kept.
    eprintln!("==> stopping private PostgreSQL");
    if let Err(e) = pg.stop() {
        eprintln!("warning: could not stop the private PostgreSQL: {e:#}");
    }
    served
}

/// Migrations, signing key, demo tenants, guard, then serve until shut down.
async fn dev_serve(mut config: Config, dir: &Path, tenants: &Path) -> anyhow::Result<ExitCode> {
    let owner_url = config.migration_database_url()?.to_string();
    eprintln!("==> migrations");
    migrate::run(&owner_url, &Roles::from_config(&config)).await?;
    // Unless one is configured, a signing key that survives restarts, so tokens stay valid
    // across `dev` runs.
    if !config.has_signing_key() {
        let key_path = dir.join("dev/signing-key.pem");
        if !key_path.exists() {
            let (_, pem) = Keys::generate()?;
            write_private(&key_path, &pem)?;
        }
        config.auth.signing_key_file = key_path.display().to_string();
    }
    let keys = Keys::load(&config)?;
    let state = AppState::new(config.clone(), keys)?;
    eprintln!("==> demo tenants from {}", tenants.display());
    let manifests = manifest::load_dir(tenants, &config.plans)?;
    let passwords = demo_passwords(&dir.join("dev/demo-passwords.toml"), &manifests)?;
    let port = config.http.bind.rsplit(':').next().unwrap_or("8080");
    let mut lines = Vec::new();
    let mut try_login = None;
    for m in &manifests {
        let applied = manifest::apply(&state.door, &state.platform, m, &passwords).await?;
        for u in &m.users {
            let pw = u
                .password_env
                .as_ref()
                .and_then(|v| passwords.get(v))
                .cloned()
                .unwrap_or_default();
            let url = format!(
                "http://{}.{}:{port}",
                applied.tenant.slug, config.public.base_domain
            );
            lines.push(format!(
                "  {:<10} {url}  {}  {pw}",
                applied.tenant.slug, u.email
            ));
            try_login.get_or_insert_with(|| {
                format!(
                    "Try: curl -s -X POST {url}/v1/auth/login -H 'content-type: application/json' \
                     -d '{{\"email\":\"{}\",\"password\":\"…\"}}'",
                    u.email
                )
            });
        }
    }
    println!("Tessera dev server on http://{}", config.http.bind);
    println!("Demo tenants (slug, URL, owner email, password):");
    for l in lines {
        println!("{l}");
    }
    if let Some(line) = try_login {
        println!("{line}");
    }
    let checks = guard::run_all(&state.door, &state.platform).await?;
    if let Some(c) = checks.iter().find(|c| !c.passed) {
        anyhow::bail!("RLS guard failed: {} — {}", c.name, c.detail);
    }
    app::serve(state).await?;
    Ok(ExitCode::SUCCESS)
}

/// Demo passwords live in a git-ignored file so they stay stable across runs; a variable named
/// by a manifest's `password_env` and set in the environment wins.
fn demo_passwords(
    path: &Path,
    manifests: &[manifest::Manifest],
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut map: std::collections::BTreeMap<String, String> = match std::fs::read_to_string(path) {
        Ok(s) => toml::from_str(&s).context("reading demo passwords")?,
        Err(_) => Default::default(),
    };
    for m in manifests {
        for u in &m.users {
            if let Some(var) = &u.password_env {
                let pw = std::env::var(var).ok().filter(|p| !p.is_empty());
                let entry = map
                    .entry(var.clone())
                    .or_insert_with(crate::auth::password::generate);
                if let Some(pw) = pw {
                    *entry = pw;
                }
            }
        }
    }
    write_private(path, &toml::to_string(&map)?)?;
    Ok(map)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
