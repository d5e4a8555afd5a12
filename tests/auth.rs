mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const PASSWORD: &str = "correct horse battery staple";

fn unique_slug() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn signup_body(slug: &str) -> Value {
    json!({
        "tenant": {"slug": slug, "name": format!("Tenant {slug}")},
        "user": {"email": format!("owner@{slug}.test"), "password": PASSWORD, "name": "Owner"}
    })
}

async fn post_signup(app: &TestApp, body: &Value) -> Response {
    app.root(Method::POST, "/v1/signup")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn login_on(app: &TestApp, host_slug: &str, email: &str, password: &str) -> Response {
    app.on(host_slug, Method::POST, "/v1/auth/login")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn me_on(app: &TestApp, slug: &str, token: &str) -> Response {
    app.on(slug, Method::GET, "/v1/me")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn me_root(app: &TestApp, token: &str) -> Response {
    app.root(Method::GET, "/v1/me")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn refresh_on(app: &TestApp, slug: &str, refresh: &str) -> Response {
    app.on(slug, Method::POST, "/v1/auth/refresh")
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap()
}

async fn refresh_root(app: &TestApp, refresh: &str) -> Response {
    app.root(Method::POST, "/v1/auth/refresh")
        .json(&json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap()
}

/// `expect_problem`, also returning the response headers.
async fn problem_with_headers(res: Response, status: StatusCode, code: &str) -> (HeaderMap, Value) {
    let headers = res.headers().clone();
    (headers, expect_problem(res, status, code).await)
}

/// Asserts a 401 with `code` that challenges with `WWW-Authenticate: Bearer`.
async fn expect_401(res: Response, code: &str) -> Value {
    let (headers, body) = problem_with_headers(res, StatusCode::UNAUTHORIZED, code).await;
    assert_eq!(
        headers.get("www-authenticate").map(|v| v.to_str().unwrap()),
        Some("Bearer"),
        "401 must challenge with WWW-Authenticate: Bearer; body {body}"
    );
    body
}

/// Asserts that an access token of a revoked session is refused at once on /v1/me (host and
/// root), even if the server had cached that session as valid.
async fn assert_access_revoked(app: &TestApp, slug: &str, access: &str) {
    for (res, host) in [
        (me_on(app, slug, access).await, "tenant"),
        (me_root(app, access).await, "root"),
    ] {
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "access token of a revoked session still accepted on the {host} host"
        );
        expect_401(res, "unauthenticated").await;
    }
}

/// Asserts a 429 `rate_limited` and returns its `Retry-After` seconds.
async fn expect_rate_limited(res: Response) -> u64 {
    let (headers, _) =
        problem_with_headers(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let retry = headers
        .get("retry-after")
        .expect("429 carries Retry-After")
        .to_str()
        .unwrap()
        .parse::<u64>()
        .expect("Retry-After is whole seconds");
    assert!(retry >= 1, "Retry-After {retry}");
    retry
}

/// The field errors of a 422 body as (field, code) pairs.
fn field_errors(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("422 body has errors[]: {body}"))
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_string(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// Decodes part `i` (0 = header, 1 = claims) of a JWT.
fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Our server's token header: EdDSA with its kid.
fn eddsa_header(app: &TestApp) -> Value {
    json!({"alg": "EdDSA", "typ": "JWT", "kid": app.state.keys.kid()})
}

/// `header.claims.signature`, signed with `key` using `alg`, whatever the header says.
fn sign_with(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{sig}")
}

/// Signs with the server's own key (a valid signature).
fn sign_as_server(app: &TestApp, header: &Value, claims: &Value) -> String {
    sign_with(header, claims, app.state.keys.encoding(), Algorithm::EdDSA)
}

/// A real token's claims with a fresh `jti` (its `sid` names a live session).
fn real_claims(t: &Tenant) -> Value {
    let mut claims = jwt_part(&t.access, 1);
    claims["jti"] = json!(uuid::Uuid::now_v7());
    claims
}

// ---------------------------------------------------------------------------------------------
// 1. Signup
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn signup_returns_contract_shape_and_owner_role() {
    let app = TestApp::spawn().await;
    let slug = unique_slug();
    let mut body = signup_body(&slug);
    body["user"]["email"] = json!(format!("Owner@{slug}.TEST"));
    let res = post_signup(&app, &body).await;
    let got = expect(res, StatusCode::CREATED).await;

    assert_eq!(sorted_keys(&got), ["tenant", "tokens", "user"]);
    let tenant = &got["tenant"];
    assert_eq!(
        sorted_keys(tenant),
        ["created_at", "id", "name", "plan", "slug", "status"]
    );
    uuid::Uuid::parse_str(tenant["id"].as_str().unwrap()).expect("tenant id is a UUID");
    assert_eq!(tenant["slug"], slug.as_str());
    assert_eq!(tenant["name"], format!("Tenant {slug}"));
    assert_eq!(tenant["plan"], "free");
    assert_eq!(tenant["status"], "active");
    let created_at = tenant["created_at"].as_str().unwrap();
    assert!(
        created_at.ends_with('Z'),
        "created_at {created_at} is UTC with Z"
    );
    let created_at = chrono::DateTime::parse_from_rfc3339(created_at).expect("RFC 3339");
    let stored: String = app
        .db
        .admin()
        .await
        .query_one(
            "SELECT to_json(created_at)::text FROM tenants WHERE slug = $1",
            &[&slug],
        )
        .await
        .unwrap()
        .get(0);
    let stored = chrono::DateTime::parse_from_rfc3339(stored.trim_matches('"')).unwrap();
    assert_eq!(
        created_at, stored,
        "signup answers with the created_at that was stored"
    );

    let user = &got["user"];
    assert_eq!(sorted_keys(user), ["email", "id", "name"]);
    uuid::Uuid::parse_str(user["id"].as_str().unwrap()).expect("user id is a UUID");
    assert_eq!(
        user["email"],
        format!("owner@{slug}.test"),
        "email is normalized"
    );
    assert_eq!(user["name"], "Owner");

    let tokens = &got["tokens"];
    assert_eq!(
        sorted_keys(tokens),
        ["access_token", "expires_in", "refresh_token", "token_type"]
    );
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(access.split('.').count(), 3, "access token is a JWT");
    assert!(!tokens["refresh_token"].as_str().unwrap().is_empty());

    let me = expect(me_on(&app, &slug, access).await, StatusCode::OK).await;
    assert_eq!(me["user"]["id"], user["id"]);
    assert_eq!(me["tenant"]["id"], tenant["id"]);
    assert_eq!(me["roles"], json!(["owner"]));
    let perms: Vec<&str> = me["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for p in ["contacts:read", "contacts:write", "tenant:manage"] {
        assert!(perms.contains(&p), "owner lacks {p}: {perms:?}");
    }
}

#[actix_web::test]
async fn signup_with_taken_slug_is_409_slug_taken() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let mut body = signup_body(&t.slug);
    body["user"]["email"] = json!("someone.else@example.com");
    expect_problem(
        post_signup(&app, &body).await,
        StatusCode::CONFLICT,
        "slug_taken",
    )
    .await;
}

#[actix_web::test]
async fn signup_rejects_invalid_and_reserved_slugs() {
    let app = TestApp::spawn().await;
    for slug in ["www", "ab", "Acme", "-x-", "api", "acme-", &"a".repeat(33)] {
        let res = post_signup(&app, &signup_body(slug)).await;
        let body = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        let fields: Vec<String> = field_errors(&body).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["tenant.slug"], "slug {slug:?}: {body}");
    }
}

#[actix_web::test]
async fn signup_rejects_short_password() {
    let app = TestApp::spawn().await;
    let slug = unique_slug();
    let mut body = signup_body(&slug);
    body["user"]["password"] = json!("elevenchars");
    let res = post_signup(&app, &body).await;
    let problem = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(
        field_errors(&problem),
        [("user.password".into(), "too_short".into())]
    );
    assert_eq!(
        problem["errors"][0]["message"], "must be at least 12 characters",
        "{problem}"
    );

    // Twelve characters is enough, counted as characters: these are 48 bytes.
    body["user"]["password"] = json!("🔑".repeat(12));
    expect(post_signup(&app, &body).await, StatusCode::CREATED).await;
}

#[actix_web::test]
async fn signup_rejects_long_password_as_too_long() {
    let app = TestApp::spawn().await;
    let slug = unique_slug();
    let mut body = signup_body(&slug);
    body["user"]["password"] = json!("x".repeat(257));
    let res = post_signup(&app, &body).await;
    let problem = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(
        field_errors(&problem),
        [("user.password".into(), "too_long".into())]
    );
    assert_eq!(
        problem["errors"][0]["message"], "must be at most 256 characters",
        "{problem}"
    );
}

#[actix_web::test]
async fn password_limit_counts_characters_at_signup_and_login() {
    let app = TestApp::spawn().await;
    let slug = unique_slug();
    let mut body = signup_body(&slug);
    // 256 four-byte characters: 1 KiB, but within 256 characters.
    let password = "🔑".repeat(256);
    body["user"]["password"] = json!(password);
    expect(post_signup(&app, &body).await, StatusCode::CREATED).await;
    let email = format!("owner@{slug}.test");
    // Login applies the same character rule: the 256-character password logs in ...
    expect(
        login_on(&app, &slug, &email, &password).await,
        StatusCode::OK,
    )
    .await;
    // ... and one character more is refused like any wrong password.
    let longer = format!("{password}🔑");
    let res = login_on(&app, &slug, &email, &longer).await;
    expect_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[actix_web::test]
async fn signup_rejects_unknown_fields() {
    let app = TestApp::spawn().await;
    let other = uuid::Uuid::now_v7().to_string();

    let slug_top = unique_slug();
    let mut top = signup_body(&slug_top);
    top["tenant_id"] = json!(other);
    let res = post_signup(&app, &top).await;
    let body = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(
        field_errors(&body),
        [("tenant_id".into(), "unknown_field".into())]
    );

    let slug_user = unique_slug();
    let mut inner = signup_body(&slug_user);
    inner["user"]["tenant_id"] = json!(other);
    let res = post_signup(&app, &inner).await;
    let body = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(
        field_errors(&body),
        [("user.tenant_id".into(), "unknown_field".into())]
    );

    // Nothing was created.
    let db = app.db.admin().await;
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM tenants WHERE slug = ANY($1) OR id::text = $2",
            &[&vec![slug_top, slug_user], &other],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[actix_web::test]
async fn signup_with_non_json_body_is_400_malformed_request() {
    let app = TestApp::spawn().await;
    let res = app
        .root(Method::POST, "/v1/signup")
        .header("content-type", "application/json")
        .body("{\"tenant\": not json")
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::BAD_REQUEST, "malformed_request").await;
}

#[actix_web::test]
async fn signup_on_tenant_host_is_404() {
    let app = TestApp::spawn().await;
    let res = app
        .on("acme", Method::POST, "/v1/signup")
        .json(&signup_body(&unique_slug()))
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    // Also on an existing tenant's host.
    let t = app.signup().await;
    let res = app
        .on(&t.slug, Method::POST, "/v1/signup")
        .json(&signup_body(&unique_slug()))
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[actix_web::test]
async fn signup_disabled_by_config_is_404() {
    let app = TestApp::spawn_with(|c| c.auth.public_signup = false).await;
    let slug = unique_slug();
    let res = post_signup(&app, &signup_body(&slug)).await;
    expect_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let n: i64 = app
        .db
        .admin()
        .await
        .query_one("SELECT count(*) FROM tenants WHERE slug = $1", &[&slug])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[actix_web::test]
async fn signup_is_throttled_per_client_ip() {
    let app = TestApp::spawn_with(|c| c.auth.signup_ip_per_hour = 2).await;
    app.signup().await;
    app.signup().await;
    let res = post_signup(&app, &signup_body(&unique_slug())).await;
    let retry = expect_rate_limited(res).await;
    assert!(retry <= 3600, "Retry-After {retry}");
}

// ---------------------------------------------------------------------------------------------
// 2. Login
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn login_on_tenant_host_returns_token_pair() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let res = login_on(&app, &t.slug, &t.email.to_uppercase(), &t.password).await;
    let body = expect(res, StatusCode::OK).await;
    assert_eq!(
        sorted_keys(&body),
        ["access_token", "expires_in", "refresh_token", "token_type"]
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let access = body["access_token"].as_str().unwrap();
    let me = expect(me_on(&app, &t.slug, access).await, StatusCode::OK).await;
    assert_eq!(me["user"]["id"], t.user_id.as_str());
    assert_eq!(me["tenant"]["id"], t.id.as_str());
}

#[actix_web::test]
async fn login_rejects_tenant_id_in_body() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    let res = app
        .on(&a.slug, Method::POST, "/v1/auth/login")
        .json(&json!({"email": a.email, "password": a.password, "tenant_id": b.id}))
        .send()
        .await
        .unwrap();
    let body = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(
        field_errors(&body),
        [("tenant_id".into(), "unknown_field".into())]
    );
}

#[actix_web::test]
async fn login_failures_are_indistinguishable() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let wrong_password = login_on(&app, &t.slug, &t.email, "not the right password").await;
    let wrong_password = expect_problem(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let unknown_email = login_on(
        &app,
        &t.slug,
        &format!("nobody@{}.test", t.slug),
        &t.password,
    )
    .await;
    let unknown_email = expect_problem(
        unknown_email,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(stable(wrong_password), stable(unknown_email));
}

#[actix_web::test]
async fn login_on_root_host_is_401_unauthenticated() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let res = app
        .root(Method::POST, "/v1/auth/login")
        .json(&json!({"email": t.email, "password": t.password}))
        .send()
        .await
        .unwrap();
    expect_401(res, "unauthenticated").await;
}

#[actix_web::test]
async fn login_on_unknown_subdomain_is_404_tenant_not_found() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let res = login_on(&app, &unique_slug(), &t.email, &t.password).await;
    expect_problem(res, StatusCode::NOT_FOUND, "tenant_not_found").await;
}

#[actix_web::test]
async fn login_on_reserved_subdomain_behaves_as_root() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    for reserved in ["www", "api", "admin"] {
        let res = login_on(&app, reserved, &t.email, &t.password).await;
        expect_401(res, "unauthenticated").await;
    }
}

/// An app that takes the client IP from `X-Forwarded-For`, with small login failure limits.
async fn spawn_with_login_limits(per_account_ip_minute: u32, per_account_hour: u32) -> TestApp {
    TestApp::spawn_with(|c| {
        c.http.trust_forwarded_for = true;
        c.auth.login_failures_per_account_ip_per_minute = per_account_ip_minute;
        c.auth.login_failures_per_account_per_hour = per_account_hour;
    })
    .await
}

/// A login attempt from client IP `ip` (needs `trust_forwarded_for`).
async fn login_from(app: &TestApp, t: &Tenant, email: &str, password: &str, ip: &str) -> Response {
    app.on(&t.slug, Method::POST, "/v1/auth/login")
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

/// `n` wrong-password attempts on `t`'s owner from `ip`, each a plain 401.
async fn fail_logins(app: &TestApp, t: &Tenant, ip: &str, n: usize) {
    for _ in 0..n {
        let res = login_from(app, t, &t.email, "not the right password", ip).await;
        expect_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
}

/// How many sessions the tenant's users have logged into (audit `user.login`).
async fn login_count(app: &TestApp, t: &Tenant) -> i64 {
    app.db
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM audit_events WHERE tenant_id::text = $1 AND action = 'user.login'",
            &[&t.id],
        )
        .await
        .unwrap()
        .get(0)
}

#[actix_web::test]
async fn login_attacker_ip_is_throttled_while_the_owner_logs_in_elsewhere() {
    let app = spawn_with_login_limits(3, 1000).await;
    let t = app.signup().await;
    fail_logins(&app, &t, "203.0.113.9", 3).await;
    let res = login_from(&app, &t, &t.email, "not the right password", "203.0.113.9").await;
    let retry = expect_rate_limited(res).await;
    assert!(
        retry <= 20,
        "one failure per 20 s comes back: Retry-After {retry}"
    );
    // The owner, from another address, is not locked out.
    let res = login_from(&app, &t, &t.email, &t.password, "198.51.100.7").await;
    expect(res, StatusCode::OK).await;
}

#[actix_web::test]
async fn repeated_successful_logins_are_never_throttled() {
    let app = spawn_with_login_limits(2, 2).await;
    let t = app.signup().await;
    for _ in 0..6 {
        let res = login_from(&app, &t, &t.email, &t.password, "198.51.100.7").await;
        expect(res, StatusCode::OK).await;
    }
    // Successes consumed nothing: the IP still has its two failures.
    fail_logins(&app, &t, "198.51.100.7", 2).await;
}

#[actix_web::test]
async fn login_failure_limit_is_per_account_and_ip_whatever_the_email_case() {
    let app = spawn_with_login_limits(3, 1000).await;
    let t = app.signup().await;
    let member = app.add_user(&t, "member").await;
    let attacker = "203.0.113.9";
    fail_logins(&app, &t, attacker, 2).await;
    // The third failure arrives in upper case: the same key.
    let upper = t.email.to_uppercase();
    let res = login_from(&app, &t, &upper, "not the right password", attacker).await;
    expect_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    for email in [
        &t.email,
        &upper,
        &format!("  {}  ", t.email.replace('o', "O")),
    ] {
        expect_rate_limited(login_from(&app, &t, email, "wrong again please", attacker).await)
            .await;
    }
    // Another account from the same IP is unaffected ...
    let res = login_from(&app, &t, &member.email, &member.password, attacker).await;
    expect(res, StatusCode::OK).await;
    // ... and so is the same account from another IP, which has its own three failures.
    fail_logins(&app, &t, "203.0.113.10", 3).await;
    expect_rate_limited(login_from(&app, &t, &t.email, "x", "203.0.113.10").await).await;
}

#[actix_web::test]
async fn account_wide_failure_cap_spares_ips_that_logged_in_before() {
    let app = spawn_with_login_limits(100, 3).await;
    let t = app.signup().await;
    let home = "198.51.100.7";
    expect(
        login_from(&app, &t, &t.email, &t.password, home).await,
        StatusCode::OK,
    )
    .await;
    // A distributed guess: one failure each from many addresses reaches the hourly cap.
    for ip in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        fail_logins(&app, &t, ip, 1).await;
    }
    // A fresh address is now throttled, with the right password too (no oracle) ...
    let res = login_from(&app, &t, &t.email, "not the right password", "203.0.113.4").await;
    let retry = expect_rate_limited(res).await;
    assert!(retry <= 1200, "one failure per 20 min comes back: {retry}");
    expect_rate_limited(login_from(&app, &t, &t.email, &t.password, "192.0.2.55").await).await;
    // ... but the owner's known address logs in, repeatedly.
    for _ in 0..2 {
        let res = login_from(&app, &t, &t.email, &t.password, home).await;
        expect(res, StatusCode::OK).await;
    }
}

#[actix_web::test]
async fn throttled_login_with_the_right_password_reveals_nothing() {
    let app = spawn_with_login_limits(2, 1000).await;
    let t = app.signup().await;
    let ip = "203.0.113.9";
    fail_logins(&app, &t, ip, 2).await;
    let logins = login_count(&app, &t).await;

    let right = login_from(&app, &t, &t.email, &t.password, ip).await;
    let (right_headers, right) =
        problem_with_headers(right, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let wrong = login_from(&app, &t, &t.email, "not the right password", ip).await;
    let (wrong_headers, wrong) =
        problem_with_headers(wrong, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Same answer either way; only the countdown (in Retry-After and detail) may tick.
    let secs = |h: &HeaderMap| -> i64 { h["retry-after"].to_str().unwrap().parse().unwrap() };
    assert!((secs(&right_headers) - secs(&wrong_headers)).abs() <= 1);
    let without_countdown = |mut v: Value| {
        v.as_object_mut().unwrap().remove("detail");
        stable(v)
    };
    assert_eq!(without_countdown(right), without_countdown(wrong));
    assert_eq!(login_count(&app, &t).await, logins, "no session was opened");
}

#[actix_web::test]
async fn parallel_guesses_cannot_slip_past_the_failure_limit() {
    let app = spawn_with_login_limits(3, 1000).await;
    let t = app.signup().await;
    let (app, t) = (&app, &t);
    let guesses = (0..10).map(|i| async move {
        let password = format!("wrong guess number {i}");
        login_from(app, t, &t.email, &password, "203.0.113.9")
            .await
            .status()
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let refused = |s: StatusCode| statuses.iter().filter(|&&x| x == s).count();
    assert_eq!(refused(StatusCode::UNAUTHORIZED), 3, "{statuses:?}");
    assert_eq!(refused(StatusCode::TOO_MANY_REQUESTS), 7, "{statuses:?}");
}

#[actix_web::test]
async fn login_is_throttled_per_ip() {
    let app = TestApp::spawn_with(|c| c.auth.login_ip_per_minute = 3).await;
    let a = app.signup().await;
    let b = app.signup().await;
    expect(
        login_on(&app, &a.slug, &a.email, &a.password).await,
        StatusCode::OK,
    )
    .await;
    expect(
        login_on(&app, &b.slug, &b.email, &b.password).await,
        StatusCode::OK,
    )
    .await;
    let res = login_on(
        &app,
        &a.slug,
        &format!("nobody@{}.test", a.slug),
        "whatever at all",
    )
    .await;
    expect_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // Fourth attempt from this IP, on an account not tried before: throttled.
    expect_rate_limited(login_on(&app, &b.slug, &format!("x@{}.test", b.slug), "pw").await).await;
    expect_rate_limited(login_on(&app, &a.slug, &a.email, &a.password).await).await;
}

// ---------------------------------------------------------------------------------------------
// 3. Suspended tenant
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn suspended_tenant_refuses_login_and_existing_tokens() {
    let app = TestApp::spawn_with(|c| c.tenancy.cache_secs = 0).await;
    let t = app.signup().await;
    let other = app.signup().await;
    expect(me_on(&app, &t.slug, &t.access).await, StatusCode::OK).await;
    app.db
        .admin()
        .await
        .execute(
            "UPDATE tenants SET status = 'suspended' WHERE id::text = $1",
            &[&t.id],
        )
        .await
        .unwrap();

    let res = login_on(&app, &t.slug, &t.email, &t.password).await;
    expect_problem(res, StatusCode::FORBIDDEN, "tenant_suspended").await;
    expect_problem(
        me_on(&app, &t.slug, &t.access).await,
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    expect_problem(
        me_root(&app, &t.access).await,
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    let res = refresh_on(&app, &t.slug, &t.refresh).await;
    expect_problem(res, StatusCode::FORBIDDEN, "tenant_suspended").await;
    let res = refresh_root(&app, &t.refresh).await;
    expect_problem(res, StatusCode::FORBIDDEN, "tenant_suspended").await;

    // Other tenants are unaffected.
    expect(
        me_on(&app, &other.slug, &other.access).await,
        StatusCode::OK,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. /v1/me and tenant resolution
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn me_on_tenant_host_and_root_host_agree() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let on_host = expect(me_on(&app, &t.slug, &t.access).await, StatusCode::OK).await;
    let on_root = expect(me_root(&app, &t.access).await, StatusCode::OK).await;
    assert_eq!(on_host, on_root);
    assert_eq!(
        sorted_keys(&on_host),
        ["permissions", "roles", "tenant", "user"]
    );
    assert_eq!(
        on_host["user"],
        json!({"id": t.user_id, "email": t.email, "name": "Owner"})
    );
    assert_eq!(
        on_host["tenant"],
        json!({"id": t.id, "slug": t.slug, "name": format!("Tenant {}", t.slug),
               "plan": "free", "status": "active"})
    );
}

#[actix_web::test]
async fn token_of_another_tenant_on_tenant_host_is_tenant_mismatch() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    expect_401(me_on(&app, &b.slug, &a.access).await, "tenant_mismatch").await;
    expect_401(me_on(&app, &a.slug, &b.access).await, "tenant_mismatch").await;
}

#[actix_web::test]
async fn missing_authorization_is_401_unauthenticated() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let res = app.on(&t.slug, Method::GET, "/v1/me").send().await.unwrap();
    expect_401(res, "unauthenticated").await;
    let res = app.root(Method::GET, "/v1/me").send().await.unwrap();
    expect_401(res, "unauthenticated").await;
}

#[actix_web::test]
async fn non_bearer_authorization_is_401_unauthenticated() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", t.email, t.password))
    );
    for value in [
        basic,
        format!("Token {}", t.access),
        "Bearer".into(),
        "Bearer   ".into(),
        t.access.clone(),
    ] {
        let res = app
            .on(&t.slug, Method::GET, "/v1/me")
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        expect_401(res, "unauthenticated").await;
    }
}

#[actix_web::test]
async fn headers_and_query_never_select_the_tenant() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    let requests = [
        app.root(Method::GET, "/v1/me").header("x-tenant-id", &b.id),
        app.root(Method::GET, &format!("/v1/me?tenant_id={}", b.id)),
        app.root(Method::GET, "/v1/me")
            .header("x-tenant-slug", &b.slug),
        app.root(Method::GET, "/v1/me")
            .header("x-forwarded-host", format!("{}.localhost", b.slug)),
        app.on(&a.slug, Method::GET, &format!("/v1/me?tenant_id={}", b.id))
            .header("x-tenant-id", &b.id),
    ];
    for req in requests {
        let me = expect(
            req.bearer_auth(&a.access).send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(me["tenant"]["id"], a.id.as_str(), "{me}");
        assert_eq!(me["user"]["id"], a.user_id.as_str(), "{me}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Refresh
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_session() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;

    let first = expect(refresh_on(&app, &t.slug, &t.refresh).await, StatusCode::OK).await;
    assert_eq!(
        sorted_keys(&first),
        ["access_token", "expires_in", "refresh_token", "token_type"]
    );
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 900);
    let r1 = first["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, t.refresh);
    expect(
        me_on(&app, &t.slug, first["access_token"].as_str().unwrap()).await,
        StatusCode::OK,
    )
    .await;

    // The new refresh token works once more.
    let second = expect(refresh_on(&app, &t.slug, &r1).await, StatusCode::OK).await;
    let r2 = second["refresh_token"].as_str().unwrap().to_string();
    let a2 = second["access_token"].as_str().unwrap().to_string();
    expect(me_on(&app, &t.slug, &a2).await, StatusCode::OK).await;

    // Replaying the original token: reuse detected, the family is revoked.
    expect_401(
        refresh_on(&app, &t.slug, &t.refresh).await,
        "refresh_token_reused",
    )
    .await;
    // Every consumed token of the family stays a reuse, on any host that may see it.
    expect_401(refresh_on(&app, &t.slug, &r1).await, "refresh_token_reused").await;
    expect_401(refresh_root(&app, &t.refresh).await, "refresh_token_reused").await;
    expect_401(refresh_on(&app, &t.slug, &r2).await, "unauthenticated").await;
    assert_access_revoked(&app, &t.slug, &a2).await;
    assert_access_revoked(&app, &t.slug, &t.access).await;

    // A second session of the same user is unaffected.
    let (access, _) = app.login(&t.slug, &t.email, &t.password).await;
    expect(me_on(&app, &t.slug, &access).await, StatusCode::OK).await;
}

#[actix_web::test]
async fn concurrent_refreshes_with_one_token_have_exactly_one_winner() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let attempts = (0..6).map(|_| async {
        let res = refresh_on(&app, &t.slug, &t.refresh).await;
        let status = res.status();
        (status, res.json::<Value>().await.unwrap())
    });
    let results = futures_util::future::join_all(attempts).await;

    let winners: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, b)| b)
        .collect();
    let reused = results
        .iter()
        .filter(|(s, b)| *s == StatusCode::UNAUTHORIZED && b["code"] == "refresh_token_reused")
        .count();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_eq!(
        reused, 5,
        "every loser is answered refresh_token_reused: {results:?}"
    );

    // The loser's reuse revoked the family, the winner's new tokens included.
    let winner_refresh = winners[0]["refresh_token"].as_str().unwrap();
    let winner_access = winners[0]["access_token"].as_str().unwrap();
    expect_401(
        refresh_on(&app, &t.slug, winner_refresh).await,
        "unauthenticated",
    )
    .await;
    assert_access_revoked(&app, &t.slug, winner_access).await;
}

#[actix_web::test]
async fn garbage_refresh_token_is_401_unauthenticated() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    // Well-formed for t's tenant but never issued.
    let mut forged = uuid::Uuid::parse_str(&t.id).unwrap().as_bytes().to_vec();
    forged.extend_from_slice(&[7u8; 32]);
    let forged = format!("trt_{}", URL_SAFE_NO_PAD.encode(forged));
    for token in ["garbage", "", "trt_", "trt_!!!!", &t.access, &forged] {
        expect_401(refresh_on(&app, &t.slug, token).await, "unauthenticated").await;
        expect_401(refresh_root(&app, token).await, "unauthenticated").await;
    }
    // None of that harmed the real token.
    expect(refresh_on(&app, &t.slug, &t.refresh).await, StatusCode::OK).await;
}

#[actix_web::test]
async fn refresh_is_throttled_per_client_ip() {
    let app = TestApp::spawn_with(|c| c.auth.refresh_ip_per_minute = 2).await;
    let t = app.signup().await;
    let pair = expect(refresh_on(&app, &t.slug, &t.refresh).await, StatusCode::OK).await;
    expect_401(refresh_root(&app, "garbage").await, "unauthenticated").await;
    let next = pair["refresh_token"].as_str().unwrap();
    expect_rate_limited(refresh_on(&app, &t.slug, next).await).await;
}

#[actix_web::test]
async fn refresh_token_of_another_tenant_is_mismatch_but_works_on_root_host() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    expect_401(
        refresh_on(&app, &b.slug, &a.refresh).await,
        "tenant_mismatch",
    )
    .await;
    // The mismatch did not consume it: on the root host the tenant comes from the token.
    let pair = expect(refresh_root(&app, &a.refresh).await, StatusCode::OK).await;
    let access = pair["access_token"].as_str().unwrap();
    assert_eq!(jwt_part(access, 1)["tid"], a.id.as_str());
    let me = expect(me_on(&app, &a.slug, access).await, StatusCode::OK).await;
    assert_eq!(me["tenant"]["id"], a.id.as_str());
}

// ---------------------------------------------------------------------------------------------
// 6. Logout
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn logout_revokes_only_that_session() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let (other_access, other_refresh) = app.login(&t.slug, &t.email, &t.password).await;
    // Warm the principal cache for the session about to be revoked.
    expect(me_on(&app, &t.slug, &t.access).await, StatusCode::OK).await;

    let res = app
        .as_tenant(&t, Method::POST, "/v1/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.bytes().await.unwrap().is_empty());

    assert_access_revoked(&app, &t.slug, &t.access).await;
    expect_401(
        refresh_on(&app, &t.slug, &t.refresh).await,
        "unauthenticated",
    )
    .await;
    let res = app
        .as_tenant(&t, Method::POST, "/v1/auth/logout")
        .send()
        .await
        .unwrap();
    expect_401(res, "unauthenticated").await;

    // The other session still works, including its refresh.
    expect(me_on(&app, &t.slug, &other_access).await, StatusCode::OK).await;
    expect(
        refresh_on(&app, &t.slug, &other_refresh).await,
        StatusCode::OK,
    )
    .await;
}

/// Two server processes on one database, each caching grants for five minutes (the default): a
/// session revoked through one is refused by the other on its next request. Only the access
/// notification explains that: a revocation that announces nothing is still served from the
/// other process's cache.
#[actix_web::test]
async fn a_session_revoked_through_one_replica_is_refused_by_the_other_at_once() {
    let a = TestApp::spawn_with(|c| c.auth.principal_cache_secs = 300).await;
    let b = a.replica(|c| c.auth.principal_cache_secs = 300).await;
    let t = a.signup().await;
    let (quiet_access, _) = a.login(&t.slug, &t.email, &t.password).await;
    let (reused_access, reused_refresh) = a.login(&t.slug, &t.email, &t.password).await;
    // Warm B's grants cache for all three sessions.
    for access in [&t.access, &quiet_access, &reused_access] {
        expect(me_on(&b, &t.slug, access).await, StatusCode::OK).await;
    }

    // Control: revoked behind Tessera's back (plain SQL, no notification), B keeps serving it.
    let quiet_sid = jwt_part(&quiet_access, 1)["sid"]
        .as_str()
        .unwrap()
        .to_string();
    a.db.admin()
        .await
        .execute(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1::text::uuid",
            &[&quiet_sid],
        )
        .await
        .unwrap();
    expect(me_on(&b, &t.slug, &quiet_access).await, StatusCode::OK).await;

    // The notification travels database → B's listener in milliseconds; the pause only keeps
    // the test from racing it, and is 1500 times shorter than the cache's life.
    let settle = || tokio::time::sleep(Duration::from_millis(200));
    let res = a
        .as_tenant(&t, Method::POST, "/v1/auth/logout")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    settle().await;
    assert_access_revoked(&b, &t.slug, &t.access).await;

    // A reused refresh token revokes its session in every process too.
    expect(
        refresh_on(&a, &t.slug, &reused_refresh).await,
        StatusCode::OK,
    )
    .await;
    expect_401(
        refresh_on(&a, &t.slug, &reused_refresh).await,
        "refresh_token_reused",
    )
    .await;
    settle().await;
    assert_access_revoked(&b, &t.slug, &reused_access).await;
}

// ---------------------------------------------------------------------------------------------
// 7. JWKS and token claims
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn jwks_publishes_the_signing_key_and_tokens_carry_contract_claims() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let jwks = expect(
        app.root(Method::GET, "/.well-known/jwks.json")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let key = &keys[0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert!(
        key.get("d").is_none(),
        "the JWKS must not leak the private key: {key}"
    );
    let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
    assert_eq!(x.len(), 32, "Ed25519 public key is 32 bytes");

    let header = jwt_part(&t.access, 0);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], key["kid"]);

    let claims = jwt_part(&t.access, 1);
    assert_eq!(claims["iss"], "tessera");
    assert_eq!(claims["aud"], "tessera-api");
    assert_eq!(claims["sub"], t.user_id.as_str());
    assert_eq!(claims["tid"], t.id.as_str());
    assert_eq!(claims["tslug"], t.slug.as_str());
    let iat = claims["iat"].as_i64().unwrap();
    let exp = claims["exp"].as_i64().unwrap();
    assert_eq!(exp - iat, 900);
    assert!((iat - now()).abs() < 60, "iat {iat} is now");
    uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).expect("jti is a UUID");

    // Every token gets its own jti.
    let (again, _) = app.login(&t.slug, &t.email, &t.password).await;
    assert_ne!(jwt_part(&again, 1)["jti"], claims["jti"]);
}

// ---------------------------------------------------------------------------------------------
// 8. JWT battery: every mutation of a valid token is a plain 401 `unauthenticated`.
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn jwt_positive_control_self_signed_token_is_accepted() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let token = sign_as_server(&app, &eddsa_header(&app), &real_claims(&t));
    let me = expect(me_on(&app, &t.slug, &token).await, StatusCode::OK).await;
    assert_eq!(me["user"]["id"], t.user_id.as_str());
    expect(me_root(&app, &token).await, StatusCode::OK).await;
}

#[actix_web::test]
async fn jwt_alg_none_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let claims = b64_json(&real_claims(&t));
    for alg in ["none", "None", "NONE"] {
        let header = b64_json(&json!({"alg": alg, "typ": "JWT"}));
        expect_401(
            me_on(&app, &t.slug, &format!("{header}.{claims}.")).await,
            "unauthenticated",
        )
        .await;
        // Also with our kid, and with a real signature slapped on.
        let header = b64_json(&json!({"alg": alg, "typ": "JWT", "kid": app.state.keys.kid()}));
        expect_401(
            me_on(&app, &t.slug, &format!("{header}.{claims}.")).await,
            "unauthenticated",
        )
        .await;
        let sig = t.access.rsplit('.').next().unwrap();
        let token = format!("{header}.{claims}.{sig}");
        expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
    }
}

#[actix_web::test]
async fn jwt_tampered_payload_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let other = app.signup().await;
    let mut parts = t.access.split('.');
    let (header, _, sig) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let claims = jwt_part(&t.access, 1);
    for (field, value) in [
        ("tid", json!(other.id)),
        ("sub", json!(uuid::Uuid::now_v7())),
        ("exp", json!(now() + 9999)),
    ] {
        let mut tampered = claims.clone();
        tampered[field] = value;
        let token = format!("{header}.{}.{sig}", b64_json(&tampered));
        expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
        expect_401(me_root(&app, &token).await, "unauthenticated").await;
    }
    // A tid switched to another tenant, presented on that tenant's host: still no entry.
    let mut tampered = claims.clone();
    tampered["tid"] = json!(other.id);
    let token = format!("{header}.{}.{sig}", b64_json(&tampered));
    expect_401(me_on(&app, &other.slug, &token).await, "unauthenticated").await;
    // Flipping one bit of the signature.
    let mut raw_sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    raw_sig[0] ^= 1;
    let token = format!(
        "{header}.{}.{}",
        b64_json(&claims),
        URL_SAFE_NO_PAD.encode(raw_sig)
    );
    expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
}

#[actix_web::test]
async fn jwt_expired_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let mut claims = real_claims(&t);
    claims["iat"] = json!(now() - 1020);
    claims["nbf"] = json!(now() - 1020);
    claims["exp"] = json!(now() - 120);
    let token = sign_as_server(&app, &eddsa_header(&app), &claims);
    expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
}

#[actix_web::test]
async fn jwt_not_yet_valid_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let mut claims = real_claims(&t);
    claims["nbf"] = json!(now() + 300);
    let token = sign_as_server(&app, &eddsa_header(&app), &claims);
    expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
}

/// A token signed with the server's own key whose claims are `real_claims` with `iat`/`nbf`/`exp`
/// replaced.
fn server_token_with_times(app: &TestApp, t: &Tenant, iat: i64, nbf: i64, exp: i64) -> String {
    let mut claims = real_claims(t);
    claims["iat"] = json!(iat);
    claims["nbf"] = json!(nbf);
    claims["exp"] = json!(exp);
    sign_as_server(app, &eddsa_header(app), &claims)
}

#[actix_web::test]
async fn jwt_valid_for_a_year_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let n = now();
    let token = server_token_with_times(&app, &t, n, n, n + 365 * 86_400);
    expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
    // Refused again, not answered from the verified-token cache.
    expect_401(me_root(&app, &token).await, "unauthenticated").await;
}

#[actix_web::test]
async fn jwt_issued_in_the_future_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let n = now();
    // A normal 900 s lifetime, valid from now, but "issued" an hour from now: it would live
    // an hour and a quarter.
    let token = server_token_with_times(&app, &t, n + 3600, n, n + 3600 + 900);
    expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
}

#[actix_web::test]
async fn jwt_without_iat_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let mut claims = real_claims(&t);
    claims.as_object_mut().unwrap().remove("iat");
    let token = sign_as_server(&app, &eddsa_header(&app), &claims);
    expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
}

#[actix_web::test]
async fn jwt_longer_lived_than_the_configured_ttl_is_rejected() {
    // The configured lifetime, not a fixed 900 s, is the bound: lowering it refuses outstanding
    // longer-lived tokens.
    let app = TestApp::spawn_with(|c| c.auth.access_ttl_secs = 300).await;
    let t = app.signup().await;
    let n = now();
    let over = server_token_with_times(&app, &t, n, n, n + 301);
    expect_401(me_on(&app, &t.slug, &over).await, "unauthenticated").await;
    // Positive control: exactly the configured lifetime is fine.
    let exact = server_token_with_times(&app, &t, n, n, n + 300);
    expect(me_on(&app, &t.slug, &exact).await, StatusCode::OK).await;
}

#[actix_web::test]
async fn jwt_wrong_audience_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    for aud in [json!("someone-else"), json!(""), json!(["other-api"])] {
        let mut claims = real_claims(&t);
        claims["aud"] = aud;
        let token = sign_as_server(&app, &eddsa_header(&app), &claims);
        expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
    }
}

#[actix_web::test]
async fn jwt_wrong_issuer_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let mut claims = real_claims(&t);
    claims["iss"] = json!("evil");
    let token = sign_as_server(&app, &eddsa_header(&app), &claims);
    expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
}

#[actix_web::test]
async fn jwt_unknown_or_missing_kid_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let claims = real_claims(&t);
    let unknown = json!({"alg": "EdDSA", "typ": "JWT", "kid": "not-our-key"});
    let missing = json!({"alg": "EdDSA", "typ": "JWT"});
    for header in [unknown, missing] {
        let token = sign_as_server(&app, &header, &claims);
        expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
    }
}

#[actix_web::test]
async fn jwt_signed_by_a_foreign_key_with_our_kid_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let (foreign, _) = tessera::auth::keys::Keys::generate().unwrap();
    let token = sign_with(
        &eddsa_header(&app),
        &real_claims(&t),
        foreign.encoding(),
        Algorithm::EdDSA,
    );
    expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
}

#[actix_web::test]
async fn jwt_hs256_with_public_key_as_secret_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let x = app.state.keys.jwks().keys[0].x.clone();
    let x_bytes = URL_SAFE_NO_PAD.decode(&x).unwrap();
    let claims = real_claims(&t);
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": app.state.keys.kid()});
    for secret in [x.as_bytes(), x_bytes.as_slice()] {
        let token = sign_with(
            &header,
            &claims,
            &EncodingKey::from_secret(secret),
            Algorithm::HS256,
        );
        expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
    }
}

#[actix_web::test]
async fn jwt_with_crit_header_is_rejected() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let mut header = eddsa_header(&app);
    header["crit"] = json!(["exp"]);
    let token = sign_as_server(&app, &header, &real_claims(&t));
    expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
}

#[actix_web::test]
async fn jwt_with_embedded_jwk_or_jku_is_not_trusted() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let (foreign, _) = tessera::auth::keys::Keys::generate().unwrap();
    let jwk = serde_json::to_value(&foreign.jwks().keys[0]).unwrap();
    let mut header = json!({"alg": "EdDSA", "typ": "JWT", "kid": foreign.kid(), "jwk": jwk});
    let token = sign_with(
        &header,
        &real_claims(&t),
        foreign.encoding(),
        Algorithm::EdDSA,
    );
    expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
    header["jku"] = json!("https://evil.example/jwks.json");
    let token = sign_with(
        &header,
        &real_claims(&t),
        foreign.encoding(),
        Algorithm::EdDSA,
    );
    expect_401(me_on(&app, &t.slug, &token).await, "unauthenticated").await;
}

#[actix_web::test]
async fn oversized_authorization_header_is_refused_and_server_survives() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    // Just over the token length cap: refused by the bearer guard.
    let big = format!("{}.{}", t.access, "A".repeat(9 * 1024));
    expect_401(me_on(&app, &t.slug, &big).await, "unauthenticated").await;

    // 100 KiB: refused by the HTTP layer or the guard, never served or crashed on.
    let huge = "A".repeat(100 * 1024);
    let res = app
        .on(&t.slug, Method::GET, "/v1/me")
        .bearer_auth(&huge)
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert!(
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::BAD_REQUEST,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        ]
        .contains(&status),
        "100 KiB Authorization answered {status}"
    );
    let live = app.root(Method::GET, "/livez").send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    expect(me_on(&app, &t.slug, &t.access).await, StatusCode::OK).await;
}

#[actix_web::test]
async fn nul_characters_in_signup_and_login_are_422_never_500() {
    let app = TestApp::spawn().await;
    for (path, field) in [
        (&["tenant", "name"], "tenant.name"),
        (&["user", "name"], "user.name"),
        (&["user", "email"], "user.email"),
    ] {
        let slug = unique_slug();
        let mut body = signup_body(&slug);
        body[path[0]][path[1]] = json!("a\u{0}@x.test");
        let res = post_signup(&app, &body).await;
        let body = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(
            field_errors(&body),
            [(field.into(), "invalid_characters".into())]
        );
        // Nothing half-made: the slug is still free.
        expect(
            post_signup(&app, &signup_body(&slug)).await,
            StatusCode::CREATED,
        )
        .await;
    }
    let t = app.signup().await;
    let res = login_on(&app, &t.slug, "owner\u{0}@x.test", "whatever-password").await;
    let body = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(
        field_errors(&body),
        [("email".into(), "invalid_characters".into())]
    );
}

#[actix_web::test]
async fn throttles_key_the_address_the_proxy_saw_and_an_ipv6_slash_64() {
    let app = TestApp::spawn_with(|c| {
        c.http.trust_forwarded_for = true;
        c.auth.login_ip_per_minute = 2;
    })
    .await;
    let t = app.signup().await;
    let attempt = |forwarded: &'static str| {
        app.on(&t.slug, Method::POST, "/v1/auth/login")
            .header("x-forwarded-for", forwarded)
            .json(&json!({"email": t.email, "password": t.password}))
            .send()
    };
    // The client writes whatever it likes before the proxy's own entry: that part is not the key.
    expect(
        attempt("1.1.1.1, 203.0.113.7").await.unwrap(),
        StatusCode::OK,
    )
    .await;
    expect(
        attempt("2.2.2.2, 203.0.113.7").await.unwrap(),
        StatusCode::OK,
    )
    .await;
    expect_rate_limited(attempt("3.3.3.3, 203.0.113.7").await.unwrap()).await;
    // Two addresses of one IPv6 /64 are one client; the next /64 is another.
    expect(attempt("2001:db8:1:2::1").await.unwrap(), StatusCode::OK).await;
    expect(attempt("2001:db8:1:2::ffff").await.unwrap(), StatusCode::OK).await;
    expect_rate_limited(attempt("2001:db8:1:2:aaaa::9").await.unwrap()).await;
    expect(attempt("2001:db8:1:3::1").await.unwrap(), StatusCode::OK).await;
}
