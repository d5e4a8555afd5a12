//! Usage metering (API.md §8) and the tenant's own view: api_requests counted per replica and
//! flushed idempotently, gauges from the counters, adjustments for final windows, the monthly
//! request quota, GET/PATCH /v1/tenant and GET /v1/tenant/usage — and the crash guarantee, with
//! real server processes killed and stopped.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tessera::ids::TenantId;
use tessera::limits::metering::{self, Amount, Meter, Recorded, window_of};

fn tid(t: &Tenant) -> TenantId {
    TenantId(t.id.parse().unwrap())
}

/// `api_requests` stored for `t` (windows and adjustments), read as the superuser.
async fn stored_requests(db: &TestDb, t: &Tenant) -> i64 {
    let id = uuid::Uuid::parse_str(&t.id).unwrap();
    db.admin()
        .await
        .query_one(
            "SELECT (SELECT coalesce(sum(value), 0) FROM usage_windows WHERE tenant_id = $1 \
               AND meter = 'api_requests')::bigint + (SELECT coalesce(sum(value), 0) \
               FROM usage_adjustments WHERE tenant_id = $1 AND meter = 'api_requests')::bigint",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

async fn get(app: &TestApp, t: &Tenant, path: &str) -> Value {
    expect(
        app.as_tenant(t, Method::GET, path).send().await.unwrap(),
        StatusCode::OK,
    )
    .await
}

#[actix_web::test]
async fn requests_are_counted_per_tenant_and_flushed() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.signup().await, app.signup().await);
    for _ in 0..7 {
        get(&app, &a, "/v1/me").await;
    }
    get(&app, &b, "/v1/me").await;
    // Unauthenticated and refused-before-auth requests are not the tenant's usage.
    app.on(&a.slug, Method::GET, "/v1/me").send().await.unwrap();
    assert_eq!(stored_requests(&app.db, &a).await, 0);
    // A receipt past its retention (7 days) is forgotten by the first flush of a window.
    let admin = app.db.admin().await;
    admin
        .execute(
            "INSERT INTO usage_receipts (tenant_id, event_id, recorded_at) \
             VALUES ($1, 'api:old', now() - interval '8 days'), ($1, 'api:recent', now() - interval '6 days')",
            &[&uuid::Uuid::parse_str(&a.id).unwrap()],
        )
        .await
        .unwrap();
    let f = app.state.metering.flush().await.unwrap();
    assert_eq!(f.windows, 2);
    let kept: Vec<String> = admin
        .query(
            "SELECT event_id FROM usage_receipts WHERE event_id IN ('api:old', 'api:recent')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kept, ["api:recent"]);
    assert_eq!(stored_requests(&app.db, &a).await, 7);
    assert_eq!(stored_requests(&app.db, &b).await, 1);
    // The tenant sees it, with this request (unflushed) included in the month's standing.
    let v = get(&app, &a, "/v1/tenant").await;
    assert_eq!(v["usage"]["api_requests_per_month"]["used"], 8);
    let u = get(&app, &a, "/v1/tenant/usage").await;
    let api = &u["meters"][0];
    assert_eq!(api["meter"], "api_requests");
    assert_eq!(api["total"], 7);
    assert_eq!(api["data"][0]["value"], 7);
    assert_eq!(api["data"][0]["final"], false);
    assert_eq!(
        api["data"][0]["window_start"],
        json!(window_of(Utc::now()).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );
    assert_eq!(api["limit"], 100_000);
    assert_eq!(api["remaining"], 100_000 - 9);
    // Gauges came from the counters at the flush: one seat, no records.
    let seats = &u["meters"][2];
    assert_eq!(seats["meter"], "seats");
    assert_eq!(seats["total"], 1);
    // B sees its own usage only.
    let ub = get(&app, &b, "/v1/tenant/usage").await;
    assert_eq!(ub["meters"][0]["total"], 1);
}

/// A flush carries one amount per tenant that made requests (and, after a failed flush, several
/// for one window), written as a few set statements: every amount still lands exactly once, in
/// its own tenant's window or as an adjustment, and the answers come back in order.
#[actix_web::test]
async fn a_batch_of_tenants_repeats_and_late_amounts_counts_each_once() {
    use Recorded::{Adjustment, Duplicate, Window};
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    let now = Utc::now();
    let grace = Duration::from_secs(900);
    let (open, old) = (window_of(now), window_of(now - TimeDelta::hours(3)));
    let amount = |t: &Tenant, id: &str, window_start, value| Amount {
        tenant: tid(t),
        meter: Meter::ApiRequests,
        window_start,
        event_id: id.into(),
        value,
    };
    let record = |amounts: Vec<Amount>| metering::record(&app.state.platform, amounts, grace);
    let seen = amount(&a, "api:batch:seen", open, 100);
    assert_eq!(record(vec![seen.clone()]).await.unwrap(), [Window]);
    let batch = vec![
        amount(&a, "api:batch:1", open, 3),
        // The same window as the first: the two are summed into one row.
        amount(&a, "api:batch:2", open, 4),
        // Counted by an earlier flush.
        seen,
        // The same id in another tenant is another event.
        amount(&b, "api:batch:1", open, 7),
        // The same id twice in one batch counts once.
        amount(&a, "api:batch:1", open, 3),
        amount(&a, "api:batch:late", old, 2),
        amount(&b, "api:batch:late", old, 5),
    ];
    assert_eq!(
        record(batch.clone()).await.unwrap(),
        [
            Window, Window, Duplicate, Window, Duplicate, Adjustment, Adjustment
        ]
    );
    assert_eq!(stored_requests(&app.db, &a).await, 100 + 3 + 4 + 2);
    assert_eq!(stored_requests(&app.db, &b).await, 7 + 5);
    let rows: i64 = app
        .db
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM usage_windows WHERE meter = 'api_requests' \
               AND tenant_id = ANY($1)",
            &[&vec![tid(&a).as_uuid(), tid(&b).as_uuid()]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows, 2,
        "one open window per tenant, none for the final one"
    );
    // The whole batch retried (a flush whose commit answer was lost): nothing more.
    assert_eq!(record(batch).await.unwrap(), [Duplicate; 7]);
    assert_eq!(stored_requests(&app.db, &a).await, 109);
    assert_eq!(stored_requests(&app.db, &b).await, 12);
}

#[actix_web::test]
async fn a_repeated_amount_is_counted_once_and_a_final_window_gets_an_adjustment() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let now = Utc::now();
    let open = Amount {
        tenant: tid(&a),
        meter: Meter::ApiRequests,
        window_start: window_of(now),
        event_id: "api:test:1".into(),
        value: 5,
    };
    let grace = Duration::from_secs(900);
    let first = metering::record(&app.state.platform, vec![open.clone()], grace)
        .await
        .unwrap();
    assert_eq!(first, [Recorded::Window]);
    // A retried flush (same event id): nothing more.
    let again = metering::record(&app.state.platform, vec![open.clone()], grace)
        .await
        .unwrap();
    assert_eq!(again, [Recorded::Duplicate]);
    assert_eq!(stored_requests(&app.db, &a).await, 5);
    // An amount for a window that ended more than the grace ago is an adjustment: the final
    // total stays what billing read.
    let old_window = window_of(now - TimeDelta::hours(3));
    let late = Amount {
        window_start: old_window,
        event_id: "api:test:2".into(),
        value: 2,
        ..open.clone()
    };
    let r = metering::record(&app.state.platform, vec![late.clone()], grace)
        .await
        .unwrap();
    assert_eq!(r, [Recorded::Adjustment]);
    let r = metering::record(&app.state.platform, vec![late], grace)
        .await
        .unwrap();
    assert_eq!(r, [Recorded::Duplicate]);
    let windows: i64 = app
        .db
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM usage_windows WHERE window_start = $1",
            &[&old_window],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(windows, 0, "a final window is never written");
    let from = old_window.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let u = get(&app, &a, &format!("/v1/tenant/usage?from={from}")).await;
    let rows = u["meters"][0]["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["value"], 2);
    assert_eq!(rows[0]["adjustments"], 2);
    assert_eq!(rows[0]["final"], true);
    assert_eq!(rows[1]["value"], 5);
    assert_eq!(rows[1]["final"], false);
    // By day: one row, the sum.
    let u = get(
        &app,
        &a,
        &format!("/v1/tenant/usage?from={from}&granularity=day"),
    )
    .await;
    let days = u["meters"][0]["data"].as_array().unwrap();
    let total: i64 = days.iter().map(|d| d["value"].as_i64().unwrap()).sum();
    assert_eq!(total, 7);
    assert!(days.len() <= 2);
}

#[actix_web::test]
async fn a_transactional_meter_commits_with_its_action_or_not_at_all() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let scope = tessera::tenancy::TxScope::tenant(tid(&a));
    let grace = Duration::from_secs(900);
    use diesel_async::scoped_futures::ScopedFutureExt;
    // Rolled back: the usage goes with it.
    let r: Result<(), _> = app
        .state
        .door
        .write(scope, |tx| {
            async move {
                metering::record_in_tx(tx, Meter::ImportRows, "import:1", 10, grace).await?;
                Err(tessera::error::AppError::Conflict(
                    "the import failed".into(),
                ))
            }
            .scope_boxed()
        })
        .await;
    assert!(r.is_err());
    // Committed, and replayed: counted once.
    for _ in 0..2 {
        app.state
            .door
            .write(scope, |tx| {
                async move {
                    metering::record_in_tx(tx, Meter::ImportRows, "import:1", 10, grace).await?;
                    Ok(())
                }
                .scope_boxed()
            })
            .await
            .unwrap();
    }
    let u = get(&app, &a, "/v1/tenant/usage").await;
    let imports = u["meters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["meter"] == "import_rows")
        .unwrap();
    assert_eq!(imports["total"], 10);
}

#[actix_web::test]
async fn the_monthly_request_quota_answers_402() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.signup().await, app.signup().await);
    app.set_overrides(&a, json!({"api_requests_per_month": 3}), json!({}))
        .await;
    for _ in 0..3 {
        get(&app, &a, "/v1/me").await;
    }
    let p = expect_problem(
        app.as_tenant(&a, Method::GET, "/v1/me")
            .send()
            .await
            .unwrap(),
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    assert_eq!(p["quota"], "api_requests_per_month");
    assert_eq!(
        (p["limit"].clone(), p["used"].clone()),
        (json!(3), json!(3))
    );
    // Still refused after a flush (now from the stored total); refusals are not counted.
    app.state.metering.flush().await.unwrap();
    let res = app
        .as_tenant(&a, Method::GET, "/v1/me")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(stored_requests(&app.db, &a).await, 3);
    get(&app, &b, "/v1/me").await;
}

/// Between re-reads of the stored month total (at most once a minute per tenant), a flush adds
/// what it wrote itself: the requests it flushed still count against the monthly quota.
#[actix_web::test]
async fn requests_flushed_between_rereads_still_count_against_the_month() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    app.set_overrides(&a, json!({"api_requests_per_month": 4}), json!({}))
        .await;
    for _ in 0..2 {
        get(&app, &a, "/v1/me").await;
    }
    // The first flush re-reads the stored total (2); the second, within the minute, does not.
    app.state.metering.flush().await.unwrap();
    for _ in 0..2 {
        get(&app, &a, "/v1/me").await;
    }
    app.state.metering.flush().await.unwrap();
    assert_eq!(stored_requests(&app.db, &a).await, 4);
    let p = expect_problem(
        app.as_tenant(&a, Method::GET, "/v1/me")
            .send()
            .await
            .unwrap(),
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    assert_eq!(p["used"], 4);
}

#[actix_web::test]
async fn tenant_view_and_the_narrow_self_service_patch() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.signup().await, app.signup().await);
    let res = app
        .as_tenant(&a, Method::GET, "/v1/tenant")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["etag"], "\"1\"");
    let v = expect(res, StatusCode::OK).await;
    assert_eq!(v["id"], a.id);
    assert_eq!(v["status"], "active");
    assert_eq!(v["settings"], json!({}));
    assert_eq!(v["limits"]["quotas"]["seats"], 3);
    let patch = |t: &Tenant, body: Value| {
        app.as_tenant(t, Method::PATCH, "/v1/tenant")
            .json(&body)
            .send()
    };
    let v = expect(
        patch(&a, json!({"name": "Renamed", "settings": {"locale": "de"}}))
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(v["name"], "Renamed");
    assert_eq!(v["settings"], json!({"locale": "de"}));
    assert_eq!(v["version"], 2);
    // /v1/me shows the new name (this replica's cache was refreshed).
    assert_eq!(get(&app, &a, "/v1/me").await["tenant"]["name"], "Renamed");
    // Plan, status and limits are not the tenant's to change: unknown fields → 422.
    for field in [
        json!({"plan": "enterprise"}),
        json!({"status": "active"}),
        json!({"quota_overrides": {"records": 1}}),
    ] {
        expect_problem(
            patch(&a, field).await.unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    let p = expect_problem(
        patch(&a, json!({"name": " ", "settings": [1]}))
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"].as_array().unwrap().len(), 2);
    // If-Match.
    let res = app
        .as_tenant(&a, Method::PATCH, "/v1/tenant")
        .header("if-match", "\"1\"")
        .json(&json!({"name": "Stale"}))
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::PRECONDITION_FAILED, "version_conflict").await;
    // tenant:manage only: a member (and an admin) may read but not change it.
    let member = app.add_user(&a, "member").await;
    get(&app, &member, "/v1/tenant").await;
    let p = expect_problem(
        patch(&member, json!({"name": "Mine"})).await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(p["permission"], "tenant:manage");
    let p = expect_problem(
        app.as_tenant(&member, Method::GET, "/v1/tenant/usage")
            .send()
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(p["permission"], "billing:read");
    // Each tenant sees and changes only itself.
    let vb = get(&app, &b, "/v1/tenant").await;
    assert_eq!(vb["id"], b.id);
    assert_ne!(vb["name"], "Renamed");
    // A's token on B's host: 401 tenant_mismatch, as everywhere.
    let res = app
        .on(&b.slug, Method::PATCH, "/v1/tenant")
        .bearer_auth(&a.access)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::UNAUTHORIZED, "tenant_mismatch").await;
}

#[actix_web::test]
async fn usage_ranges_are_validated() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    for (query, field) in [
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("granularity=week", "granularity"),
        ("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z", "to"),
        ("from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
        ("tenant_id=x", "tenant_id"),
        ("from=2263-01-01T00:00:00Z", "from"),
        ("to=1969-12-31T23:00:00Z", "to"),
    ] {
        let p = expect_problem(
            app.as_tenant(&a, Method::GET, &format!("/v1/tenant/usage?{query}"))
                .send()
                .await
                .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(p["errors"][0]["field"], field, "{query}: {p}");
    }
    // A year of days is fine.
    get(
        &app,
        &a,
        "/v1/tenant/usage?from=2025-12-01T00:00:00Z&granularity=day",
    )
    .await;
}

/// A `tessera serve` process on a free port against `db`.
struct Server {
    child: Child,
    base: String,
    port: u16,
}

impl Server {
    fn start(db: &TestDb) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (_, pem) = tessera::auth::keys::Keys::generate().unwrap();
        let mut child = tessera_command()
            .arg("serve")
            .env("TESSERA_DATABASE__URL", db.server_url())
            .env("TESSERA_DATABASE__PLATFORM_URL", db.platform_url())
            .env("TESSERA_HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("TESSERA_AUTH__SIGNING_KEY_PEM", pem)
            .env("TESSERA_METERING__FLUSH_INTERVAL_SECS", "10")
            .env("TESSERA_LOG__LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for "listening".
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref() {
            if line.unwrap().contains("listening") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    fn signal(&mut self, sig: &str) -> std::process::ExitStatus {
        std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

/// Signs up on `server` and sends `n` requests as the owner; returns the tenant's id.
async fn signup_and_call(server: &Server, slug: &str, n: usize) -> Tenant {
    let http = reqwest::Client::new();
    let host = |s: &str| format!("{s}.localhost:{}", server.port);
    let body = expect(
        http.post(format!("{}/v1/signup", server.base))
            .header("host", format!("localhost:{}", server.port))
            .json(&json!({"tenant": {"slug": slug, "name": slug},
                          "user": {"email": format!("o@{slug}.test"),
                                   "password": "correct horse battery", "name": "O"}}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let token = body["tokens"]["access_token"].as_str().unwrap().to_string();
    for _ in 0..n {
        let res = http
            .get(format!("{}/v1/me", server.base))
            .header("host", host(slug))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    Tenant {
        id: body["tenant"]["id"].as_str().unwrap().into(),
        slug: slug.into(),
        user_id: String::new(),
        email: String::new(),
        password: String::new(),
        access: token,
        refresh: String::new(),
    }
}

#[actix_web::test]
async fn a_killed_replica_loses_its_unflushed_requests_and_a_stopped_one_loses_none() {
    let db = TestDb::new().await;
    // SIGKILL before the first flush (10 s after start): what it counted is lost, exactly.
    let mut killed = Server::start(&db);
    let k = signup_and_call(&killed, "killed-co", 6).await;
    killed.signal("-KILL");
    // SIGTERM: the graceful stop flushes everything it counted.
    let mut stopped = Server::start(&db);
    let s = signup_and_call(&stopped, "stopped-co", 9).await;
    let status = stopped.signal("-TERM");
    assert!(status.success(), "{status:?}");
    assert_eq!(stored_requests(&db, &k).await, 0);
    assert_eq!(stored_requests(&db, &s).await, 9);
    // A replica that runs past its flush interval writes on its own, and a later graceful stop
    // adds only what came after (nothing twice).
    let mut running = Server::start(&db);
    let r = signup_and_call(&running, "running-co", 4).await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(stored_requests(&db, &r).await, 4);
    let http = reqwest::Client::new();
    for _ in 0..2 {
        http.get(format!("{}/v1/me", running.base))
            .header("host", format!("running-co.localhost:{}", running.port))
            .bearer_auth(&r.access)
            .send()
            .await
            .unwrap();
    }
    assert!(running.signal("-TERM").success());
    assert_eq!(stored_requests(&db, &r).await, 6);
}

/// Records `value` of `meter` for `t` in the window `hours_ago` hours back.
async fn seed(app: &TestApp, t: &Tenant, meter: Meter, hours_ago: i64, value: i64) {
    let amount = Amount {
        tenant: tid(t),
        meter,
        window_start: window_of(Utc::now() - TimeDelta::hours(hours_ago)),
        event_id: format!("seed:{}:{}:{hours_ago}", t.id, meter.name()),
        value,
    };
    // Written with a day's grace, so no seeded amount becomes an adjustment; read back with the
    // configured 15 minutes, so windows two hours old are final.
    metering::record(
        &app.state.platform,
        vec![amount],
        Duration::from_secs(24 * 3600),
    )
    .await
    .unwrap();
}

#[actix_web::test]
async fn billing_reads_every_tenants_hourly_usage_page_by_page_and_as_csv() {
    use tessera::platform::Scope;
    let app = TestApp::spawn().await;
    let (a, b) = (app.signup().await, app.signup().await);
    for (t, base) in [(&a, 10), (&b, 20)] {
        for h in 1..=3 {
            seed(&app, t, Meter::ApiRequests, h, base + h).await;
        }
        seed(&app, t, Meter::ImportRows, 2, 5).await;
    }
    let (_, key) = app.platform_key(&[Scope::UsageRead]).await;
    let (_, wrong) = app.platform_key(&[Scope::TenantsRead]).await;
    let from = window_of(Utc::now() - TimeDelta::hours(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let list = |query: String, key: &str| {
        app.root(
            Method::GET,
            &format!("/v1/platform/usage?from={from}&{query}"),
        )
        .bearer_auth(key)
        .send()
    };
    // Scopes: usage:read only; tenant tokens are not platform keys.
    let p = expect_problem(
        list(String::new(), &wrong).await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(p["permission"], "usage:read");
    expect_problem(
        list(String::new(), &a.access).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    // All rows of both tenants, one page at a time, each exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("limit=2&meter=api_requests&cursor={c}"),
            None => "limit=2&meter=api_requests".into(),
        };
        let page = expect(list(q, &key).await.unwrap(), StatusCode::OK).await;
        for r in page["data"].as_array().unwrap() {
            seen.push((
                r["tenant_slug"].as_str().unwrap().to_string(),
                r["value"].as_i64().unwrap(),
            ));
            assert_eq!(r["meter"], "api_requests");
            assert!(r["window_end"].is_string() && r["tenant_id"].is_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    seen.sort();
    let mut expected: Vec<(String, i64)> = [(&a, 10), (&b, 20)]
        .iter()
        .flat_map(|(t, base)| (1..=3).map(move |h| (t.slug.clone(), base + h)))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    // One tenant, by day: one row per meter and day.
    let day = expect(
        list(format!("tenant_id={}&granularity=day", b.id), &key)
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let total: i64 = day["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["meter"] == "api_requests")
        .map(|r| r["value"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 21 + 22 + 23);
    assert!(
        day["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["tenant_id"] == b.id.as_str())
    );
    // A cursor belongs to its filters.
    let first = expect(list("limit=1".into(), &key).await.unwrap(), StatusCode::OK).await;
    let c = first["next_cursor"].as_str().unwrap();
    expect_problem(
        list(format!("limit=1&meter=seats&cursor={c}"), &key)
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed_request",
    )
    .await;
    for (query, field) in [
        ("meter=bytes", "meter"),
        ("tenant_id=x", "tenant_id"),
        ("limit=0", "limit"),
    ] {
        let p = expect_problem(
            list(query.into(), &key).await.unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(p["errors"][0]["field"], field, "{query}");
    }
    // The CSV export: a header, then every row of the range.
    let res = app
        .root(
            Method::GET,
            &format!("/v1/platform/usage/export?format=csv&from={from}"),
        )
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = res.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "tenant_id,tenant_slug,meter,window_start,window_end,value,adjustments,final"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // 3 api_requests + 1 import_rows per tenant, plus the gauges of neither (no flush ran).
    assert_eq!(rows.len(), 8, "{csv}");
    let b_imports = rows
        .iter()
        .find(|r| r[1] == b.slug && r[2] == "import_rows")
        .unwrap();
    assert_eq!(
        (b_imports[0], b_imports[5], b_imports[6], b_imports[7]),
        (b.id.as_str(), "5", "0", "true")
    );
    // NDJSON: the same rows, one JSON object a line.
    let nd = app
        .root(
            Method::GET,
            &format!(
                "/v1/platform/usage/export?format=ndjson&from={from}&tenant_id={}",
                a.id
            ),
        )
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let objs: Vec<Value> = nd
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 4);
    assert!(objs.iter().all(|o| o["tenant_slug"] == a.slug.as_str()));
    let res = app
        .root(Method::GET, "/v1/platform/usage/export?format=xml")
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}
