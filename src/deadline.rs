//! The request deadline: one instant per request by which all of its work must be done.
//!
//! The HTTP edge sets it when a request arrives (`http.request_timeout_ms`); the tenant door
//! bounds every database transaction by it, so a database that stops answering (paused, network
//! partitioned: the TCP connection stays open and no error ever arrives) costs a request a
//! bounded time and a `503` with `Retry-After`, never a hang. Work outside a request (CLI,
//! background jobs) has no task deadline and uses the door's own budget instead.

use std::future::Future;
use std::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `fut` with `deadline` as the current task's deadline.
pub fn scope<F: Future>(deadline: Instant, fut: F) -> impl Future<Output = F::Output> {
    DEADLINE.scope(deadline, fut)
}

/// The current request's deadline, if this task serves a request.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}
