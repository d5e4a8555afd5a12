//! The request path's limits through HTTP: per-tenant GCRA budgets with the draft-11 RateLimit
//! headers, 429 with Retry-After, the in-flight cap, the plan's statement timeout, and two
//! replicas sharing one budget through Redis — also while Redis goes down and comes back.

mod common;

use std::time::{Duration, Instant};

use common::redis::{OwnRedis, config as redis_config, shared_url};
use common::*;
use diesel_async::scoped_futures::ScopedFutureExt;
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tessera::limits::rate::Mode;

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

async fn me(app: &TestApp, t: &Tenant) -> reqwest::Response {
    app.as_tenant(t, Method::GET, "/v1/me")
        .send()
        .await
        .unwrap()
}

/// Sends `n` requests as `t`, one after another; counts the 200s and checks every 429.
async fn admitted(app: &TestApp, t: &Tenant, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let res = me(app, t).await;
        match res.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(header(&res, "retry-after").is_some());
                expect_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
            }
            s => panic!("unexpected {s}"),
        }
    }
    ok
}

#[actix_web::test]
async fn every_tenant_response_carries_the_draft_11_headers_and_a_spent_budget_is_429() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.signup().await, app.signup().await);
    // 1 request per second, 5 at once: w = 5 s.
    app.set_overrides(&a, json!({}), json!({"requests_per_second": 1, "burst": 5}))
        .await;
    let res = me(&app, &a).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(&res, "ratelimit-policy").unwrap(),
        "\"tenant\";q=5;w=5"
    );
    assert_eq!(header(&res, "ratelimit").unwrap(), "\"tenant\";r=4;t=1");
    // Errors carry them too (a 404 inside the tenant).
    let res = app
        .as_tenant(
            &a,
            Method::GET,
            &format!("/v1/contacts/{}", uuid::Uuid::new_v4()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&res, "ratelimit").unwrap(), "\"tenant\";r=3;t=2");
    assert_eq!(admitted(&app, &a, 3).await, 3);
    let res = me(&app, &a).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "ratelimit").unwrap(), "\"tenant\";r=0;t=5");
    let retry: u64 = header(&res, "retry-after").unwrap().parse().unwrap();
    assert!((1..=1).contains(&retry), "{retry}");
    assert!(header(&res, "ratelimit-policy").is_some());
    expect_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // The neighbour is untouched (the test plans' huge budget).
    let res = me(&app, &b).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        header(&res, "ratelimit")
            .unwrap()
            .starts_with("\"tenant\";r=99999;")
    );
    // Honouring Retry-After gets the next request through.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(me(&app, &a).await.status(), StatusCode::OK);
    // Root-host and unauthenticated responses are not tenant-scoped: no headers.
    let res = app.root(Method::GET, "/livez").send().await.unwrap();
    assert!(header(&res, "ratelimit").is_none());
}

#[actix_web::test]
async fn the_in_flight_cap_refuses_what_exceeds_it_and_frees_on_completion() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    // A long statement timeout: the held PATCH must outwait a slow, loaded machine.
    app.set_overrides(
        &a,
        json!({}),
        json!({"max_concurrent_requests": 1, "statement_timeout_ms": 9000}),
    )
    .await;
    let c = app.create_contact(&a, json!({"first_name": "Held"})).await;
    let id = c["id"].as_str().unwrap().to_string();
    // Hold the row so a PATCH of it stays in flight.
    let admin = app.db.admin().await;
    admin
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM contacts WHERE tenant_id = '{}' AND id = '{id}' FOR UPDATE",
            a.id
        ))
        .await
        .unwrap();
    let path = format!("/v1/contacts/{id}");
    let held = app
        .as_tenant(&a, Method::PATCH, &path)
        .json(&json!({"first_name": "Changed"}))
        .send();
    let held = actix_web::rt::spawn(held);
    // Wait until the PATCH holds the tenant's one in-flight place (it then waits on the lock).
    let tenant = tessera::ids::TenantId(a.id.parse().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.admission.in_flight(tenant) == 0 {
        assert!(Instant::now() < deadline, "the PATCH never got in flight");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = me(&app, &a).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after").as_deref(), Some("1"));
    admin.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(held.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(me(&app, &a).await.status(), StatusCode::OK);
}

#[actix_web::test]
async fn the_plans_statement_timeout_is_set_in_the_tenant_transaction() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let show = |ms: Option<u64>| {
        let scope = tessera::tenancy::TxScope {
            tenant: tessera::ids::TenantId(a.id.parse().unwrap()),
            user: None,
            statement_timeout_ms: ms,
        };
        let door = app.state.door.clone();
        async move {
            door.read(scope, |tx| {
                async move {
                    #[derive(diesel::QueryableByName)]
                    struct S {
                        #[diesel(sql_type = diesel::sql_types::Text)]
                        statement_timeout: String,
                    }
                    use diesel_async::RunQueryDsl;
                    let s: S = diesel::sql_query("SHOW statement_timeout")
                        .get_result(tx.conn())
                        .await?;
                    Ok(s.statement_timeout)
                }
                .scope_boxed()
            })
            .await
            .unwrap()
        }
    };
    assert_eq!(show(Some(1234)).await, "1234ms");
    // SET LOCAL: gone with the transaction, the connection's own value is back.
    assert_eq!(show(None).await, "5s");
    // The free plan's 2 s reaches requests: a statement that takes longer is cancelled (503).
    app.set_overrides(&a, json!({}), json!({"statement_timeout_ms": 50}))
        .await;
    let admin = app.db.admin().await;
    let c = app.create_contact(&a, json!({"first_name": "Slow"})).await;
    let id = c["id"].as_str().unwrap();
    admin
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM contacts WHERE tenant_id = '{}' AND id = '{id}' FOR UPDATE",
            a.id
        ))
        .await
        .unwrap();
    let started = Instant::now();
    let res = app
        .as_tenant(&a, Method::PATCH, &format!("/v1/contacts/{id}"))
        .json(&json!({"first_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    admin.batch_execute("ROLLBACK").await.unwrap();
}

#[actix_web::test]
async fn two_replicas_share_one_tenant_budget_through_redis() {
    let url = shared_url();
    let redis = |c: &mut tessera::config::Config| {
        c.redis = redis_config(&url, Duration::from_millis(500), Duration::from_millis(200))
    };
    let one = TestApp::spawn_with(redis).await;
    let two = one.replica(redis).await;
    let t = one.signup().await;
    // 1 per second sustained, 20 at once: over 40 requests within a few seconds the two
    // replicas together admit 20 plus what refilled meanwhile — not 20 each.
    one.set_overrides(
        &t,
        json!({}),
        json!({"requests_per_second": 1, "burst": 20}),
    )
    .await;
    two.forget(&t).await;
    let started = Instant::now();
    let mut ok = 0;
    for i in 0..40 {
        let app = if i % 2 == 0 { &one } else { &two };
        ok += admitted(app, &t, 1).await;
    }
    let refilled = started.elapsed().as_secs() as usize + 1;
    assert!(
        (20..=20 + refilled).contains(&ok),
        "{ok} admitted in {:?}",
        started.elapsed()
    );
    assert_eq!(one.state.limiter.stats().mode, Mode::Shared);
    assert_eq!(two.state.limiter.stats().mode, Mode::Shared);
}

#[actix_web::test]
async fn with_redis_down_each_replica_serves_on_its_own_budget_and_shares_again_when_it_returns() {
    let own = OwnRedis::start();
    let url = own.url();
    let redis = |c: &mut tessera::config::Config| {
        c.redis = redis_config(&url, Duration::from_millis(200), Duration::from_millis(100))
    };
    let one = TestApp::spawn_with(redis).await;
    let two = one.replica(redis).await;
    let t = one.signup().await;
    one.set_overrides(&t, json!({}), json!({"requests_per_second": 1, "burst": 6}))
        .await;
    two.forget(&t).await;
    // Shared: 6 between them.
    let shared: usize = join_all([admitted(&one, &t, 6), admitted(&two, &t, 6)])
        .await
        .into_iter()
        .sum();
    assert!((6..=7).contains(&shared), "{shared}");
    own.stop();
    // Down: nothing fails; each replica has its own budget of 6 (fail-soft).
    let down_one = admitted(&one, &t, 8).await;
    let down_two = admitted(&two, &t, 8).await;
    assert!((6..=8).contains(&down_one), "{down_one}");
    assert!((6..=8).contains(&down_two), "{down_two}");
    let stats = one.state.limiter.stats();
    assert_eq!(stats.mode, Mode::Local);
    assert_eq!(stats.outages, 1);
    assert!(stats.redis_failures >= 1);
    // Back: after the retry interval the replicas share again, by themselves.
    own.start_again();
    tokio::time::sleep(Duration::from_secs(8)).await; // the buckets refill (6 s) meanwhile
    let deadline = Instant::now() + Duration::from_secs(10);
    while one.state.limiter.stats().mode != Mode::Shared
        || two.state.limiter.stats().mode != Mode::Shared
    {
        me(&one, &t).await;
        me(&two, &t).await;
        assert!(Instant::now() < deadline, "never went back to Redis");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::time::sleep(Duration::from_secs(7)).await;
    let again: usize = join_all([admitted(&one, &t, 6), admitted(&two, &t, 6)])
        .await
        .into_iter()
        .sum();
    assert!((6..=7).contains(&again), "{again}");
}
