//! Per-connection state: attached when a connection opens (`HttpServer::on_connect`), read by
//! the edge middleware ([`super::edge`]) on every request that connection carries.
//!
//! Two things need a memory longer than one request:
//! - **Refused framing.** actix parses pipelined requests ahead of answering them, so bytes
//!   smuggled after an ambiguously framed request may already be queued as a "next request" when
//!   the first is refused. Once a connection has carried one such request, every later request on
//!   it is refused unread ([`Connection::poison`]) and the connection closes.
//! - **Connections per client address** (`http.max_connections_per_ip`): each connection holds a
//!   slot in a shared count for its peer address until it closes; over the cap, its requests are
//!   answered 429 and the connection is closed.

use std::any::Any;
use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;

/// What the edge knows about the connection a request arrived on.
#[derive(Debug)]
pub struct Connection {
    poisoned: Cell<bool>,
    over_cap: bool,
    _slot: Option<Slot>,
}

impl Connection {
    /// Marks the connection as carrying a refused, ambiguously framed request.
    pub fn poison(&self) {
        self.poisoned.set(true);
    }

    /// Whether an earlier request on this connection was refused for its framing.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.get()
    }

    /// Whether this connection is over its address's connection cap.
    pub fn is_over_cap(&self) -> bool {
        self.over_cap
    }
}

/// Open connections per client address, shared by every worker.
#[derive(Debug, Clone)]
pub struct Counter {
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
    max: u32,
}

impl Counter {
    /// A counter allowing `max` connections per address; 0 counts nothing and caps nothing.
    pub fn new(max: u32) -> Self {
        Self {
            open: Arc::default(),
            max,
        }
    }

    /// The `on_connect` hook: attaches a [`Connection`] to every new connection.
    pub fn on_connect(&self, io: &dyn Any, ext: &mut Extensions) {
        let peer = io
            .downcast_ref::<TcpStream>()
            .and_then(|s| s.peer_addr().ok())
            .map(|a| a.ip().to_canonical());
        let (slot, over_cap) = match peer {
            Some(ip) if self.max > 0 => {
                let n = {
                    let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                    let n = open.entry(ip).or_insert(0);
                    *n += 1;
                    *n
                };
                let slot = Slot {
                    ip,
                    open: self.open.clone(),
                };
                (Some(slot), n > self.max)
            }
            _ => (None, false),
        };
        ext.insert(Connection {
            poisoned: Cell::new(false),
            over_cap,
            _slot: slot,
        });
    }
}

/// One connection's place in its address's count, given back when the connection closes (actix
/// drops a connection's extensions with it).
#[derive(Debug)]
struct Slot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Forget idle addresses, so the map holds only addresses with open connections.
                open.remove(&self.ip);
            }
        }
    }
}
