//! The operator API: platform keys and scopes, the tenant endpoints, suspension and deletion
//! reaching every replica at once, the audit trail of operator actions, and the purge.

mod common;

use std::time::Duration;

use common::{TestApp, expect, expect_problem, tessera_command};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tessera::platform::Scope;

const ALL: &[Scope] = &[Scope::TenantsRead, Scope::TenantsWrite];

/// Runs the `tessera` binary on `app`'s database; returns (exit code, stdout, stderr).
fn cli(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let mut cmd = tessera_command();
    cmd.args(args);
    for (k, v) in app.db.cli_env() {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Creates a tenant through the operator API; returns the response body.
async fn create(app: &TestApp, key: &str, body: Value) -> Value {
    let res = app
        .root(Method::POST, "/v1/platform/tenants")
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect(res, StatusCode::CREATED).await
}

fn new_tenant(slug: &str) -> Value {
    json!({
        "tenant": {"slug": slug, "name": format!("Tenant {slug}")},
        "owner": {"email": format!("boss@{slug}.test"), "name": "Boss"}
    })
}

async fn patch(app: &TestApp, key: &str, id: &str, body: Value) -> reqwest::Response {
    app.root(Method::PATCH, &format!("/v1/platform/tenants/{id}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The tenant's audit events as (action, actor_type, actor_id), oldest first.
async fn audit(app: &TestApp, tenant: &str) -> Vec<(String, String, Option<String>)> {
    app.db
        .admin()
        .await
        .query(
            "SELECT action, actor_type, actor_id::text FROM audit_events \
             WHERE tenant_id = $1::text::uuid ORDER BY seq",
            &[&tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[actix_web::test]
async fn only_a_live_platform_key_authenticates_and_scopes_decide() {
    let app = TestApp::spawn_with(|c| c.platform.key_cache_secs = 1).await;
    let t = app.signup().await;
    let (_, read) = app.platform_key(&[Scope::TenantsRead]).await;
    let (_, write) = app.platform_key(&[Scope::TenantsWrite]).await;
    let list = || app.root(Method::GET, "/v1/platform/tenants");

    // No credential, a tenant's access token, an API-key-shaped token, a malformed or unknown
    // platform key: the same 401 with a Bearer challenge.
    let unknown = format!("tpk_{}", "A".repeat(43));
    let short = format!("tpk_{}", "A".repeat(42));
    for token in [
        None,
        Some(t.access.as_str()),
        Some("tsk_abc"),
        Some(&short),
        Some(&unknown),
    ] {
        let req = match token {
            Some(tk) => list().bearer_auth(tk),
            None => list(),
        };
        let res = req.send().await.unwrap();
        assert_eq!(res.headers()["www-authenticate"], "Bearer", "{token:?}");
        expect_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
    // The right scope passes; a missing one is 403 naming it.
    expect(
        list().bearer_auth(&read).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let body = expect_problem(
        list().bearer_auth(&write).send().await.unwrap(),
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(body["permission"], "tenants:read");
    let res = app
        .root(Method::POST, "/v1/platform/tenants")
        .bearer_auth(&read)
        .json(&new_tenant("scoped"))
        .send()
        .await
        .unwrap();
    let body = expect_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(body["permission"], "tenants:write");
    // On a tenant host the operator API does not exist, whatever the key.
    let res = app
        .on(&t.slug, Method::GET, "/v1/platform/tenants")
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[actix_web::test]
async fn the_keys_cli_creates_lists_and_revokes_and_a_revoked_key_stops_within_the_cache_bound() {
    let app = TestApp::spawn_with(|c| c.platform.key_cache_secs = 1).await;
    let (code, out, err) = cli(
        &app,
        &[
            "platform",
            "keys",
            "create",
            "--name",
            "billing",
            "--scope",
            "tenants:read",
            "--scope",
            "usage:read",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let key = out
        .lines()
        .find(|l| l.starts_with("tpk_"))
        .expect("the key is printed")
        .to_string();
    assert_eq!(key.len(), 47, "{key}");
    let id = out.split_whitespace().nth(2).unwrap().to_string();

    let (code, _, err) = cli(
        &app,
        &[
            "platform",
            "keys",
            "create",
            "--name",
            "x",
            "--scope",
            "tenants:admin",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tenants:admin"), "{err}");

    let (code, out, _) = cli(&app, &["platform", "keys", "list"]);
    assert_eq!(code, 0);
    let row = out.lines().find(|l| l.starts_with(&id)).expect("listed");
    assert!(
        row.contains("billing") && row.contains("tenants:read,usage:read"),
        "{row}"
    );
    assert!(row.ends_with("\t-"), "not revoked: {row}");
    assert!(!out.contains(&key[4..]), "the key is never listed");

    let get = || {
        app.root(Method::GET, "/v1/platform/plans")
            .bearer_auth(&key)
    };
    let plans = expect(get().send().await.unwrap(), StatusCode::OK).await;
    let names: Vec<&str> = plans["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"enterprise") && names.contains(&"free"),
        "{names:?}"
    );
    assert!(plans["data"][0]["rate"]["burst"].is_u64(), "{plans}");

    let (code, out, err) = cli(&app, &["platform", "keys", "revoke", &id]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = cli(&app, &["platform", "keys", "list"]);
    assert!(
        !out.lines()
            .find(|l| l.starts_with(&id))
            .unwrap()
            .ends_with("\t-")
    );
    // The verified key was cached a moment ago; past `platform.key_cache_secs` it is refused.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect_problem(
        get().send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;

    let (code, _, err) = cli(
        &app,
        &[
            "platform",
            "keys",
            "revoke",
            &uuid::Uuid::now_v7().to_string(),
        ],
    );
    assert_eq!(code, 1, "{err}");
}

#[actix_web::test]
async fn tenants_list_in_pages_with_filters() {
    let app = TestApp::spawn().await;
    let (_, key) = app.platform_key(ALL).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.signup().await.id);
    }
    let suspended = &ids[1];
    expect(
        patch(&app, &key, suspended, json!({"status": "suspended"})).await,
        StatusCode::OK,
    )
    .await;
    let page = |q: String| {
        app.root(Method::GET, &format!("/v1/platform/tenants?{q}"))
            .bearer_auth(&key)
            .send()
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".into(),
        };
        let body = expect(page(q).await.unwrap(), StatusCode::OK).await;
        let data = body["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every tenant once, oldest first");

    let body = expect(
        page("status=suspended".into()).await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["id"], suspended.as_str());
    assert_eq!(body["data"][0]["limits"]["quotas"]["seats"], 3, "{body}");
    let body = expect(page("plan=pro".into()).await.unwrap(), StatusCode::OK).await;
    assert!(body["data"].as_array().unwrap().is_empty());

    for q in ["limit=201", "limit=0", "status=gone", "colour=red"] {
        expect_problem(
            page(q.into()).await.unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    // A cursor opens only for the list it came from.
    let first = expect(page("limit=1".into()).await.unwrap(), StatusCode::OK).await;
    let c = first["next_cursor"].as_str().unwrap();
    for q in [
        format!("limit=1&status=active&cursor={c}"),
        "cursor=nonsense".into(),
    ] {
        expect_problem(
            page(q).await.unwrap(),
            StatusCode::BAD_REQUEST,
            "malformed_request",
        )
        .await;
    }
}

#[actix_web::test]
async fn create_makes_an_active_tenant_whose_owner_can_log_in_and_audits_it() {
    let app = TestApp::spawn().await;
    let (key_id, key) = app.platform_key(ALL).await;
    // Any configured plan, not only the self-serve ones; overrides at once.
    let mut body = new_tenant("opcreated");
    body["plan"] = json!("enterprise");
    body["quota_overrides"] = json!({"records": 7});
    let created = create(&app, &key, body).await;
    let tenant = &created["tenant"];
    assert_eq!(tenant["status"], "active");
    assert_eq!(tenant["plan"], "enterprise");
    assert_eq!(tenant["limits"]["quotas"]["records"], 7);
    assert_eq!(tenant["limits"]["quotas"]["seats"], 5000);
    assert_eq!(created["owner"]["email"], "boss@opcreated.test");
    let password = created["generated_password"].as_str().unwrap();
    app.login("opcreated", "boss@opcreated.test", password)
        .await;

    // A chosen password is used, and none is returned.
    let mut body = new_tenant("withpw");
    body["owner"]["password"] = json!("a long enough password");
    let created2 = create(&app, &key, body).await;
    assert!(created2.get("generated_password").is_none(), "{created2}");
    app.login("withpw", "boss@withpw.test", "a long enough password")
        .await;

    let post = |body: Value| {
        app.root(Method::POST, "/v1/platform/tenants")
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    expect_problem(
        post(new_tenant("opcreated")).await.unwrap(),
        StatusCode::CONFLICT,
        "slug_taken",
    )
    .await;
    let mut unknown_plan = new_tenant("plancheck");
    unknown_plan["plan"] = json!("platinum");
    let mut bad_rate = new_tenant("ratecheck");
    bad_rate["rate_overrides"] = json!({"burst": 0});
    let mut short_pw = new_tenant("pwcheck");
    short_pw["owner"]["password"] = json!("short");
    for (body, field) in [
        (unknown_plan, "plan"),
        (bad_rate, "rate_overrides.burst"),
        (new_tenant("www"), "tenant.slug"),
        (short_pw, "owner.password"),
        (
            json!({"tenant": {"slug": "x1x", "name": "X"}, "owner": {"email": "a@b.co", "name": "A"}, "tenant_id": "x"}),
            "tenant_id",
        ),
    ] {
        let res = post(body).await.unwrap();
        let problem =
            expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{field}: {problem}"
        );
    }
    // Refused creates left nothing behind.
    assert!(
        !app.db
            .tenant_slugs()
            .await
            .contains(&"plancheck".to_string())
    );

    let id = tenant["id"].as_str().unwrap();
    assert_eq!(
        audit(&app, id).await[0],
        ("tenant.created".into(), "platform".into(), Some(key_id))
    );
}

#[actix_web::test]
async fn patch_validates_merges_overrides_and_honours_if_match() {
    let app = TestApp::spawn().await;
    let (key_id, key) = app.platform_key(ALL).await;
    let t = app.signup().await;
    let get = || {
        app.root(Method::GET, &format!("/v1/platform/tenants/{}", t.id))
            .bearer_auth(&key)
            .send()
    };
    let before = expect(get().await.unwrap(), StatusCode::OK).await;
    let version = before["version"].as_i64().unwrap();

    for (body, field) in [
        (json!({"plan": "platinum"}), "plan"),
        (json!({"status": "deleted"}), "status"),
        (json!({"name": " "}), "name"),
        (json!({"slug": "other"}), "slug"),
        (
            json!({"quota_overrides": {"recordz": 1}}),
            "quota_overrides.recordz",
        ),
        (
            json!({"quota_overrides": {"records": -1}}),
            "quota_overrides.records",
        ),
        (
            json!({"rate_overrides": {"burst": 0}}),
            "rate_overrides.burst",
        ),
        (
            json!({"rate_overrides": {"statement_timeout_ms": 99999999}}),
            "rate_overrides.statement_timeout_ms",
        ),
    ] {
        let res = patch(&app, &key, &t.id, body.clone()).await;
        let problem =
            expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{body}: {problem}"
        );
    }
    let stale = app
        .root(Method::PATCH, &format!("/v1/platform/tenants/{}", t.id))
        .bearer_auth(&key)
        .header("if-match", format!("\"{}\"", version + 7))
        .json(&json!({"plan": "pro"}))
        .send()
        .await
        .unwrap();
    expect_problem(stale, StatusCode::PRECONDITION_FAILED, "version_conflict").await;
    assert_eq!(
        expect(get().await.unwrap(), StatusCode::OK).await,
        before,
        "nothing changed"
    );

    let res = app
        .root(Method::PATCH, &format!("/v1/platform/tenants/{}", t.id))
        .bearer_auth(&key)
        .header("if-match", format!("\"{version}\""))
        .json(&json!({"plan": "pro", "quota_overrides": {"records": 9, "seats": 2}, "rate_overrides": {"burst": 5}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["etag"], format!("\"{}\"", version + 1));
    let after = expect(res, StatusCode::OK).await;
    assert_eq!(after["plan"], "pro");
    assert_eq!(after["limits"]["quotas"]["records"], 9);
    assert_eq!(after["limits"]["quotas"]["seats"], 2);
    assert_eq!(
        after["limits"]["rate"],
        // The test plans' rate (test_config raises it), the override's burst.
        json!({"requests_per_second": app.state.config.plans.get("pro").unwrap().rate.requests_per_second, "burst": 5})
    );
    // A merge: `null` removes one override, absent keys stay.
    let after = expect(
        patch(
            &app,
            &key,
            &t.id,
            json!({"quota_overrides": {"seats": null}}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(after["quota_overrides"], json!({"records": 9}));
    assert_eq!(after["limits"]["quotas"]["seats"], 50, "the plan's again");
    // The tenant sees its new plan at once (its own process: no TTL to wait out).
    let me = expect(
        app.as_tenant(&t, Method::GET, "/v1/me")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["tenant"]["plan"], "pro");

    for id in [
        uuid::Uuid::now_v7().to_string(),
        "NOT-A-UUID".into(),
        t.id.to_uppercase(),
    ] {
        let res = app
            .root(Method::GET, &format!("/v1/platform/tenants/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        expect_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        expect_problem(
            patch(&app, &key, &id, json!({"plan": "pro"})).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    let events = audit(&app, &t.id).await;
    let ours: Vec<_> = events.iter().filter(|e| e.1 == "platform").collect();
    assert_eq!(ours.len(), 2, "{events:?}");
    assert!(
        ours.iter()
            .all(|e| e.0 == "tenant.updated" && e.2.as_deref() == Some(key_id.as_str()))
    );
}

#[actix_web::test]
async fn suspension_and_deletion_close_every_door_of_the_tenant() {
    let app = TestApp::spawn().await;
    let (key_id, key) = app.platform_key(ALL).await;
    let t = app.signup().await;
    let login = || {
        app.on(&t.slug, Method::POST, "/v1/auth/login")
            .json(&json!({"email": t.email, "password": t.password}))
            .send()
    };
    expect(
        patch(&app, &key, &t.id, json!({"status": "suspended"})).await,
        StatusCode::OK,
    )
    .await;
    for res in [
        app.as_tenant(&t, Method::GET, "/v1/me")
            .send()
            .await
            .unwrap(),
        app.root(Method::GET, "/v1/me")
            .bearer_auth(&t.access)
            .send()
            .await
            .unwrap(),
        login().await.unwrap(),
    ] {
        expect_problem(res, StatusCode::FORBIDDEN, "tenant_suspended").await;
    }
    expect(
        patch(&app, &key, &t.id, json!({"status": "active"})).await,
        StatusCode::OK,
    )
    .await;
    expect(login().await.unwrap(), StatusCode::OK).await;

    let del = || {
        app.root(Method::DELETE, &format!("/v1/platform/tenants/{}", t.id))
            .bearer_auth(&key)
            .send()
    };
    expect(del().await.unwrap(), StatusCode::NO_CONTENT).await;
    expect(del().await.unwrap(), StatusCode::NO_CONTENT).await;
    for res in [
        app.as_tenant(&t, Method::GET, "/v1/me")
            .send()
            .await
            .unwrap(),
        login().await.unwrap(),
    ] {
        expect_problem(res, StatusCode::NOT_FOUND, "tenant_not_found").await;
    }
    let gone = expect(
        app.root(Method::GET, &format!("/v1/platform/tenants/{}", t.id))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(gone["status"], "deleted");
    let deleted_at: chrono::DateTime<chrono::Utc> =
        gone["deleted_at"].as_str().unwrap().parse().unwrap();
    let purge_after: chrono::DateTime<chrono::Utc> =
        gone["purge_after"].as_str().unwrap().parse().unwrap();
    assert_eq!(purge_after - deleted_at, chrono::Duration::days(30));
    expect_problem(
        patch(&app, &key, &t.id, json!({"status": "active"})).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    // The slug stays taken.
    let res = app
        .root(Method::POST, "/v1/platform/tenants")
        .bearer_auth(&key)
        .json(&new_tenant(&t.slug))
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::CONFLICT, "slug_taken").await;

    let ops: Vec<_> = audit(&app, &t.id)
        .await
        .into_iter()
        .filter(|e| e.1 == "platform")
        .collect();
    let key_id = Some(key_id);
    assert_eq!(
        ops,
        [
            ("tenant.suspended".into(), "platform".into(), key_id.clone()),
            (
                "tenant.reactivated".into(),
                "platform".into(),
                key_id.clone()
            ),
            ("tenant.deleted".into(), "platform".into(), key_id),
        ]
    );
}

/// Two server processes on one database, each caching tenants for five minutes: a change made
/// through one is seen by the other on its next request, which only the notification explains.
#[actix_web::test]
async fn a_change_through_one_replica_is_seen_by_the_other_on_its_next_request() {
    let a = TestApp::spawn_with(|c| c.tenancy.cache_secs = 300).await;
    let b = a.replica(|c| c.tenancy.cache_secs = 300).await;
    let (_, key) = a.platform_key(ALL).await;
    let t = a.signup().await;
    let me_on_b = || async { b.as_tenant(&t, Method::GET, "/v1/me").send().await.unwrap() };
    let me = expect(me_on_b().await, StatusCode::OK).await;
    assert_eq!(me["tenant"]["plan"], "free");

    // Control: a change that announces nothing is not seen by B (its cache is that long).
    a.db.admin()
        .await
        .execute(
            "UPDATE tenants SET name = 'Renamed quietly' WHERE id = $1::text::uuid",
            &[&t.id],
        )
        .await
        .unwrap();
    let me = expect(me_on_b().await, StatusCode::OK).await;
    assert_ne!(
        me["tenant"]["name"], "Renamed quietly",
        "B serves its cached tenant"
    );

    // A notification travels database → B's listener in a few milliseconds; the pause is there
    // only so the test does not race it, and is 1500 times shorter than the cache's TTL.
    let settle = || tokio::time::sleep(Duration::from_millis(200));
    expect(
        patch(&a, &key, &t.id, json!({"status": "suspended"})).await,
        StatusCode::OK,
    )
    .await;
    settle().await;
    expect_problem(me_on_b().await, StatusCode::FORBIDDEN, "tenant_suspended").await;

    expect(
        patch(&a, &key, &t.id, json!({"status": "active", "plan": "pro"})).await,
        StatusCode::OK,
    )
    .await;
    settle().await;
    let me = expect(me_on_b().await, StatusCode::OK).await;
    assert_eq!(me["tenant"]["plan"], "pro");

    let res = a
        .root(Method::DELETE, &format!("/v1/platform/tenants/{}", t.id))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    expect(res, StatusCode::NO_CONTENT).await;
    settle().await;
    expect_problem(me_on_b().await, StatusCode::NOT_FOUND, "tenant_not_found").await;
}

#[actix_web::test]
async fn purge_removes_a_deleted_tenants_data_after_its_grace_and_abandoned_signups() {
    let app = TestApp::spawn().await;
    let (_, key) = app.platform_key(ALL).await;
    let gone = app.signup().await;
    let in_grace = app.signup().await;
    let live = app.signup().await;
    for t in [&gone, &in_grace, &live] {
        app.create_contact(
            t,
            json!({"first_name": "Kept", "email": format!("c@{}.test", t.slug)}),
        )
        .await;
    }
    for t in [&gone, &in_grace] {
        let res = app
            .root(Method::DELETE, &format!("/v1/platform/tenants/{}", t.id))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        expect(res, StatusCode::NO_CONTENT).await;
    }
    let admin = app.db.admin().await;
    // `gone`'s grace is over; it has billed usage. An abandoned signup two hours old, and one
    // that is merely in progress.
    admin
        .batch_execute(&format!(
            "UPDATE tenants SET purge_after = now() - interval '1 minute' WHERE id = '{g}';
             INSERT INTO usage_windows (tenant_id, meter, window_start, value, updated_at)
               VALUES ('{g}', 'api_requests', date_trunc('hour', now()), 42, now());
             INSERT INTO tenants (id, slug, name, plan, status, created_at, updated_at)
               VALUES ('{a}', 'abandoned', 'A', 'free', 'provisioning',
                       now() - interval '2 hours', now() - interval '2 hours'),
                      ('{b}', 'inprogress', 'B', 'free', 'provisioning', now(), now());
             INSERT INTO audit_heads VALUES ('{a}', 1);
             INSERT INTO audit_events (tenant_id, seq, id, action, actor_type)
               VALUES ('{a}', 1, '{a}', 'tenant.created', 'user');",
            g = gone.id,
            a = uuid::Uuid::now_v7(),
            b = uuid::Uuid::now_v7(),
        ))
        .await
        .unwrap();
    let count = |table: &'static str, tenant: String| {
        let admin = &admin;
        async move {
            admin
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE tenant_id = $1::text::uuid"),
                    &[&tenant],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    // The audit trail stays append-only for tenants that are not due.
    let refused = admin
        .execute(
            "DELETE FROM audit_events WHERE tenant_id = $1::text::uuid",
            &[&in_grace.id],
        )
        .await;
    let refused = refused.unwrap_err();
    let message = refused.as_db_error().map(|e| e.message().to_string());
    assert_eq!(message.as_deref(), Some("audit_events is append-only"));

    let (code, out, err) = cli(&app, &["platform", "purge"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("tenant {} (", gone.slug)), "{out}");
    assert!(out.contains("tenant abandoned ("), "{out}");
    assert!(out.contains("purged 2 tenant(s)"), "{out}");

    for table in [
        "users",
        "contacts",
        "audit_events",
        "audit_heads",
        "roles",
        "quota_counters",
    ] {
        assert_eq!(
            count(table, gone.id.clone()).await,
            0,
            "{table} of the purged tenant"
        );
        assert!(
            count(table, in_grace.id.clone()).await > 0,
            "{table} of the tenant in grace"
        );
        assert!(
            count(table, live.id.clone()).await > 0,
            "{table} of the live tenant"
        );
    }
    assert_eq!(
        count("usage_windows", gone.id.clone()).await,
        1,
        "usage kept for billing"
    );
    let slugs = app.db.tenant_slugs().await;
    assert!(
        slugs.contains(&gone.slug),
        "the purged tenant's row (and slug) stays"
    );
    assert!(!slugs.contains(&"abandoned".to_string()), "{slugs:?}");
    assert!(slugs.contains(&"inprogress".to_string()), "{slugs:?}");
    let res = app
        .root(Method::POST, "/v1/platform/tenants")
        .bearer_auth(&key)
        .json(&new_tenant(&gone.slug))
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::CONFLICT, "slug_taken").await;

    // A second run finds only the already-purged tenant, with nothing left to remove.
    let (code, out, _) = cli(&app, &["platform", "purge"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("0 row(s)") && out.contains("purged 1 tenant(s)"),
        "{out}"
    );
}
