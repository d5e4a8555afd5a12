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
use crate::db::pool;
use crate::http::fallback::{self, RouteTable};
use crate::http::health::ApiJson;
use crate::http::{openapi, request_id, routes};
use crate::tenancy::Door;
use crate::tenancy::directory::Directory;

/// Everything handlers share. There is deliberately no pool here: the door owns it.
pub struct AppState {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// The tenant door (and platform path).
    pub door: Door,
    /// Cached tenant lookups.
    pub directory: Directory,
    /// Cached roles/permissions/session validity.
    pub grants: GrantsCache,
    /// Signing keys.
    pub keys: Arc<Keys>,
    /// Seals and opens list cursors (key derived from the signing key).
    pub cursors: CursorSealer,
    /// Access-token issuing and validation.
    pub tokens: Arc<TokenService>,
    /// Auth throttles.
    pub throttles: Throttles,
}

impl AppState {
    /// Builds the state: pool (lazy), door, caches, keys.
    pub fn new(config: Config, keys: Keys) -> anyhow::Result<Self> {
        let url = config.app_database_url()?.to_string();
        let pool = pool::build(&url, &config.database)?;
        let door = Door::new(pool, config.database.retry_after_secs);
        Ok(Self {
            directory: Directory::new(door.clone(), Duration::from_secs(config.tenancy.cache_secs)),
            grants: GrantsCache::new(
                door.clone(),
                Duration::from_secs(config.auth.principal_cache_secs),
            ),
            tokens: Arc::new(TokenService::new(
                &config.auth.issuer,
                &config.auth.audience,
                config.auth.access_ttl_secs,
            )),
            throttles: Throttles::new(&config.auth),
            cursors: CursorSealer::from_keys(&keys),
            keys: Arc::new(keys),
            door,
            config: Arc::new(config),
        })
    }
}

/// The OpenAPI document for the full route table.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, api) = routes::mount(
        App::new()
            .into_utoipa_app()
            .openapi(openapi::ApiDoc::openapi()),
    )
    .split_for_parts();
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
    let (app, api) = routes::mount(
        App::new()
            .into_utoipa_app()
            .openapi(openapi::ApiDoc::openapi())
            .app_data(state),
    )
    .split_for_parts();
    let mut api = api;
    openapi::complete(&mut api);
    let json = api.to_json().unwrap_or_default();
    let html = utoipa_scalar::Scalar::new(api.clone()).to_html();
    app.app_data(web::Data::new(RouteTable::from_openapi(&api)))
        .app_data(web::Data::new(ApiJson { json, html }))
        .default_service(web::to(fallback::handle))
        .wrap(from_fn(request_id::middleware))
}

/// Serves until SIGINT/SIGTERM, then drains in-flight requests (`http.shutdown_timeout_secs`).
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let config = state.config.clone();
    let state = web::Data::new(state);
    let throttles = state.throttles.clone();
    // Idle throttle keys are pruned so memory does not grow with every client ever seen.
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            throttles.prune();
        }
    });
    let mut server = HttpServer::new(move || build(state.clone()))
        .shutdown_timeout(config.http.shutdown_timeout_secs)
        .bind(&config.http.bind)
        .map_err(|e| anyhow::anyhow!("http.bind: cannot listen on {}: {e}", config.http.bind))?;
    if config.http.workers > 0 {
        server = server.workers(config.http.workers);
    }
    tracing::info!(bind = %config.http.bind, base_domain = %config.public.base_domain, "listening");
    server.run().await?;
    tracing::info!("shut down");
    Ok(())
}
