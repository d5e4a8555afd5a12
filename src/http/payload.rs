//! Watches a request's body: whether it was read to its end, and whether it arrived in time.
//!
//! - **Unread bodies.** An early answer (413 on a declared length, 401 before the body is looked
//!   at, …) leaves the rest of the body on the wire, so actix closes the connection after
//!   responding — without saying so. A keep-alive client then reuses the dead connection and its
//!   next request fails. Saying `Connection: close` on exactly those responses makes the client
//!   open a new one.
//! - **Slow bodies.** actix times out the request head (`http.header_timeout_ms`) but not the
//!   body: a client trickling one byte a second held its connection (and a worker's attention)
//!   forever. The whole body must arrive within `http.body_timeout_ms` of the request's start;
//!   past that the body stream fails with [`TimedOut`](std::io::ErrorKind::TimedOut), which the
//!   JSON extractor answers with 408, and the connection is closed.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::ConnectionType;
use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::time::Sleep;

/// Whether a request's body was read to its end; see [`watch`].
pub struct Watch(Option<Rc<Cell<bool>>>);

/// Watches `req`'s body (if it has one) for its end and for its deadline, `timeout` from now.
pub fn watch(req: &mut ServiceRequest, timeout: Duration) -> Watch {
    let headers = req.headers();
    let has_body = headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    if !has_body {
        return Watch(None);
    }
    let done = Rc::new(Cell::new(false));
    let inner = req.take_payload();
    req.set_payload(Payload::Stream {
        payload: Box::pin(Watched {
            inner,
            done: done.clone(),
            deadline: Box::pin(tokio::time::sleep(timeout)),
            expired: false,
        }),
    });
    Watch(Some(done))
}

/// Whether `e` is the error a body past its deadline fails with.
pub fn is_timeout(e: &PayloadError) -> bool {
    matches!(e, PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

impl Watch {
    /// Marks `res` `Connection: close` if the body was not read to its end.
    pub fn finish<B>(self, res: &mut ServiceResponse<B>) {
        if let Some(done) = self.0
            && !done.get()
        {
            res.response_mut()
                .head_mut()
                .set_connection_type(ConnectionType::Close);
        }
    }
}

struct Watched {
    inner: Payload,
    done: Rc<Cell<bool>>,
    deadline: Pin<Box<Sleep>>,
    expired: bool,
}

impl Stream for Watched {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        // The deadline is for the whole body, so it is checked on every poll: a body trickled a
        // byte at a time always has a chunk ready and would otherwise never be cut off.
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired = true;
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request body not received within http.body_timeout_ms",
            )))));
        }
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(None) = polled {
            self.done.set(true);
        }
        polled
    }
}
