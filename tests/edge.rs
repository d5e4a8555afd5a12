//! The HTTP edge as a hostile client meets it, on raw sockets where a client library would not
//! send the bytes: request smuggling, Host handling, HEAD and `Allow`, slow bodies, the
//! per-address connection cap, trailing JSON, caching of credentials.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::AsyncWriteExt;

async fn contacts_named(app: &TestApp, tenant_id: &str, first_name: &str) -> i64 {
    let db = app.db.admin().await;
    let sql = "SELECT count(*) FROM contacts WHERE tenant_id = $1::text::uuid AND first_name = $2";
    db.query_one(sql, &[&tenant_id, &first_name])
        .await
        .unwrap()
        .get(0)
}

fn host(t: &Tenant, port: u16) -> String {
    format!("{}.localhost:{port}", t.slug)
}

// ---------------------------------------------------------------------------------------------
// 1. Request smuggling
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn content_length_with_chunked_is_refused_and_nothing_smuggled_runs() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let body = r#"{"first_name":"outer"}"#;
    let smuggled_body = r#"{"first_name":"smuggled"}"#;
    let request = format!(
        "POST /v1/contacts HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {tok}\r\n\
         Content-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
         {len:x}\r\n{body}\r\n0\r\n\r\n\
         POST /v1/contacts HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {tok}\r\n\
         Content-Type: application/json\r\nContent-Length: {slen}\r\n\r\n{smuggled_body}\
         GET /livez HTTP/1.1\r\nHost: {h}\r\n\r\n",
        h = host(&t, app.port),
        tok = t.access,
        len = body.len(),
        slen = smuggled_body.len(),
    );
    let (out, closed) = raw(app.port, request.as_bytes(), Duration::from_secs(5)).await;
    let codes = statuses(&out);
    assert_eq!(codes.first(), Some(&400), "{out}");
    assert!(
        codes.iter().all(|c| *c == 400),
        "a smuggled request was answered: {out}"
    );
    assert!(closed, "the connection must be closed: {out}");
    assert!(
        out.to_ascii_lowercase().contains("connection: close"),
        "{out}"
    );
    assert!(out.contains("application/problem+json"), "{out}");
    for name in ["outer", "smuggled"] {
        assert_eq!(contacts_named(&app, &t.id, name).await, 0, "{name} ran");
    }
}

#[actix_web::test]
async fn transfer_encoding_in_http_1_0_is_refused_and_plain_chunked_works() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    // HTTP/1.0 has no Transfer-Encoding, so actix reads no body here while a proxy in front that
    // honours it reads a chunked one: the two disagree on where the next request starts.
    let request = format!(
        "GET /livez HTTP/1.0\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n",
        h = host(&t, app.port),
    );
    let (out, closed) = raw(app.port, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.0 400"), "{out}");
    assert!(
        out.contains("Transfer-Encoding is not defined for HTTP/1.0"),
        "{out}"
    );
    assert!(closed, "{out}");
    // Chunked alone, in HTTP/1.1, is unambiguous and accepted.
    let body = r#"{"first_name":"chunky"}"#;
    let chunked = format!(
        "POST /v1/contacts HTTP/1.1\r\nHost: {h}\r\nAuthorization: Bearer {tok}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {len:x}\r\n{body}\r\n0\r\n\r\n",
        h = host(&t, app.port),
        tok = t.access,
        len = body.len(),
    );
    let (out, _) = raw(app.port, chunked.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(statuses(&out), vec![201], "{out}");
    assert_eq!(contacts_named(&app, &t.id, "chunky").await, 1);
}

// ---------------------------------------------------------------------------------------------
// 6. Host handling
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn two_host_headers_or_none_are_400() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    let request = format!(
        "GET /v1/me HTTP/1.1\r\nHost: {}\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        host(&a, app.port),
        host(&b, app.port),
        a.access
    );
    let (out, _) = raw(app.port, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(statuses(&out), vec![400], "{out}");
    assert!(out.contains("\"malformed_request\""), "{out}");
    let (out, _) = raw(
        app.port,
        b"GET /livez HTTP/1.1\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(statuses(&out), vec![400], "HTTP/1.1 requires Host: {out}");
    // HTTP/1.0 may omit it; the request addresses the root host.
    let (out, _) = raw(
        app.port,
        b"GET /livez HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.0 200"), "{out}");
}

#[actix_web::test]
async fn an_absolute_form_target_decides_the_tenant_and_must_agree_with_host() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    let get_me = |target_host: &str, host_header: &str, token: &str| {
        format!(
            "GET http://{target_host}/v1/me HTTP/1.1\r\nHost: {host_header}\r\n\
             Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
    };
    let (ha, hb) = (host(&a, app.port), host(&b, app.port));
    // Disagreeing authorities: refused, whichever token comes with them.
    for token in [&a.access, &b.access] {
        let (out, _) = raw(
            app.port,
            get_me(&ha, &hb, token).as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(statuses(&out), vec![400], "{out}");
    }
    // Agreeing: the target's tenant is the one resolved, for the token check too.
    let (out, _) = raw(
        app.port,
        get_me(&ha, &ha.to_uppercase(), &a.access).as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(statuses(&out), vec![200], "{out}");
    assert!(out.contains(&a.id), "{out}");
    let (out, _) = raw(
        app.port,
        get_me(&ha, &ha, &b.access).as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(statuses(&out), vec![401], "{out}");
    assert!(out.contains("\"tenant_mismatch\""), "{out}");
}

// ---------------------------------------------------------------------------------------------
// 10. HEAD and Allow
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn head_is_served_for_get_routes_without_a_body() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let c = app.create_contact(&t, json!({"first_name": "Ada"})).await;
    let path = format!("/v1/contacts/{}", c["id"].as_str().unwrap());
    let get = app.as_tenant(&t, Method::GET, &path).send().await.unwrap();
    let get_etag = get.headers()["etag"].clone();
    let get_len = get.bytes().await.unwrap().len();
    let head = app.as_tenant(&t, Method::HEAD, &path).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["etag"], get_etag);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        get_len.to_string()
    );
    assert!(head.bytes().await.unwrap().is_empty());
    // HEAD runs the GET route's checks too.
    let res = app
        .on(&t.slug, Method::HEAD, "/v1/contacts")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn allow_lists_exactly_the_methods_each_route_answers() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let doc = app.openapi().await;
    let methods = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
    ];
    let mut checked = 0;
    for path in doc["paths"].as_object().unwrap().keys() {
        let concrete = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
        // What the route table says, read off a 405.
        let res = app
            .as_tenant(&t, Method::TRACE, &concrete)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "TRACE {path}");
        let allow: Vec<String> = res.headers()["allow"]
            .to_str()
            .unwrap()
            .split(", ")
            .map(str::to_owned)
            .collect();
        for m in methods {
            let res = app
                .as_tenant(&t, Method::from_bytes(m.as_bytes()).unwrap(), &concrete)
                .header("content-type", "application/json")
                .body(if m == "HEAD" || m == "GET" { "" } else { "{}" })
                .send()
                .await
                .unwrap();
            let answered = res.status() != StatusCode::METHOD_NOT_ALLOWED;
            assert_eq!(
                answered,
                allow.iter().any(|a| a == m),
                "{m} {path}: {} with Allow {allow:?}",
                res.status()
            );
            if !answered {
                assert_eq!(res.headers()["allow"].to_str().unwrap(), allow.join(", "));
            }
            checked += 1;
        }
    }
    assert!(checked >= 8 * 10, "{checked}");
}

// ---------------------------------------------------------------------------------------------
// 4. Slow bodies, connections per address
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_trickled_body_gets_408_and_its_connection_closed() {
    let app = TestApp::spawn_with(|c| c.http.body_timeout_ms = 1000).await;
    let t = app.signup().await;
    let head = format!(
        "POST /v1/contacts HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"first_name\": \"",
        host(&t, app.port),
        t.access
    );
    let started = Instant::now();
    let mut tricklers = Vec::new();
    for _ in 0..10 {
        let head = head.clone();
        let port = app.port;
        tricklers.push(actix_web::rt::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            // One byte every 100 ms: always "arriving", never done.
            let trickle = async {
                loop {
                    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
                    if s.write_all(b"x").await.is_err() {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(4), trickle).await;
            read_until_closed(&mut s, Duration::from_secs(3)).await
        }));
    }
    for t in tricklers {
        let (out, closed) = t.await.unwrap();
        assert_eq!(statuses(&out), vec![408], "{out}");
        assert!(out.contains("\"request_timeout\""), "{out}");
        assert!(
            out.to_ascii_lowercase().contains("connection: close"),
            "{out}"
        );
        assert!(closed || out.contains("408"), "{out}");
    }
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[actix_web::test]
async fn headers_that_do_not_arrive_in_time_get_408_and_a_closed_connection() {
    let app = TestApp::spawn_with(|c| c.http.header_timeout_ms = 500).await;
    let started = Instant::now();
    // The head never ends: no blank line after the last header.
    let (out, closed) = raw(
        app.port,
        b"GET /livez HTTP/1.1\r\nHost: localhost\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(statuses(&out), vec![408], "{out}");
    assert!(closed, "{out}");
    // The configured time, not actix's default of 5 s.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn connections_per_address_are_capped_when_configured() {
    let app = TestApp::spawn_with(|c| c.http.max_connections_per_ip = 3).await;
    let idle = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(
                tokio::net::TcpStream::connect(("127.0.0.1", app.port))
                    .await
                    .unwrap(),
            );
        }
        v
    };
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    let request = b"GET /livez HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (out, closed) = raw(app.port, request, Duration::from_secs(5)).await;
    assert_eq!(statuses(&out), vec![429], "{out}");
    assert!(
        out.contains("\"rate_limited\"") && out.contains("retry-after"),
        "{out}"
    );
    assert!(closed);
    // Slots come back when connections close.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (out, _) = raw(
            app.port,
            b"GET /livez HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        if statuses(&out) == vec![200] {
            break;
        }
        assert!(Instant::now() < deadline, "slots never came back: {out}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Trailing data after the JSON value
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn anything_after_the_json_value_is_400() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    for body in [
        r#"{"first_name":"one"} {"first_name":"two"}"#,
        r#"{}  garbage"#,
        r#"{"first_name":"x"}]]]]"#,
    ] {
        let res = app
            .as_tenant(&t, Method::POST, "/v1/contacts")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        expect_problem(res, StatusCode::BAD_REQUEST, "malformed_request").await;
    }
    for name in ["one", "two", "x"] {
        assert_eq!(contacts_named(&app, &t.id, name).await, 0);
    }
    let res = app
        .as_tenant(&t, Method::POST, "/v1/contacts")
        .header("content-type", "application/json")
        .body("\n {\"first_name\":\"spaced\"} \r\n\t")
        .send()
        .await
        .unwrap();
    expect(res, StatusCode::CREATED).await;
}

// ---------------------------------------------------------------------------------------------
// 7. Credentials are never cached
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn responses_carrying_credentials_say_no_store() {
    let app = TestApp::spawn().await;
    let slug = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let signup = app
        .root(Method::POST, "/v1/signup")
        .json(&json!({
            "tenant": {"slug": slug, "name": "Cache"},
            "user": {"email": format!("o@{slug}.test"), "password": "correct horse battery", "name": "O"}
        }))
        .send()
        .await
        .unwrap();
    let login = app
        .on(&slug, Method::POST, "/v1/auth/login")
        .json(&json!({"email": format!("o@{slug}.test"), "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    let login_headers = login.headers().clone();
    let pair = expect(login, StatusCode::OK).await;
    let refresh = app
        .on(&slug, Method::POST, "/v1/auth/refresh")
        .json(&json!({"refresh_token": pair["refresh_token"]}))
        .send()
        .await
        .unwrap();
    for (what, status, headers) in [
        ("signup", signup.status(), signup.headers().clone()),
        ("login", StatusCode::OK, login_headers),
        ("refresh", refresh.status(), refresh.headers().clone()),
    ] {
        assert!(status.is_success(), "{what}: {status}");
        assert_eq!(headers["cache-control"], "no-store", "{what}");
        assert_eq!(headers["pragma"], "no-cache", "{what}");
    }
    // Every other API answer is not stored either, unless it says otherwise (the JWKS may be).
    let me = app
        .on(&slug, Method::GET, "/v1/me")
        .bearer_auth(pair["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.headers()["cache-control"], "no-store");
    let jwks = app
        .root(Method::GET, "/.well-known/jwks.json")
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.headers()["cache-control"], "public, max-age=300");
}

// ---------------------------------------------------------------------------------------------
// 8. Look-alike tenants; 13. canonical ids
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn idna_double_hyphen_and_reserved_slugs_are_refused() {
    let app = TestApp::spawn().await;
    for slug in ["xn--pple-43d", "ab--cd", "localhost", "login", "billing"] {
        let res = app
            .root(Method::POST, "/v1/signup")
            .json(&json!({
                "tenant": {"slug": slug, "name": "Look-alike"},
                "user": {"email": "o@example.com", "password": "correct horse battery", "name": "O"}
            }))
            .send()
            .await
            .unwrap();
        let body = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "tenant.slug", "{slug}: {body}");
    }
    // A reserved name is the root host, never a tenant's.
    let res = app
        .http
        .get(format!("{}/v1/auth/login", app.base))
        .header("host", format!("localhost.localhost:{}", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[actix_web::test]
async fn only_canonical_ids_address_a_record() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let c = app.create_contact(&t, json!({"first_name": "Ada"})).await;
    let id = c["id"].as_str().unwrap().to_string();
    let res = app
        .as_tenant(&t, Method::GET, &format!("/v1/contacts/{id}"))
        .send()
        .await
        .unwrap();
    expect(res, StatusCode::OK).await;
    for other in [
        id.to_uppercase(),
        id.replace('-', ""),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
    ] {
        let res = app
            .as_tenant(&t, Method::GET, &format!("/v1/contacts/{other}"))
            .send()
            .await
            .unwrap();
        expect_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    let res = app
        .as_tenant(
            &t,
            Method::GET,
            &format!("/v1/contacts?owner_id={}", t.user_id.to_uppercase()),
        )
        .send()
        .await
        .unwrap();
    let body = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "owner_id");
}
