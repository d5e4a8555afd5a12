//! Application state, built once and shared by every worker, and the HTTP server assembly.

use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::access::grants::GrantsCache;
use crate::auth::keys::Keys;
use crate::auth::throttle::Throttles;
use crate::auth::tokens::TokenService;
use crate::config::Config;
use crate::crm::list::CursorSealer;
use crate::http::fallback::{self, RouteTable};
use crate::http::health::ApiJson;
use crate::http::{conn, edge, openapi, request_id, routes};
use crate::limits::admission::{self, Admission};
use crate::limits::metering::Metering;
use crate::limits::rate::Limiter;
use crate::maintenance;
use crate::platform::auth::KeyCache;
use crate::tenancy::directory::Directory;
use crate::tenancy::invalidation;
use crate::tenancy::{Door, PlatformDoor};

/// Everything handlers share. There is deliberately no pool here: the door owns it.
pub struct AppState {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// The tenant door (the app role).
    pub door: Door,
    /// The platform path (the platform role): cross-tenant work only — signup, tenant lookups,
    /// the operator API, usage flushing and export. See [`PlatformDoor`].
    pub platform: PlatformDoor,
    /// Cached tenant lookups.
    pub directory: Directory,
    /// Cached roles/permissions/session validity.
    pub grants: GrantsCache,
    /// Whether the change listener is connected (the two caches above trust old entries only
    /// then).
    pub listening: invalidation::Listening,
    /// Signing keys.
    pub keys: Arc<Keys>,
    /// Seals and opens list cursors (key derived from the signing key).
    pub cursors: CursorSealer,
    /// Access-token issuing and validation.
    pub tokens: Arc<TokenService>,
    /// Rate limiter: budgets shared through Redis when `redis.url` is set, else per process.
    pub limiter: Limiter,
    /// Auth throttles (counting in `limiter`).
    pub throttles: Throttles,
    /// This replica's usage counts and their flushing.
    pub metering: Arc<Metering>,
    /// The request path's rate-limit stage (tenant budgets, in-flight caps).
    pub admission: Admission,
    /// Verified platform keys (the operator API's credentials), cached briefly.
    pub platform_keys: KeyCache,
}

impl AppState {
    /// Builds the state: pool (lazy), door, caches, keys.
    pub fn new(config: Config, keys: Keys) -> anyhow::Result<Self> {
        let door = Door::connect(config.app_database_url()?, &config)?;
        let platform = PlatformDoor::connect(&config.platform_database_url()?, &config)?;
        let limiter = Limiter::new(&config.redis)?;
        let listening = invalidation::Listening::default();
        Ok(Self {
            platform_keys: KeyCache::new(
                platform.clone(),
                Duration::from_secs(config.platform.key_cache_secs),
            ),
            directory: Directory::new(
                platform.clone(),
                Duration::from_secs(config.tenancy.cache_secs),
                listening.clone(),
            ),
            metering: Metering::new(platform.clone(), config.metering.clone()),
            platform,
            grants: GrantsCache::new(
                door.clone(),
                Duration::from_secs(config.auth.principal_cache_secs),
                listening.clone(),
            ),
            listening,
            tokens: Arc::new(TokenService::new(
                &config.auth.issuer,
                &config.auth.audience,
                config.auth.access_ttl_secs,
            )),
            throttles: Throttles::new(&config.auth, &limiter),
            admission: Admission::new(limiter.clone(), config.limits.enforce),
            limiter,
            cursors: CursorSealer::from_keys(&keys),
            keys: Arc::new(keys),
            door,
            config: Arc::new(config),
        })
    }

    /// Starts what every serving process runs beside its requests, on the current tokio
    /// runtime: the tenant change listener (`tenancy::invalidation`), so a suspension, plan
    /// change or override made through any replica reaches this one on the next request.
    pub fn start_background(&self) -> anyhow::Result<()> {
        invalidation::spawn_listener(
            self.config.platform_database_url()?,
            invalidation::Caches {
                directory: self.directory.clone(),
                grants: self.grants.clone(),
                listening: self.listening.clone(),
            },
        );
        Ok(())
    }
}

/// The OpenAPI document `/openapi.json` serves: every mounted route, with the errors each kind of
/// operation can give ([`openapi::complete`]).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, mut api) = routes::mount(
        App::new()
            .into_utoipa_app()
            .openapi(openapi::ApiDoc::openapi()),
    )
    .split_for_parts();
    openapi::complete(&mut api);
    api
}

/// Builds the app for one worker (also used by the tests, with actix's test server).
pub fn build(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let (app, _) = routes::mount(App::new().into_utoipa_app().app_data(state)).split_for_parts();
    let api = openapi_document();
    let json = api.to_json().unwrap_or_default();
    let html = utoipa_scalar::Scalar::new(api.clone()).to_html();
    app.app_data(web::Data::new(RouteTable::from_openapi(&api)))
        .app_data(web::Data::new(ApiJson { json, html }))
        .default_service(web::to(fallback::handle))
        .wrap(from_fn(admission::headers))
        .wrap(from_fn(edge::middleware))
        .wrap(from_fn(request_id::middleware))
}

/// How an HTTP server is run: `serve` binds the configured address and handles signals; the
/// tests bind port 0 with one worker.
#[derive(Debug, Clone)]
pub struct Listen {
    /// Address to bind.
    pub bind: String,
    /// Worker threads (0: one per core).
    pub workers: usize,
    /// Whether SIGINT/SIGTERM stop the server (off in tests, which share a process).
    pub signals: bool,
}

/// Binds the HTTP server with the edge's connection settings (head timeout, per-connection state
/// and the per-address cap); returns it, ready to run, and the addresses it listens on.
pub fn listen(
    state: web::Data<AppState>,
    how: &Listen,
) -> anyhow::Result<(actix_web::dev::Server, Vec<std::net::SocketAddr>)> {
    let http = state.config.http.clone();
    let connections = conn::Counter::new(http.max_connections_per_ip);
    let mut server = HttpServer::new(move || build(state.clone()))
        .on_connect(move |io, ext| connections.on_connect(io, ext))
        .client_request_timeout(Duration::from_millis(http.header_timeout_ms))
        .shutdown_timeout(http.shutdown_timeout_secs);
    if how.workers > 0 {
        server = server.workers(how.workers);
    }
    if !how.signals {
        server = server.disable_signals();
    }
    let server = server
        .bind(&how.bind)
        .map_err(|e| anyhow::anyhow!("http.bind: cannot listen on {}: {e}", how.bind))?;
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}

/// Serves until SIGINT/SIGTERM, then drains in-flight requests (`http.shutdown_timeout_secs`).
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let config = state.config.clone();
    state.start_background()?;
    let state = web::Data::new(state);
    let (admission, throttles) = (state.admission.clone(), state.throttles.clone());
    // Idle rate-limit keys (tenants, client IPs, accounts) are pruned so memory does not grow
    // with every key ever seen.
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            admission.prune();
            throttles.prune();
        }
    });
    // Expired idempotency keys and refresh tokens are deleted so the tables stay their live size.
    maintenance::spawn_purge(
        state.door.clone(),
        state.platform.clone(),
        &config.maintenance,
    );
    let metering = state.metering.clone();
    let (server, _) = listen(
        state,
        &Listen {
            bind: config.http.bind.clone(),
            workers: config.http.workers,
            signals: true,
        },
    )?;
    tracing::info!(bind = %config.http.bind, base_domain = %config.public.base_domain, "listening");
    metering.spawn();
    server.await?;
    // In-flight requests have finished: what they counted is written before the process ends.
    match metering.flush().await {
        Ok(f) => tracing::info!(
            windows = f.windows,
            adjustments = f.adjustments,
            "usage flushed"
        ),
        Err(e) => {
            tracing::error!(error = %e, "final usage flush failed; unflushed api_requests are lost")
        }
    }
    tracing::info!("shut down");
    Ok(())
}
