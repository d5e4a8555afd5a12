//! Tells the client when a response leaves its request body unread.
//!
//! An early answer (413 on a declared length, 401 before the body is looked at, …) leaves the
//! rest of the body on the wire, so actix closes the connection after responding — without
//! saying so. A keep-alive client then reuses the dead connection and its next request fails.
//! Saying `Connection: close` on exactly those responses makes the client open a new one.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::HttpMessage;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::ConnectionType;
use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use actix_web::web::Bytes;
use futures_util::Stream;

/// Whether a request's body was read to its end; see [`track`].
pub struct Tracker(Option<Rc<Cell<bool>>>);

/// Watches `req`'s body (if it has one) for its end.
pub fn track(req: &mut ServiceRequest) -> Tracker {
    let headers = req.headers();
    let has_body = headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    if !has_body {
        return Tracker(None);
    }
    let done = Rc::new(Cell::new(false));
    let inner = req.take_payload();
    req.set_payload(Payload::Stream {
        payload: Box::pin(UntilEnd {
            inner,
            done: done.clone(),
        }),
    });
    Tracker(Some(done))
}

impl Tracker {
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

struct UntilEnd {
    inner: Payload,
    done: Rc<Cell<bool>>,
}

impl Stream for UntilEnd {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(None) = polled {
            self.done.set(true);
        }
        polled
    }
}
