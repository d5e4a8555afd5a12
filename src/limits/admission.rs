//! The request path's rate-limit stage, for authenticated tenant requests: the tenant's GCRA
//! budget ([`super::rate::Limiter`], shared across replicas through Redis when configured), the
//! cap on the tenant's requests in flight in this replica, and the IETF `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers-11, API.md §4) on every response that passed it.
//!
//! `Principal` extraction calls [`Admission::admit`] right after authentication; the decision is
//! kept in the request's extensions, where [`headers`] (a middleware) finds it to write
//! `RateLimit-Policy: "tenant";q=<burst>;w=<s>` and `RateLimit: "tenant";r=<remaining>;t=<s>`,
//! on a 429 too. The in-flight permit lives in the same extensions and is returned when the
//! request is done.
//!
//! Per API key budgets join when API keys exist: the key becomes the budget's name, the tenant's
//! budget still applies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};

use super::plans::Limits;
use super::rate::{Limiter, Rate};
use crate::error::AppError;
use crate::ids::TenantId;

/// `RateLimit-Policy` (draft-11).
pub const POLICY_HEADER: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-11).
pub const STATE_HEADER: HeaderName = HeaderName::from_static("ratelimit");

/// What the headers report for one request.
#[derive(Debug, Clone, Copy)]
struct Reported {
    burst: u32,
    window_secs: u64,
    remaining: u32,
    reset_secs: u64,
}

/// A held place among the tenant's requests in flight; given back on drop.
struct Permit(Arc<AtomicU32>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whole seconds, rounded up (a client that waits that long is let through).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The rate-limit stage's state: the limiter and the per-tenant in-flight counters.
#[derive(Clone)]
pub struct Admission {
    limiter: Limiter,
    in_flight: Arc<Mutex<HashMap<TenantId, Arc<AtomicU32>>>>,
    enabled: bool,
}

impl Admission {
    /// The stage over `limiter`; `enabled = false` (config `limits.enforce`) admits everything
    /// and reports nothing, for measuring what the stage costs.
    pub fn new(limiter: Limiter, enabled: bool) -> Self {
        Self {
            limiter,
            in_flight: Arc::default(),
            enabled,
        }
    }

    /// Admits one request of `tenant` under `limits`, or refuses it with 429 `rate_limited`
    /// (its budget is empty, or `max_concurrent_requests` of its requests are already running
    /// here). Either way the decision is left in `req`'s extensions for the headers.
    pub async fn admit(
        &self,
        req: &HttpRequest,
        tenant: TenantId,
        limits: &Limits,
    ) -> Result<(), AppError> {
        if !self.enabled {
            return Ok(());
        }
        let rate = Rate::per_second(limits.rate.requests_per_second, limits.rate.burst);
        let decision = self.limiter.check(&format!("tenant:{tenant}"), rate).await;
        req.extensions_mut().insert(Reported {
            burst: decision.burst,
            window_secs: ceil_secs(rate.window()),
            remaining: decision.remaining,
            reset_secs: ceil_secs(decision.reset_after),
        });
        if !decision.allowed {
            let wait = decision.retry_after.unwrap_or(Duration::from_secs(1));
            return Err(AppError::RateLimited(ceil_secs(wait).max(1)));
        }
        let counter = {
            let mut map = self.in_flight.lock().expect("in-flight lock");
            map.entry(tenant).or_default().clone()
        };
        let before = counter.fetch_add(1, Ordering::AcqRel);
        let permit = Permit(counter);
        if before >= limits.max_concurrent_requests {
            // The cell taken from the budget is not given back: a client hammering past its
            // concurrency pays for it like any other request.
            drop(permit);
            return Err(AppError::RateLimited(1));
        }
        req.extensions_mut().insert(permit);
        Ok(())
    }

    /// Forgets tenants with nothing in flight, so the map holds only active tenants; run on a
    /// timer with the limiter's own pruning.
    pub fn prune(&self) {
        self.limiter.prune();
        self.in_flight
            .lock()
            .expect("in-flight lock")
            // A permit holds a clone of its counter: one reference means nothing in flight.
            .retain(|_, n| Arc::strong_count(n) > 1);
    }

    /// Requests of `tenant` in flight in this replica right now.
    pub fn in_flight(&self, tenant: TenantId) -> u32 {
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .get(&tenant)
            .map_or(0, |n| n.load(Ordering::Acquire))
    }

    /// Tenants currently holding an in-flight counter.
    pub fn tracked_tenants(&self) -> usize {
        self.in_flight.lock().expect("in-flight lock").len()
    }
}

/// Middleware: writes the `RateLimit-Policy` and `RateLimit` headers on every response whose
/// request passed the rate-limit stage (2xx, 4xx and 429 alike).
pub async fn headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let reported = res.request().extensions().get::<Reported>().copied();
    if let Some(r) = reported {
        let h = res.headers_mut();
        if let Ok(v) =
            HeaderValue::from_str(&format!("\"tenant\";q={};w={}", r.burst, r.window_secs))
        {
            h.insert(POLICY_HEADER, v);
        }
        if let Ok(v) =
            HeaderValue::from_str(&format!("\"tenant\";r={};t={}", r.remaining, r.reset_secs))
        {
            h.insert(STATE_HEADER, v);
        }
    }
    Ok(res)
}
