//! The HTTP edge: rules every request meets before any route, and every response after.
//!
//! Before the route:
//! 1. the connection's own state ([`super::conn`]): a connection that carried an ambiguously
//!    framed request, or that is over its address's connection cap, gets nothing more;
//! 2. framing (RFC 9112 §6.1, §6.3): `Transfer-Encoding` together with `Content-Length`, or
//!    `Transfer-Encoding` in HTTP/1.0, is refused with 400 and the connection is closed — a
//!    proxy in front may have split the bytes differently, which is how requests are smuggled;
//! 3. the target authority (RFC 9112 §3.2): exactly one `Host`, well formed; an absolute-form
//!    request line decides the authority and must agree with `Host`. The resulting
//!    [`HostTarget`](host::HostTarget) is computed once, here, and stored in the request, so tenant resolution,
//!    the credential check and signup can never see different answers;
//! 4. `HEAD` is served by the `GET` route (actix sends the headers without the body);
//! 5. the body is watched for its end and its deadline ([`super::payload`]), and the request's
//!    deadline ([`crate::deadline`]) is set for everything downstream.
//!
//! After: `Retry-After` on every 503 (from `database.retry_after_secs`), `Cache-Control:
//! no-store` unless a handler chose otherwise (responses carry tenant data and credentials), and
//! problem+json for error responses the framework produced with some other body.

use std::str::FromStr;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{RequestHead, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::uri::Authority;
use actix_web::http::{ConnectionType, Method, StatusCode, Version};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError, web};

use super::conn::Connection;
use super::payload;
use crate::app::AppState;
use crate::error::AppError;
use crate::tenancy::host;

/// The middleware; see the module docs.
pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(refuse(
            req,
            AppError::internal(anyhow::anyhow!("no app state")),
            false,
        ));
    };
    let http = &state.config.http;
    if let Some(conn) = req.conn_data::<Connection>() {
        if conn.is_poisoned() {
            let e = AppError::Malformed(
                "an earlier request on this connection was refused for its framing".into(),
            );
            return Ok(finish(&state, refuse(req, e, true)));
        }
        if conn.is_over_cap() {
            return Ok(finish(&state, refuse(req, AppError::RateLimited(1), true)));
        }
    }
    if let Err(e) = framing(req.head()) {
        if let Some(conn) = req.conn_data::<Connection>() {
            conn.poison();
        }
        return Ok(finish(&state, refuse(req, e, true)));
    }
    match authority(req.head()) {
        Ok(authority) => {
            let target = host::target(
                authority.as_deref().unwrap_or(""),
                &state.config.public.base_domain,
            );
            req.extensions_mut().insert(target);
        }
        Err(e) => return Ok(finish(&state, refuse(req, e, true))),
    }
    if req.method() == Method::HEAD {
        // actix remembers at parse time that this is a HEAD request and sends no body.
        req.head_mut().method = Method::GET;
    }
    let body = payload::watch(&mut req, Duration::from_millis(http.body_timeout_ms));
    let deadline = Instant::now() + Duration::from_millis(http.request_timeout_ms);
    let mut res = crate::deadline::scope(deadline, next.call(req))
        .await?
        .map_into_boxed_body();
    body.finish(&mut res);
    Ok(finish(&state, res))
}

/// Answers `req` with `e` without running any route; `close` ends the connection after it.
fn refuse(req: ServiceRequest, e: AppError, close: bool) -> ServiceResponse<BoxBody> {
    let (http_req, _) = req.into_parts();
    let mut res = e.error_response();
    if close {
        res.head_mut().set_connection_type(ConnectionType::Close);
    }
    ServiceResponse::new(http_req, res)
}

/// The response-side rules; see the module docs.
fn finish(state: &AppState, res: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = res.status();
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let mut res = if (status.is_client_error() || status.is_server_error()) && !is_problem {
        let (req, old) = res.into_parts();
        let mut fresh = AppError::Framework(status).error_response();
        // Keep what the framework said about the connection and the allowed methods.
        fresh
            .head_mut()
            .set_connection_type(old.head().connection_type());
        if let Some(allow) = old.headers().get(header::ALLOW) {
            fresh.headers_mut().insert(header::ALLOW, allow.clone());
        }
        ServiceResponse::new(req, fresh)
    } else {
        res
    };
    let headers = res.headers_mut();
    if status == StatusCode::SERVICE_UNAVAILABLE && !headers.contains_key(header::RETRY_AFTER) {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(state.config.database.retry_after_secs),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Refuses framing that two HTTP parsers could read differently (RFC 9112 §6.1, §6.3).
fn framing(head: &RequestHead) -> Result<(), AppError> {
    let te = head.headers.contains_key(header::TRANSFER_ENCODING);
    if te && head.headers.contains_key(header::CONTENT_LENGTH) {
        return Err(AppError::Malformed(
            "Transfer-Encoding and Content-Length together make the body's length ambiguous".into(),
        ));
    }
    if te && head.version < Version::HTTP_11 {
        return Err(AppError::Malformed(
            "Transfer-Encoding is not defined for HTTP/1.0".into(),
        ));
    }
    Ok(())
}

/// The authority the request addresses (RFC 9112 §3.2.2): the request target's, when the request
/// line is in absolute form (then `Host` must agree), else the one `Host` header. `None` only for
/// an HTTP/1.0 request without either; HTTP/1.1 requires `Host`.
fn authority(head: &RequestHead) -> Result<Option<String>, AppError> {
    let bad = |why: &str| AppError::Malformed(why.into());
    let mut hosts = head.headers.get_all(header::HOST);
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(bad("a request carries exactly one Host header"));
    }
    let host = match host {
        Some(v) => Some(parse_authority(
            v.to_str().map_err(|_| bad("Host is not valid"))?,
        )?),
        None => None,
    };
    match (head.uri.authority(), host) {
        (Some(target), Some(host)) => {
            let default_port = if head.uri.scheme_str() == Some("https") {
                443
            } else {
                80
            };
            if !same_authority(target, &host, default_port) {
                return Err(bad("the request target's authority and Host differ"));
            }
            Ok(Some(target.as_str().to_string()))
        }
        (Some(target), None) => Ok(Some(parse_authority(target.as_str())?.as_str().to_string())),
        (None, Some(host)) => Ok(Some(host.as_str().to_string())),
        (None, None) if head.version >= Version::HTTP_11 => {
            Err(bad("HTTP/1.1 requests must carry a Host header"))
        }
        (None, None) => Ok(None),
    }
}

/// `host[:port]`, no user information (`user@host` is how some parsers are told apart).
fn parse_authority(s: &str) -> Result<Authority, AppError> {
    let bad = || AppError::Malformed("Host is not valid".into());
    if s.is_empty() || s.contains('@') {
        return Err(bad());
    }
    let authority = Authority::from_str(s).map_err(|_| bad())?;
    // `Authority` accepts any text after the colon; a port is digits (and fits in 16 bits).
    let after_host = s.rsplit_once(']').map_or(s, |(_, rest)| rest);
    if after_host.contains(':') && authority.port_u16().is_none() {
        return Err(bad());
    }
    Ok(authority)
}

/// Whether two authorities name the same host and port (case-insensitive, a missing port being
/// `default_port`, a trailing dot ignored).
fn same_authority(a: &Authority, b: &Authority, default_port: u16) -> bool {
    let name = |x: &Authority| x.host().trim_end_matches('.').to_ascii_lowercase();
    let port = |x: &Authority| x.port_u16().unwrap_or(default_port);
    name(a) == name(b) && port(a) == port(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use actix_web::{App, HttpResponse, middleware::from_fn};

    /// Error answers the framework (not `AppError`) produces become problems with the same status
    /// and `Allow`; 503s get the configured `Retry-After`; responses default to `no-store`.
    #[actix_web::test]
    async fn framework_answers_become_problems_and_503s_get_retry_after() {
        let mut config = crate::config::Config::load_from(
            crate::config::Profile::Test,
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
            figment::providers::Env::prefixed("TESSERA_UNSET_"),
        )
        .unwrap();
        // The pool is lazy: nothing here connects.
        config.database.url = "postgres://nobody@127.0.0.1:1/none".into();
        config.database.retry_after_secs = 9;
        let keys = crate::auth::keys::Keys::generate().unwrap().0;
        let state = web::Data::new(AppState::new(config, keys).unwrap());
        let app = actix_web::test::init_service(
            App::new()
                .app_data(state)
                .wrap(from_fn(middleware))
                .route(
                    "/plain",
                    web::get().to(|| async {
                        HttpResponse::MethodNotAllowed()
                            .insert_header((header::ALLOW, "GET"))
                            .body("plain text")
                    }),
                )
                .route(
                    "/busy",
                    web::get().to(|| async { HttpResponse::ServiceUnavailable().finish() }),
                ),
        )
        .await;
        let req = TestRequest::get()
            .uri("/plain")
            .insert_header(("host", "localhost"));
        let res = actix_web::test::call_service(&app, req.to_request()).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers().get(header::ALLOW).unwrap(), "GET");
        assert_eq!(
            res.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
        assert_eq!(
            res.headers().get(header::CACHE_CONTROL).unwrap(),
            "no-store"
        );
        let body: serde_json::Value = actix_web::test::read_body_json(res).await;
        assert_eq!(body["code"], "method_not_allowed");
        let req = TestRequest::get()
            .uri("/busy")
            .insert_header(("host", "localhost"));
        let res = actix_web::test::call_service(&app, req.to_request()).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "9");
        let body: serde_json::Value = actix_web::test::read_body_json(res).await;
        assert_eq!(body["code"], "unavailable");
    }

    fn head(req: TestRequest) -> RequestHead {
        req.to_srv_request().head().clone()
    }

    #[test]
    fn framing_refuses_te_with_cl_and_te_on_http_1_0() {
        let both = TestRequest::post()
            .insert_header(("transfer-encoding", "chunked"))
            .insert_header(("content-length", "5"));
        assert!(framing(&head(both)).is_err());
        let old = TestRequest::post()
            .version(Version::HTTP_10)
            .insert_header(("transfer-encoding", "chunked"));
        assert!(framing(&head(old)).is_err());
        let fine = TestRequest::post().insert_header(("transfer-encoding", "chunked"));
        assert!(framing(&head(fine)).is_ok());
    }

    #[test]
    fn authority_follows_rfc_9112() {
        let host = |h: &str| TestRequest::get().insert_header(("host", h));
        assert_eq!(
            authority(&head(host("acme.localhost:8080")))
                .unwrap()
                .as_deref(),
            Some("acme.localhost:8080")
        );
        for bad in ["", "a@b", "acme.localhost:x", "acme.localhost:99999", "a b"] {
            assert!(authority(&head(host(bad))).is_err(), "{bad:?}");
        }
        let two = host("a.localhost").append_header(("host", "b.localhost"));
        assert!(authority(&head(two)).is_err());
        let absolute = |h: &str| {
            TestRequest::get()
                .uri("http://acme.localhost/v1/me")
                .insert_header(("host", h))
        };
        assert_eq!(
            authority(&head(absolute("ACME.localhost:80")))
                .unwrap()
                .as_deref(),
            Some("acme.localhost")
        );
        assert!(authority(&head(absolute("globex.localhost"))).is_err());
        let mut none = head(TestRequest::get());
        none.headers.remove(header::HOST);
        assert!(authority(&none).is_err());
        none.version = Version::HTTP_10;
        assert_eq!(authority(&none).unwrap(), None);
    }
}
