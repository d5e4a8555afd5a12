//! HTTP hygiene: problem+json for the framework's own errors, request ids, health, the OpenAPI
//! document matching the route table, and 503 (not a hang, not a leak) when the database is gone.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[actix_web::test]
async fn unknown_routes_are_problem_404_and_wrong_methods_405_with_allow() {
    let app = TestApp::spawn().await;
    let res = app.root(Method::GET, "/nope").send().await.unwrap();
    expect_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app.root(Method::PUT, "/v1/contacts").send().await.unwrap();
    assert_eq!(res.headers()["allow"], "GET, POST, HEAD");
    expect_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let res = app
        .root(
            Method::POST,
            &format!("/v1/contacts/{}", uuid::Uuid::now_v7()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET, PATCH, DELETE, HEAD");
    expect_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[actix_web::test]
async fn request_ids_are_echoed_when_valid_and_minted_otherwise() {
    let app = TestApp::spawn().await;
    let res = app
        .root(Method::GET, "/livez")
        .header("x-request-id", "abc.DEF_123-x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc.DEF_123-x");
    for bad in ["has space", "sémantique", &"x".repeat(129)] {
        let res = app
            .root(Method::GET, "/nope")
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let minted = res.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(minted, bad);
        assert!(uuid::Uuid::parse_str(&minted).is_ok(), "{minted}");
        let body = expect_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(body["request_id"], minted.as_str());
    }
}

#[actix_web::test]
async fn body_errors_map_to_400_413_415_422() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let post = || app.as_tenant(&t, Method::POST, "/v1/contacts");
    let res = post()
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::BAD_REQUEST, "malformed_request").await;
    let res = post()
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let big = format!("{{\"first_name\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let res = post()
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    // The rest of the body is still on the wire: the client is told not to reuse the connection.
    assert_eq!(res.headers()["connection"], "close");
    expect_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let res = post()
        .header("content-type", "application/json")
        .body(r#"{"shoe_size": 44}"#)
        .send()
        .await
        .unwrap();
    let body = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "shoe_size");
    assert_eq!(body["errors"][0]["code"], "unknown_field");
}

#[actix_web::test]
async fn health_endpoints_answer() {
    let app = TestApp::spawn().await;
    let res = app.root(Method::GET, "/livez").send().await.unwrap();
    expect(res, StatusCode::OK).await;
    let res = app.root(Method::GET, "/readyz").send().await.unwrap();
    let body = expect(res, StatusCode::OK).await;
    assert_eq!(body["status"], "ok");
}

#[actix_web::test]
async fn openapi_is_3_1_and_lists_exactly_the_mounted_routes() {
    let app = TestApp::spawn().await;
    let doc = app.openapi().await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            ops.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let expected: BTreeSet<String> = [
        "GET /livez",
        "GET /readyz",
        "GET /openapi.json",
        "GET /docs",
        "GET /.well-known/jwks.json",
        "POST /v1/signup",
        "POST /v1/auth/login",
        "POST /v1/auth/refresh",
        "POST /v1/auth/logout",
        "GET /v1/me",
        "GET /v1/contacts",
        "POST /v1/contacts",
        "GET /v1/contacts/{id}",
        "PATCH /v1/contacts/{id}",
        "DELETE /v1/contacts/{id}",
        "POST /v1/contacts/{id}/restore",
        "GET /v1/tenant",
        "PATCH /v1/tenant",
        "GET /v1/tenant/usage",
        "GET /v1/platform/tenants",
        "POST /v1/platform/tenants",
        "GET /v1/platform/tenants/{id}",
        "PATCH /v1/platform/tenants/{id}",
        "DELETE /v1/platform/tenants/{id}",
        "GET /v1/platform/plans",
        "GET /v1/platform/usage",
        "GET /v1/platform/usage/export",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(ops, expected);
    // Every documented operation is actually routed: no documented path falls to the 404/405
    // fallback for its own method.
    let t = app.signup().await;
    for op in &ops {
        let (method, path) = op.split_once(' ').unwrap();
        let path = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        // The operator API exists on the root host only (a tenant host answers 404).
        let req = if path.starts_with("/v1/platform/") {
            app.root(method, &path)
        } else {
            app.on(&t.slug, method, &path)
        };
        let res = req
            .bearer_auth(&t.access)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_ne!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{op}");
        if res.status() == StatusCode::NOT_FOUND {
            let body: Value = res.json().await.unwrap();
            assert!(
                path.contains("/v1/contacts/") || path == "/v1/signup",
                "{op} fell through: {body}"
            );
        }
    }
    let res = app.root(Method::GET, "/docs").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("<html"));
}

#[actix_web::test]
async fn a_dead_database_gives_503_with_retry_after_quickly_and_leaks_nothing() {
    let app = TestApp::spawn_with(|c| {
        c.database.url = "postgres://tessera_app@127.0.0.1:1/nowhere".into();
        // Both roles' database is gone: the tenant lookup (platform path) fails too.
        c.database.platform_url = "postgres://tessera_platform@127.0.0.1:1/nowhere".into();
        c.database.acquire_timeout_ms = 500;
        c.database.retry_after_secs = 3;
    })
    .await;
    let started = Instant::now();
    let res = app.root(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(res.headers()["retry-after"], "3");
    let body = expect_problem(res, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let res = app
        .on("acme", Method::GET, "/v1/contacts")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["retry-after"], "3");
    let body2 = expect_problem(res, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    for b in [body, body2] {
        let text = b.to_string().to_lowercase();
        for leak in ["127.0.0.1", "refused", "postgres", "nowhere", "pool"] {
            assert!(!text.contains(leak), "5xx body leaks {leak}: {text}");
        }
    }
}

#[actix_web::test]
async fn an_exhausted_pool_gives_503_after_the_bounded_wait_not_a_hang() {
    use diesel_async::scoped_futures::ScopedFutureExt;
    let app = TestApp::spawn_with(|c| {
        c.database.pool_size = 1;
        c.database.acquire_timeout_ms = 300;
    })
    .await;
    let t = app.signup().await;
    // Warm the caches (tenant, grants) so the request below needs exactly one connection.
    let res = app
        .as_tenant(&t, Method::GET, "/v1/contacts")
        .send()
        .await
        .unwrap();
    expect(res, StatusCode::OK).await;
    let scope = tessera::tenancy::TxScope::tenant(tessera::ids::TenantId(t.id.parse().unwrap()));
    let door = app.state.door.clone();
    // Hold the only connection for two seconds.
    let holder = actix_web::rt::spawn(async move {
        door.read(scope, |_tx| {
            async move {
                actix_web::rt::time::sleep(Duration::from_secs(2)).await;
                Ok(())
            }
            .scope_boxed()
        })
        .await
    });
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let res = app
        .as_tenant(&t, Method::GET, "/v1/contacts")
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    expect_problem(res, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "waited {:?}",
        started.elapsed()
    );
    holder.await.unwrap().unwrap();
    // Once the connection is back, the same request succeeds.
    let res = app
        .as_tenant(&t, Method::GET, "/v1/contacts")
        .send()
        .await
        .unwrap();
    expect(res, StatusCode::OK).await;
}

#[actix_web::test]
async fn responses_that_leave_the_body_unread_say_connection_close() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let body = json!({"first_name": "x".repeat(200 * 1024)}).to_string();
    // Answered without reading the body (no such route): close.
    let res = app
        .on(&t.slug, Method::POST, "/v1/nope")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["connection"], "close");
    expect_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    // Read to its end (even though the answer is an error): the connection stays usable.
    let res = app
        .as_tenant(&t, Method::POST, "/v1/contacts")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("connection").is_none(), "{res:?}");
    expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app
        .as_tenant(&t, Method::POST, "/v1/contacts")
        .json(&json!({"first_name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("connection").is_none(), "{res:?}");
    expect(res, StatusCode::CREATED).await;
}

/// One documented operation, as the served document describes it.
struct Operation {
    method: Method,
    /// The path template (`/v1/contacts/{id}`).
    template: String,
    /// The documented responses.
    responses: serde_json::Map<String, Value>,
    has_body: bool,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push(Operation {
                method: Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                template: template.clone(),
                responses: op["responses"].as_object().unwrap().clone(),
                has_body: op.get("requestBody").is_some(),
            });
        }
    }
    out
}

impl Operation {
    fn path(&self) -> String {
        self.template
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
    }

    /// Asserts `res` is an answer this operation documents, and an error answer a problem.
    async fn assert_documents(&self, res: reqwest::Response, case: &str) {
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = res.text().await.unwrap();
        let what = format!("{} {} ({case})", self.method, self.template);
        let documented = self.responses.get(status.as_str()).unwrap_or_else(|| {
            panic!("{what} answered {status}, which it does not document: {body}")
        });
        if !status.is_success() {
            assert_eq!(content_type, "application/problem+json", "{what}: {body}");
            assert!(
                documented["content"]
                    .get("application/problem+json")
                    .is_some(),
                "{what}: {status} is documented without its problem body"
            );
        }
    }
}

/// The document against the router: every operation is driven into each kind of answer it can
/// give (no credential, unknown and suspended tenant, missing permission, each body error, a dead
/// database, and an ordinary call), and every answer the server really gives must be documented
/// for that operation, errors as problem+json. Nothing here restates the rule `openapi::complete`
/// applies; a kind of answer it forgot fails here.
#[actix_web::test]
async fn every_answer_the_router_gives_is_documented() {
    let app = TestApp::spawn_with(|c| {
        c.tenancy.cache_secs = 0;
        c.http.body_limit = 4096;
    })
    .await;
    let ops = operations(&app.openapi().await);
    assert!(ops.len() >= 14, "{}", ops.len());
    let owner = app.signup().await;
    let viewer = app.add_user(&owner, "viewer").await;
    let suspended = app.signup().await;
    app.db
        .admin()
        .await
        .execute(
            "UPDATE tenants SET status = 'suspended' WHERE id = $1::text::uuid",
            &[&suspended.id],
        )
        .await
        .unwrap();
    let dead = TestApp::spawn_with(|c| {
        c.database.url = "postgres://tessera_app@127.0.0.1:1/nowhere".into();
        c.database.acquire_timeout_ms = 200;
    })
    .await;

    // Who calls, on which app and host: (case, app, host slug or root, token).
    let callers: [(&str, &TestApp, Option<&str>, Option<&str>); 8] = [
        ("owner", &app, Some(&owner.slug), Some(&owner.access)),
        ("root host", &app, None, Some(&owner.access)),
        ("no credential", &app, Some(&owner.slug), None),
        (
            "bad credential",
            &app,
            Some(&owner.slug),
            Some("not-a-token"),
        ),
        (
            "unknown tenant",
            &app,
            Some("nosuchtenant"),
            Some(&owner.access),
        ),
        (
            "suspended tenant",
            &app,
            Some(&suspended.slug),
            Some(&suspended.access),
        ),
        ("viewer", &app, Some(&viewer.slug), Some(&viewer.access)),
        ("dead database", &dead, Some("acme"), Some(&owner.access)),
    ];
    for op in &ops {
        for (case, on, slug, token) in callers {
            let req = match slug {
                Some(slug) => on.on(slug, op.method.clone(), &op.path()),
                None => on.root(op.method.clone(), &op.path()),
            };
            let req = match token {
                Some(t) => req.bearer_auth(t),
                None => req,
            };
            let req = if op.has_body {
                req.header("content-type", "application/json").body("{}")
            } else {
                req
            };
            op.assert_documents(req.send().await.unwrap(), case).await;
        }
        if op.has_body {
            let on_host = || {
                let req = if op.template == "/v1/signup" {
                    app.root(op.method.clone(), &op.path())
                } else {
                    app.on(&owner.slug, op.method.clone(), &op.path())
                };
                req.bearer_auth(&owner.access)
            };
            for (case, content_type, body) in [
                ("not JSON", "application/json", "{nope".to_string()),
                ("trailing data", "application/json", "{} {}".to_string()),
                ("wrong type", "text/plain", "{}".to_string()),
                (
                    "unknown field",
                    "application/json",
                    r#"{"zzz_unknown": 1}"#.to_string(),
                ),
                (
                    "too large",
                    "application/json",
                    format!("{{\"a\": \"{}\"}}", "x".repeat(8192)),
                ),
            ] {
                let res = on_host()
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                op.assert_documents(res, case).await;
            }
        }
    }
}
