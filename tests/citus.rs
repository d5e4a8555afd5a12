//! Scale-out on Citus: placement of every table, the Citus checks of the guard, and isolation
//! between tenants whose shards live on different workers.
//!
//! The first test runs everywhere (the placement declaration is checked against the migrated
//! schema on plain PostgreSQL too, so a new table without one fails the plain suite first). The
//! rest need a cluster: `scripts/test --citus`. On plain PostgreSQL they print that they have
//! nothing to check and pass; the Citus suite (in `.ci/run`) is where they run.
mod common;

use common::*;
use diesel::Connection;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tessera::db::{citus, guard};

/// `citus::undeclared` over a synchronous owner connection to `url`.
async fn undeclared(url: &str) -> Vec<String> {
    as_owner(url, |conn| citus::undeclared(conn).unwrap()).await
}

/// Runs `f` on a synchronous connection to `url`, the kind `tessera migrate` places tables with.
async fn as_owner<R: Send + 'static>(
    url: &str,
    f: impl FnOnce(&mut citus::SyncConn) -> R + Send + 'static,
) -> R {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        f(&mut AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url).unwrap())
    })
    .await
    .unwrap()
}

fn skip_unless_citus(db: &TestDb) -> bool {
    if !db.cluster.is_citus() {
        eprintln!("not a Citus cluster: nothing to check here (scripts/test --citus runs it)");
        return true;
    }
    false
}

#[actix_web::test]
async fn every_table_has_a_declared_placement_and_a_new_tenant_table_without_one_is_caught() {
    let db = TestDb::new().await;
    assert_eq!(undeclared(&db.admin_url()).await, Vec::<String>::new());
    db.admin()
        .await
        .batch_execute(
            "CREATE TABLE notes (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id))",
        )
        .await
        .unwrap();
    assert_eq!(undeclared(&db.admin_url()).await, vec!["notes".to_string()]);
}

#[actix_web::test]
async fn migrate_on_citus_distributes_every_tenant_table_and_references_the_platform_ones() {
    let db = TestDb::new().await;
    if skip_unless_citus(&db) {
        return;
    }
    let rows = db
        .admin()
        .await
        .query(
            "SELECT logicalrelid::regclass::text, partmethod::text, repmodel::text, \
                    coalesce(column_to_column_name(logicalrelid, partkey), ''), colocationid \
             FROM pg_dist_partition ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let anchor: i32 = rows
        .iter()
        .find(|r| r.get::<_, String>(0) == "users")
        .unwrap()
        .get(4);
    for (table, placement) in citus::PLACEMENTS {
        let row = rows.iter().find(|r| r.get::<_, String>(0) == *table);
        match placement {
            citus::Placement::ByTenant => {
                let r = row.unwrap_or_else(|| panic!("{table} is not distributed"));
                assert_eq!(r.get::<_, String>(1), "h", "{table}");
                assert_eq!(r.get::<_, String>(3), "tenant_id", "{table}");
                assert_eq!(r.get::<_, i32>(4), anchor, "{table} is not co-located");
            }
            citus::Placement::Reference => {
                let r = row.unwrap_or_else(|| panic!("{table} is not a reference table"));
                assert_eq!(
                    (r.get::<_, String>(1), r.get::<_, String>(2)),
                    ("n".into(), "t".into())
                );
            }
            citus::Placement::CoordinatorOnly => assert!(row.is_none(), "{table}"),
        }
    }
    // Every foreign key survived the placement.
    let keys: i64 = db
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' \
               AND connamespace = 'public'::regnamespace",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // users, roles, contacts, audit_heads, audit_events, idempotency_keys, quota_counters,
    // usage_windows, usage_receipts, usage_adjustments → tenants; role_permissions → roles;
    // user_roles → users and roles; refresh_tokens → users; contacts.owner_id → users.
    assert_eq!(keys, 15, "foreign keys after placement");
    // Migrating again changes nothing.
    let placed = as_owner(&db.admin_url(), |conn| citus::reconcile(conn).unwrap()).await;
    assert!(placed.is_empty(), "{placed:?}");
}

#[actix_web::test]
async fn a_new_tenant_table_with_a_key_to_tenants_is_placed_by_its_declaration_line() {
    // What a future migration does: a table whose foreign key to the reference table made Citus
    // turn it into a "Citus local table" on creation, then one line in PLACEMENTS.
    let db = TestDb::new().await;
    if skip_unless_citus(&db) {
        return;
    }
    let admin = db.admin().await;
    admin
        .batch_execute(
            "CREATE TABLE notes (tenant_id uuid NOT NULL REFERENCES tenants (id), \
             id uuid NOT NULL, contact_id uuid, PRIMARY KEY (tenant_id, id))",
        )
        .await
        .unwrap();
    let local: String = admin
        .query_one(
            "SELECT partmethod::text FROM pg_dist_partition WHERE logicalrelid = 'notes'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        local, "n",
        "a key to a reference table makes a Citus local table"
    );
    let mut declared = citus::PLACEMENTS.to_vec();
    declared.push(("notes", citus::Placement::ByTenant));
    let placed = as_owner(&db.admin_url(), move |conn| {
        citus::reconcile_to(conn, &declared).unwrap()
    })
    .await;
    assert_eq!(placed, vec!["notes".to_string()]);
    let row = admin
        .query_one(
            "SELECT n.partmethod::text, column_to_column_name(n.logicalrelid, n.partkey), \
                    n.colocationid = u.colocationid \
             FROM pg_dist_partition n, pg_dist_partition u \
             WHERE n.logicalrelid = 'notes'::regclass AND u.logicalrelid = 'users'::regclass",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, bool>(2)
        ),
        ("h".into(), "tenant_id".into(), true)
    );
    // Its key to tenants came back, and a key to a co-located table can now follow (the next
    // migration's job).
    admin
        .batch_execute(
            "ALTER TABLE notes ADD FOREIGN KEY (tenant_id, contact_id) \
             REFERENCES contacts (tenant_id, id)",
        )
        .await
        .unwrap();
    let keys: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'notes'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(keys, 2);
}

#[actix_web::test]
async fn a_tenant_table_created_without_distribution_fails_the_citus_check_and_migrate() {
    let app = TestApp::spawn().await;
    if skip_unless_citus(&app.db) {
        return;
    }
    assert!(failed(&guard::run(&app.state.door).await.unwrap()).is_empty());
    // Everything the plain guard asks for is there: RLS enabled, forced, a policy, a grant.
    execute_each(
        &app.db.admin().await,
        "CREATE TABLE notes (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id)); \
         ALTER TABLE notes ENABLE ROW LEVEL SECURITY; ALTER TABLE notes FORCE ROW LEVEL SECURITY; \
         CREATE POLICY tenant_isolation ON notes \
             USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid) \
             WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid); \
         GRANT SELECT ON notes TO tessera_app",
    )
    .await
    .unwrap();
    let f = failed(&guard::run(&app.state.door).await.unwrap());
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].contains("distributed by tenant_id") && f[0].contains("public.notes"),
        "{f:?}"
    );
    // `serve` refuses to start on it, and `migrate` refuses to guess its placement.
    let out = tessera_command()
        .arg("serve")
        .env("TESSERA_DATABASE__URL", app.db.app_url())
        .env("TESSERA_DATABASE__MIGRATION_URL", app.db.admin_url())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("public.notes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tessera_command()
        .arg("migrate")
        .env("TESSERA_DATABASE__URL", app.db.app_url())
        .env("TESSERA_DATABASE__MIGRATION_URL", app.db.admin_url())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no Citus placement declared for notes"),
        "{stderr}"
    );
}

#[actix_web::test]
async fn a_shard_without_forced_rls_or_policy_fails_the_citus_check() {
    let app = TestApp::spawn().await;
    if skip_unless_citus(&app.db) {
        return;
    }
    // One shard of contacts on the second worker loses FORCE; one of roles loses its policy.
    let worker = connect(&app.db.worker_urls()[1]).await;
    let contacts = shards_here(&worker, "contacts").await.remove(0);
    let roles = shards_here(&worker, "roles").await.remove(0);
    worker
        .batch_execute(&format!(
            "ALTER TABLE {contacts} NO FORCE ROW LEVEL SECURITY; \
             DROP POLICY tenant_isolation ON {roles}"
        ))
        .await
        .unwrap();
    let f = failed(&guard::run(&app.state.door).await.unwrap());
    assert_eq!(f.len(), 1, "{f:?}");
    let bare = |s: &str| s.trim_start_matches("public.").to_string();
    assert!(
        f[0].contains("every shard")
            && f[0].contains(&bare(&contacts))
            && f[0].contains(&bare(&roles)),
        "{f:?}"
    );
}

#[actix_web::test]
async fn a_role_whose_set_local_stays_on_the_coordinator_fails_the_citus_check() {
    let app = TestApp::spawn().await;
    if skip_unless_citus(&app.db) {
        return;
    }
    let url = with_options(&app.db.app_url(), "citus.propagate_set_commands=none");
    let f = failed(&guard::run(&door_for(&url)).await.unwrap());
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("SET LOCAL reaches the workers"), "{f:?}");
}

/// `table`'s shards placed on the worker `admin` is connected to (superuser), by shard id.
async fn shards_here(admin: &tokio_postgres::Client, table: &str) -> Vec<String> {
    admin
        .query(
            "SELECT shard_name(s.logicalrelid, s.shardid) FROM pg_dist_shard s \
             JOIN pg_dist_placement p USING (shardid) \
             WHERE s.logicalrelid = $1::text::regclass \
               AND p.groupid = (SELECT groupid FROM pg_dist_local_group) \
             ORDER BY s.shardid",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Worker port holding `tenant`'s shard of the co-located tables.
async fn worker_of(db: &TestDb, tenant: &str) -> i32 {
    db.admin()
        .await
        .query_one(
            "SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid) \
             WHERE p.shardid = get_shard_id_for_distribution_column('users', $1::text::uuid)",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0)
}

#[actix_web::test]
async fn tenants_on_different_workers_stay_isolated_and_requests_route_to_one_shard() {
    let app = TestApp::spawn().await;
    if skip_unless_citus(&app.db) {
        return;
    }
    // Sign tenants up until two live on different workers.
    let a = app.signup().await;
    let a_worker = worker_of(&app.db, &a.id).await;
    let mut b = None;
    for _ in 0..32 {
        let t = app.signup().await;
        if worker_of(&app.db, &t.id).await != a_worker {
            b = Some(t);
            break;
        }
    }
    let b = b.expect("32 tenants all on one worker");
    let x = app.create_contact(&a, json!({"email": "x@a.test"})).await;
    let y = app.create_contact(&b, json!({"email": "y@b.test"})).await;
    let (x_id, y_id) = (x["id"].as_str().unwrap(), y["id"].as_str().unwrap());

    // The cross-tenant matrix: B's credential on A's id is a 404, exactly like a missing id.
    let missing = uuid::Uuid::now_v7().to_string();
    for id in [x_id, missing.as_str()] {
        for method in [Method::GET, Method::PATCH, Method::DELETE] {
            let mut req = app.as_tenant(&b, method.clone(), &format!("/v1/contacts/{id}"));
            if method == Method::PATCH {
                req = req.json(&json!({"first_name": "hijack"}));
            }
            let res = req.send().await.unwrap();
            expect_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        }
    }
    let list = expect(
        app.as_tenant(&b, Method::GET, "/v1/contacts")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let ids: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(y_id)]);
    // A's row is untouched.
    let res = app
        .as_tenant(&a, Method::GET, &format!("/v1/contacts/{x_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect(res, StatusCode::OK).await["first_name"], json!(null));

    // On each worker, as the app role, straight on the shards: in A's context no shard shows a
    // row of any other tenant; without context, none shows anything; A's own rows are visible on
    // A's worker only (so the query could have seen rows).
    let tables = [
        "users",
        "roles",
        "role_permissions",
        "user_roles",
        "refresh_tokens",
        "contacts",
        "audit_heads",
        "audit_events",
    ];
    let mut seen_own = 0;
    for worker in app.db.worker_urls() {
        let port = url::Url::parse(&worker).unwrap().port().unwrap() as i32;
        let admin = connect(&worker).await;
        let mut as_app = url::Url::parse(&worker).unwrap();
        as_app.set_username("tessera_app").unwrap();
        let db = connect(as_app.as_str()).await;
        for table in tables {
            let shards = shards_here(&admin, table).await;
            assert!(!shards.is_empty(), "{table} has no shard on {port}");
            for shard in shards {
                db.batch_execute("BEGIN").await.unwrap();
                let none: i64 = db
                    .query_one(&format!("SELECT count(*) FROM {shard}"), &[])
                    .await
                    .unwrap()
                    .get(0);
                db.batch_execute(&format!("SET LOCAL app.tenant_id = '{}'", a.id))
                    .await
                    .unwrap();
                let foreign: i64 = db
                    .query_one(
                        &format!("SELECT count(*) FROM {shard} WHERE tenant_id <> $1::text::uuid"),
                        &[&a.id],
                    )
                    .await
                    .unwrap()
                    .get(0);
                let own: i64 = db
                    .query_one(&format!("SELECT count(*) FROM {shard}"), &[])
                    .await
                    .unwrap()
                    .get(0);
                db.batch_execute("ROLLBACK").await.unwrap();
                assert_eq!((none, foreign), (0, 0), "{shard} on {port}");
                if own > 0 {
                    assert_eq!(port, a_worker, "A's rows in {shard} on the wrong worker");
                    seen_own += own;
                }
            }
        }
    }
    assert!(
        seen_own >= 5,
        "A's own rows were not visible on its worker ({seen_own})"
    );

    // The hot statements plan as one task on A's shard: Citus' router, never a fan-out. (The
    // whole Citus suite also runs the server with multi-shard statements turned into errors:
    // see TestDb::server_url.)
    let db = app.db.as_app().await;
    let plans = [
        format!(
            "SELECT * FROM contacts WHERE tenant_id = '{}' AND id = '{x_id}' AND deleted_at IS NULL",
            a.id
        ),
        format!(
            "SELECT * FROM contacts WHERE tenant_id = '{}' AND deleted_at IS NULL \
             ORDER BY created_at, id LIMIT 51",
            a.id
        ),
        format!(
            "INSERT INTO contacts (tenant_id, id, email) VALUES ('{}', '{}', 'z@a.test')",
            a.id,
            uuid::Uuid::now_v7()
        ),
        format!(
            "UPDATE contacts SET first_name = 'z' WHERE tenant_id = '{}' AND id = '{x_id}'",
            a.id
        ),
    ];
    for sql in &plans {
        db.batch_execute(&format!("BEGIN; SET LOCAL app.tenant_id = '{}'", a.id))
            .await
            .unwrap();
        let plan: Vec<String> = db
            .query(&format!("EXPLAIN {sql}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        db.batch_execute("ROLLBACK").await.unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("Task Count: 1"), "{sql}\n{plan}");
        assert!(plan.contains(&format!("port={a_worker}")), "{sql}\n{plan}");
    }

    // A tenant that outgrows its neighbours moves to a shard group of its own (README, "Tenant
    // placement"); the shard split carries RLS, grants and rows, and nothing changes for anyone.
    let before = worker_of(&app.db, &a.id).await;
    let shard_before: i64 = shard_of(&app.db, &a.id).await;
    app.db
        .admin()
        .await
        .batch_execute(&format!(
            "SELECT isolate_tenant_to_new_shard('users', '{}'::uuid, 'CASCADE', \
                 shard_transfer_mode => 'block_writes')",
            a.id
        ))
        .await
        .unwrap();
    assert_ne!(shard_of(&app.db, &a.id).await, shard_before);
    assert_eq!(worker_of(&app.db, &a.id).await, before);
    let res = app
        .as_tenant(&a, Method::GET, &format!("/v1/contacts/{x_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect(res, StatusCode::OK).await["id"], json!(x_id));
    let res = app
        .as_tenant(&b, Method::GET, &format!("/v1/contacts/{x_id}"))
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    app.create_contact(&a, json!({"email": "after@a.test"}))
        .await;
    assert!(failed(&guard::run(&app.state.door).await.unwrap()).is_empty());
}

/// The shard of the co-located tables that holds `tenant`.
async fn shard_of(db: &TestDb, tenant: &str) -> i64 {
    db.admin()
        .await
        .query_one(
            "SELECT get_shard_id_for_distribution_column('users', $1::text::uuid)",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0)
}

#[actix_web::test]
async fn the_suite_server_turns_a_multi_shard_statement_into_an_error() {
    // The guard rail the rest of the Citus suite leans on: with the server's URL, a statement
    // that spans shards fails instead of running.
    let db = TestDb::new().await;
    if skip_unless_citus(&db) {
        return;
    }
    let server = connect(&db.server_url()).await;
    let err = server
        .query_one("SELECT count(*) FROM contacts", &[])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("multi-task"), "{err:?}");
    // The same statement on one tenant's shard runs.
    let tenant = uuid::Uuid::now_v7();
    let n: i64 = server
        .query_one(
            "SELECT count(*) FROM contacts WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}
