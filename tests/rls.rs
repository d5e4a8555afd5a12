//! Row-level security: the catalogue guard (and proof that it catches each weakening), the startup
//! guard refusing a bypassing role, RLS behaviour as the real app role (the audit trail
//! append-only, its head forward-only), and the pool never carrying tenant context from one
//! borrower to the next.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tessera::db::guard;

#[actix_web::test]
async fn guard_passes_on_the_migrated_schema_as_the_app_role() {
    let app = TestApp::spawn().await;
    let checks = guard::run(&app.state.door).await.unwrap();
    // Three more on Citus (tests/citus.rs proves each can fail).
    let expected = if app.db.cluster.is_citus() { 10 } else { 7 };
    assert_eq!(checks.len(), expected);
    assert!(failed(&checks).is_empty(), "{:?}", failed(&checks));
}

#[actix_web::test]
async fn guard_catches_a_table_without_forced_rls() {
    let app = TestApp::spawn().await;
    let admin = app.db.admin().await;
    admin
        .batch_execute("ALTER TABLE contacts NO FORCE ROW LEVEL SECURITY")
        .await
        .unwrap();
    let f = failed(&guard::run(&app.state.door).await.unwrap());
    assert!(
        f.iter()
            .any(|m| m.contains("forced") && m.contains("public.contacts")),
        "{f:?}"
    );
}

#[actix_web::test]
async fn guard_catches_a_table_with_rls_disabled_or_a_new_unprotected_table() {
    let app = TestApp::spawn().await;
    let admin = app.db.admin().await;
    execute_each(
        &admin,
        "ALTER TABLE users DISABLE ROW LEVEL SECURITY; \
             CREATE TABLE notes (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id)); \
             GRANT SELECT ON notes TO tessera_app;",
    )
    .await
    .unwrap();
    let f = failed(&guard::run(&app.state.door).await.unwrap());
    let joined = f.join(" | ");
    assert!(joined.contains("public.users"), "{joined}");
    assert!(joined.contains("public.notes"), "{joined}");
}

#[actix_web::test]
async fn guard_catches_a_missing_or_check_less_policy() {
    let app = TestApp::spawn().await;
    let admin = app.db.admin().await;
    execute_each(
        &admin,
        "DROP POLICY tenant_isolation ON roles; \
             DROP POLICY tenant_isolation ON contacts; \
             CREATE POLICY read_only ON contacts FOR SELECT \
                 USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);",
    )
    .await
    .unwrap();
    let f = failed(&guard::run(&app.state.door).await.unwrap());
    let joined = f.join(" | ");
    assert!(
        joined.contains("public.roles") && joined.contains("public.contacts"),
        "{joined}"
    );
}

async fn make_role(app: &TestApp, attrs: &str) -> String {
    let role = format!("r_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let admin = app.db.admin().await;
    execute_each(
        &admin,
        &format!(
            "CREATE ROLE {role} LOGIN {attrs}; GRANT USAGE ON SCHEMA public TO {role}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
        ),
    )
    .await
    .unwrap();
    role
}

fn url_as(app: &TestApp, role: &str) -> String {
    let mut u = url::Url::parse(&app.db.admin_url()).unwrap();
    u.set_username(role).unwrap();
    u.to_string()
}

#[actix_web::test]
async fn guard_refuses_bypassrls_superuser_owner_and_privileged_membership() {
    let app = TestApp::spawn().await;
    // BYPASSRLS.
    let bypass = make_role(&app, "BYPASSRLS").await;
    let f = failed(&guard::run(&door_for(&url_as(&app, &bypass))).await.unwrap());
    assert!(f.iter().any(|m| m.contains("bypass")), "{f:?}");
    // Superuser.
    let f = failed(&guard::run(&door_for(&app.db.admin_url())).await.unwrap());
    assert!(f.iter().any(|m| m.contains("superuser")), "{f:?}");
    // Owner of a tenant table.
    let owner = make_role(&app, "").await;
    app.db
        .admin()
        .await
        .batch_execute(&format!("ALTER TABLE contacts OWNER TO {owner}"))
        .await
        .unwrap();
    let f = failed(&guard::run(&door_for(&url_as(&app, &owner))).await.unwrap());
    assert!(
        f.iter()
            .any(|m| m.contains("owns") && m.contains("contacts")),
        "{f:?}"
    );
    // Member of a BYPASSRLS role (could SET ROLE to it).
    let member = make_role(&app, "").await;
    app.db
        .admin()
        .await
        .batch_execute(&format!("GRANT {bypass} TO {member}"))
        .await
        .unwrap();
    let f = failed(&guard::run(&door_for(&url_as(&app, &member))).await.unwrap());
    assert!(f.iter().any(|m| m.contains(&bypass)), "{f:?}");
}

fn tessera(args: &[&str], envs: &[(&str, String)]) -> std::process::Output {
    let mut cmd = tessera_command();
    cmd.args(args).env("TESSERA_HTTP__BIND", "127.0.0.1:0");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    // `serve` must refuse before binding; a hang would fail the test through the wait below.
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()).ok());
    rx.recv_timeout(Duration::from_secs(60))
        .expect("command finished")
        .unwrap()
}

#[actix_web::test]
async fn serve_refuses_to_start_with_a_role_that_can_bypass_rls() {
    let app = TestApp::spawn().await;
    let bypass = make_role(&app, "BYPASSRLS").await;
    for url in [url_as(&app, &bypass), app.db.admin_url()] {
        let out = tessera(&["serve"], &[("TESSERA_DATABASE__URL", url.clone())]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "serve started as {url}: {stderr}");
        assert!(stderr.contains("refusing to start"), "{stderr}");
    }
}

#[actix_web::test]
async fn doctor_prints_every_check_and_fails_for_a_bypassing_role() {
    let app = TestApp::spawn().await;
    let ok = tessera(&["doctor"], &[("TESSERA_DATABASE__URL", app.db.app_url())]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Both roles' checks; three more on Citus: placement, shards, SET LOCAL propagation.
    let checks = if app.db.cluster.is_citus() { 18 } else { 15 };
    assert_eq!(stdout.matches("[pass]").count(), checks, "{stdout}");
    assert!(
        stdout.contains("[pass] server messages in English"),
        "{stdout}"
    );
    let bypass = make_role(&app, "BYPASSRLS").await;
    let bad = tessera(
        &["doctor"],
        &[("TESSERA_DATABASE__URL", url_as(&app, &bypass))],
    );
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success());
    assert!(stdout.contains("[FAIL] role cannot bypass RLS"), "{stdout}");
}

#[actix_web::test]
async fn invalid_config_exits_2_naming_the_key() {
    let out = tessera(
        &["doctor"],
        &[("TESSERA_DATABASE__POOL_SIZE", "lots".into())],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database.pool_size"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[actix_web::test]
async fn app_role_sql_cannot_see_or_touch_another_tenants_rows() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    let x = app
        .create_contact(&a, json!({"first_name": "A-only"}))
        .await;
    let x_id: uuid::Uuid = x["id"].as_str().unwrap().parse().unwrap();
    let a_id: uuid::Uuid = a.id.parse().unwrap();
    let db = app.db.as_app().await;
    // No context at all: nothing is visible.
    let n: i64 = db
        .query_one("SELECT count(*) FROM contacts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    db.batch_execute(&format!("BEGIN; SET LOCAL app.tenant_id = '{}'", b.id))
        .await
        .unwrap();
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM contacts WHERE tenant_id = $1",
            &[&a_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "B sees A's rows");
    let updated = db
        .execute(
            "UPDATE contacts SET first_name = 'pwned' WHERE id = $1",
            &[&x_id],
        )
        .await
        .unwrap();
    assert_eq!(updated, 0, "B updated A's row");
    let err = db
        .execute(
            "INSERT INTO contacts (tenant_id, id) VALUES ($1, gen_random_uuid())",
            &[&a_id],
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("row-level security")
            || format!("{err:?}").contains("row-level security"),
        "{err:?}"
    );
    db.batch_execute("ROLLBACK").await.unwrap();
    // Moving one's own row into another tenant is refused by WITH CHECK.
    let y = app.create_contact(&b, json!({"first_name": "B-row"})).await;
    let y_id: uuid::Uuid = y["id"].as_str().unwrap().parse().unwrap();
    db.batch_execute(&format!("BEGIN; SET LOCAL app.tenant_id = '{}'", b.id))
        .await
        .unwrap();
    let err = db
        .execute(
            "UPDATE contacts SET tenant_id = $1 WHERE id = $2",
            &[&a_id, &y_id],
        )
        .await
        .unwrap_err();
    // On Citus the distribution column cannot change at all, which refuses it first.
    let err = format!("{err:?}");
    assert!(
        err.contains("row-level security") || err.contains("modifying the partition value"),
        "{err}"
    );
    db.batch_execute("ROLLBACK").await.unwrap();
    // SET LOCAL dies with its transaction: after COMMIT nothing is visible again.
    db.batch_execute(&format!(
        "BEGIN; SET LOCAL app.tenant_id = '{}'; COMMIT",
        a.id
    ))
    .await
    .unwrap();
    let n: i64 = db
        .query_one("SELECT count(*) FROM contacts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "context outlived its transaction");
    // And A's row is untouched.
    let res = app
        .as_tenant(&a, Method::GET, &format!("/v1/contacts/{x_id}"))
        .send()
        .await
        .unwrap();
    let got = expect(res, StatusCode::OK).await;
    assert_eq!(
        (got["first_name"].as_str(), got["version"].as_i64()),
        (Some("A-only"), Some(1))
    );
}

#[actix_web::test]
async fn the_audit_trail_is_append_only_for_the_app_role() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let db = app.db.as_app().await;
    db.batch_execute(&format!("BEGIN; SET LOCAL app.tenant_id = '{}'", a.id))
        .await
        .unwrap();
    let n: i64 = db
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n >= 1);
    let err = db
        .execute("DELETE FROM audit_events", &[])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("permission denied"), "{err:?}");
    db.batch_execute("ROLLBACK").await.unwrap();
    // Even the owner cannot rewrite history: the trigger refuses.
    let admin = app.db.admin().await;
    let err = admin
        .execute("UPDATE audit_events SET action = 'x'", &[])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("append-only"), "{err:?}");
}

/// Runs `sql` as the app role inside `tenant`'s context, in a transaction of its own that is
/// rolled back; returns the error, if any.
async fn as_app_in(
    db: &tokio_postgres::Client,
    tenant: &str,
    sql: &str,
) -> Option<tokio_postgres::Error> {
    db.batch_execute(&format!("BEGIN; SET LOCAL app.tenant_id = '{tenant}'"))
        .await
        .unwrap();
    let result = db.batch_execute(sql).await;
    db.batch_execute("ROLLBACK").await.unwrap();
    result.err()
}

/// The tenant's audit head (`last_seq`), read as the superuser.
async fn audit_head(db: &tokio_postgres::Client, tenant: &str) -> i64 {
    let sql = "SELECT last_seq FROM audit_heads WHERE tenant_id = $1::text::uuid";
    db.query_one(sql, &[&tenant]).await.unwrap().get(0)
}

#[actix_web::test]
async fn the_audit_head_only_moves_forward_for_every_role() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let admin = app.db.admin().await;
    let before = audit_head(&admin, &a.id).await;
    assert!(before >= 1, "signup is audited");
    let db = app.db.as_app().await;
    for sql in [
        "UPDATE audit_heads SET last_seq = 0",
        "UPDATE audit_heads SET last_seq = last_seq - 1",
        "UPDATE audit_heads SET last_seq = last_seq + 5",
        "UPDATE audit_heads SET last_seq = last_seq",
    ] {
        let err = as_app_in(&db, &a.id, sql).await;
        let err = err.unwrap_or_else(|| panic!("the app role could run `{sql}`"));
        assert!(
            format!("{err:?}").contains("only moves forward"),
            "{sql}: {err:?}"
        );
    }
    // Moving the head to another tenant: RLS refuses the app role already; the trigger refuses
    // even a role that bypasses RLS (here the superuser), with the bump it would otherwise allow.
    let c = uuid::Uuid::now_v7();
    admin
        .execute(
            "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, 'No events yet')",
            &[&c, &format!("c{}", c.simple())],
        )
        .await
        .unwrap();
    let to_c = format!("UPDATE audit_heads SET tenant_id = '{c}', last_seq = last_seq + 1");
    assert!(as_app_in(&db, &a.id, &to_c).await.is_some());
    let err = admin
        .batch_execute(&format!("{to_c} WHERE tenant_id = '{}'", a.id))
        .await
        .unwrap_err();
    // On Citus the distribution column cannot change at all, which refuses it first.
    let err = format!("{err:?}");
    assert!(
        err.contains("only moves forward") || err.contains("modifying the partition value"),
        "{err}"
    );
    // A tenant without a head may start one only at 1, as audit::record does.
    let err = as_app_in(
        &db,
        &c.to_string(),
        &format!("INSERT INTO audit_heads (tenant_id, last_seq) VALUES ('{c}', 7)"),
    )
    .await
    .expect("the app role could start a head at 7");
    assert!(format!("{err:?}").contains("only moves forward"), "{err:?}");
    let err = admin
        .batch_execute(&format!(
            "UPDATE audit_heads SET last_seq = 0 WHERE tenant_id = '{}'",
            a.id
        ))
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("only moves forward"), "{err:?}");
    assert_eq!(
        audit_head(&admin, &a.id).await,
        before,
        "nothing moved the head"
    );
}

#[actix_web::test]
async fn audited_writes_still_number_their_events_one_by_one() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    for i in 0..3 {
        app.create_contact(&a, json!({"email": format!("a{i}@a.test")}))
            .await;
    }
    let c = app.create_contact(&b, json!({"first_name": "B"})).await;
    let res = app
        .as_tenant(
            &b,
            Method::DELETE,
            &format!("/v1/contacts/{}", c["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    expect(res, StatusCode::NO_CONTENT).await;
    let admin = app.db.admin().await;
    for (t, at_least) in [(&a, 4), (&b, 3)] {
        let seqs: Vec<i64> = admin
            .query(
                "SELECT seq FROM audit_events WHERE tenant_id = $1::text::uuid ORDER BY seq",
                &[&t.id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(seqs.len() >= at_least, "{seqs:?}");
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
        assert_eq!(
            audit_head(&admin, &t.id).await,
            seqs.len() as i64,
            "the head is the last event's seq"
        );
    }
}

#[actix_web::test]
async fn a_pool_of_one_never_leaks_tenant_context_between_requests() {
    let app = TestApp::spawn_with(|c| c.database.pool_size = 1).await;
    let a = app.signup().await;
    let b = app.signup().await;
    let (mut a_ids, mut b_ids) = (Vec::new(), Vec::new());
    for i in 0..3 {
        a_ids.push(
            app.create_contact(&a, json!({"email": format!("a{i}@a.test")}))
                .await["id"]
                .clone(),
        );
        b_ids.push(
            app.create_contact(&b, json!({"email": format!("b{i}@b.test")}))
                .await["id"]
                .clone(),
        );
    }
    for round in 0..10 {
        // A failed write (duplicate email → rolled back) in between must not leave state behind.
        if round % 3 == 0 {
            let res = app
                .as_tenant(&a, Method::POST, "/v1/contacts")
                .json(&json!({"email": "a0@a.test"}))
                .send()
                .await
                .unwrap();
            expect_problem(res, StatusCode::CONFLICT, "conflict").await;
        }
        // The pipelined by-id path: own ids found, the other tenant's ids not.
        for (t, own, other) in [(&a, &a_ids, &b_ids), (&b, &b_ids, &a_ids)] {
            let i = round % 3;
            let own_id = own[i].as_str().unwrap();
            let res = app
                .as_tenant(t, Method::GET, &format!("/v1/contacts/{own_id}"))
                .send()
                .await
                .unwrap();
            assert_eq!(expect(res, StatusCode::OK).await["id"], own[i]);
            let other_id = other[i].as_str().unwrap();
            let res = app
                .as_tenant(t, Method::GET, &format!("/v1/contacts/{other_id}"))
                .send()
                .await
                .unwrap();
            expect_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        }
        for (t, prefix) in [(&a, "a"), (&b, "b")] {
            let res = app
                .as_tenant(t, Method::GET, "/v1/contacts")
                .send()
                .await
                .unwrap();
            let page = expect(res, StatusCode::OK).await;
            let emails: Vec<&str> = page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["email"].as_str().unwrap())
                .collect();
            assert_eq!(emails.len(), 3, "round {round}: {emails:?}");
            assert!(
                emails.iter().all(|e| e.starts_with(prefix)),
                "round {round}: {emails:?}"
            );
        }
    }
}

#[actix_web::test]
async fn tenants_apply_runs_on_the_servers_two_roles_not_the_owner() {
    let db = TestDb::new().await;
    // The owner's URL points nowhere: tenants rows go through the platform role, users and
    // roles through the app role, as in the server.
    let out = tessera_command()
        .args([
            "tenants",
            "apply",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tenants"),
        ])
        .env(
            "TESSERA_DATABASE__MIGRATION_URL",
            "postgres://postgres@127.0.0.1:1/nowhere",
        )
        .env("TESSERA_DATABASE__URL", db.app_url())
        .env("ACME_OWNER_PASSWORD", "a long enough password")
        .env("GLOBEX_OWNER_PASSWORD", "another long password")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("tenant acme"), "{stdout}");
    assert_eq!(db.tenant_slugs().await, ["acme", "globex"]);
}

/// Runs `sql` as the app role inside tenant `tenant`'s context; returns the rows' first column
/// as text (a SELECT) or `affected <n>` (anything else), or the error text.
async fn in_tenant(db: &TestDb, tenant: &str, sql: &str) -> Result<Vec<String>, String> {
    let c = db.as_app().await;
    c.batch_execute(&format!("BEGIN; SET LOCAL app.tenant_id = '{tenant}'"))
        .await
        .unwrap();
    let out = c
        .simple_query(sql)
        .await
        .map(|msgs| {
            msgs.iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some(r.get(0).unwrap_or_default().to_string())
                    }
                    tokio_postgres::SimpleQueryMessage::CommandComplete(n)
                        if !sql.starts_with("SELECT") =>
                    {
                        Some(format!("affected {n}"))
                    }
                    _ => None,
                })
                .collect()
        })
        .map_err(|e| format!("{e:?}"));
    c.batch_execute("ROLLBACK").await.ok();
    out
}

#[actix_web::test]
async fn a_tenant_transaction_sees_only_its_own_tenants_row_and_cannot_change_plan_or_status() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.signup().await, app.signup().await);
    let db = &app.db;
    // Only its own row, whatever the query asks for.
    let seen = in_tenant(db, &a.id, "SELECT slug FROM tenants")
        .await
        .unwrap();
    assert_eq!(seen, std::slice::from_ref(&a.slug));
    let seen = in_tenant(
        db,
        &a.id,
        &format!("SELECT slug FROM tenants WHERE id = '{}'", b.id),
    )
    .await
    .unwrap();
    assert!(seen.is_empty(), "{seen:?}");
    // Another tenant's row: not visible to UPDATE either, so nothing changes.
    let upd = in_tenant(
        db,
        &a.id,
        &format!("UPDATE tenants SET name = 'pwned' WHERE id = '{}'", b.id),
    )
    .await
    .unwrap();
    assert_eq!(upd, ["affected 0"]);
    // Its own plan, status and overrides: no privilege at all.
    for column in [
        "plan = 'enterprise'",
        "status = 'active'",
        "quota_overrides = '{}'",
    ] {
        let e = in_tenant(
            db,
            &a.id,
            &format!("UPDATE tenants SET {column} WHERE id = '{}'", a.id),
        )
        .await
        .unwrap_err();
        assert!(e.contains("permission denied"), "{column}: {e}");
    }
    // Nor may it insert a tenant row, or delete one.
    let e = in_tenant(
        db,
        &a.id,
        &format!(
            "INSERT INTO tenants (id, slug, name) VALUES ('{}', 'x-new', 'x')",
            a.id
        ),
    )
    .await
    .unwrap_err();
    assert!(e.contains("permission denied"), "{e}");
    let e = in_tenant(db, &a.id, "DELETE FROM tenants")
        .await
        .unwrap_err();
    assert!(e.contains("permission denied"), "{e}");
    // Without a tenant context: nothing at all.
    let c = db.as_app().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // Its self-service columns it may change (the narrow path PATCH /v1/tenant uses).
    let upd = in_tenant(
        db,
        &a.id,
        &format!("UPDATE tenants SET name = 'Renamed' WHERE id = '{}'", a.id),
    )
    .await
    .unwrap();
    assert_eq!(upd, ["affected 1"]);
}

#[actix_web::test]
async fn the_platform_role_sees_every_tenant_but_no_tenant_data_without_context() {
    let app = TestApp::spawn().await;
    let (a, _b) = (app.signup().await, app.signup().await);
    app.create_contact(&a, json!({"email": "x@example.com"}))
        .await;
    let p = app.db.as_platform().await;
    let n: i64 = p
        .query_one("SELECT count(*) FROM tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // No grant on the CRM tables at all.
    let e = p.query("SELECT * FROM contacts", &[]).await.unwrap_err();
    assert!(format!("{e:?}").contains("permission denied"), "{e:?}");
    // Tables it shares with tenants (the audit trail) stay behind the tenant policy.
    let n: i64 = p
        .query_one("SELECT count(*) FROM audit_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[actix_web::test]
async fn guard_fails_when_a_policy_opens_tenants_to_the_app_role() {
    let app = TestApp::spawn().await;
    let admin = app.db.admin().await;
    admin
        .batch_execute("CREATE POLICY leak ON tenants FOR SELECT USING (true)")
        .await
        .unwrap();
    let f = failed(&guard::run(&app.state.door).await.unwrap());
    assert!(
        f.iter()
            .any(|m| m.contains("no policy opens") && m.contains("public.tenants (leak)")),
        "{f:?}"
    );
    // A policy TO the app role only, on a tenant table, is caught the same way.
    execute_each(
        &admin,
        "DROP POLICY leak ON tenants;          CREATE POLICY wide ON contacts TO tessera_app USING (tenant_id IS NOT NULL);",
    )
    .await
    .unwrap();
    let f = failed(&guard::run(&app.state.door).await.unwrap());
    assert!(
        f.iter().any(|m| m.contains("public.contacts (wide)")),
        "{f:?}"
    );
}

#[actix_web::test]
async fn guard_fails_when_the_app_role_is_granted_the_platform_role() {
    // Roles are cluster-wide and tests run in parallel, so a fresh pair stands in for
    // tessera_app and tessera_platform: an app-like role made a member of a platform-like one.
    let app = TestApp::spawn().await;
    let (app_like, platform_like) = (
        make_role(&app, "NOBYPASSRLS").await,
        make_role(&app, "NOBYPASSRLS").await,
    );
    let door = door_for(&url_as(&app, &app_like));
    let before = failed(&guard::run(&door).await.unwrap());
    assert!(
        !before.iter().any(|m| m.contains("member of no other role")),
        "{before:?}"
    );
    let admin = app.db.admin().await;
    admin
        .batch_execute(&format!("GRANT {platform_like} TO {app_like}"))
        .await
        .unwrap();
    let f = failed(&guard::run(&door).await.unwrap());
    assert!(
        f.iter()
            .any(|m| m.contains("member of no other role") && m.contains(&platform_like)),
        "{f:?}"
    );
    // And the real platform role passes its own checks.
    let f = failed(&guard::run_platform(&app.state.platform).await.unwrap());
    assert!(f.is_empty(), "{f:?}");
}
