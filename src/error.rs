//! The one response-facing error type. Every failure a client can see is an [`AppError`], rendered
//! as RFC 9457 problem+json with a stable `code` (../shared/API.md §3). Causes of 5xx are logged with the
//! request id and never shown.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::request_id;

/// One field problem inside a `validation_failed` body.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct FieldError {
    /// Dotted path of the offending field (`email`, `custom.tier`).
    pub field: String,
    /// Stable machine-readable code (`required`, `invalid_format`, `unknown_field`, …).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Everything that can go wrong, in the client's terms.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: body is not valid JSON, bad query syntax.
    #[error("{0}")]
    Malformed(String),
    /// 401: missing, invalid, expired or revoked credential.
    #[error("authentication required")]
    Unauthenticated,
    /// 401: login failed (same for unknown email and wrong password).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// 401: credential's tenant differs from the host's.
    #[error("tenant mismatch")]
    TenantMismatch,
    /// 401: a consumed refresh token was presented; its family is now revoked.
    #[error("refresh token reused")]
    RefreshTokenReused,
    /// 402: the plan's quota `quota` (`limit`) would be exceeded; `used` is the current count.
    #[error("quota {quota} exceeded")]
    QuotaExceeded {
        /// The quota's name (`records`, `seats`, …).
        quota: &'static str,
        /// The tenant's limit.
        limit: u64,
        /// How much is in use.
        used: u64,
    },
    /// 403: authenticated but lacking `permission`.
    #[error("missing permission {0}")]
    Forbidden(&'static str),
    /// 403: tenant is suspended.
    #[error("tenant suspended")]
    TenantSuspended,
    /// 404: no such record, or another tenant's (identical answer).
    #[error("not found")]
    NotFound,
    /// 404: unknown tenant subdomain.
    #[error("tenant not found")]
    TenantNotFound,
    /// 405 with `Allow`.
    #[error("method not allowed")]
    MethodNotAllowed(String),
    /// 408: the request body did not arrive within `http.body_timeout_ms`.
    #[error("request body timed out")]
    RequestTimeout,
    /// 409: uniqueness clash.
    #[error("{0}")]
    Conflict(String),
    /// 409: tenant slug taken.
    #[error("slug taken")]
    SlugTaken,
    /// 409: same Idempotency-Key still running.
    #[error("idempotency key in progress")]
    IdempotencyInProgress,
    /// 412: `If-Match` mismatch.
    #[error("version conflict")]
    VersionConflict,
    /// 413.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 422 with field errors.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 422: same Idempotency-Key with a different request.
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    /// 429 with `Retry-After` seconds.
    #[error("rate limited")]
    RateLimited(u64),
    /// 503: database unreachable, stalled past the request deadline, pool exhausted, or a
    /// transient conflict (deadlock, serialization failure, statement timeout). The HTTP edge
    /// adds `Retry-After` from `database.retry_after_secs` to every 503, so no call site picks a
    /// number. The text is the cause, for the log only.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// 500: the cause is logged, never returned.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
    /// An error status the framework produced rather than our code (an extractor's refusal, say);
    /// the HTTP edge re-renders it as problem+json with the same status.
    #[error("framework answered {0}")]
    Framework(StatusCode),
}

impl AppError {
    /// One-field validation failure.
    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, code, message)])
    }

    /// Wraps any error as an internal one.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    /// The stable `code` string.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_request",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::TenantMismatch => "tenant_mismatch",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::Forbidden(_) => "forbidden",
            Self::TenantSuspended => "tenant_suspended",
            Self::NotFound => "not_found",
            Self::TenantNotFound => "tenant_not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::Conflict(_) => "conflict",
            Self::SlugTaken => "slug_taken",
            Self::IdempotencyInProgress => "idempotency_in_progress",
            Self::VersionConflict => "version_conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Validation(_) => "validation_failed",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::RateLimited(_) => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal_error",
            Self::Framework(status) => match status.as_u16() {
                400 => "malformed_request",
                404 => "not_found",
                405 => "method_not_allowed",
                408 => "request_timeout",
                413 => "payload_too_large",
                415 => "unsupported_media_type",
                429 => "rate_limited",
                503 => "unavailable",
                s if s >= 500 => "internal_error",
                _ => "request_refused",
            },
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "Malformed request",
            Self::Unauthenticated => "Authentication required",
            Self::InvalidCredentials => "Invalid credentials",
            Self::TenantMismatch => "Tenant mismatch",
            Self::RefreshTokenReused => "Refresh token reused",
            Self::QuotaExceeded { .. } => "Quota exceeded",
            Self::Forbidden(_) => "Forbidden",
            Self::TenantSuspended => "Tenant suspended",
            Self::NotFound => "Not found",
            Self::TenantNotFound => "Tenant not found",
            Self::MethodNotAllowed(_) => "Method not allowed",
            Self::RequestTimeout => "Request timeout",
            Self::Conflict(_) => "Conflict",
            Self::SlugTaken => "Slug taken",
            Self::IdempotencyInProgress => "Idempotent request in progress",
            Self::VersionConflict => "Version conflict",
            Self::PayloadTooLarge => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::Validation(_) => "Validation failed",
            Self::IdempotencyKeyReused => "Idempotency key reused",
            Self::RateLimited(_) => "Rate limited",
            Self::Unavailable(_) => "Service unavailable",
            Self::Internal(_) => "Internal server error",
            Self::Framework(status) => status.canonical_reason().unwrap_or("Error"),
        }
    }

    /// Client-facing detail. Fixed text for anything whose cause could leak.
    fn detail(&self) -> String {
        match self {
            Self::Malformed(d) | Self::Conflict(d) => d.clone(),
            Self::Unauthenticated => "A valid credential is required.".into(),
            Self::InvalidCredentials => "Email or password is incorrect.".into(),
            Self::TenantMismatch => {
                "The credential belongs to a different tenant than the host.".into()
            }
            Self::RefreshTokenReused => {
                "This refresh token was already used; the session has been revoked.".into()
            }
            Self::QuotaExceeded { quota, limit, used } => format!(
                "The plan allows {limit} {quota} and {used} are in use; delete some or change \
                 the plan."
            ),
            Self::Forbidden(p) => format!("This action requires the `{p}` permission."),
            Self::TenantSuspended => "This tenant is suspended.".into(),
            Self::NotFound => "The requested resource does not exist.".into(),
            Self::TenantNotFound => "No tenant exists at this address.".into(),
            Self::MethodNotAllowed(allow) => format!("Allowed methods: {allow}."),
            Self::RequestTimeout => "The request body was not received in time.".into(),
            Self::SlugTaken => "That tenant slug is already taken.".into(),
            Self::IdempotencyInProgress => {
                "A request with this Idempotency-Key is still being processed.".into()
            }
            Self::VersionConflict => "If-Match does not match the current version.".into(),
            Self::PayloadTooLarge => "The request body is larger than allowed.".into(),
            Self::UnsupportedMediaType => "Send the body as application/json.".into(),
            Self::Validation(_) => "One or more fields are invalid.".into(),
            Self::IdempotencyKeyReused => {
                "This Idempotency-Key was used with a different request.".into()
            }
            Self::RateLimited(s) => format!("Too many requests; retry in {s} s."),
            Self::Unavailable(_) => "The service is temporarily unavailable; retry shortly.".into(),
            Self::Internal(_) => "An unexpected error occurred.".into(),
            Self::Framework(_) => "The request could not be processed.".into(),
        }
    }
}

/// The problem+json body (documented in OpenAPI as `Problem`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `/problems/<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short human summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human explanation of this occurrence.
    pub detail: String,
    /// The request's id (also in `X-Request-Id`).
    pub request_id: String,
    /// Field problems (only for `validation_failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// The missing permission (only for `forbidden`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<&'static str>,
    /// The quota that would be exceeded (only for `quota_exceeded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<&'static str>,
    /// The tenant's limit for that quota (only for `quota_exceeded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// How much of it is in use (only for `quota_exceeded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated
            | Self::InvalidCredentials
            | Self::TenantMismatch
            | Self::RefreshTokenReused => StatusCode::UNAUTHORIZED,
            Self::QuotaExceeded { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::Forbidden(_) | Self::TenantSuspended => StatusCode::FORBIDDEN,
            Self::NotFound | Self::TenantNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict(_) | Self::SlugTaken | Self::IdempotencyInProgress => {
                StatusCode::CONFLICT
            }
            Self::VersionConflict => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Framework(status) => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            Self::Internal(cause) => {
                tracing::error!(
                    error = format!("{cause:#}"),
                    "request failed with an internal error"
                )
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = %cause, "request failed: database unavailable")
            }
            Self::Framework(status) if status.is_server_error() => {
                tracing::error!(%status, "the framework answered with a server error")
            }
            _ => {}
        }
        let body = Problem {
            kind: format!("/problems/{}", self.code()),
            title: self.title().into(),
            status: status.as_u16(),
            code: self.code(),
            detail: self.detail(),
            request_id: request_id::current().unwrap_or_default(),
            errors: match self {
                Self::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
            permission: match self {
                Self::Forbidden(p) => Some(p),
                _ => None,
            },
            quota: None,
            limit: None,
            used: None,
        };
        let body = match self {
            Self::QuotaExceeded { quota, limit, used } => Problem {
                quota: Some(quota),
                limit: Some(*limit),
                used: Some(*used),
                ..body
            },
            _ => body,
        };
        let mut res = HttpResponse::build(status);
        res.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        match self {
            Self::Unauthenticated | Self::TenantMismatch | Self::RefreshTokenReused => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Self::RateLimited(s) => {
                res.insert_header((header::RETRY_AFTER, s.to_string()));
            }
            Self::MethodNotAllowed(allow) => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    res.insert_header((header::ALLOW, v));
                }
            }
            _ => {}
        }
        res.body(serde_json::to_vec(&body).unwrap_or_default())
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::NotFound => Self::NotFound,
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand
                | DatabaseErrorKind::SerializationFailure,
                info,
            ) => Self::Unavailable(info.message().to_string()),
            Error::DatabaseError(kind, info) if is_transient(info.message()) => {
                Self::Unavailable(format!("{kind:?}: {}", info.message()))
            }
            other => Self::Internal(other.into()),
        }
    }
}

/// Whether a PostgreSQL error is one a retry can cure: the same request, sent again, may well
/// succeed. diesel-async keeps only a few SQLSTATEs as kinds (serialization failure among them)
/// and hides the rest, so deadlocks (40P01), statement and lock timeouts (57014, 55P03) and a
/// server shutting down or restarting (57P01–57P03) are recognised by PostgreSQL's own message
/// text. That text is English unless the server's `lc_messages` says otherwise; `tessera
/// doctor` reports the setting.
pub fn is_transient(message: &str) -> bool {
    const TRANSIENT: &[&str] = &[
        "deadlock detected",
        // Citus' distributed deadlock detector cancels one transaction of a cycle that spans
        // connections (and so no single node's detector sees).
        "canceling the transaction since it was involved in a distributed deadlock",
        "canceling statement due to statement timeout",
        "canceling statement due to lock timeout",
        "could not obtain lock",
        "could not serialize access",
        "terminating connection due to administrator command",
        "the database system is shutting down",
        "the database system is starting up",
        "the database system is in recovery mode",
    ];
    TRANSIENT.iter().any(|m| message.starts_with(m))
}

/// Result alias for handlers and domain code.
pub type AppResult<T> = Result<T, AppError>;
