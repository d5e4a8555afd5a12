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
    let res = app.root(Method::GET, "/openapi.json").send().await.unwrap();
    let doc: Value = expect(res, StatusCode::OK).await;
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
        let res = app
            .on(
                &t.slug,
                Method::from_bytes(method.as_bytes()).unwrap(),
                &path,
            )
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

#[actix_web::test]
async fn openapi_lists_the_errors_each_kind_of_operation_can_give() {
    let app = TestApp::spawn().await;
    let res = app.root(Method::GET, "/openapi.json").send().await.unwrap();
    let doc: Value = res.json().await.unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let has = |s: &str| responses.contains_key(s);
            let what = format!("{} {path}", method.to_uppercase());
            if op.get("requestBody").is_some() {
                for s in ["400", "413", "415", "422"] {
                    assert!(has(s), "{what} lacks {s}");
                }
            }
            if op
                .get("security")
                .is_some_and(|s| !s.as_array().unwrap().is_empty())
            {
                assert!(has("401"), "{what} lacks 401");
            }
            if path.starts_with("/v1/") {
                assert!(has("503"), "{what} lacks 503");
                if path != "/v1/signup" {
                    assert!(has("403") && has("404"), "{what} lacks 403/404");
                }
            }
            for (status, r) in responses {
                if !status.starts_with('2') {
                    assert!(
                        r["content"].get("application/problem+json").is_some(),
                        "{what} {status} is not problem+json: {r}"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 14, "{checked}");
    // Closed value sets are described as such.
    assert_eq!(
        doc["components"]["schemas"]["LifecycleStage"]["enum"]
            .as_array()
            .map(Vec::len),
        Some(8)
    );
}
