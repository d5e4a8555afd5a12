//! `/v1/contacts` end to end: create/get/patch/delete, lists and cursors, Idempotency-Key,
//! audit events, permissions, and the cross-tenant matrix (../shared/API.md §2–§6).

mod common;

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use futures_util::future::join_all;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const CONTACTS: &str = "/v1/contacts";

fn contact_path(id: &str) -> String {
    format!("{CONTACTS}/{id}")
}

fn id_of(c: &Value) -> String {
    c["id"].as_str().expect("record has an id").to_string()
}

fn ids_of(cs: &[Value]) -> Vec<String> {
    cs.iter().map(id_of).collect()
}

fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn header(res: &Response, name: &str) -> Option<String> {
    let value = res.headers().get(name)?;
    Some(value.to_str().unwrap().to_string())
}

async fn send(req: RequestBuilder) -> Response {
    req.send().await.expect("request reaches the server")
}

/// One caller's view of `/v1/contacts`: `who`'s token on `who`'s own tenant host.
struct Api<'a> {
    app: &'a TestApp,
    who: &'a Tenant,
}

impl<'a> Api<'a> {
    fn new(app: &'a TestApp, who: &'a Tenant) -> Self {
        Self { app, who }
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.app.as_tenant(self.who, method, path)
    }

    async fn post(&self, body: Value) -> Response {
        send(self.req(Method::POST, CONTACTS).json(&body)).await
    }

    /// POST with the body sent byte for byte as given.
    async fn post_raw(&self, content_type: &str, body: impl Into<reqwest::Body>) -> Response {
        let req = self.req(Method::POST, CONTACTS);
        send(req.header("content-type", content_type).body(body)).await
    }

    async fn post_keyed(&self, key: &str, body: Value) -> Response {
        let req = self
            .req(Method::POST, CONTACTS)
            .header("idempotency-key", key);
        send(req.json(&body)).await
    }

    async fn get(&self, id: &str) -> Response {
        send(self.req(Method::GET, &contact_path(id))).await
    }

    async fn patch(&self, id: &str, body: Value) -> Response {
        send(self.req(Method::PATCH, &contact_path(id)).json(&body)).await
    }

    async fn patch_if(&self, id: &str, if_match: &str, body: Value) -> Response {
        let req = self.req(Method::PATCH, &contact_path(id));
        send(req.header("if-match", if_match).json(&body)).await
    }

    async fn delete(&self, id: &str) -> Response {
        send(self.req(Method::DELETE, &contact_path(id))).await
    }

    async fn delete_if(&self, id: &str, if_match: &str) -> Response {
        let req = self.req(Method::DELETE, &contact_path(id));
        send(req.header("if-match", if_match)).await
    }

    /// Creates a contact that must be accepted.
    async fn create(&self, body: Value) -> Value {
        expect(self.post(body).await, StatusCode::CREATED).await
    }

    /// Reads a contact that must exist.
    async fn read(&self, id: &str) -> Value {
        expect(self.get(id).await, StatusCode::OK).await
    }

    /// Patches a contact; the patch must be accepted.
    async fn update(&self, id: &str, body: Value) -> Value {
        expect(self.patch(id, body).await, StatusCode::OK).await
    }

    async fn remove(&self, id: &str) {
        expect(self.delete(id).await, StatusCode::NO_CONTENT).await;
    }

    async fn list_res(&self, query: &[(&str, &str)]) -> Response {
        send(self.req(Method::GET, CONTACTS).query(query)).await
    }

    /// A list page that must succeed.
    async fn list(&self, query: &[(&str, &str)]) -> Value {
        expect(self.list_res(query).await, StatusCode::OK).await
    }

    /// The ids on one list page.
    async fn ids(&self, query: &[(&str, &str)]) -> Vec<String> {
        ids_of(self.list(query).await["data"].as_array().unwrap())
    }

    /// Follows `next_cursor` from the first page to the last; returns every id in order.
    async fn walk(&self, sort: &str, limit: usize) -> Vec<String> {
        let limit_s = limit.to_string();
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..50 {
            let mut query = vec![("sort", sort), ("limit", limit_s.as_str())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.as_str()));
            }
            let page = self.list(&query).await;
            let data = page["data"].as_array().unwrap();
            assert!(data.len() <= limit, "page larger than limit: {page}");
            ids.extend(ids_of(data));
            match page["next_cursor"].as_str() {
                Some(next) => {
                    assert_eq!(data.len(), limit, "only the last page is short ({sort})");
                    cursor = Some(next.to_string());
                }
                None => {
                    assert!(page["next_cursor"].is_null());
                    return ids;
                }
            }
        }
        panic!("pagination with sort={sort} did not terminate");
    }
}

/// A 422 `validation_failed` naming `field`; returns the body.
async fn invalid(res: Response, field: &str) -> Value {
    let body = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let named = error_fields(&body).iter().any(|f| f == field);
    assert!(named, "expected an error on {field}: {body}");
    body
}

async fn not_found(res: Response) -> Value {
    expect_problem(res, StatusCode::NOT_FOUND, "not_found").await
}

async fn conflict(res: Response) -> Value {
    expect_problem(res, StatusCode::CONFLICT, "conflict").await
}

async fn version_conflict(res: Response) -> Value {
    expect_problem(res, StatusCode::PRECONDITION_FAILED, "version_conflict").await
}

async fn forbidden(res: Response, permission: &str) {
    let body = expect_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(body["permission"], permission, "{body}");
}

fn error_fields(body: &Value) -> Vec<String> {
    let Some(errors) = body["errors"].as_array() else {
        return Vec::new();
    };
    errors
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

fn error_code(body: &Value, field: &str) -> String {
    let errors = body["errors"].as_array().unwrap();
    let error = errors.iter().find(|e| e["field"] == field);
    let error = error.unwrap_or_else(|| panic!("no error on {field}: {body}"));
    error["code"].as_str().unwrap().to_string()
}

/// Rows in `contacts` for a tenant, deleted ones included (superuser: bypasses RLS).
async fn contact_rows(app: &TestApp, tenant_id: &str) -> i64 {
    let db = app.db.admin().await;
    let sql = "SELECT count(*) FROM contacts WHERE tenant_id = $1::text::uuid";
    db.query_one(sql, &[&tenant_id]).await.unwrap().get(0)
}

/// One row of `audit_events`.
#[derive(Debug)]
struct AuditRow {
    seq: i64,
    action: String,
    actor_id: Option<String>,
    target_id: Option<String>,
    request_id: Option<String>,
    changes: Value,
}

async fn audit_rows(app: &TestApp, tenant_id: &str) -> Vec<AuditRow> {
    let db = app.db.admin().await;
    let sql = "SELECT seq, action, actor_id::text, target_id::text, request_id, changes::text \
               FROM audit_events WHERE tenant_id = $1::text::uuid ORDER BY seq";
    let rows = db.query(sql, &[&tenant_id]).await.unwrap();
    let row = |r: tokio_postgres::Row| AuditRow {
        seq: r.get(0),
        action: r.get(1),
        actor_id: r.get(2),
        target_id: r.get(3),
        request_id: r.get(4),
        changes: serde_json::from_str(r.get::<_, &str>(5)).unwrap(),
    };
    rows.into_iter().map(row).collect()
}

/// The request fingerprint exactly as `src/http/idempotency.rs` computes it.
fn request_hash(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().to_vec()
}

fn timestamp(v: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    assert!(s.ends_with('Z'), "RFC 3339 UTC with Z: {s}");
    chrono::DateTime::parse_from_rfc3339(s).unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. Create
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn create_returns_201_with_location_etag_and_every_field() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let res = api
        .post(json!({
            "first_name": "Ada", "last_name": "Lovelace", "email": "Ada.Lovelace@Example.COM",
            "phone": "+44 20 7946 0000", "title": "Analyst", "lifecycle_stage": "lead",
            "tags": ["vip", "math"], "custom": {"tier": "gold", "score": 3, "active": true}
        }))
        .await;
    let location = header(&res, "location");
    let etag = header(&res, "etag");
    let body = expect(res, StatusCode::CREATED).await;
    let id = id_of(&body);
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "id is a UUID: {id}");
    assert_eq!(location, Some(contact_path(&id)));
    assert_eq!(etag.as_deref(), Some("\"1\""));

    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected = BTreeSet::from([
        "id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "title",
        "account_id",
        "owner_id",
        "lifecycle_stage",
        "tags",
        "custom",
        "created_at",
        "updated_at",
        "version",
    ]);
    assert_eq!(keys, expected, "exactly the §6 fields: {body}");
    assert_eq!(body["first_name"], "Ada");
    assert_eq!(body["last_name"], "Lovelace");
    assert_eq!(body["email"], "ada.lovelace@example.com", "lower-cased");
    assert_eq!(body["phone"], "+44 20 7946 0000");
    assert_eq!(body["title"], "Analyst");
    assert_eq!(body["account_id"], Value::Null);
    assert_eq!(body["owner_id"], Value::Null);
    assert_eq!(body["lifecycle_stage"], "lead");
    assert_eq!(body["tags"], json!(["vip", "math"]));
    assert_eq!(
        body["custom"],
        json!({"tier": "gold", "score": 3, "active": true})
    );
    assert_eq!(
        timestamp(&body["created_at"]),
        timestamp(&body["updated_at"])
    );
    assert_eq!(body["version"], 1);

    // What GET returns is what POST returned.
    assert_eq!(api.read(&id).await, body);
}

#[actix_web::test]
async fn create_with_owner_from_same_tenant_succeeds() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let member = app.add_user(&t, "member").await;
    let api = Api::new(&app, &t);
    let c = api
        .create(json!({"first_name": "Owned", "owner_id": member.user_id}))
        .await;
    assert_eq!(c["owner_id"], member.user_id.as_str());
    let mine = api
        .create(json!({"first_name": "Mine", "owner_id": t.user_id}))
        .await;
    assert_eq!(mine["owner_id"], t.user_id.as_str());
}

#[actix_web::test]
async fn create_with_owner_from_another_tenant_is_422_without_leaking_existence() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    let api = Api::new(&app, &b);
    let foreign = api
        .post(json!({"first_name": "X", "owner_id": a.user_id}))
        .await;
    let foreign = invalid(foreign, "owner_id").await;
    let missing = api
        .post(json!({"first_name": "X", "owner_id": random_id()}))
        .await;
    let missing = invalid(missing, "owner_id").await;
    assert_eq!(
        stable(foreign),
        stable(missing),
        "A's user looks exactly like no user"
    );
    assert_eq!(contact_rows(&app, &b.id).await, 0);
}

#[actix_web::test]
async fn create_rejects_unknown_fields() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    for field in ["nickname", "version", "id", "created_at", "deleted_at"] {
        let body = invalid(api.post(json!({"first_name": "A", field: 1})).await, field).await;
        assert_eq!(error_code(&body, field), "unknown_field");
    }
    assert_eq!(contact_rows(&app, &t.id).await, 0);
}

#[actix_web::test]
async fn create_rejects_tenant_id_in_body_and_never_obeys_it() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    let res = Api::new(&app, &a)
        .post(json!({"first_name": "Sneaky", "tenant_id": b.id}))
        .await;
    let body = invalid(res, "tenant_id").await;
    assert_eq!(error_code(&body, "tenant_id"), "unknown_field");
    assert_eq!(contact_rows(&app, &a.id).await, 0);
    assert_eq!(contact_rows(&app, &b.id).await, 0);
}

#[actix_web::test]
async fn create_rejects_unknown_lifecycle_stage() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let body = invalid(
        api.post(json!({"lifecycle_stage": "king"})).await,
        "lifecycle_stage",
    )
    .await;
    assert_eq!(error_code(&body, "lifecycle_stage"), "invalid_value");
    let stages = [
        "subscriber",
        "lead",
        "mql",
        "sql",
        "opportunity",
        "customer",
        "evangelist",
    ];
    for stage in stages.into_iter().chain(["other"]) {
        let c = api.create(json!({"lifecycle_stage": stage})).await;
        assert_eq!(c["lifecycle_stage"], stage);
    }
}

#[actix_web::test]
async fn create_rejects_custom_with_more_than_50_keys() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let custom = |n: usize| Value::Object((0..n).map(|i| (format!("k{i}"), json!(i))).collect());
    let body = invalid(api.post(json!({"custom": custom(51)})).await, "custom").await;
    assert_eq!(error_code(&body, "custom"), "too_many_keys");
    let ok = api.create(json!({"custom": custom(50)})).await;
    assert_eq!(ok["custom"].as_object().unwrap().len(), 50);
}

#[actix_web::test]
async fn create_rejects_nested_custom_values_and_bad_keys() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let res = api
        .post(json!({"custom": {"address": {"city": "Paris"}}}))
        .await;
    let body = invalid(res, "custom.address").await;
    assert_eq!(error_code(&body, "custom.address"), "not_scalar");
    let res = api
        .post(json!({"custom": {"ok": 1, "langs": ["en", "fr"]}}))
        .await;
    let body = invalid(res, "custom.langs").await;
    assert_eq!(
        error_fields(&body),
        ["custom.langs"],
        "only the bad key is named"
    );
    let body = invalid(
        api.post(json!({"custom": {"Bad Key": 1}})).await,
        "custom.Bad Key",
    )
    .await;
    assert_eq!(error_code(&body, "custom.Bad Key"), "invalid_key");
    assert_eq!(contact_rows(&app, &t.id).await, 0);
}

#[actix_web::test]
async fn create_rejects_invalid_email() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    for bad in [
        "not-an-email",
        "a@b",
        "two@@example.com",
        "sp ace@example.com",
    ] {
        let body = invalid(api.post(json!({"email": bad})).await, "email").await;
        assert_eq!(error_code(&body, "email"), "invalid_format", "{bad}");
    }
    assert_eq!(contact_rows(&app, &t.id).await, 0);
}

#[actix_web::test]
async fn create_rejects_wrong_json_types() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let body = invalid(api.post(json!({"first_name": 5})).await, "first_name").await;
    assert_eq!(error_code(&body, "first_name"), "invalid_type");
    invalid(api.post(json!({"tags": "vip"})).await, "tags").await;
    invalid(
        api.post(json!({"owner_id": "not-a-uuid"})).await,
        "owner_id",
    )
    .await;
    // Well-formed JSON of the wrong shape is a 422 too, not a 400.
    let res = api.post(json!([1, 2])).await;
    expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(contact_rows(&app, &t.id).await, 0);
}

#[actix_web::test]
async fn create_with_body_that_is_not_json_is_400() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    for raw in ["{\"first_name\": ", "first_name=Ada", ""] {
        let res = api.post_raw("application/json", raw).await;
        expect_problem(res, StatusCode::BAD_REQUEST, "malformed_request").await;
    }
}

#[actix_web::test]
async fn create_with_text_plain_is_415() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let json_text = r#"{"first_name": "Ada"}"#;
    let res = api.post_raw("text/plain", json_text).await;
    expect_problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let res = send(api.req(Method::POST, CONTACTS).body(json_text)).await;
    expect_problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    assert_eq!(contact_rows(&app, &t.id).await, 0);
    // Parameters on the media type are fine.
    let res = api
        .post_raw("application/json; charset=utf-8", json_text)
        .await;
    expect(res, StatusCode::CREATED).await;
}

#[actix_web::test]
async fn create_with_body_over_1_mib_is_413() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let blob = "x".repeat(1024 * 1024);
    let big = json!({"first_name": "A", "custom": {"blob": blob}}).to_string();
    let res = Api::new(&app, &t).post_raw("application/json", big).await;
    expect_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(contact_rows(&app, &t.id).await, 0);
}

#[actix_web::test]
async fn duplicate_live_email_is_409_conflict() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    api.create(json!({"email": "dup@example.com"})).await;
    conflict(api.post(json!({"email": "dup@example.com"})).await).await;
    // Case does not make it a different address.
    conflict(api.post(json!({"email": " DUP@Example.com "})).await).await;
    assert_eq!(contact_rows(&app, &t.id).await, 1);
}

#[actix_web::test]
async fn concurrent_creates_with_one_email_let_exactly_one_win() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let racers = (0..6)
        .map(|i| api.post(json!({"first_name": format!("R{i}"), "email": "race@example.com"})));
    let statuses: Vec<StatusCode> = join_all(racers)
        .await
        .iter()
        .map(Response::status)
        .collect();
    let won = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((won, lost), (1, 5), "{statuses:?}");
    assert_eq!(contact_rows(&app, &t.id).await, 1);
}

#[actix_web::test]
async fn email_of_deleted_contact_can_be_reused() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let first = api.create(json!({"email": "again@example.com"})).await;
    api.remove(&id_of(&first)).await;
    let second = api.create(json!({"email": "again@example.com"})).await;
    assert_ne!(id_of(&first), id_of(&second));
    // Only one of them is live, so the address is taken again.
    conflict(api.post(json!({"email": "again@example.com"})).await).await;
}

#[actix_web::test]
async fn same_email_in_two_tenants_is_allowed() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    let in_a = Api::new(&app, &a)
        .create(json!({"email": "shared@example.com"}))
        .await;
    let in_b = Api::new(&app, &b)
        .create(json!({"email": "shared@example.com"}))
        .await;
    assert_ne!(id_of(&in_a), id_of(&in_b));
}

// ---------------------------------------------------------------------------------------------
// 2. Get
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn get_returns_contact_with_etag() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let c = api.create(json!({"first_name": "Grace"})).await;
    let res = api.get(&id_of(&c)).await;
    assert_eq!(header(&res, "etag").as_deref(), Some("\"1\""));
    assert_eq!(expect(res, StatusCode::OK).await, c);
}

#[actix_web::test]
async fn get_missing_or_malformed_id_is_404_not_found() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let random = not_found(api.get(&random_id()).await).await;
    let malformed = not_found(api.get("not-a-uuid").await).await;
    assert_eq!(stable(random), stable(malformed));
}

// ---------------------------------------------------------------------------------------------
// 3. Patch and delete
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn patch_changes_only_given_fields_and_bumps_version() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let c = api
        .create(json!({"first_name": "Ada", "last_name": "Byron", "email": "ada@example.com"}))
        .await;
    let id = id_of(&c);
    let res = api
        .patch(
            &id,
            json!({"last_name": "Lovelace", "lifecycle_stage": "customer"}),
        )
        .await;
    assert_eq!(header(&res, "etag").as_deref(), Some("\"2\""));
    let got = expect(res, StatusCode::OK).await;
    assert_eq!(got["last_name"], "Lovelace");
    assert_eq!(got["lifecycle_stage"], "customer");
    assert_eq!(got["version"], 2);
    let untouched = [
        "id",
        "first_name",
        "email",
        "phone",
        "title",
        "owner_id",
        "tags",
        "custom",
    ];
    for field in untouched.into_iter().chain(["created_at"]) {
        assert_eq!(got[field], c[field], "{field} unchanged");
    }
    assert!(timestamp(&got["updated_at"]) > timestamp(&c["updated_at"]));
    let res = api.get(&id).await;
    assert_eq!(
        header(&res, "etag").as_deref(),
        Some("\"2\""),
        "GET's ETag follows"
    );
    assert_eq!(expect(res, StatusCode::OK).await, got);
}

#[actix_web::test]
async fn patch_null_clears_a_field() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let c = api
        .create(json!({"first_name": "Ada", "title": "Countess", "email": "c@example.com", "tags": ["x"]}))
        .await;
    let got = api
        .update(
            &id_of(&c),
            json!({"title": null, "email": null, "tags": null}),
        )
        .await;
    assert_eq!(got["title"], Value::Null);
    assert_eq!(got["email"], Value::Null);
    assert_eq!(got["tags"], json!([]));
    assert_eq!(got["first_name"], "Ada");
    assert_eq!(got["version"], 2);
}

#[actix_web::test]
async fn patch_custom_merges_keys_and_null_deletes_one() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let c = api
        .create(json!({"custom": {"tier": "gold", "score": 3, "seats": 10}}))
        .await;
    let id = id_of(&c);
    let got = api
        .update(
            &id,
            json!({"custom": {"score": 4, "seats": null, "region": "eu"}}),
        )
        .await;
    assert_eq!(
        got["custom"],
        json!({"tier": "gold", "score": 4, "region": "eu"})
    );
    assert_eq!(got["version"], 2);
    let body = invalid(
        api.patch(&id, json!({"custom": {"deep": {"a": 1}}})).await,
        "custom.deep",
    )
    .await;
    assert_eq!(error_code(&body, "custom.deep"), "not_scalar");
    assert_eq!(api.read(&id).await, got, "a rejected patch changes nothing");
}

#[actix_web::test]
async fn patch_rejects_unknown_fields_and_tenant_id() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    let api = Api::new(&app, &a);
    let c = api.create(json!({"first_name": "Stay"})).await;
    let id = id_of(&c);
    invalid(
        api.patch(&id, json!({"tenant_id": b.id})).await,
        "tenant_id",
    )
    .await;
    invalid(api.patch(&id, json!({"version": 9})).await, "version").await;
    invalid(
        api.patch(&id, json!({"lifecycle_stage": "king"})).await,
        "lifecycle_stage",
    )
    .await;
    assert_eq!(api.read(&id).await, c);
    assert_eq!(contact_rows(&app, &b.id).await, 0);
}

#[actix_web::test]
async fn patch_with_current_if_match_succeeds() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let id = id_of(&api.create(json!({"first_name": "A"})).await);
    let res = api.patch_if(&id, "\"1\"", json!({"first_name": "B"})).await;
    assert_eq!(expect(res, StatusCode::OK).await["version"], 2);
    let res = api.patch_if(&id, "\"2\"", json!({"first_name": "C"})).await;
    let got = expect(res, StatusCode::OK).await;
    assert_eq!(
        (got["first_name"].as_str(), got["version"].as_i64()),
        (Some("C"), Some(3))
    );
}

#[actix_web::test]
async fn patch_with_stale_if_match_is_412_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let id = id_of(&api.create(json!({"first_name": "A"})).await);
    api.update(&id, json!({"first_name": "B"})).await;
    for stale in ["\"1\"", "\"3\"", "garbage"] {
        let res = api
            .patch_if(&id, stale, json!({"first_name": "Lost update"}))
            .await;
        version_conflict(res).await;
    }
    let now = api.read(&id).await;
    assert_eq!(
        (now["first_name"].as_str(), now["version"].as_i64()),
        (Some("B"), Some(2))
    );
}

#[actix_web::test]
async fn concurrent_patches_with_the_same_if_match_let_exactly_one_win() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let id = id_of(&api.create(json!({"first_name": "Base"})).await);
    let racers = (0..5).map(|i| api.patch_if(&id, "\"1\"", json!({"first_name": format!("W{i}")})));
    let statuses: Vec<StatusCode> = join_all(racers)
        .await
        .iter()
        .map(Response::status)
        .collect();
    let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((won, lost), (1, 4), "{statuses:?}");
    assert_eq!(api.read(&id).await["version"], 2);
}

#[actix_web::test]
async fn patch_to_email_of_another_live_contact_is_409() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    api.create(json!({"email": "taken@example.com"})).await;
    let other = id_of(&api.create(json!({"email": "free@example.com"})).await);
    conflict(
        api.patch(&other, json!({"email": "Taken@example.com"}))
            .await,
    )
    .await;
    let now = api.read(&other).await;
    assert_eq!(now["email"], "free@example.com");
    assert_eq!(now["version"], 1);
}

#[actix_web::test]
async fn empty_patch_is_200_and_keeps_the_version() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let c = api
        .create(json!({"first_name": "Same", "email": "same@example.com"}))
        .await;
    let id = id_of(&c);
    let res = api.patch(&id, json!({})).await;
    assert_eq!(header(&res, "etag").as_deref(), Some("\"1\""));
    assert_eq!(expect(res, StatusCode::OK).await, c);
    // Setting fields to the values they already have is no change either.
    let got = api
        .update(
            &id,
            json!({"first_name": "Same", "email": "SAME@example.com"}),
        )
        .await;
    assert_eq!(got, c);
}

#[actix_web::test]
async fn delete_is_204_and_the_contact_is_gone() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let id = id_of(&api.create(json!({"first_name": "Doomed"})).await);
    let res = api.delete(&id).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(res.text().await.unwrap(), "");
    not_found(api.get(&id).await).await;
    not_found(api.patch(&id, json!({"first_name": "Zombie"})).await).await;
    not_found(api.delete(&id).await).await;
    assert_eq!(
        contact_rows(&app, &t.id).await,
        1,
        "soft delete keeps the row"
    );
}

#[actix_web::test]
async fn delete_with_stale_if_match_is_412_and_keeps_the_contact() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let id = id_of(&api.create(json!({"first_name": "Kept"})).await);
    api.update(&id, json!({"first_name": "Kept too"})).await;
    version_conflict(api.delete_if(&id, "\"1\"").await).await;
    assert_eq!(api.read(&id).await["version"], 2);
    expect(api.delete_if(&id, "\"2\"").await, StatusCode::NO_CONTENT).await;
    not_found(api.get(&id).await).await;
}

// ---------------------------------------------------------------------------------------------
// 4. Lists
// ---------------------------------------------------------------------------------------------

/// Seven contacts, some without last name or email; returned in creation order.
async fn seed_seven(api: &Api<'_>) -> Vec<Value> {
    let people = [
        json!({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}),
        json!({"first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com"}),
        json!({"first_name": "Alan", "email": "alan@example.com"}),
        json!({"first_name": "Edsger", "last_name": "Dijkstra"}),
        json!({"first_name": "Barbara", "email": "barbara@example.com"}),
        json!({"first_name": "Donald", "last_name": "knuth", "email": "DKnuth@Example.com"}),
        json!({"first_name": "Ken", "last_name": "Thompson"}),
    ];
    let mut out = Vec::new();
    for p in people {
        out.push(api.create(p).await);
    }
    out
}

/// Ids in the server's order for a text sort: lower-cased value (missing = ""), then id.
fn sorted_by_text(contacts: &[Value], field: &str, desc: bool) -> Vec<String> {
    let key = |c: &Value| (c[field].as_str().unwrap_or("").to_lowercase(), id_of(c));
    let mut keyed: Vec<(String, String)> = contacts.iter().map(key).collect();
    keyed.sort();
    if desc {
        keyed.reverse();
    }
    keyed.into_iter().map(|(_, id)| id).collect()
}

#[actix_web::test]
async fn list_defaults_to_newest_first_and_honours_limit() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let seeded = seed_seven(&api).await;
    let newest_first: Vec<String> = ids_of(&seeded).into_iter().rev().collect();
    let page = api.list(&[]).await;
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(ids_of(page["data"].as_array().unwrap()), newest_first);
    assert_eq!(page["data"][0], seeded[6], "list items are full contacts");
    let page = api.list(&[("limit", "2")]).await;
    assert_eq!(ids_of(page["data"].as_array().unwrap()), newest_first[..2]);
    assert!(page["next_cursor"].is_string());
}

#[actix_web::test]
async fn cursor_pagination_walks_every_row_exactly_once_for_each_sort() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let seeded = seed_seven(&api).await;
    let created = ids_of(&seeded);
    let newest: Vec<String> = created.iter().rev().cloned().collect();
    let cases = [
        ("created_at", created.clone()),
        ("-created_at", newest),
        ("updated_at", created),
        ("last_name", sorted_by_text(&seeded, "last_name", false)),
        ("-last_name", sorted_by_text(&seeded, "last_name", true)),
        ("first_name", sorted_by_text(&seeded, "first_name", false)),
        ("email", sorted_by_text(&seeded, "email", false)),
        ("-email", sorted_by_text(&seeded, "email", true)),
    ];
    for (sort, expected) in cases {
        for limit in [3, 1, 7] {
            assert_eq!(
                api.walk(sort, limit).await,
                expected,
                "sort={sort} limit={limit}"
            );
        }
        // One page with everything agrees with the walk.
        assert_eq!(
            api.ids(&[("sort", sort), ("limit", "200")]).await,
            expected,
            "{sort}"
        );
    }
}

#[actix_web::test]
async fn cursor_pagination_breaks_timestamp_ties_by_id() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let seeded = seed_seven(&api).await;
    let db = app.db.admin().await;
    let same = "UPDATE contacts SET created_at = '2030-01-01T00:00:00.123456Z', \
                updated_at = '2030-01-01T00:00:00.123456Z' WHERE tenant_id = $1::text::uuid";
    db.execute(same, &[&t.id]).await.unwrap();
    let mut by_id = ids_of(&seeded);
    by_id.sort();
    let by_id_desc: Vec<String> = by_id.iter().rev().cloned().collect();
    for (sort, expected) in [("created_at", &by_id), ("-created_at", &by_id_desc)] {
        for limit in [1, 2, 3] {
            assert_eq!(
                &api.walk(sort, limit).await,
                expected,
                "sort={sort} limit={limit}"
            );
        }
    }
    assert_eq!(&api.walk("-updated_at", 2).await, &by_id_desc);
}

#[actix_web::test]
async fn cursor_pagination_by_name_survives_unicode_case_folding() {
    // Postgres and Rust lower-case some letters differently (Turkish dotted İ, Greek final
    // sigma); the cursor must hold the value Postgres orders by, or rows are skipped/repeated.
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let mut seeded = Vec::new();
    for last in ["Ibsen", "İlhan", "Ivanov", "ΟΔΥΣΣΕΥΣ", "Οδυσσέας", "Zed"] {
        seeded.push(api.create(json!({"last_name": last})).await);
    }
    let all: BTreeSet<String> = ids_of(&seeded).into_iter().collect();
    for sort in ["last_name", "-last_name"] {
        let full = api.ids(&[("sort", sort), ("limit", "200")]).await;
        assert_eq!(full.iter().cloned().collect::<BTreeSet<_>>(), all);
        for limit in [1, 2] {
            assert_eq!(
                api.walk(sort, limit).await,
                full,
                "sort={sort} limit={limit}"
            );
        }
    }
}

#[actix_web::test]
async fn list_rejects_bad_limits() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    for bad in ["0", "201", "abc", "-1", "1.5", ""] {
        let body = invalid(api.list_res(&[("limit", bad)]).await, "limit").await;
        assert_eq!(error_code(&body, "limit"), "out_of_range", "limit={bad}");
    }
    api.list(&[("limit", "200")]).await;
    api.list(&[("limit", "1")]).await;
}

#[actix_web::test]
async fn list_rejects_unknown_sort_and_unknown_parameters() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    for bad in ["phone", "-custom.tier", "--email", "tenant_id", "id"] {
        invalid(api.list_res(&[("sort", bad)]).await, "sort").await;
    }
    let body = invalid(api.list_res(&[("page", "2")]).await, "page").await;
    assert_eq!(error_code(&body, "page"), "unknown_parameter");
    invalid(
        api.list_res(&[("tenant_id", t.id.as_str())]).await,
        "tenant_id",
    )
    .await;
}

#[actix_web::test]
async fn list_rejects_garbage_cursor_and_cursor_of_another_sort() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    seed_seven(&api).await;
    let not_a_cursor = "eyJub3QiOiJhIGN1cnNvciJ9"; // base64url of {"not":"a cursor"}
    for garbage in ["garbage!", not_a_cursor, "%%%"] {
        let res = api.list_res(&[("cursor", garbage)]).await;
        expect_problem(res, StatusCode::BAD_REQUEST, "malformed_request").await;
    }
    let page = api.list(&[("sort", "last_name"), ("limit", "2")]).await;
    let cursor = page["next_cursor"].as_str().unwrap();
    api.list(&[("sort", "last_name"), ("cursor", cursor)]).await;
    // No sort means -created_at: still not the cursor's sort.
    for other in [
        vec![("sort", "-last_name")],
        vec![("sort", "email")],
        vec![],
    ] {
        let mut query = other;
        query.push(("cursor", cursor));
        let res = api.list_res(&query).await;
        expect_problem(res, StatusCode::BAD_REQUEST, "malformed_request").await;
    }
}

/// A cursor in the pre-sealing format (base64url of the plain JSON), made by hand.
fn plain_cursor(sort: &str, value: &str, id: &str) -> String {
    let json = json!({"s": sort, "v": value, "id": id}).to_string();
    URL_SAFE_NO_PAD.encode(json)
}

#[actix_web::test]
async fn forged_cursor_with_nul_is_400_never_a_500() {
    // PostgreSQL text cannot hold NUL: a forged cursor carrying one once reached the keyset
    // comparison and failed there as a 500.
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    seed_seven(&api).await;
    for sort in ["email", "first_name", "last_name", "-email"] {
        let forged = plain_cursor(sort, "\u{0}", &random_id());
        let res = api.list_res(&[("sort", sort), ("cursor", &forged)]).await;
        expect_problem(res, StatusCode::BAD_REQUEST, "malformed_request").await;
    }
}

/// The `next_cursor` of the first page of `query` (which must have a next page).
async fn first_cursor(api: &Api<'_>, query: &[(&str, &str)]) -> String {
    let page = api.list(query).await;
    let cursor = page["next_cursor"].as_str();
    cursor
        .unwrap_or_else(|| panic!("a next page: {page}"))
        .to_string()
}

/// A 400 `malformed_request` for an unusable cursor; returns the body without its request id.
async fn bad_cursor(res: Response) -> Value {
    let body = expect_problem(res, StatusCode::BAD_REQUEST, "malformed_request").await;
    stable(body)
}

#[actix_web::test]
async fn cursors_in_the_old_plain_format_are_400() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let seeded = seed_seven(&api).await;
    // Exactly what the old server issued for real rows: well-formed, and still refused.
    let (ada, last) = (&seeded[0], &seeded[6]);
    let cases = [
        (
            "-created_at",
            plain_cursor(
                "-created_at",
                last["created_at"].as_str().unwrap(),
                &id_of(last),
            ),
        ),
        (
            "email",
            plain_cursor("email", "ada@example.com", &id_of(ada)),
        ),
        (
            "last_name",
            plain_cursor("last_name", "lovelace", &id_of(ada)),
        ),
    ];
    let garbage = bad_cursor(api.list_res(&[("cursor", "garbage!")]).await).await;
    for (sort, cursor) in cases {
        let res = api.list_res(&[("sort", sort), ("cursor", &cursor)]).await;
        assert_eq!(
            bad_cursor(res).await,
            garbage,
            "{sort}: one answer for every bad cursor"
        );
    }
}

#[actix_web::test]
async fn damaged_cursors_are_400() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    seed_seven(&api).await;
    let query = [("sort", "email"), ("limit", "2")];
    let cursor = first_cursor(&api, &query).await;
    let with = |c: &str| {
        [("sort", "email"), ("limit", "2"), ("cursor", c)].map(|(k, v)| (k, v.to_string()))
    };
    let raw = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
    // One flipped bit at every position of the sealed bytes.
    for i in 0..raw.len() {
        let mut flipped = raw.clone();
        flipped[i] ^= 0x01;
        let res = send(
            api.req(Method::GET, CONTACTS)
                .query(&with(&URL_SAFE_NO_PAD.encode(&flipped))),
        )
        .await;
        bad_cursor(res).await;
    }
    let long = "A".repeat(10_000);
    let damaged = [
        cursor[..cursor.len() - 1].to_string(),
        format!("{cursor}A"),
        format!("A{cursor}"),
        cursor.replace(|c: char| c.is_ascii_lowercase(), "x"),
        long,
    ];
    for c in damaged {
        bad_cursor(send(api.req(Method::GET, CONTACTS).query(&with(&c))).await).await;
    }
    // Raw NUL in the parameter is also just a bad cursor.
    let res = send(api.req(Method::GET, &format!("{CONTACTS}?cursor=a%00b"))).await;
    bad_cursor(res).await;
    // The undamaged one still works.
    api.list(&[("sort", "email"), ("limit", "2"), ("cursor", &cursor)])
        .await;
}

#[actix_web::test]
async fn cursors_hold_no_personal_data() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    // Long values, so that finding one by chance in a cursor's random bytes is impossible.
    let people = [
        (
            "Philomena",
            "Cunningham",
            "philomena.cunningham@example.org",
        ),
        ("Bartholomew", "Fitzgerald", "bart.fitzgerald@example.net"),
        ("Ermengarde", "Vanderbilt", "ERMENGARDE@Example.COM"),
        ("Maximilian", "Oyelaran", "max.oyelaran@example.io"),
    ];
    for (first, last, email) in people {
        api.create(json!({"first_name": first, "last_name": last, "email": email}))
            .await;
    }
    for sort in ["email", "-email", "first_name", "last_name", "-created_at"] {
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("sort", sort), ("limit", "1")];
            if let Some(c) = &cursor {
                query.push(("cursor", c.as_str()));
            }
            let page = api.list(&query).await;
            let Some(next) = page["next_cursor"].as_str() else {
                break;
            };
            let bytes = URL_SAFE_NO_PAD.decode(next).unwrap();
            let last = &page["data"][0];
            for field in ["email", "first_name", "last_name"] {
                let v = last[field].as_str().unwrap();
                for needle in [v.to_string(), v.to_lowercase()] {
                    let hit = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
                    assert!(!hit, "{sort}: cursor {next} carries {field} {needle:?}");
                    assert!(!next.contains(&needle), "{sort}: {next} carries {needle:?}");
                }
            }
            cursor = Some(next.to_string());
        }
    }
}

#[actix_web::test]
async fn a_cursor_only_continues_the_list_it_came_from() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    seed_seven(&api).await;
    for c in ["Ann", "Anna", "Anton"] {
        api.create(json!({"first_name": c, "tags": ["x"]})).await;
    }
    let query = [
        ("q", "an"),
        ("tag", "x"),
        ("sort", "first_name"),
        ("limit", "1"),
    ];
    let cursor = first_cursor(&api, &query).await;
    // The same list, however written, continues.
    let same = [
        vec![("q", "an"), ("tag", "x"), ("sort", "first_name")],
        vec![("sort", "first_name"), ("tag", "x"), ("q", " an ")],
    ];
    for q in same {
        let mut q = q;
        q.push(("cursor", &cursor));
        assert_eq!(api.ids(&q).await.len(), 2, "{q:?}");
    }
    let garbage = bad_cursor(api.list_res(&[("cursor", "garbage!")]).await).await;
    let others = [
        vec![("q", "ann"), ("tag", "x"), ("sort", "first_name")],
        vec![("tag", "x"), ("sort", "first_name")],
        vec![("q", "an"), ("sort", "first_name")],
        vec![
            ("q", "an"),
            ("tag", "x"),
            ("sort", "first_name"),
            ("lifecycle_stage", "lead"),
        ],
        vec![
            ("q", "an"),
            ("tag", "x"),
            ("sort", "first_name"),
            ("owner_id", t.user_id.as_str()),
        ],
        vec![
            ("q", "an"),
            ("tag", "x"),
            ("sort", "first_name"),
            ("email", "ann@x.example"),
        ],
        vec![("q", "an"), ("tag", "x"), ("sort", "-first_name")],
        vec![("q", "an"), ("tag", "x"), ("sort", "last_name")],
        vec![("q", "an"), ("tag", "x")],
    ];
    for q in others {
        let mut q = q;
        q.push(("cursor", &cursor));
        let body = bad_cursor(api.list_res(&q).await).await;
        assert_eq!(body, garbage, "{q:?}: refused like any bad cursor");
    }
}

#[actix_web::test]
async fn list_filters_by_email_case_insensitively_and_exactly() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let ada = vec![id_of(
        &api.create(json!({"email": "ada@example.com"})).await,
    )];
    api.create(json!({"email": "ada@example.com.au"})).await;
    api.create(json!({"email": "bob@example.com"})).await;
    assert_eq!(api.ids(&[("email", "ADA@Example.com")]).await, ada);
    assert_eq!(api.ids(&[("email", "ada@example.com")]).await, ada);
    assert!(
        api.ids(&[("email", "ada@")]).await.is_empty(),
        "not a prefix match"
    );
}

#[actix_web::test]
async fn list_filters_by_owner_stage_and_tag() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let member = app.add_user(&t, "member").await;
    let api = Api::new(&app, &t);
    let a = id_of(
        &api.create(
            json!({"owner_id": member.user_id, "lifecycle_stage": "lead", "tags": ["vip", "eu"]}),
        )
        .await,
    );
    let b = id_of(
        &api.create(json!({"owner_id": t.user_id, "lifecycle_stage": "customer", "tags": ["eu"]}))
            .await,
    );
    let c = id_of(&api.create(json!({"lifecycle_stage": "lead"})).await);

    assert_eq!(
        api.ids(&[("owner_id", member.user_id.as_str())]).await,
        [a.as_str()]
    );
    assert_eq!(
        api.ids(&[("owner_id", t.user_id.as_str())]).await,
        [b.as_str()]
    );
    assert!(
        api.ids(&[("owner_id", random_id().as_str())])
            .await
            .is_empty()
    );
    invalid(api.list_res(&[("owner_id", "nope")]).await, "owner_id").await;

    assert_eq!(
        api.ids(&[("lifecycle_stage", "lead")]).await,
        [c.as_str(), a.as_str()]
    );
    assert!(api.ids(&[("lifecycle_stage", "sql")]).await.is_empty());
    invalid(
        api.list_res(&[("lifecycle_stage", "king")]).await,
        "lifecycle_stage",
    )
    .await;

    assert_eq!(api.ids(&[("tag", "vip")]).await, [a.as_str()]);
    assert_eq!(api.ids(&[("tag", "eu")]).await, [b.as_str(), a.as_str()]);
    assert!(
        api.ids(&[("tag", "v")]).await.is_empty(),
        "tags match whole"
    );
    // Filters combine with AND.
    assert_eq!(
        api.ids(&[("tag", "eu"), ("lifecycle_stage", "lead")]).await,
        [a]
    );
}

#[actix_web::test]
async fn list_q_is_a_case_insensitive_prefix_over_names_and_email() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let ada = id_of(
        &api.create(
            json!({"first_name": "Ada", "last_name": "Lovelace", "email": "countess@example.com"}),
        )
        .await,
    );
    let grace = id_of(
        &api.create(
            json!({"first_name": "Grace", "last_name": "Hopper", "email": "amazing@navy.mil"}),
        )
        .await,
    );
    let alan = id_of(
        &api.create(json!({"first_name": "Alan", "last_name": "Turing"}))
            .await,
    );
    assert_eq!(api.ids(&[("q", "ada")]).await, [ada.as_str()]);
    assert_eq!(
        api.ids(&[("q", "LOVE")]).await,
        [ada.as_str()],
        "last name, any case"
    );
    assert_eq!(
        api.ids(&[("q", "Count")]).await,
        [ada.as_str()],
        "email prefix"
    );
    assert_eq!(api.ids(&[("q", "a")]).await, [alan, grace, ada]);
    assert!(
        api.ids(&[("q", "opper")]).await.is_empty(),
        "prefix, not substring"
    );
    assert!(
        api.ids(&[("q", "navy")]).await.is_empty(),
        "prefix of the whole email"
    );
}

#[actix_web::test]
async fn list_q_treats_like_wildcards_literally() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    api.create(json!({"first_name": "Ada"})).await;
    api.create(json!({"first_name": "Bob"})).await;
    let pct = id_of(
        &api.create(json!({"first_name": "%off", "last_name": "Deal"}))
            .await,
    );
    let under = id_of(&api.create(json!({"first_name": "a_b"})).await);
    assert_eq!(api.ids(&[("q", "%")]).await, [pct]);
    assert!(api.ids(&[("q", "%da")]).await.is_empty());
    assert!(api.ids(&[("q", "_")]).await.is_empty());
    assert_eq!(api.ids(&[("q", "a_")]).await, [under]);
    assert!(api.ids(&[("q", "\\")]).await.is_empty());
}

#[actix_web::test]
async fn list_q_folds_case_like_the_database() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let ilhan = id_of(&api.create(json!({"last_name": "İlhan"})).await);
    let odysseus = id_of(&api.create(json!({"first_name": "ΟΔΥΣΣΕΥΣ"})).await);
    assert_eq!(api.ids(&[("q", "İlh")]).await, [ilhan]);
    assert_eq!(api.ids(&[("q", "ΟΔΥΣΣΕΥΣ")]).await, [odysseus]);
}

#[actix_web::test]
async fn deleted_contacts_are_never_listed() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let gone = api
        .create(json!({"first_name": "Gone", "email": "gone@example.com", "tags": ["x"]}))
        .await;
    let kept = vec![id_of(
        &api.create(json!({"first_name": "Kept", "tags": ["x"]}))
            .await,
    )];
    api.remove(&id_of(&gone)).await;
    assert_eq!(api.ids(&[]).await, kept);
    assert_eq!(api.ids(&[("tag", "x")]).await, kept);
    assert!(api.ids(&[("email", "gone@example.com")]).await.is_empty());
    assert!(api.ids(&[("q", "Gone")]).await.is_empty());
    for sort in ["created_at", "-email", "last_name"] {
        assert_eq!(api.walk(sort, 1).await, kept, "sort={sort}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Idempotency-Key
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn idempotent_retry_replays_the_stored_response_and_creates_one_row() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let body =
        json!({"first_name": "Once", "email": "once@example.com", "custom": {"b": 1, "a": "x"}});
    let first = api.post_keyed("key-1", body.clone()).await;
    assert_eq!(header(&first, "idempotent-replayed"), None);
    let (location, etag) = (header(&first, "location"), header(&first, "etag"));
    let created = expect(first, StatusCode::CREATED).await;

    for _ in 0..2 {
        let again = api.post_keyed("key-1", body.clone()).await;
        assert_eq!(
            header(&again, "idempotent-replayed").as_deref(),
            Some("true")
        );
        assert_eq!(header(&again, "location"), location);
        assert_eq!(header(&again, "etag"), etag);
        assert_eq!(
            header(&again, "content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(expect(again, StatusCode::CREATED).await, created);
    }
    assert_eq!(contact_rows(&app, &t.id).await, 1);
    let events = audit_rows(&app, &t.id).await;
    assert_eq!(
        events
            .iter()
            .filter(|r| r.action == "contact.created")
            .count(),
        1
    );
}

#[actix_web::test]
async fn concurrent_retries_with_one_idempotency_key_create_one_contact() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let body = json!({"first_name": "Burst"});
    let racers = (0..6).map(|_| api.post_keyed("burst", body.clone()));
    let mut fresh = 0;
    for res in join_all(racers).await {
        match (res.status(), header(&res, "idempotent-replayed")) {
            (StatusCode::CREATED, None) => fresh += 1,
            (StatusCode::CREATED, Some(_)) => {}
            (StatusCode::CONFLICT, _) => {
                expect_problem(res, StatusCode::CONFLICT, "idempotency_in_progress").await;
            }
            (status, _) => panic!("unexpected {status}: {}", res.text().await.unwrap()),
        }
    }
    assert_eq!(fresh, 1, "exactly one request executed");
    assert_eq!(contact_rows(&app, &t.id).await, 1);
}

#[actix_web::test]
async fn idempotency_key_reused_with_a_different_body_is_422() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    expect(
        api.post_keyed("key-2", json!({"first_name": "One"})).await,
        StatusCode::CREATED,
    )
    .await;
    let res = api.post_keyed("key-2", json!({"first_name": "Two"})).await;
    expect_problem(
        res,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(contact_rows(&app, &t.id).await, 1);
}

#[actix_web::test]
async fn idempotency_keys_are_per_tenant() {
    let app = TestApp::spawn().await;
    let a = app.signup().await;
    let b = app.signup().await;
    let (api_a, api_b) = (Api::new(&app, &a), Api::new(&app, &b));
    let body = json!({"first_name": "Twin", "email": "twin@example.com"});
    let in_a = expect(
        api_a.post_keyed("shared-key", body.clone()).await,
        StatusCode::CREATED,
    )
    .await;
    let res = api_b.post_keyed("shared-key", body).await;
    assert_eq!(
        header(&res, "idempotent-replayed"),
        None,
        "B does not get A's response"
    );
    let in_b = expect(res, StatusCode::CREATED).await;
    assert_ne!(id_of(&in_a), id_of(&in_b));
    // A different body under one key is no reuse across tenants either.
    let res = api_b
        .post_keyed("other-key", json!({"first_name": "B only"}))
        .await;
    expect(res, StatusCode::CREATED).await;
    let res = api_a
        .post_keyed("other-key", json!({"first_name": "A only"}))
        .await;
    expect(res, StatusCode::CREATED).await;
    assert_eq!(contact_rows(&app, &a.id).await, 2);
    assert_eq!(contact_rows(&app, &b.id).await, 2);
}

#[actix_web::test]
async fn failed_request_does_not_consume_its_idempotency_key() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    // A validation failure, then the fixed body under the same key.
    invalid(
        api.post_keyed("retry-me", json!({"email": "broken"})).await,
        "email",
    )
    .await;
    let fixed = api
        .post_keyed("retry-me", json!({"email": "fixed@example.com"}))
        .await;
    assert_eq!(header(&fixed, "idempotent-replayed"), None);
    expect(fixed, StatusCode::CREATED).await;
    // A conflict inside the transaction releases the key too.
    conflict(
        api.post_keyed("retry-me-2", json!({"email": "fixed@example.com"}))
            .await,
    )
    .await;
    let res = api
        .post_keyed("retry-me-2", json!({"email": "other@example.com"}))
        .await;
    expect(res, StatusCode::CREATED).await;
    let db = app.db.admin().await;
    let sql =
        "SELECT key, state FROM idempotency_keys WHERE tenant_id = $1::text::uuid ORDER BY key";
    let rows = db.query(sql, &[&t.id]).await.unwrap();
    let states: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let completed = |k: &str| (k.to_string(), "completed".to_string());
    assert_eq!(states, [completed("retry-me"), completed("retry-me-2")]);
}

#[actix_web::test]
async fn idempotency_key_still_in_progress_is_409() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let raw = r#"{"first_name":"Racing"}"#;
    let db = app.db.admin().await;
    let hash = request_hash("POST", CONTACTS, raw.as_bytes());
    let insert = "INSERT INTO idempotency_keys (tenant_id, key, request_hash, state, expires_at) \
                  VALUES ($1::text::uuid, 'busy-key', $2, 'in_progress', now() + interval '1 day')";
    db.execute(insert, &[&t.id, &hash]).await.unwrap();
    let api = Api::new(&app, &t);
    let req = api
        .req(Method::POST, CONTACTS)
        .header("idempotency-key", "busy-key");
    let res = send(req.header("content-type", "application/json").body(raw)).await;
    expect_problem(res, StatusCode::CONFLICT, "idempotency_in_progress").await;
    assert_eq!(contact_rows(&app, &t.id).await, 0);
    let sql = "SELECT state FROM idempotency_keys WHERE key = 'busy-key'";
    let state: String = db.query_one(sql, &[]).await.unwrap().get(0);
    assert_eq!(
        state, "in_progress",
        "the running request's claim is left alone"
    );
}

#[actix_web::test]
async fn idempotency_key_longer_than_255_chars_is_422() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let body = json!({"first_name": "Long"});
    invalid(
        api.post_keyed(&"k".repeat(256), body.clone()).await,
        "Idempotency-Key",
    )
    .await;
    assert_eq!(contact_rows(&app, &t.id).await, 0);
    expect(
        api.post_keyed(&"k".repeat(255), body).await,
        StatusCode::CREATED,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 6. Audit
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn create_update_delete_write_audit_events_in_order() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let member = app.add_user(&t, "member").await;
    let api = Api::new(&app, &member);
    let res = api
        .post(json!({"first_name": "Audited", "email": "a@example.com", "custom": {"tier": "x"}}))
        .await;
    let rid_create = header(&res, "x-request-id").unwrap();
    let id = id_of(&expect(res, StatusCode::CREATED).await);
    let res = api
        .patch(&id, json!({"last_name": "Trail", "custom": {"tier": null}}))
        .await;
    let rid_update = header(&res, "x-request-id").unwrap();
    expect(res, StatusCode::OK).await;
    // A no-op patch is not an event.
    api.update(&id, json!({"last_name": "Trail"})).await;
    let res = api.delete(&id).await;
    let rid_delete = header(&res, "x-request-id").unwrap();
    expect(res, StatusCode::NO_CONTENT).await;

    let rows = audit_rows(&app, &t.id).await;
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let gap_free: Vec<i64> = (1..=rows.len() as i64).collect();
    assert_eq!(seqs, gap_free, "gap-free per tenant: {rows:?}");
    let events: Vec<&AuditRow> = rows
        .iter()
        .filter(|r| r.action.starts_with("contact."))
        .collect();
    let actions: Vec<&str> = events.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        ["contact.created", "contact.updated", "contact.deleted"]
    );
    for (row, rid) in events.iter().zip([&rid_create, &rid_update, &rid_delete]) {
        assert_eq!(
            row.actor_id.as_deref(),
            Some(member.user_id.as_str()),
            "{row:?}"
        );
        assert_eq!(row.target_id.as_deref(), Some(id.as_str()), "{row:?}");
        assert_eq!(row.request_id.as_deref(), Some(rid.as_str()), "{row:?}");
    }
    assert_eq!(
        events[0].changes,
        json!({"fields": ["first_name", "email", "custom.tier"]})
    );
    assert_eq!(
        events[1].changes,
        json!({"fields": ["last_name", "custom.tier"]})
    );
    let text = format!(
        "{:?}",
        events.iter().map(|r| &r.changes).collect::<Vec<_>>()
    );
    assert!(
        !text.contains("a@example.com") && !text.contains("Trail"),
        "no values: {text}"
    );
}

#[actix_web::test]
async fn client_request_id_is_recorded_on_the_audit_event() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let req = Api::new(&app, &t).req(Method::POST, CONTACTS);
    let res = send(
        req.header("x-request-id", "client-req.42")
            .json(&json!({"first_name": "T"})),
    )
    .await;
    assert_eq!(
        header(&res, "x-request-id").as_deref(),
        Some("client-req.42")
    );
    expect(res, StatusCode::CREATED).await;
    let rows = audit_rows(&app, &t.id).await;
    let created = rows.iter().find(|r| r.action == "contact.created").unwrap();
    assert_eq!(created.request_id.as_deref(), Some("client-req.42"));
}

#[actix_web::test]
async fn failed_create_writes_no_audit_event() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    api.create(json!({"email": "one@example.com"})).await;
    let before = audit_rows(&app, &t.id).await;
    conflict(api.post(json!({"email": "one@example.com"})).await).await;
    invalid(api.post(json!({"email": "bad"})).await, "email").await;
    let after = audit_rows(&app, &t.id).await;
    assert_eq!(
        after.len(),
        before.len(),
        "no event for a change that did not happen: {after:?}"
    );
    // Nor did the failure burn a sequence number: the next event follows directly.
    api.create(json!({"email": "two@example.com"})).await;
    let last = audit_rows(&app, &t.id).await.pop().unwrap();
    assert_eq!(last.seq, before.len() as i64 + 1);
}

// ---------------------------------------------------------------------------------------------
// 7. Permissions
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn viewer_can_read_but_not_write_or_delete() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let viewer = app.add_user(&t, "viewer").await;
    let (owner, api) = (Api::new(&app, &t), Api::new(&app, &viewer));
    let c = owner.create(json!({"first_name": "Visible"})).await;
    let id = id_of(&c);
    assert_eq!(api.read(&id).await, c);
    assert_eq!(api.ids(&[]).await, [id.as_str()]);

    forbidden(
        api.post(json!({"first_name": "No"})).await,
        "contacts:write",
    )
    .await;
    forbidden(
        api.patch(&id, json!({"first_name": "No"})).await,
        "contacts:write",
    )
    .await;
    forbidden(api.delete(&id).await, "contacts:delete").await;
    assert_eq!(owner.read(&id).await, c, "nothing changed");
    assert_eq!(contact_rows(&app, &t.id).await, 1);
}

#[actix_web::test]
async fn member_can_create_update_and_delete() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let member = app.add_user(&t, "member").await;
    let (owner, api) = (Api::new(&app, &t), Api::new(&app, &member));
    let id = id_of(&api.create(json!({"first_name": "Mem"})).await);
    assert_eq!(
        api.update(&id, json!({"first_name": "Member"})).await["version"],
        2
    );
    // One tenant, one contact book: the owner's contacts are the member's too.
    let owners = id_of(&owner.create(json!({"first_name": "Owner's"})).await);
    api.update(&owners, json!({"title": "x"})).await;
    api.remove(&id).await;
    not_found(owner.get(&id).await).await;
}

// ---------------------------------------------------------------------------------------------
// 8. Cross-tenant matrix
// ---------------------------------------------------------------------------------------------

/// Tenants A and B, and contact X of A's.
async fn two_tenants_with_contact(app: &TestApp) -> (Tenant, Tenant, Value) {
    let a = app.signup().await;
    let b = app.signup().await;
    let x = Api::new(app, &a)
        .create(json!({
            "first_name": "Xavier", "last_name": "Secret", "email": "xavier@a.example",
            "tags": ["t"], "lifecycle_stage": "lead", "owner_id": a.user_id
        }))
        .await;
    (a, b, x)
}

#[actix_web::test]
async fn other_tenant_gets_the_same_404_for_get_patch_and_delete() {
    let app = TestApp::spawn().await;
    let (a, b, x) = two_tenants_with_contact(&app).await;
    let api = Api::new(&app, &b);
    let (xid, missing) = (id_of(&x), random_id());
    let pwn = json!({"first_name": "Pwned", "email": "b@b.example"});
    let pairs = [
        (api.get(&xid).await, api.get(&missing).await),
        (
            api.patch(&xid, pwn.clone()).await,
            api.patch(&missing, pwn.clone()).await,
        ),
        (
            api.patch_if(&xid, "\"1\"", pwn.clone()).await,
            api.patch_if(&missing, "\"1\"", pwn.clone()).await,
        ),
        (
            api.patch_if(&xid, "\"9\"", pwn.clone()).await,
            api.patch_if(&missing, "\"9\"", pwn.clone()).await,
        ),
        (
            api.delete_if(&xid, "\"1\"").await,
            api.delete_if(&missing, "\"1\"").await,
        ),
        (
            api.delete_if(&xid, "W/\"1\"").await,
            api.delete_if(&missing, "W/\"1\"").await,
        ),
        (api.delete(&xid).await, api.delete(&missing).await),
    ];
    for (foreign, absent) in pairs {
        let (foreign, absent) = (not_found(foreign).await, not_found(absent).await);
        assert_eq!(
            stable(foreign),
            stable(absent),
            "A's record looks like no record"
        );
    }
    assert_eq!(
        Api::new(&app, &a).read(&xid).await,
        x,
        "B's PATCH/DELETE changed nothing"
    );
    assert_eq!(contact_rows(&app, &b.id).await, 0);
}

#[actix_web::test]
async fn other_tenant_lists_and_filters_never_show_the_contact() {
    let app = TestApp::spawn().await;
    let (a, b, x) = two_tenants_with_contact(&app).await;
    let api = Api::new(&app, &b);
    let own = vec![id_of(&api.create(json!({"first_name": "Bea"})).await)];
    assert_eq!(api.ids(&[]).await, own);
    for sort in ["created_at", "-created_at", "last_name", "-email"] {
        assert_eq!(api.walk(sort, 1).await, own, "sort={sort}");
    }
    let filters = [
        ("q", "Xav"),
        ("q", "secret"),
        ("q", "xavier@"),
        ("email", "xavier@a.example"),
        ("tag", "t"),
        ("lifecycle_stage", "lead"),
        ("owner_id", a.user_id.as_str()),
    ];
    for f in filters {
        assert!(api.ids(&[f]).await.is_empty(), "{f:?} shows nothing of A's");
    }
    // Nor does a cursor minted for A open anything to B: it does not even open.
    Api::new(&app, &a)
        .create(json!({"first_name": "Second"}))
        .await;
    let cursor = first_cursor(&Api::new(&app, &a), &[("limit", "1")]).await;
    bad_cursor(api.list_res(&[("cursor", &cursor)]).await).await;
    assert!(!api.ids(&[]).await.contains(&id_of(&x)));
}

#[actix_web::test]
async fn another_tenants_cursor_is_400_on_its_own_host_and_the_root_host() {
    let app = TestApp::spawn().await;
    let (a, b, _) = two_tenants_with_contact(&app).await;
    let api_a = Api::new(&app, &a);
    api_a.create(json!({"first_name": "Second"})).await;
    Api::new(&app, &b)
        .create(json!({"first_name": "Bea"}))
        .await;
    Api::new(&app, &b)
        .create(json!({"first_name": "Bob"}))
        .await;
    let garbage = bad_cursor(Api::new(&app, &b).list_res(&[("cursor", "garbage!")]).await).await;
    for sort in ["-created_at", "email", "last_name"] {
        let cursor = first_cursor(&api_a, &[("sort", sort), ("limit", "1")]).await;
        let query = [("sort", sort), ("cursor", cursor.as_str())];
        // B, on B's host and on the root host: the same answer as for garbage.
        let on_b = Api::new(&app, &b).list_res(&query).await;
        assert_eq!(bad_cursor(on_b).await, garbage, "{sort}");
        let root = app
            .root(Method::GET, CONTACTS)
            .bearer_auth(&b.access)
            .query(&query);
        assert_eq!(
            bad_cursor(send(root).await).await,
            garbage,
            "{sort}, root host"
        );
        // A's cursor is bound to A, not to the host: A continues on the root host too.
        let root = app
            .root(Method::GET, CONTACTS)
            .bearer_auth(&a.access)
            .query(&query);
        expect(send(root).await, StatusCode::OK).await;
    }
}

#[actix_web::test]
async fn other_tenant_on_the_root_host_gets_the_same_404() {
    let app = TestApp::spawn().await;
    let (a, b, x) = two_tenants_with_contact(&app).await;
    let (xid, missing) = (id_of(&x), random_id());
    // X-Tenant-Id is no way in either (../shared/API.md §1).
    let as_b = |method: Method, path: &str| {
        let req = app.root(method.clone(), path).bearer_auth(&b.access);
        let req = req.header("x-tenant-id", &a.id);
        if method == Method::PATCH {
            req.json(&json!({"first_name": "Root"}))
        } else {
            req
        }
    };
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let foreign = not_found(send(as_b(method.clone(), &contact_path(&xid))).await).await;
        let absent = not_found(send(as_b(method.clone(), &contact_path(&missing))).await).await;
        assert_eq!(stable(foreign), stable(absent), "{method}");
    }
    let list = expect(send(as_b(Method::GET, CONTACTS)).await, StatusCode::OK).await;
    assert_eq!(list["data"], json!([]));
    // The root host serves A its own contact, from the token's tenant.
    let req = app
        .root(Method::GET, &contact_path(&xid))
        .bearer_auth(&a.access);
    assert_eq!(expect(send(req).await, StatusCode::OK).await, x);
}

#[actix_web::test]
async fn token_on_another_tenants_host_is_401_tenant_mismatch() {
    let app = TestApp::spawn().await;
    let (a, b, x) = two_tenants_with_contact(&app).await;
    let xid = id_of(&x);
    let smuggled = json!({"first_name": "Smuggled"});
    let on_b = |method: Method, path: &str| app.on(&b.slug, method, path).bearer_auth(&a.access);
    let requests = [
        on_b(Method::GET, &contact_path(&xid)),
        on_b(Method::GET, CONTACTS),
        on_b(Method::POST, CONTACTS).json(&smuggled),
        on_b(Method::PATCH, &contact_path(&xid)).json(&smuggled),
        on_b(Method::DELETE, &contact_path(&xid)),
    ];
    for req in requests {
        let res = send(req).await;
        assert_eq!(header(&res, "www-authenticate").as_deref(), Some("Bearer"));
        expect_problem(res, StatusCode::UNAUTHORIZED, "tenant_mismatch").await;
    }
    assert_eq!(Api::new(&app, &a).read(&xid).await, x);
    assert_eq!(contact_rows(&app, &b.id).await, 0);
}

#[actix_web::test]
async fn other_tenants_user_cannot_be_owner_on_create_or_patch() {
    let app = TestApp::spawn().await;
    let (a, b, _) = two_tenants_with_contact(&app).await;
    let a_member = app.add_user(&a, "member").await;
    let api = Api::new(&app, &b);
    for foreign in [&a.user_id, &a_member.user_id] {
        invalid(
            api.post(json!({"first_name": "Y", "owner_id": foreign}))
                .await,
            "owner_id",
        )
        .await;
    }
    let own = id_of(&api.create(json!({"first_name": "Y"})).await);
    let foreign = invalid(
        api.patch(&own, json!({"owner_id": a.user_id})).await,
        "owner_id",
    )
    .await;
    let missing = invalid(
        api.patch(&own, json!({"owner_id": random_id()})).await,
        "owner_id",
    )
    .await;
    assert_eq!(stable(foreign), stable(missing));
    assert_eq!(api.read(&own).await["owner_id"], Value::Null);
    // B's own user is fine.
    let got = api.update(&own, json!({"owner_id": b.user_id})).await;
    assert_eq!(got["owner_id"], b.user_id.as_str());
}

#[actix_web::test]
async fn nul_characters_are_a_422_naming_the_field_never_a_500() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    // PostgreSQL stores NUL in neither text nor JSONB; the API must say so, not fail inside.
    let cases = [
        (json!({"first_name": "A\u{0}"}), "first_name"),
        (
            json!({"first_name": "A", "tags": ["ok", "b\u{0}"]}),
            "tags[1]",
        ),
        (
            json!({"first_name": "A", "custom": {"k": "v\u{0}"}}),
            "custom.k",
        ),
        (
            json!({"first_name": "A", "custom": {"k\u{0}": 1}}),
            "custom",
        ),
    ];
    for (body, field) in cases {
        let body = invalid(api.post(body).await, field).await;
        assert_eq!(error_code(&body, field), "invalid_characters");
    }
    let c = api.create(json!({"first_name": "A"})).await;
    let id = c["id"].as_str().unwrap();
    invalid(api.patch(id, json!({"title": "\u{0}"})).await, "title").await;
    for param in ["q", "email", "tag"] {
        let res = send(api.req(Method::GET, &format!("{CONTACTS}?{param}=a%00b"))).await;
        let body = invalid(res, param).await;
        assert_eq!(error_code(&body, param), "invalid_characters");
    }
    // A backslash followed by "u0000" is ordinary text.
    let c = api.create(json!({"first_name": "\\u0000"})).await;
    assert_eq!(c["first_name"], "\\u0000");
    assert_eq!(contact_rows(&app, &t.id).await, 2);
}

#[actix_web::test]
async fn if_match_compares_strongly_and_accepts_lists_and_star() {
    let app = TestApp::spawn().await;
    let t = app.signup().await;
    let api = Api::new(&app, &t);
    let id = id_of(&api.create(json!({"first_name": "A"})).await);
    // A weak tag never matches for If-Match (RFC 9110 §13.1.1), nor does garbage.
    for bad in ["W/\"1\"", "1", "\"one\"", ""] {
        version_conflict(api.patch_if(&id, bad, json!({"first_name": "X"})).await).await;
    }
    let res = api
        .patch_if(&id, "\"7\", \"1\"", json!({"first_name": "B"}))
        .await;
    assert_eq!(expect(res, StatusCode::OK).await["version"], 2);
    let res = api.patch_if(&id, "*", json!({"first_name": "C"})).await;
    assert_eq!(expect(res, StatusCode::OK).await["version"], 3);
    version_conflict(api.delete_if(&id, "W/\"3\"").await).await;
    let res = api.delete_if(&id, "\"2\", \"3\"").await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}
