//! JSON request bodies with the contract's error mapping (../shared/API.md §2–§3): not JSON content type →
//! 415, over the limit → 413, syntax → 400 `malformed_request`, wrong shape or unknown fields →
//! 422 `validation_failed` naming the field.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::{AppError, FieldError};

/// A parsed JSON body that also keeps the raw bytes (for idempotency fingerprints).
pub struct JsonBody<T> {
    /// The parsed value.
    pub value: T,
    /// The bytes as received.
    pub raw: Bytes,
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(1024 * 1024, |s| s.config.http.body_limit);
        let content_type_ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            })
            .unwrap_or(false);
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared_len.is_some_and(|n| n > limit) {
                return Err(AppError::PayloadTooLarge);
            }
            if !content_type_ok {
                return Err(AppError::UnsupportedMediaType);
            }
            let mut buf = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    if super::payload::is_timeout(&e) {
                        AppError::RequestTimeout
                    } else {
                        AppError::Malformed("could not read the body".into())
                    }
                })?;
                if buf.len() + chunk.len() > limit {
                    return Err(AppError::PayloadTooLarge);
                }
                buf.extend_from_slice(&chunk);
            }
            let raw = buf.freeze();
            let value = parse(&raw)?;
            if let Some(field) = nul_field(&raw) {
                return Err(AppError::Validation(vec![FieldError::new(
                    field,
                    "invalid_characters",
                    "must not contain NUL (\\u0000)",
                )]));
            }
            Ok(JsonBody { value, raw })
        })
    }
}

/// Where a string (value or key) of valid JSON `raw` holds NUL, if anywhere: PostgreSQL can store
/// it neither in text nor in JSONB, so it is refused up front instead of failing in the database.
/// Raw NUL bytes are already invalid JSON; only the `\u0000` escape gets here, so the common
/// case is one scan of the bytes.
fn nul_field(raw: &[u8]) -> Option<String> {
    if !has_nul_escape(raw) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(raw).ok()?;
    Some(nul_path(&value, String::new()).unwrap_or_else(|| "body".into()))
}

fn has_nul_escape(raw: &[u8]) -> bool {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' {
            if raw.get(i + 1..i + 6) == Some(b"u0000") {
                return true;
            }
            // Skip the escaped character, so `\\u0000` (a backslash, then text) is not a NUL.
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

fn nul_path(value: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => {
            Some(if path.is_empty() { "body".into() } else { path })
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_path(v, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                // Name the object, not a key that cannot be echoed usefully.
                return Some(if path.is_empty() {
                    "body".into()
                } else {
                    path.clone()
                });
            }
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            nul_path(v, here)
        }),
        _ => None,
    }
}

/// Parses JSON with field-precise errors. The body is one JSON value: anything after it but
/// whitespace (`{…} {…}`, `{…}]]`) is malformed, never silently ignored.
pub fn parse<T: DeserializeOwned>(raw: &[u8]) -> Result<T, AppError> {
    let de = &mut serde_json::Deserializer::from_slice(raw);
    let value = deserialize(de)?;
    de.end()
        .map_err(|e| AppError::Malformed(format!("body is not one JSON value: {e}")))?;
    Ok(value)
}

fn deserialize<'de, T: DeserializeOwned>(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
) -> Result<T, AppError> {
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        use serde_json::error::Category;
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                AppError::Malformed(format!("body is not valid JSON: {inner}"))
            }
            Category::Data => AppError::Validation(vec![field_error(&path, &inner.to_string())]),
        }
    })
}

fn field_error(path: &str, msg: &str) -> FieldError {
    let base = if path == "." {
        String::new()
    } else {
        path.to_string()
    };
    let join = |name: &str| {
        if base.is_empty() {
            name.to_string()
        } else {
            format!("{base}.{name}")
        }
    };
    let message = msg.split(" at line ").next().unwrap_or(msg).to_string();
    if let Some(name) = backticked(&message, "unknown field `") {
        // serde_path_to_error already puts the unknown key at the end of the path.
        let field = if base == name || base.ends_with(&format!(".{name}")) {
            base.clone()
        } else {
            join(&name)
        };
        FieldError::new(field, "unknown_field", "is not a recognized field")
    } else if let Some(name) = backticked(&message, "missing field `") {
        FieldError::new(join(&name), "required", "is required")
    } else {
        let field = if base.is_empty() {
            "body".to_string()
        } else {
            base
        };
        FieldError::new(field, "invalid_type", message)
    }
}

fn backticked(msg: &str, prefix: &str) -> Option<String> {
    let rest = msg.strip_prefix(prefix)?;
    rest.split('`').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        email: String,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        user: Inner,
    }

    fn codes(raw: &str) -> (String, String) {
        match parse::<Outer>(raw.as_bytes()).unwrap_err() {
            AppError::Validation(e) => (e[0].field.clone(), e[0].code.clone()),
            AppError::Malformed(_) => ("-".into(), "malformed".into()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn finds_nul_in_values_and_keys_but_not_in_escaped_backslashes() {
        let field = |raw: &str| nul_field(raw.as_bytes());
        assert_eq!(field(r#"{"a": "x\u0000y"}"#).as_deref(), Some("a"));
        assert_eq!(
            field(r#"{"a": {"b": ["ok", "\u0000"]}}"#).as_deref(),
            Some("a.b[1]")
        );
        assert_eq!(
            field(r#"{"custom": {"k\u0000": 1}}"#).as_deref(),
            Some("custom")
        );
        assert_eq!(field(r#""\u0000""#).as_deref(), Some("body"));
        assert_eq!(field(r#"{"a": "\\u0000"}"#), None);
        assert_eq!(field(r#"{"a": "\\\u0000"}"#).as_deref(), Some("a"));
        assert_eq!(field(r#"{"a": "\u00001"}"#).as_deref(), Some("a"));
        assert_eq!(field(r#"{"a": "\u0001 \"0000"}"#), None);
    }

    #[test]
    fn maps_errors_to_fields() {
        assert_eq!(
            codes(r#"{"user": {"email": 1}}"#),
            ("user.email".into(), "invalid_type".into())
        );
        assert_eq!(
            codes(r#"{"user": {}}"#),
            ("user.email".into(), "required".into())
        );
        assert_eq!(
            codes(r#"{"user": {"email": "a", "tenant_id": "x"}}"#),
            ("user.tenant_id".into(), "unknown_field".into())
        );
        assert_eq!(codes(r#"{"user": "#), ("-".into(), "malformed".into()));
        for trailing in [
            r#"{"user": {"email": "a"}} {"user": {"email": "b"}}"#,
            r#"{"user": {"email": "a"}}  garbage"#,
            r#"{"user": {"email": "a"}}]]]]"#,
        ] {
            assert_eq!(
                codes(trailing),
                ("-".into(), "malformed".into()),
                "{trailing}"
            );
        }
        assert!(parse::<Outer>(b" {\"user\": {\"email\": \"a\"}} \n\t").is_ok());
    }
}
