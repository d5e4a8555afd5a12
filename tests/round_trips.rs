//! Round trips on the wire between the server and PostgreSQL, watched through a proxy that reads
//! the client's protocol messages and holds every server answer back a little: whatever the
//! client sends before an answer reaches it was pipelined, whatever it sends after had to wait.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long each server answer is held: far longer than a client needs to write a pipelined
/// follow-up, so "sent before the answer arrived" cannot happen by luck.
const HOLD: Duration = Duration::from_millis(40);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// Bind of the prepared statement with this SQL.
    Bind(String),
    /// Parse of this SQL.
    Parse(String),
    /// An answer from the server reached the client.
    Answer,
}

#[derive(Default)]
struct Log {
    events: Vec<Event>,
    statements: HashMap<String, String>,
}

/// Reads frontend messages (after the untyped startup ones) and records Parse and Bind.
fn record_frontend(log: &Mutex<Log>, buf: &mut Vec<u8>, started: &mut bool) {
    loop {
        if !*started {
            if buf.len() < 8 {
                return;
            }
            let len = u32::from_be_bytes(buf[0..4].try_into().unwrap()) as usize;
            if buf.len() < len {
                return;
            }
            let code = u32::from_be_bytes(buf[4..8].try_into().unwrap());
            // SSLRequest / GSSENCRequest come before the startup message, untyped too.
            if code != 80877103 && code != 80877104 {
                *started = true;
            }
            buf.drain(..len);
            continue;
        }
        if buf.len() < 5 {
            return;
        }
        let len = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
        if buf.len() < 1 + len {
            return;
        }
        let body = buf[5..1 + len].to_vec();
        let kind = buf[0];
        buf.drain(..1 + len);
        let cstr = |b: &[u8]| -> (String, usize) {
            let end = b.iter().position(|&c| c == 0).unwrap();
            (String::from_utf8_lossy(&b[..end]).into_owned(), end + 1)
        };
        let mut log = log.lock().unwrap();
        match kind {
            b'P' => {
                let (name, used) = cstr(&body);
                let (query, _) = cstr(&body[used..]);
                log.statements.insert(name, query.clone());
                log.events.push(Event::Parse(query));
            }
            b'B' => {
                let (_portal, used) = cstr(&body);
                let (stmt, _) = cstr(&body[used..]);
                let query = log.statements.get(&stmt).cloned().unwrap_or_default();
                log.events.push(Event::Bind(query));
            }
            _ => {}
        }
    }
}

async fn start_proxy(upstream: SocketAddr, log: Arc<Mutex<Log>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let l = log.clone();
            tokio::spawn(async move {
                let (mut pending, mut started, mut buf) = (Vec::new(), false, vec![0u8; 65536]);
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    pending.extend_from_slice(&buf[..n]);
                    record_frontend(&l, &mut pending, &mut started);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
            let l = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    tokio::time::sleep(HOLD).await;
                    l.lock().unwrap().events.push(Event::Answer);
                    if cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[actix_web::test]
async fn an_audited_write_sends_the_head_bump_and_the_event_in_one_round_trip() {
    let log = Arc::new(Mutex::new(Log::default()));
    let db = TestDb::new().await;
    let upstream: SocketAddr = {
        let u = url::Url::parse(&db.server_url()).unwrap();
        format!("127.0.0.1:{}", u.port().unwrap()).parse().unwrap()
    };
    let port = start_proxy(upstream, log.clone()).await;
    let mut through_proxy = url::Url::parse(&db.server_url()).unwrap();
    through_proxy.set_port(Some(port)).unwrap();
    let app = TestApp::spawn_on(db, |c| {
        c.database.url = through_proxy.to_string();
        // One connection, so the second write finds both statements prepared.
        c.database.pool_size = 1;
    })
    .await;
    let t = app.signup().await; // the first audited write prepares both statements
    log.lock().unwrap().events.clear();
    app.create_contact(&t, json!({"first_name": "Ada"})).await;

    let events = log.lock().unwrap().events.clone();
    let is_bump =
        |e: &Event| matches!(e, Event::Bind(q) if q.starts_with("INSERT INTO audit_heads"));
    let is_event =
        |e: &Event| matches!(e, Event::Bind(q) if q.starts_with("INSERT INTO \"audit_events\""));
    let bump = events
        .iter()
        .position(is_bump)
        .expect("no head bump on the wire");
    let event = events
        .iter()
        .position(is_event)
        .expect("no audit event on the wire");
    assert!(bump < event, "{events:#?}");
    assert!(
        !events[bump..event].contains(&Event::Answer),
        "the event waited for the head bump's answer: {events:#?}"
    );
    // Both were prepared by the first write and only bound now.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Parse(q) if q.contains("audit_"))),
        "{events:#?}"
    );
}
