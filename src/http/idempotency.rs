//! `Idempotency-Key` (../shared/API.md §4, Stripe's model, IETF draft-ietf-httpapi-idempotency-key-header).
//!
//! 1. [`claim`] records the key as `in_progress` in its own committed transaction, so a concurrent
//!    retry sees it and gets 409; a finished one is replayed; a different request → 422.
//! 2. The handler's own transaction calls [`complete`] with the response, so the stored response
//!    commits atomically with the change it describes.
//! 3. If the handler fails, [`release`] forgets the key: nothing is stored for a request that did
//!    not execute. A claim abandoned by a crashed process can be re-claimed after a minute.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Bytea, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use diesel_async::scoped_futures::ScopedFutureExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::db::schema::idempotency_keys;
use crate::error::{AppError, AppResult};
use crate::tenancy::{Door, TenantTx, TxScope};

/// Header name.
pub const HEADER: &str = "idempotency-key";
/// Maximum key length.
pub const MAX_LEN: usize = 255;

/// A validated key plus the request fingerprint it must match.
#[derive(Debug, Clone)]
pub struct Key {
    /// The client's key.
    pub key: String,
    /// SHA-256 over method, path and body.
    pub fingerprint: Vec<u8>,
}

impl Key {
    /// Reads the header; `Ok(None)` if absent, 422 if malformed.
    pub fn from_request(req: &HttpRequest, body: &[u8]) -> AppResult<Option<Key>> {
        let Some(v) = req.headers().get(HEADER) else {
            return Ok(None);
        };
        let key = v.to_str().ok().filter(|k| {
            !k.is_empty() && k.len() <= MAX_LEN && k.bytes().all(|b| (0x21..0x7f).contains(&b))
        });
        let Some(key) = key else {
            return Err(AppError::field(
                "Idempotency-Key",
                "invalid_format",
                format!("must be 1–{MAX_LEN} visible ASCII characters"),
            ));
        };
        let mut h = Sha256::new();
        h.update(req.method().as_str());
        h.update([0]);
        h.update(req.path());
        h.update([0]);
        h.update(body);
        Ok(Some(Key {
            key: key.to_string(),
            fingerprint: h.finalize().to_vec(),
        }))
    }
}

/// A stored response.
#[derive(Debug, Clone)]
pub struct Stored {
    status: u16,
    headers: Value,
    body: Value,
}

impl Stored {
    /// Renders the replay, marked `Idempotent-Replayed: true`.
    pub fn into_response(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut res = HttpResponse::build(status);
        if let Value::Object(headers) = self.headers {
            for (name, value) in headers {
                if let Some(v) = value.as_str() {
                    res.insert_header((name.as_str(), v));
                }
            }
        }
        res.insert_header(("Idempotent-Replayed", "true"));
        res.json(self.body)
    }
}

/// Outcome of a claim.
pub enum Claim {
    /// The caller owns the key now: execute.
    Proceed,
    /// Already done: send this.
    Replay(Stored),
}

/// Claims `key` for this request (see the module docs).
pub async fn claim(door: &Door, scope: TxScope, key: &Key) -> AppResult<Claim> {
    let key = key.clone();
    door.write(scope, |tx| {
        async move {
            let tenant = tx.tenant_id().as_uuid();
            // Insert, or take over an expired record or an in-progress one abandoned a minute
            // ago by the same request (a crashed process). Returns a row only if we own it now.
            // The times are parameters, read once from this process's clock: Citus refuses
            // anything but immutable functions (now(), or timestamptz arithmetic) in an ON
            // CONFLICT clause of a distributed table.
            let now = chrono::Utc::now();
            let claimed: Vec<ClaimedRow> = diesel::sql_query(
                "INSERT INTO idempotency_keys (tenant_id, key, request_hash, state, created_at, \
                     locked_at, expires_at) \
                 VALUES ($1, $2, $3, 'in_progress', $4, $4, $5) \
                 ON CONFLICT (tenant_id, key) DO UPDATE SET \
                     request_hash = EXCLUDED.request_hash, state = 'in_progress', \
                     locked_at = EXCLUDED.locked_at, created_at = EXCLUDED.created_at, \
                     expires_at = EXCLUDED.expires_at, \
                     response_status = NULL, response_headers = NULL, response_body = NULL \
                 WHERE idempotency_keys.expires_at < $4 \
                    OR (idempotency_keys.state = 'in_progress' \
                        AND idempotency_keys.locked_at < $6 \
                        AND idempotency_keys.request_hash = EXCLUDED.request_hash) \
                 RETURNING true AS claimed",
            )
            .bind::<SqlUuid, _>(tenant)
            .bind::<Text, _>(&key.key)
            .bind::<Bytea, _>(&key.fingerprint)
            .bind::<Timestamptz, _>(now)
            .bind::<Timestamptz, _>(now + chrono::Duration::hours(24))
            .bind::<Timestamptz, _>(now - chrono::Duration::seconds(60))
            .load(tx.conn())
            .await?;
            if !claimed.is_empty() {
                return Ok(Claim::Proceed);
            }
            let (hash, state, status, headers, body): (
                Vec<u8>,
                String,
                Option<i32>,
                Option<Value>,
                Option<Value>,
            ) = idempotency_keys::table
                .filter(idempotency_keys::tenant_id.eq(tenant))
                .filter(idempotency_keys::key.eq(&key.key))
                .select((
                    idempotency_keys::request_hash,
                    idempotency_keys::state,
                    idempotency_keys::response_status,
                    idempotency_keys::response_headers,
                    idempotency_keys::response_body,
                ))
                .first(tx.conn())
                .await?;
            if hash != key.fingerprint {
                return Err(AppError::IdempotencyKeyReused);
            }
            match (state.as_str(), status) {
                ("completed", Some(status)) => Ok(Claim::Replay(Stored {
                    status: status as u16,
                    headers: headers.unwrap_or(Value::Null),
                    body: body.unwrap_or(Value::Null),
                })),
                _ => Err(AppError::IdempotencyInProgress),
            }
        }
        .scope_boxed()
    })
    .await
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = Bool)]
    #[allow(dead_code)]
    claimed: bool,
}

/// Stores the response inside the handler's transaction.
pub async fn complete(
    tx: &mut TenantTx<'_>,
    key: &Key,
    status: StatusCode,
    headers: Value,
    body: &Value,
) -> AppResult<()> {
    // The explicit tenant filter repeats what RLS enforces, so the statement reads as what it does.
    diesel::update(idempotency_keys::table)
        .filter(idempotency_keys::tenant_id.eq(tx.tenant_id().as_uuid()))
        .filter(idempotency_keys::key.eq(&key.key))
        .set((
            idempotency_keys::state.eq("completed"),
            idempotency_keys::response_status.eq(status.as_u16() as i32),
            idempotency_keys::response_headers.eq(headers),
            idempotency_keys::response_body.eq(body),
        ))
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Forgets a claim whose request failed, so the client may retry with the same key.
///
/// The failure may have been the request's deadline running out, so the release gets a budget
/// of its own: one statement's worth, not the expired deadline (which would refuse it at once).
pub async fn release(door: &Door, scope: TxScope, key: &Key) {
    let k = key.key.clone();
    let budget = Duration::from_millis(door.limits().statement_timeout_ms);
    let work = door.write(scope, |tx| {
        async move {
            diesel::delete(idempotency_keys::table)
                .filter(idempotency_keys::tenant_id.eq(tx.tenant_id().as_uuid()))
                .filter(idempotency_keys::key.eq(k))
                .filter(idempotency_keys::state.eq("in_progress"))
                .execute(tx.conn())
                .await?;
            Ok(())
        }
        .scope_boxed()
    });
    let result = crate::deadline::scope(Instant::now() + budget, work).await;
    if let Err(e) = result {
        // The claim then expires on its own after a minute.
        tracing::warn!(error = %e, "could not release idempotency key");
    }
}
