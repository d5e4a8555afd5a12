//! Quotas: O(1) counters in the write transaction, 402 `quota_exceeded` with `quota`, `limit`,
//! `used`; exactly one winner at the edge under concurrency; delete frees, restore re-checks;
//! `tessera usage reconcile` finds and fixes drift.

mod common;

use common::*;
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn create(app: &TestApp, t: &Tenant, i: usize) -> reqwest::Response {
    app.as_tenant(t, Method::POST, "/v1/contacts")
        .json(&json!({"first_name": format!("C{i}")}))
        .send()
        .await
        .unwrap()
}

async fn tenant_view(app: &TestApp, t: &Tenant) -> Value {
    expect(
        app.as_tenant(t, Method::GET, "/v1/tenant")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await
}

#[actix_web::test]
async fn fifty_concurrent_creates_at_quota_minus_one_admit_exactly_one() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    app.set_overrides(&a, json!({"records": 5}), json!({}))
        .await;
    for i in 0..4 {
        expect(create(&app, &a, i).await, StatusCode::CREATED).await;
    }
    let results = join_all((0..50).map(|i| create(&app, &a, 100 + i))).await;
    let mut created = 0;
    for res in results {
        match res.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::PAYMENT_REQUIRED => {
                let p = expect_problem(res, StatusCode::PAYMENT_REQUIRED, "quota_exceeded").await;
                assert_eq!(p["quota"], "records");
                assert_eq!(p["limit"], 5);
                assert_eq!(p["used"], 5);
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1);
    let v = tenant_view(&app, &a).await;
    assert_eq!(
        v["usage"]["records"],
        json!({"used": 5, "limit": 5, "remaining": 0})
    );
    // The database agrees: five live contacts.
    let n: i64 = app
        .db
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM contacts WHERE tenant_id = $1 AND deleted_at IS NULL",
            &[&uuid::Uuid::parse_str(&a.id).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5);
    // Another tenant's quota is its own.
    expect(create(&app, &b, 0).await, StatusCode::CREATED).await;
    assert_eq!(tenant_view(&app, &b).await["usage"]["records"]["used"], 1);
}

#[actix_web::test]
async fn delete_frees_capacity_and_restore_checks_it_again() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    app.set_overrides(&a, json!({"records": 2}), json!({}))
        .await;
    let first = expect(create(&app, &a, 1).await, StatusCode::CREATED).await;
    expect(create(&app, &a, 2).await, StatusCode::CREATED).await;
    expect_problem(
        create(&app, &a, 3).await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    let id = first["id"].as_str().unwrap();
    let res = app
        .as_tenant(&a, Method::DELETE, &format!("/v1/contacts/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // The freed unit is taken by a new contact…
    let third = expect(create(&app, &a, 3).await, StatusCode::CREATED).await;
    // …so restoring the deleted one is over the quota again.
    let restore = |id: String| {
        app.as_tenant(&a, Method::POST, &format!("/v1/contacts/{id}/restore"))
            .send()
    };
    let p = expect_problem(
        restore(id.to_string()).await.unwrap(),
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    assert_eq!(
        (p["limit"].clone(), p["used"].clone()),
        (json!(2), json!(2))
    );
    // Delete another, and the restore goes through, bumping the version.
    let res = app
        .as_tenant(
            &a,
            Method::DELETE,
            &format!("/v1/contacts/{}", third["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let restored = expect(restore(id.to_string()).await.unwrap(), StatusCode::OK).await;
    assert_eq!(restored["id"], first["id"]);
    assert_eq!(restored["version"], 3);
    expect(
        app.as_tenant(&a, Method::GET, &format!("/v1/contacts/{id}"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    // A live contact cannot be restored; neither can another tenant's deleted one.
    expect_problem(
        restore(id.to_string()).await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let b = app.signup().await;
    let theirs = expect(create(&app, &b, 1).await, StatusCode::CREATED).await;
    let tid = theirs["id"].as_str().unwrap();
    app.as_tenant(&b, Method::DELETE, &format!("/v1/contacts/{tid}"))
        .send()
        .await
        .unwrap();
    expect_problem(
        restore(tid.to_string()).await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(tenant_view(&app, &a).await["usage"]["records"]["used"], 2);
}

#[actix_web::test]
async fn restore_is_refused_when_a_live_contact_took_the_email() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let c = app
        .create_contact(&a, json!({"email": "same@example.com"}))
        .await;
    let id = c["id"].as_str().unwrap();
    app.as_tenant(&a, Method::DELETE, &format!("/v1/contacts/{id}"))
        .send()
        .await
        .unwrap();
    app.create_contact(&a, json!({"email": "same@example.com"}))
        .await;
    let res = app
        .as_tenant(&a, Method::POST, &format!("/v1/contacts/{id}/restore"))
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::CONFLICT, "conflict").await;
    // The failed restore gave its unit back.
    assert_eq!(tenant_view(&app, &a).await["usage"]["records"]["used"], 1);
}

#[actix_web::test]
async fn signup_counts_the_owner_seat_and_the_plan_decides_limits() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let v = tenant_view(&app, &a).await;
    assert_eq!(v["plan"], "free");
    assert_eq!(
        v["usage"]["seats"],
        json!({"used": 1, "limit": 3, "remaining": 2})
    );
    assert_eq!(v["limits"]["quotas"]["records"], 1000);
    app.add_user(&a, "member").await;
    assert_eq!(tenant_view(&app, &a).await["usage"]["seats"]["used"], 2);
    // Signup may name a self-serve plan, not another.
    let res = app
        .root(Method::POST, "/v1/signup")
        .json(&json!({"tenant": {"slug": "pro-shop", "name": "Pro"},
                      "user": {"email": "o@pro.test", "password": "correct horse battery", "name": "O"},
                      "plan": "pro"}))
        .send()
        .await
        .unwrap();
    let body = expect(res, StatusCode::CREATED).await;
    assert_eq!(body["tenant"]["plan"], "pro");
    assert_eq!(body["tenant"]["status"], "active");
    let res = app
        .root(Method::POST, "/v1/signup")
        .json(&json!({"tenant": {"slug": "big-co", "name": "Big"},
                      "user": {"email": "o@big.test", "password": "correct horse battery", "name": "O"},
                      "plan": "enterprise"}))
        .send()
        .await
        .unwrap();
    let p = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(p["errors"][0]["field"], "plan");
    // The refused signup left no tenant behind, and its slug is free.
    assert!(!app.db.tenant_slugs().await.contains(&"big-co".to_string()));
}

#[actix_web::test]
async fn a_failed_signup_releases_its_slug() {
    let app = TestApp::spawn().await;
    // A trigger makes the owner's insert fail: signup's tenant transaction rolls back after the
    // slug was reserved on the platform path.
    let admin = app.db.admin().await;
    execute_each(
        &admin,
        // Citus (harmless elsewhere): a trigger on a distributed table must be allowed.
        "SET citus.enable_unsafe_triggers TO on; \
         CREATE FUNCTION refuse_users() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN RAISE EXCEPTION 'refused for the test'; END $$; \
         CREATE TRIGGER refuse_users BEFORE INSERT ON users FOR EACH ROW \
           EXECUTE FUNCTION refuse_users();",
    )
    .await
    .unwrap();
    let body = json!({"tenant": {"slug": "retry-me", "name": "R"},
                      "user": {"email": "o@r.test", "password": "correct horse battery", "name": "O"}});
    let res = app
        .root(Method::POST, "/v1/signup")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(app.db.tenant_slugs().await.is_empty());
    execute_each(&admin, "DROP TRIGGER refuse_users ON users;")
        .await
        .unwrap();
    let res = app
        .root(Method::POST, "/v1/signup")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect(res, StatusCode::CREATED).await;
}

#[actix_web::test]
async fn reconcile_reports_drift_and_fix_repairs_it() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    for i in 0..3 {
        expect(create(&app, &a, i).await, StatusCode::CREATED).await;
    }
    let run = |fix: bool| {
        let mut cmd = tessera_command();
        cmd.args(["usage", "reconcile"]);
        if fix {
            cmd.arg("--fix");
        }
        cmd.env("TESSERA_DATABASE__URL", app.db.app_url());
        cmd.output().unwrap()
    };
    let clean = run(false);
    let out = String::from_utf8_lossy(&clean.stdout);
    assert!(clean.status.success(), "{out}");
    assert!(out.contains("2 tenant(s) checked, 0 drifted"), "{out}");
    // Drift: a counter edited by hand, and a contact deleted behind the counter's back.
    let admin = app.db.admin().await;
    let a_id = uuid::Uuid::parse_str(&a.id).unwrap();
    admin
        .execute(
            "UPDATE quota_counters SET records = 42 WHERE tenant_id = $1",
            &[&a_id],
        )
        .await
        .unwrap();
    admin
        .execute(
            "DELETE FROM quota_counters WHERE tenant_id = $1",
            &[&uuid::Uuid::parse_str(&b.id).unwrap()],
        )
        .await
        .unwrap();
    let drift = run(false);
    let out = String::from_utf8_lossy(&drift.stdout);
    assert!(!drift.status.success(), "{out}");
    assert!(out.contains(&format!("tenant {}", a.slug)), "{out}");
    assert!(out.contains("records counted 42, actual 3"), "{out}");
    assert!(out.contains("seats counted 0, actual 1"), "{out}");
    let fixed = run(true);
    let out = String::from_utf8_lossy(&fixed.stdout);
    assert!(fixed.status.success(), "{out}");
    assert!(out.contains("2 drifted, all fixed"), "{out}");
    let again = run(false);
    assert!(again.status.success());
    assert_eq!(tenant_view(&app, &a).await["usage"]["records"]["used"], 3);
}
