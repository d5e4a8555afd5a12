//! A database that stops answering, or answers with a transient failure: every request gets a
//! bounded wait and a retryable 503 with the configured `Retry-After`, never a hang or a 500.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use diesel_async::scoped_futures::ScopedFutureExt;
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tessera::error::AppError;
use tessera::ids::{ContactId, TenantId};
use tessera::tenancy::TxScope;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy in front of PostgreSQL that can stop forwarding while keeping every connection
/// open: what a paused (SIGSTOPped) or partitioned database looks like from the server, without
/// pausing the cluster every other test shares.
struct StallProxy {
    port: u16,
    paused: Arc<AtomicBool>,
}

impl StallProxy {
    async fn start(upstream: SocketAddr) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let paused = Arc::new(AtomicBool::new(false));
        let p = paused.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, p.clone()));
                tokio::spawn(pump(sr, cw, p.clone()));
            }
        });
        StallProxy { port, paused }
    }

    fn pause(&self, on: bool) {
        self.paused.store(on, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    paused: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn upstream() -> SocketAddr {
    let url = url::Url::parse(&admin_url()).unwrap();
    let host = url.host_str().unwrap();
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{}", url.port().unwrap_or(5432))
        .parse()
        .unwrap()
}

#[actix_web::test]
async fn a_stalled_database_gives_503_with_retry_after_within_the_deadline() {
    let proxy = StallProxy::start(upstream()).await;
    let app = TestApp::spawn_with(|c| {
        let mut u = url::Url::parse(&c.database.url).unwrap();
        u.set_port(Some(proxy.port)).unwrap();
        c.database.url = u.to_string();
        c.http.request_timeout_ms = 1500;
        c.database.statement_timeout_ms = 1000;
        c.database.acquire_timeout_ms = 500;
        c.database.retry_after_secs = 7;
    })
    .await;
    let t = app.signup().await;
    let c = app.create_contact(&t, json!({"first_name": "Ada"})).await;
    let one = format!("/v1/contacts/{}", c["id"].as_str().unwrap());
    for path in ["/v1/contacts", one.as_str()] {
        let res = app.as_tenant(&t, Method::GET, path).send().await.unwrap();
        expect(res, StatusCode::OK).await;
    }

    proxy.pause(true);
    let started = Instant::now();
    let requests = (0..20).map(|i| {
        let path = if i % 2 == 0 { "/v1/contacts" } else { &one };
        // A client-side bound, so that a server that hangs fails the test instead of stalling it.
        app.as_tenant(&t, Method::GET, path)
            .timeout(Duration::from_secs(8))
            .send()
    });
    for res in join_all(requests).await {
        let res = res.unwrap();
        assert_eq!(res.headers()["retry-after"], "7");
        expect_problem(res, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    }
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(4), "20 reads took {waited:?}");

    // Once the database answers again, so does the server: the connections abandoned mid-way
    // were discarded, not handed to the next request.
    proxy.pause(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app.as_tenant(&t, Method::GET, &one).send().await.unwrap();
        if res.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {}",
            res.status()
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let res = app
        .as_tenant(&t, Method::GET, "/v1/contacts")
        .send()
        .await
        .unwrap();
    let page = expect(res, StatusCode::OK).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
}

/// A statement far longer than the tests' statement timeout.
async fn sleep_past_the_timeout(
    conn: &mut diesel_async::AsyncPgConnection,
) -> Result<(), AppError> {
    use diesel_async::RunQueryDsl;
    diesel::sql_query("SELECT pg_sleep(3)")
        .execute(conn)
        .await?;
    Ok(())
}

#[actix_web::test]
async fn statement_timeout_binds_every_pooled_connection_and_is_retryable() {
    let app = TestApp::spawn_with(|c| c.database.statement_timeout_ms = 300).await;
    let t = app.signup().await;
    let scope = TxScope::tenant(TenantId(t.id.parse().unwrap()));
    let started = Instant::now();
    let slow = app
        .state
        .door
        .read(scope, |tx| {
            async move { sleep_past_the_timeout(tx.conn()).await }.scope_boxed()
        })
        .await;
    assert!(
        matches!(slow, Err(AppError::Unavailable(_))),
        "a statement past statement_timeout is a retryable 503: {slow:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The platform path is bounded the same way.
    let slow = app
        .state
        .door
        .catalog(true, |tx| {
            async move { sleep_past_the_timeout(tx.conn()).await }.scope_boxed()
        })
        .await;
    assert!(matches!(slow, Err(AppError::Unavailable(_))), "{slow:?}");
}

#[actix_web::test]
async fn a_deadlock_is_a_retryable_503_not_a_500() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let a = app.create_contact(&t, json!({"first_name": "A"})).await;
    let b = app.create_contact(&t, json!({"first_name": "B"})).await;
    let id = |c: &serde_json::Value| -> ContactId { c["id"].as_str().unwrap().parse().unwrap() };
    let (a, b) = (id(&a), id(&b));
    let scope = TxScope::tenant(TenantId(t.id.parse().unwrap()));
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    // Each locks one row, waits for the other, then wants the other's row.
    let lock_both = |first: ContactId, second: ContactId| {
        let door = app.state.door.clone();
        let barrier = barrier.clone();
        async move {
            door.write(scope, |tx| {
                async move {
                    tessera::crm::contacts::repo::get_for_update(tx, first).await?;
                    barrier.wait().await;
                    tessera::crm::contacts::repo::get_for_update(tx, second).await?;
                    Ok(())
                }
                .scope_boxed()
            })
            .await
        }
    };
    let (x, y) = futures_util::join!(lock_both(a, b), lock_both(b, a));
    let outcomes = [x, y];
    assert_eq!(
        outcomes.iter().filter(|r| r.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|r| matches!(r, Err(AppError::Unavailable(m)) if m.contains("deadlock"))),
        "{outcomes:?}"
    );
}
