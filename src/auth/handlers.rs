//! `/v1/signup`, `/v1/auth/*`, `/v1/me`, `/.well-known/jwks.json`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, get, post, web};
use diesel_async::scoped_futures::ScopedFutureExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::keys::Jwks;
use super::refresh::{self, Rotation};
use super::{password, users};
use crate::app::AppState;
use crate::audit::{self, Event};
use crate::error::{AppError, AppResult, FieldError, Problem};
use crate::http::body::JsonBody;
use crate::http::principal::{
    HostTenant, Principal, audit_context, client_ip, credential_tenant, throttle_key,
};
use crate::ids::{SessionId, TenantId, UserId};
use crate::limits::plans::{DEFAULT_PLAN, Plans};
use crate::tenancy::host::HostTarget;
use crate::tenancy::{Tenant, TxScope, provision, rules};

/// Access + refresh token pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// EdDSA JWT, ≤ 15 minutes.
    pub access_token: String,
    /// Opaque, single-use refresh token.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
}

/// Signup's tenant part.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupTenant {
    /// 3–32 lower-case letters and digits, single hyphens between them, not a reserved name.
    #[schema(schema_with = api_schema::slug)]
    pub slug: String,
    /// Display name.
    #[schema(schema_with = api_schema::name)]
    pub name: String,
}

/// Signup's user part.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupUser {
    /// Login email.
    #[schema(schema_with = api_schema::email)]
    pub email: String,
    /// 12–256 characters.
    #[schema(schema_with = api_schema::new_password)]
    pub password: String,
    /// Display name.
    #[schema(schema_with = api_schema::name)]
    pub name: String,
}

/// `POST /v1/signup` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// The new tenant.
    pub tenant: SignupTenant,
    /// Its first user, who becomes `owner`.
    pub user: SignupUser,
    /// Plan name (default `free`).
    #[schema(schema_with = api_schema::plan)]
    pub plan: Option<String>,
}

/// Request-body schemas for the API description, built from the values the handlers check
/// against (reserved slugs, password lengths, plans), so the two cannot drift apart.
pub(crate) mod api_schema {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};

    use crate::auth::password::{MAX_LEN, MIN_LEN};
    use crate::auth::refresh::TOKEN_PATTERN;
    use crate::auth::users::MAX_EMAIL;
    use crate::http::openapi::rules;
    use crate::tenancy::host::{RESERVED, SLUG_MAX, SLUG_MIN, SLUG_PATTERN};
    use crate::tenancy::rules::MAX_NAME;

    /// A tenant slug: its subdomain label.
    pub fn slug() -> ObjectBuilder {
        rules::string(false)
            .pattern(Some(SLUG_PATTERN))
            .min_length(Some(SLUG_MIN))
            .max_length(Some(SLUG_MAX))
            .extensions(rules::not_one_of(RESERVED))
            .description(Some(
                "The tenant's subdomain label: 3–32 lower-case letters and digits, single hyphens \
                 between them (so never `--`, which also keeps IDNA `xn--` labels out), and not a \
                 reserved name. Taken → 409 `slug_taken`.",
            ))
    }

    /// A display name (tenant or user).
    pub fn name() -> ObjectBuilder {
        rules::string(false)
            .pattern(Some(rules::non_blank()))
            .min_length(Some(1))
            .max_length(Some(MAX_NAME))
            .description(Some(format!(
                "1–{MAX_NAME} characters, at least one of them not whitespace; stored trimmed."
            )))
    }

    /// An email address that can be a login.
    pub fn email() -> ObjectBuilder {
        rules::string(false)
            .pattern(Some(rules::email(false)))
            .max_length(Some(MAX_EMAIL))
            .description(Some(format!(
                "Login email: one `@` with a non-empty part before it, a domain with a dot that \
                 neither starts nor ends with one, no whitespace inside, at most {MAX_EMAIL} \
                 characters; stored trimmed and lower-cased."
            )))
    }

    /// A password being set.
    pub fn new_password() -> ObjectBuilder {
        rules::string(false)
            .min_length(Some(MIN_LEN))
            .max_length(Some(MAX_LEN))
            .description(Some(format!("{MIN_LEN}–{MAX_LEN} characters.")))
    }

    /// A password being presented: longer than any that can be set fails like a wrong one.
    pub fn password() -> ObjectBuilder {
        rules::string(false)
            .max_length(Some(MAX_LEN))
            .description(Some("The password."))
    }

    /// A refresh token as the server issues it: `trt_` and 64 base64url characters.
    pub fn refresh_token() -> ObjectBuilder {
        rules::string(false)
            .pattern(Some(TOKEN_PATTERN))
            .examples([format!("trt_{}", "A".repeat(64))])
            .description(Some("The current refresh token (single use)."))
    }

    /// A plan a signup may pick.
    pub fn plan() -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .enum_values(Some(
                crate::limits::plans::Plans::embedded()
                    .iter()
                    .filter(|(_, p)| p.self_serve)
                    .map(|(name, _)| serde_json::Value::from(name))
                    .chain([serde_json::Value::Null]),
            ))
            .description(Some(
                "A self-serve plan (`self_serve = true` in plans.toml; the built-in plans are \
                 listed); absent or `null` means `free`.",
            ))
    }
}

/// `POST /v1/signup` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignupResponse {
    /// The tenant.
    pub tenant: Tenant,
    /// The owner.
    pub user: users::UserView,
    /// Tokens for the owner.
    pub tokens: TokenPair,
}

/// A response that carries tokens: no cache anywhere may keep it (RFC 6749 §5.1; `Pragma` for
/// HTTP/1.0 caches).
fn carrying_credentials(status: StatusCode) -> HttpResponseBuilder {
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    res
}

fn validate_signup(req: &SignupRequest, plans: &Plans) -> Result<(), AppError> {
    let mut errors = Vec::new();
    rules::check_tenant(&req.tenant.slug, &req.tenant.name, "tenant", &mut errors);
    rules::check_owner(
        &req.user.email,
        &req.user.name,
        Some(&req.user.password),
        "user",
        &mut errors,
    );
    if let Some(plan) = &req.plan
        && !plans.is_self_serve(plan)
    {
        errors.push(FieldError::new(
            "plan",
            "invalid_value",
            "not a plan signup may choose",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errors))
    }
}

/// Create a tenant and its owner.
///
/// `Idempotency-Key` is not honoured here: keys are remembered per tenant, a signup has none
/// until it succeeds, and its response carries tokens that must not be stored for replay. A
/// retried signup whose first attempt succeeded answers 409 `slug_taken`; the owner then logs in.
#[utoipa::path(
    tag = "auth",
    request_body = SignupRequest,
    responses(
        (status = 201, description = "Tenant created", body = SignupResponse),
        (status = 404, description = "Public signup disabled or not the root host", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Slug taken (`slug_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks its rule (`validation_failed`, `errors` names each): `tenant.slug` (`invalid_format`), `tenant.name` or `user.name` (`invalid_length`), `user.email` (`invalid_format`), `user.password` (`too_short`), `plan` (`invalid_value`), or text holding NUL (`invalid_characters`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Throttled per client IP", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/signup")]
pub async fn signup(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<SignupRequest>,
) -> AppResult<HttpResponse> {
    // Signup lives on the root host only, and can be switched off.
    if !state.config.auth.public_signup
        || crate::http::principal::host_target(&req) != HostTarget::Root
    {
        return Err(AppError::NotFound);
    }
    let ip = throttle_key(client_ip(&req));
    state.throttles.signup_ip.check(&ip).await?;
    let input = body.value;
    validate_signup(&input, &state.config.plans)?;
    let hash = password::hash(input.user.password.clone()).await?;
    let tenant_id = TenantId::new();
    let session = SessionId::new();
    let ctx = audit_context(&req);
    let refresh_ttl = state.config.auth.refresh_ttl_secs;
    let tenant = Tenant::new(
        tenant_id,
        &input.tenant.slug,
        input.tenant.name.trim(),
        input.plan.as_deref().unwrap_or(DEFAULT_PLAN),
    );
    let seats = tenant.limits(&state.config.plans).quotas.seats;
    // The tenants row is platform data: reserved on the platform path, then the owner is
    // created in the tenant's own transaction, then the tenant is activated (tenancy::provision).
    provision::reserve(&state.platform, &tenant).await?;
    let result = state
        .door
        .write(TxScope::tenant(tenant_id), |tx| {
            async move {
                let user =
                    provision::first_owner(tx, &input.user.email, &input.user.name, &hash, seats)
                        .await?;
                let refresh_token = refresh::issue(tx, user.id, session, refresh_ttl).await?;
                audit::record(
                    tx,
                    &ctx,
                    Event::by_user(
                        "tenant.created",
                        user.id.as_uuid(),
                        "tenant",
                        tenant_id.as_uuid(),
                        json!({"fields": ["slug", "name", "plan"]}),
                    ),
                )
                .await?;
                Ok((user, refresh_token))
            }
            .scope_boxed()
        })
        .await;
    match &result {
        Ok(_) => provision::activate(&state.platform, tenant_id).await?,
        Err(_) => provision::release(&state.platform, tenant_id).await,
    }
    let (user, refresh_token) = result?;
    state.directory.invalidate(tenant_id, &tenant.slug).await;
    let access_token =
        state
            .tokens
            .issue(&state.keys, user.id, tenant_id, &tenant.slug, session)?;
    tracing::info!(tenant.id = %tenant_id, tenant.slug = %tenant.slug, "tenant signed up");
    Ok(
        carrying_credentials(StatusCode::CREATED).json(SignupResponse {
            user: users::UserView::from(&user),
            tokens: TokenPair {
                access_token,
                refresh_token,
                token_type: "Bearer",
                expires_in: state.tokens.ttl_secs(),
            },
            tenant,
        }),
    )
}

/// `POST /v1/auth/login` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email.
    #[schema(schema_with = api_schema::email)]
    pub email: String,
    /// Password.
    #[schema(schema_with = api_schema::password)]
    pub password: String,
}

/// Exchange email and password for tokens (tenant host only).
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenPair),
        (status = 401, description = "Wrong email or password (`invalid_credentials`, the same for both), or no tenant host (`unauthenticated`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Throttled (`rate_limited`, `Retry-After`): attempts per client IP, or failures on this account per IP or overall; decided before the password is checked", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    host: HostTenant,
    body: JsonBody<LoginRequest>,
) -> AppResult<HttpResponse> {
    // A password names no tenant, so login needs the tenant's host.
    let tenant = host.0.ok_or(AppError::Unauthenticated)?;
    let input = body.value;
    let ip = throttle_key(client_ip(&req));
    state.throttles.login_ip.check(&ip).await?;
    let email = users::normalize_email(&input.email);
    // Before anything looks at the password: a throttled attempt must not learn whether it was
    // right. The attempt holds the account's turn until it is settled as failed or succeeded.
    let attempt = state.throttles.login.begin(tenant.id, &email, &ip).await?;
    if password::exceeds_max(&input.password) {
        attempt.failed().await;
        return Err(AppError::InvalidCredentials);
    }
    let tenant_id = tenant.id;
    let user = state
        .door
        .read(TxScope::tenant(tenant_id), |tx| {
            async move { users::by_email(tx, &email).await }.scope_boxed()
        })
        .await?;
    let user = user.filter(|u| u.status == "active");
    // Verify even when the user is unknown, so timing does not reveal which emails exist.
    let ok = password::verify(
        input.password,
        user.as_ref().and_then(|u| u.password_hash.clone()),
    )
    .await?;
    let user = match (ok, user) {
        (true, Some(u)) => {
            attempt.succeeded();
            u
        }
        _ => {
            attempt.failed().await;
            return Err(AppError::InvalidCredentials);
        }
    };
    let session = SessionId::new();
    let ctx = audit_context(&req);
    let refresh_ttl = state.config.auth.refresh_ttl_secs;
    let user_id = user.id;
    let refresh_token = state
        .door
        .write(
            TxScope {
                tenant: tenant_id,
                user: Some(user_id),
                statement_timeout_ms: None,
            },
            |tx| {
                async move {
                    let token = refresh::issue(tx, user_id, session, refresh_ttl).await?;
                    audit::record(tx, &ctx, session_event("user.login", user_id, session)).await?;
                    Ok(token)
                }
                .scope_boxed()
            },
        )
        .await?;
    let access_token =
        state
            .tokens
            .issue(&state.keys, user_id, tenant_id, &tenant.slug, session)?;
    Ok(carrying_credentials(StatusCode::OK).json(TokenPair {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: state.tokens.ttl_secs(),
    }))
}

fn session_event(action: &str, user: UserId, session: SessionId) -> Event<'_> {
    Event::by_user(
        action,
        user.as_uuid(),
        "session",
        session.as_uuid(),
        json!({}),
    )
}

/// `POST /v1/auth/refresh` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The current refresh token.
    #[schema(schema_with = api_schema::refresh_token)]
    pub refresh_token: String,
}

/// Rotate a refresh token into a new token pair.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New pair; the presented token is consumed", body = TokenPair),
        (status = 401, description = "Invalid token, tenant mismatch, or `refresh_token_reused` (the session is revoked)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Throttled per client IP (`rate_limited`, with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/auth/refresh")]
pub async fn refresh_tokens(
    state: web::Data<AppState>,
    req: HttpRequest,
    host: HostTenant,
    body: JsonBody<RefreshRequest>,
) -> AppResult<HttpResponse> {
    let ip = throttle_key(client_ip(&req));
    state.throttles.refresh_ip.check(&ip).await?;
    let token = body.value.refresh_token;
    let claimed = refresh::tenant_of(&token).ok_or(AppError::Unauthenticated)?;
    let tenant = credential_tenant(&state, host.0, claimed).await?;
    let tenant_id = tenant.id;
    let ctx = audit_context(&req);
    let refresh_ttl = state.config.auth.refresh_ttl_secs;
    let outcome = state
        .door
        .write(TxScope::tenant(tenant_id), |tx| {
            async move {
                match refresh::consume(tx, &token).await? {
                    Rotation::Rotated { user, family } => {
                        let active = users::by_id(tx, user)
                            .await?
                            .is_some_and(|u| u.status == "active");
                        if !active {
                            refresh::revoke_family(tx, family).await?;
                            return Ok(Err((AppError::Unauthenticated, Some(user))));
                        }
                        let next = refresh::issue(tx, user, family, refresh_ttl).await?;
                        Ok(Ok((user, family, next)))
                    }
                    Rotation::Reused { user } => {
                        // Commit the revocation, then answer 401.
                        audit::record(
                            tx,
                            &ctx,
                            Event::by_user(
                                "session.refresh_reused",
                                user.as_uuid(),
                                "user",
                                user.as_uuid(),
                                json!({}),
                            ),
                        )
                        .await?;
                        Ok(Err((AppError::RefreshTokenReused, Some(user))))
                    }
                    Rotation::Invalid => Ok(Err((AppError::Unauthenticated, None))),
                }
            }
            .scope_boxed()
        })
        .await?;
    let (user, family, refresh_token) = match outcome {
        Ok(v) => v,
        Err((e, revoked_user)) => {
            // The session is gone: access tokens of it must stop working now, not at cache expiry.
            if let Some(user) = revoked_user {
                state.grants.forget_user(tenant_id, user);
            }
            if let AppError::RefreshTokenReused = e {
                tracing::warn!(tenant.id = %tenant_id, "refresh token reuse detected; session revoked");
            }
            return Err(e);
        }
    };
    let access_token = state
        .tokens
        .issue(&state.keys, user, tenant_id, &tenant.slug, family)?;
    Ok(carrying_credentials(StatusCode::OK).json(TokenPair {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: state.tokens.ttl_secs(),
    }))
}

/// Revoke the caller's session (its whole refresh family).
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Session revoked"),
    )
)]
#[post("/v1/auth/logout")]
pub async fn logout(state: web::Data<AppState>, principal: Principal) -> AppResult<HttpResponse> {
    let crate::http::principal::Actor::User { id: user, session } = principal.actor;
    let ctx = principal.audit.clone();
    state
        .door
        .write(principal.scope(), |tx| {
            async move {
                refresh::revoke_family(tx, session).await?;
                audit::record(tx, &ctx, session_event("user.logout", user, session)).await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await?;
    state.grants.forget_user(principal.tenant_id(), user);
    Ok(HttpResponse::NoContent().finish())
}

/// The tenant as `/v1/me` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeTenant {
    /// Tenant id.
    pub id: uuid::Uuid,
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Plan.
    pub plan: String,
    /// Status.
    pub status: String,
}

/// `GET /v1/me` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    /// The caller.
    pub user: users::UserView,
    /// Their tenant.
    pub tenant: MeTenant,
    /// Role names.
    pub roles: Vec<String>,
    /// Effective permissions.
    pub permissions: Vec<String>,
}

/// Who am I: user, tenant, roles, permissions.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = MeResponse),
    )
)]
#[get("/v1/me")]
pub async fn me(state: web::Data<AppState>, principal: Principal) -> AppResult<HttpResponse> {
    let user_id = principal.user_id();
    let user = state
        .door
        .read(principal.scope(), |tx| {
            async move { users::by_id(tx, user_id).await }.scope_boxed()
        })
        .await?
        .ok_or(AppError::Unauthenticated)?;
    let t = &principal.tenant;
    Ok(HttpResponse::Ok().json(MeResponse {
        user: users::UserView::from(&user),
        tenant: MeTenant {
            id: t.id.as_uuid(),
            slug: t.slug.clone(),
            name: t.name.clone(),
            plan: t.plan.clone(),
            status: t.status.clone(),
        },
        roles: principal.grants.roles.clone(),
        permissions: principal.grants.permissions.clone(),
    }))
}

/// Public signing keys.
#[utoipa::path(
    tag = "auth",
    responses((status = 200, description = "JWKS", body = Jwks))
)]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(state.keys.jwks())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::tenancy::host::{RESERVED, SLUG_PATTERN, valid_slug};

    fn signup_schema(part: &str) -> Value {
        let doc = serde_json::to_value(crate::app::openapi_document()).unwrap();
        doc["components"]["schemas"][part].clone()
    }

    #[test]
    fn slug_schema_is_the_pattern_and_refuses_every_reserved_name() {
        let slug = &signup_schema("SignupTenant")["properties"]["slug"];
        assert_eq!(slug["pattern"], SLUG_PATTERN, "{slug}");
        assert_eq!(
            (&slug["minLength"], &slug["maxLength"]),
            (&json!(3), &json!(32))
        );
        // Read from the constant, so a name added there is refused by the schema too.
        assert_eq!(slug["not"], json!({ "enum": RESERVED }), "{slug}");
    }

    /// Whatever the slug schema accepts, the server accepts: the schema may be stricter (no
    /// `--`), never looser.
    #[test]
    fn a_schema_valid_slug_is_a_valid_slug() {
        let pattern = regex::Regex::new(SLUG_PATTERN).unwrap();
        let schema_ok = |s: &str| {
            pattern.is_match(s) && (3..=32).contains(&s.chars().count()) && !RESERVED.contains(&s)
        };
        let alphabet = ['a', 'z', '0', '9', '-', 'A', '_', '.'];
        let mut checked = 0;
        for len in 1..=4 {
            let mut idx = vec![0; len];
            loop {
                let s: String = idx.iter().map(|&i| alphabet[i]).collect();
                if schema_ok(&s) {
                    assert!(valid_slug(&s), "{s:?}");
                    checked += 1;
                }
                let Some(pos) = idx.iter().rposition(|&i| i + 1 < alphabet.len()) else {
                    break;
                };
                idx[pos] += 1;
                idx[pos + 1..].iter_mut().for_each(|i| *i = 0);
            }
        }
        for s in RESERVED.iter().copied().chain([
            "ab--cd",
            "xn--abc",
            "-ab",
            "ab-",
            "a".repeat(33).as_str(),
        ]) {
            assert!(!schema_ok(s), "{s:?}");
        }
        assert!(schema_ok(&"a".repeat(32)) && schema_ok("a-1") && checked > 400);
    }
}
