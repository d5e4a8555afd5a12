//! `X-Request-Id` on every response and in every log line and problem body, plus one structured
//! log line per request (route, status, latency, tenant, user). The outermost middleware, so
//! every answer — the edge's refusals included — carries the id.

use std::time::Instant;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The header name.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The current request's id, when called inside a request.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A client-sent id is echoed only if it is short and plain (../shared/API.md §4).
fn valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Middleware: assigns the id, opens the request span, logs the outcome.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, Error> {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
        "tenant.id" = tracing::field::Empty,
        "user.id" = tracing::field::Empty,
    );
    let started = Instant::now();
    let result = REQUEST_ID
        .scope(id.clone(), next.call(req).instrument(span.clone()))
        .await;
    let mut res = result?;
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(HEADER, v);
    }
    // Cheap hardening for an API that never serves HTML except /docs.
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    let status = res.status().as_u16();
    // `match_pattern` routes the path a second time (regex matching, a few percent of a cheap
    // request's CPU), so it runs only when the line is actually written.
    let error = status >= 500;
    if error || tracing::enabled!(tracing::Level::INFO) {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "<unmatched>".into());
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        span.in_scope(|| {
            if error {
                tracing::error!(route, status, latency_ms, "request completed");
            } else {
                tracing::info!(route, status, latency_ms, "request completed");
            }
        });
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    #[test]
    fn validates_client_ids() {
        assert!(super::valid("abc-123_x.y"));
        assert!(!super::valid(""));
        assert!(!super::valid("a b"));
        assert!(!super::valid(&"a".repeat(129)));
    }
}
