//! Housekeeping: the purge of expired idempotency keys and refresh tokens — every tenant's, in
//! bounded batches, never a live row (nor one revived while the purge waited for it) — and the
//! timer that runs it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tessera::config::MaintenanceConfig;
use tessera::maintenance::{BATCH, Purged, TENANT_PAGE, purge_expired, spawn_purge};
use tokio_postgres::Client;

const EXPIRED: &str = "-1 hour";
const LIVE: &str = "1 day";

/// Inserts `n` completed idempotency keys for `tenant`, expiring `expires_in` from now.
async fn seed_keys(db: &Client, tenant: &str, prefix: &str, n: u32, expires_in: &str) {
    db.batch_execute(&format!(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, state, expires_at) \
         SELECT '{tenant}', '{prefix}-' || g, '\\x00', 'completed', now() + interval '{expires_in}' \
         FROM generate_series(1, {n}) g"
    ))
    .await
    .unwrap();
}

/// Inserts `n` refresh tokens of `user` in `t`, expiring `expires_in` from now, in `state`
/// (`unused`, `consumed` or `revoked`).
async fn seed_tokens(db: &Client, t: &Tenant, n: u32, expires_in: &str, state: &str) {
    let (consumed, revoked) = match state {
        "unused" => ("NULL", "NULL"),
        "consumed" => ("now() - interval '2 hours'", "NULL"),
        "revoked" => ("now() - interval '2 hours'", "now() - interval '2 hours'"),
        other => panic!("unknown token state {other}"),
    };
    db.batch_execute(&format!(
        "INSERT INTO refresh_tokens (tenant_id, id, family_id, user_id, token_hash, expires_at, \
             consumed_at, revoked_at) \
         SELECT '{}', gen_random_uuid(), gen_random_uuid(), '{}', \
             decode(md5(gen_random_uuid()::text), 'hex'), now() + interval '{expires_in}', \
             {consumed}, {revoked} \
         FROM generate_series(1, {n})",
        t.id, t.user_id
    ))
    .await
    .unwrap();
}

/// (expired, live) rows of `tenant` in `table`.
async fn rows(db: &Client, table: &str, tenant: &str) -> (i64, i64) {
    let row = db
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE expires_at < now()), \
                        count(*) FILTER (WHERE expires_at >= now()) \
                 FROM {table} WHERE tenant_id = '{tenant}'"
            ),
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[actix_web::test]
async fn purge_deletes_every_tenants_expired_rows_and_keeps_live_ones() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.signup().await, app.signup().await);
    let db = app.db.admin().await;
    // Expired: gone whatever their state. Live: kept even when consumed or revoked, since reuse
    // detection must still recognise them.
    seed_keys(&db, &a.id, "old", 3, EXPIRED).await;
    seed_keys(&db, &a.id, "new", 1, LIVE).await;
    seed_keys(&db, &b.id, "old", 5, EXPIRED).await;
    seed_keys(&db, &b.id, "new", 2, LIVE).await;
    for state in ["unused", "consumed", "revoked"] {
        seed_tokens(&db, &a, 2, EXPIRED, state).await;
        seed_tokens(&db, &a, 1, LIVE, state).await;
    }
    seed_tokens(&db, &b, 1, EXPIRED, "consumed").await;
    // Plus each tenant's signup token (live).
    assert_eq!(rows(&db, "refresh_tokens", &a.id).await, (6, 4));
    assert_eq!(rows(&db, "refresh_tokens", &b.id).await, (1, 1));

    let purged = purge_expired(&app.state.door, &app.state.platform, BATCH)
        .await
        .unwrap();
    assert_eq!(
        purged,
        Purged {
            tenants: 2,
            idempotency_keys: 8,
            refresh_tokens: 7,
            batches: 4,
        }
    );
    assert_eq!(rows(&db, "idempotency_keys", &a.id).await, (0, 1));
    assert_eq!(rows(&db, "idempotency_keys", &b.id).await, (0, 2));
    assert_eq!(rows(&db, "refresh_tokens", &a.id).await, (0, 4));
    assert_eq!(rows(&db, "refresh_tokens", &b.id).await, (0, 1));

    // Nothing left to do the second time.
    let again = purge_expired(&app.state.door, &app.state.platform, BATCH)
        .await
        .unwrap();
    assert_eq!((again.idempotency_keys, again.refresh_tokens), (0, 0));
}

#[actix_web::test]
async fn purge_deletes_in_bounded_batches_until_none_are_left() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.signup().await, app.signup().await);
    let db = app.db.admin().await;
    seed_keys(&db, &a.id, "old", 25, EXPIRED).await;
    seed_tokens(&db, &a, 25, EXPIRED, "consumed").await;
    seed_keys(&db, &b.id, "old", 10, EXPIRED).await;

    let purged = purge_expired(&app.state.door, &app.state.platform, 10)
        .await
        .unwrap();
    // One statement per batch of at most 10, repeated while a batch comes back full: a's keys
    // and tokens 10+10+5 each, b's keys 10+0, b's tokens 0. An unbounded statement would take
    // a's 25 at once and need only 25+0.
    assert_eq!(
        purged,
        Purged {
            tenants: 2,
            idempotency_keys: 35,
            refresh_tokens: 25,
            batches: 3 + 3 + 2 + 1,
        }
    );
    for t in [&a, &b] {
        assert_eq!(rows(&db, "idempotency_keys", &t.id).await, (0, 0));
        assert_eq!(rows(&db, "refresh_tokens", &t.id).await, (0, 1));
    }
}

#[actix_web::test]
async fn purge_pages_through_more_tenants_than_one_page() {
    let app = TestApp::spawn().await;
    let db = app.db.admin().await;
    // The highest possible id sorts after every filler, so it is on the last page.
    let last = "ffffffff-ffff-4fff-bfff-ffffffffffff";
    db.batch_execute(&format!(
        "INSERT INTO tenants (id, slug, name) \
         SELECT gen_random_uuid(), 'filler' || g, 'Filler' FROM generate_series(1, {TENANT_PAGE}) g; \
         INSERT INTO tenants (id, slug, name) VALUES ('{last}', 'last', 'Last')"
    ))
    .await
    .unwrap();
    seed_keys(&db, last, "old", 3, EXPIRED).await;

    let purged = purge_expired(&app.state.door, &app.state.platform, BATCH)
        .await
        .unwrap();
    assert_eq!(purged.tenants, TENANT_PAGE as u64 + 1);
    assert_eq!(purged.idempotency_keys, 3);
    assert_eq!(rows(&db, "idempotency_keys", last).await, (0, 0));
}

#[actix_web::test]
async fn the_timer_purges_on_its_own_and_zero_turns_it_off() {
    let app = TestApp::spawn_with(|c| c.maintenance.purge_interval_secs = 1).await;
    let off = MaintenanceConfig {
        purge_interval_secs: 0,
    };
    assert!(spawn_purge(app.state.door.clone(), app.state.platform.clone(), &off).is_none());

    let a = app.signup().await;
    let db = app.db.admin().await;
    seed_keys(&db, &a.id, "old", 4, EXPIRED).await;
    seed_keys(&db, &a.id, "new", 1, LIVE).await;
    seed_tokens(&db, &a, 3, EXPIRED, "revoked").await;

    let timer = spawn_purge(
        app.state.door.clone(),
        app.state.platform.clone(),
        &app.state.config.maintenance,
    )
    .expect("an interval of 1 s turns the timer on");
    // The first run comes within a second (jitter), so 15 s is a generous deadline.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let keys = rows(&db, "idempotency_keys", &a.id).await;
        let tokens = rows(&db, "refresh_tokens", &a.id).await;
        if keys.0 == 0 && tokens.0 == 0 {
            assert_eq!((keys.1, tokens.1), (1, 1), "live rows are kept");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timer did not purge: keys {keys:?}, tokens {tokens:?} (expired, live)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    timer.abort();
}

#[actix_web::test]
async fn a_purged_key_no_longer_binds_its_request_and_a_live_key_still_replays() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let post = |key: &'static str, email: &'static str| {
        app.as_tenant(&a, Method::POST, "/v1/contacts")
            .header("idempotency-key", key)
            .json(&json!({ "email": email }))
            .send()
    };
    expect(
        post("old", "old@x.test").await.unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let live = expect(
        post("live", "live@x.test").await.unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let db = app.db.admin().await;
    db.batch_execute(&format!(
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 minute' \
         WHERE tenant_id = '{}' AND key = 'old'",
        a.id
    ))
    .await
    .unwrap();

    let purged = purge_expired(&app.state.door, &app.state.platform, BATCH)
        .await
        .unwrap();
    assert_eq!(purged.idempotency_keys, 1);
    assert_eq!(rows(&db, "idempotency_keys", &a.id).await, (0, 1));

    // The purged key is free: a different request under it is executed, not refused as reuse.
    let res = post("old", "other@x.test").await.unwrap();
    assert_eq!(res.headers().get("idempotent-replayed"), None);
    let other = expect(res, StatusCode::CREATED).await;
    assert_eq!(other["email"], "other@x.test");
    // The live key still answers with the stored response.
    let res = post("live", "live@x.test").await.unwrap();
    assert_eq!(
        res.headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let replayed = expect(res, StatusCode::CREATED).await;
    assert_eq!(replayed["id"], live["id"]);
}

#[actix_web::test]
async fn a_key_taken_over_while_the_purge_waits_for_it_is_kept() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let db = app.db.admin().await;
    seed_keys(&db, &a.id, "k", 1, EXPIRED).await;
    // A request takes the expired key over (what idempotency::claim does) and has not committed
    // yet when the purge reaches the row.
    let claimer = app.db.admin().await;
    claimer
        .batch_execute(&format!(
            "BEGIN; UPDATE idempotency_keys SET expires_at = now() + interval '1 day', \
                 state = 'in_progress' WHERE tenant_id = '{}' AND key = 'k-1'",
            a.id
        ))
        .await
        .unwrap();
    let (door, platform) = (app.state.door.clone(), app.state.platform.clone());
    let purge = actix_web::rt::spawn(async move { purge_expired(&door, &platform, BATCH).await });
    let deadline = Instant::now() + Duration::from_secs(15);
    // On Citus the DELETE waits on the worker holding the tenant's shard (as `DELETE FROM
    // public.idempotency_keys_<shard>`), so every node is asked.
    let mut nodes = vec![app.db.admin().await];
    for w in app.db.worker_urls() {
        nodes.push(connect(&w).await);
    }
    loop {
        let mut waiting = 0;
        for node in &nodes {
            let n: i64 = node
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND wait_event_type = 'Lock' \
                     AND query ~ '^DELETE FROM (public\\.)?idempotency_keys(_[0-9]+)? '",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            waiting += n;
        }
        if waiting == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the purge never waited for the row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    claimer.batch_execute("COMMIT").await.unwrap();

    let purged = purge.await.unwrap().unwrap();
    assert_eq!(purged.idempotency_keys, 0);
    assert_eq!(rows(&db, "idempotency_keys", &a.id).await, (0, 1));
}
