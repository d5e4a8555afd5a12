//! The OpenAPI document's fixed parts; paths are collected from the route table
//! (utoipa-actix-web), so every mounted handler is described.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{FieldError, Problem};
use crate::platform::usage::ExportFormat;
use crate::platform::view::StatusFilter;

/// Info, tags, shared schemas, security schemes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera API",
        description = "Multi-tenant CRM. Tenants are addressed by subdomain (`{slug}.{base_domain}`) or by the credential on the root host. Every error is application/problem+json.",
    ),
    components(schemas(Problem, FieldError, StatusFilter, ExportFormat)),
    modifiers(&Bearer),
    tags(
        (name = "auth", description = "Signup, login, tokens"),
        (name = "contacts", description = "Contacts"),
        (name = "tenant", description = "The calling tenant: plan, limits, usage, settings"),
        (name = "ops", description = "Health and API description"),
        (name = "platform", description = "Operator API (root host only, platform keys `tpk_…` with scopes `tenants:read`, `tenants:write`, `usage:read`)"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT (access token)")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "platform_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("platform key (tpk_…, from `tessera platform keys create`)")
                    .description(Some(
                        "Operator API only, on the root host. Each key carries scopes; an                          operation needing one the key lacks is 403 `forbidden` naming it in                          `permission`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds the responses every operation of a kind can give, so no operation's list is missing one
/// (../shared/API.md §1–§3): credentials (401), tenant host (403 `tenant_suspended`, 404
/// `tenant_not_found`), permissions (403 `forbidden`), JSON bodies (400, 413, 415, 422) and the
/// database (503). Handler annotations keep the responses particular to them.
pub fn complete(api: &mut utoipa::openapi::OpenApi) {
    for (path, item) in api.paths.paths.iter_mut() {
        let platform = path.starts_with("/v1/platform/");
        let tenant_scoped = path.starts_with("/v1/") && path != "/v1/signup" && !platform;
        let database = path.starts_with("/v1/");
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let permissioned = secured
                && op
                    .tags
                    .as_ref()
                    .is_some_and(|tags| !tags.iter().any(|t| t == "auth"));
            let body = op.request_body.is_some();
            let responses = &mut op.responses.responses;
            if body {
                add(
                    responses,
                    400,
                    "Body is not valid JSON (`malformed_request`)",
                );
                add(responses, 413, "Body over the limit (`payload_too_large`)");
                add(
                    responses,
                    415,
                    "Body is not `application/json` (`unsupported_media_type`)",
                );
                add(
                    responses,
                    422,
                    "Invalid or unknown fields (`validation_failed`, `errors` names each)",
                );
            }
            if platform {
                add(
                    responses,
                    401,
                    "Missing, malformed, unknown or revoked platform key, or any other credential \
                     (`unauthenticated`)",
                );
                add(
                    responses,
                    403,
                    "The key lacks the scope (`forbidden`, `permission` names it)",
                );
                add(
                    responses,
                    404,
                    "Not the root host: the operator API does not exist on tenant hosts \
                     (`not_found`)",
                );
            } else if secured {
                add(
                    responses,
                    401,
                    "Missing, invalid, expired or revoked credential (`unauthenticated`), or a \
                     token of another tenant on this tenant's host (`tenant_mismatch`)",
                );
            }
            if tenant_scoped {
                add(
                    responses,
                    403,
                    if permissioned {
                        "Tenant suspended (`tenant_suspended`), or the caller lacks the \
                         permission (`forbidden`, body adds `permission`)"
                    } else {
                        "Tenant suspended (`tenant_suspended`)"
                    },
                );
                add(
                    responses,
                    404,
                    "Unknown tenant subdomain (`tenant_not_found`)",
                );
            }
            if tenant_scoped && secured {
                add(
                    responses,
                    402,
                    "The tenant used its monthly API requests (`quota_exceeded`, `quota` = \
                     `api_requests_per_month`, with `limit` and `used`)",
                );
                add(
                    responses,
                    429,
                    "Over the tenant's request rate or its in-flight cap (`rate_limited`, with \
                     `Retry-After`)",
                );
            }
            if database {
                add(
                    responses,
                    503,
                    "Database unreachable or pool exhausted (`unavailable`, with `Retry-After`)",
                );
            }
        }
    }
}

/// Building blocks for request schemas: the rules the server enforces, written as JSON Schema so
/// that a client generated from the document sends only what the server accepts. Patterns use
/// syntax that ECMA-262, Python `re` (schemathesis, hypothesis) and Rust `regex` read alike:
/// explicit classes instead of `\s`/`\d`, no look-around.
pub mod rules {
    use serde_json::json;
    use utoipa::openapi::extensions::Extensions;
    use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, SchemaType, Type};

    /// Text without NUL (U+0000): PostgreSQL can neither store nor compare it, so every JSON
    /// string and list query parameter holding one is refused (422 `invalid_characters`).
    pub const NO_NUL: &str = r"^[^\u0000]*$";

    /// Canonical ids: lower-case, hyphenated UUIDs, as the server writes them. The handlers'
    /// path and query parameters repeat this (and [`NO_NUL`]) as literals, because utoipa's
    /// `pattern` takes only a literal there; the tests below hold every id to this pattern.
    pub const UUID: &str = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

    /// Unicode White_Space as the body of a character class: exactly what Rust's
    /// `char::is_whitespace` (and so `str::trim`) means, which `\s` is not in any of the engines.
    pub const WHITESPACE: &str =
        r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

    /// A string schema (nullable when `nullable`) that refuses NUL.
    pub fn string(nullable: bool) -> ObjectBuilder {
        let ty = if nullable {
            SchemaType::from_iter([Type::String, Type::Null])
        } else {
            SchemaType::new(Type::String)
        };
        ObjectBuilder::new().schema_type(ty).pattern(Some(NO_NUL))
    }

    /// A canonical UUID (see [`UUID`]).
    pub fn uuid(nullable: bool) -> ObjectBuilder {
        string(nullable)
            .format(Some(SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Uuid,
            )))
            .pattern(Some(UUID))
    }

    /// Text that holds at least one non-whitespace character (the server trims before it checks).
    pub fn non_blank() -> String {
        format!(r"^[^\u0000]*[^{WHITESPACE}\u0000][^\u0000]*$")
    }

    /// `crate::auth::users::validate_email` as a pattern: after trimming, no whitespace, exactly
    /// one `@` with a non-empty local part before it, and a domain with a dot that neither starts
    /// nor ends with one. With `blank_ok`, a value that trims to nothing also matches (contacts
    /// store it as no email).
    pub fn email(blank_ok: bool) -> String {
        let ws = WHITESPACE;
        let x = format!(r"[^@{ws}\u0000]");
        let n = format!(r"[^@.{ws}\u0000]");
        let address = format!(r"{x}+@{n}{x}*\.{x}*{n}");
        let address = if blank_ok {
            format!("(?:{address})?")
        } else {
            address
        };
        format!("^[{ws}]*{address}[{ws}]*$")
    }

    /// `not: {enum: values}` for an [`ObjectBuilder`]. utoipa has no `not` keyword; its
    /// extensions are flattened into the schema object, which is exactly where `not` belongs.
    pub fn not_one_of(values: &[&str]) -> Option<Extensions> {
        Some(Extensions::from_iter([("not", json!({ "enum": values }))]))
    }
}

/// Adds a problem+json response for `status`, or appends `description` to the one there.
fn add(
    responses: &mut std::collections::BTreeMap<
        String,
        utoipa::openapi::RefOr<utoipa::openapi::Response>,
    >,
    status: u16,
    description: &str,
) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    match responses.get_mut(&status.to_string()) {
        Some(RefOr::T(existing)) => {
            if !existing.description.contains(description) {
                existing.description = format!("{}; or: {description}", existing.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let problem = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build();
            responses.insert(
                status.to_string(),
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content("application/problem+json", problem)
                        .build(),
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use regex::Regex;
    use serde_json::Value;

    use super::rules;

    /// The document `/openapi.json` serves.
    fn document() -> Value {
        serde_json::to_value(crate::app::openapi_document()).unwrap()
    }

    /// Texts to find one a pattern matches, before probing it with NUL. Not field names: shapes.
    const SAMPLES: &[&str] = &[
        "",
        "a",
        "abc",
        "a@b.co",
        "created_at",
        "00000000-0000-0000-0000-000000000000",
    ];

    /// Every schema a request can carry (query and path parameters, JSON bodies), walked down to
    /// its leaves; problems are collected as "where: what".
    struct Walk<'d> {
        doc: &'d Value,
        problems: Vec<String>,
        strings: usize,
    }

    impl Walk<'_> {
        fn schema(&mut self, at: &str, s: &Value, seen: &BTreeSet<String>) {
            if let Some(r) = s.get("$ref").and_then(Value::as_str) {
                let name = r.trim_start_matches("#/components/schemas/");
                if seen.contains(name) {
                    return;
                }
                let mut seen = seen.clone();
                seen.insert(name.to_string());
                let target = &self.doc["components"]["schemas"][name];
                assert!(target.is_object(), "{at}: dangling {r}");
                return self.schema(at, target, &seen);
            }
            let mut composed = false;
            for key in ["oneOf", "anyOf", "allOf"] {
                for branch in s.get(key).and_then(Value::as_array).into_iter().flatten() {
                    composed = true;
                    self.schema(at, branch, seen);
                }
            }
            let types: Vec<&str> = match &s["type"] {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if types.is_empty() && !composed && s.get("enum").is_none() {
                self.problems
                    .push(format!("{at}: any value goes (no type)"));
            }
            if types.contains(&"string") || (types.is_empty() && s.get("enum").is_some()) {
                self.string(at, s);
            }
            if types.contains(&"object") {
                self.object(at, s, seen);
            }
            if let Some(items) = s.get("items") {
                self.schema(&format!("{at}[]"), items, seen);
            } else if types.contains(&"array") {
                self.problems.push(format!("{at}: array without `items`"));
            }
        }

        fn object(&mut self, at: &str, s: &Value, seen: &BTreeSet<String>) {
            for (name, property) in s["properties"].as_object().into_iter().flatten() {
                self.schema(&format!("{at}.{name}"), property, seen);
            }
            match s.get("additionalProperties") {
                Some(Value::Bool(false)) => {}
                Some(values @ Value::Object(_)) => {
                    self.schema(&format!("{at}.*"), values, seen);
                    match s.get("propertyNames") {
                        Some(names) => self.string(&format!("{at} (keys)"), names),
                        None => self.problems.push(format!("{at}: keys unconstrained")),
                    }
                }
                _ => self
                    .problems
                    .push(format!("{at}: free-form object (additionalProperties)")),
            }
        }

        /// A string must be an enum without NUL, or match a pattern that refuses NUL anywhere.
        fn string(&mut self, at: &str, s: &Value) {
            self.strings += 1;
            if let Some(values) = s.get("enum").and_then(Value::as_array) {
                if values
                    .iter()
                    .any(|v| v.as_str().is_some_and(|v| v.contains('\0')))
                {
                    self.problems.push(format!("{at}: an enum value holds NUL"));
                }
                return;
            }
            if s.get("format").and_then(Value::as_str) == Some("uuid")
                && s.get("pattern").and_then(Value::as_str) != Some(rules::UUID)
            {
                self.problems
                    .push(format!("{at}: a uuid without the canonical pattern"));
            }
            let Some(pattern) = s.get("pattern").and_then(Value::as_str) else {
                return self
                    .problems
                    .push(format!("{at}: no pattern (NUL allowed)"));
            };
            let re = match Regex::new(pattern) {
                Ok(re) => re,
                Err(e) => return self.problems.push(format!("{at}: pattern {pattern}: {e}")),
            };
            let examples = s["examples"].as_array().into_iter().flatten();
            let examples = examples.chain(s.get("example")).filter_map(Value::as_str);
            let candidates = SAMPLES.iter().copied().chain(examples);
            let Some(sample) = candidates.into_iter().find(|c| re.is_match(c)) else {
                return self.problems.push(format!(
                    "{at}: no sample matches {pattern}; give the schema an `examples` entry"
                ));
            };
            for (i, _) in sample.char_indices().chain([(sample.len(), ' ')]) {
                let probe = format!("{}\0{}", &sample[..i], &sample[i..]);
                if re.is_match(&probe) {
                    self.problems
                        .push(format!("{at}: {pattern} accepts NUL ({probe:?})"));
                    return;
                }
            }
        }
    }

    #[test]
    fn every_request_string_refuses_nul_and_every_id_is_canonical() {
        let doc = document();
        let mut walk = Walk {
            doc: &doc,
            problems: Vec::new(),
            strings: 0,
        };
        let none = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let what = format!("{} {path}", method.to_uppercase());
                for p in op["parameters"].as_array().into_iter().flatten() {
                    // Headers cannot carry NUL at all; query and path values can (`%00`).
                    if p["in"] == "query" || p["in"] == "path" {
                        let at = format!("{what} {} {}", p["in"], p["name"]);
                        walk.schema(&at, &p["schema"], &none);
                    }
                }
                for (media, content) in op["requestBody"]["content"]
                    .as_object()
                    .into_iter()
                    .flatten()
                {
                    assert_eq!(media, "application/json", "{what}");
                    walk.schema(&format!("{what} body"), &content["schema"], &none);
                }
            }
        }
        assert!(walk.strings >= 30, "walked only {} strings", walk.strings);
        assert!(walk.problems.is_empty(), "{:#?}", walk.problems);
    }

    #[test]
    fn the_walk_catches_an_unconstrained_string() {
        let doc = serde_json::json!({"components": {"schemas": {}}});
        let mut walk = Walk {
            doc: &doc,
            problems: Vec::new(),
            strings: 0,
        };
        let body = serde_json::json!({
            "type": "object",
            "properties": {
                "bare": {"type": "string"},
                "loose": {"type": ["string", "null"], "pattern": "^.*$"},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}},
                "custom": {"type": "object"},
                "ok": {"type": "string", "pattern": rules::NO_NUL}
            },
            "additionalProperties": false
        });
        walk.schema("body", &body, &BTreeSet::new());
        let at: Vec<_> = walk
            .problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            at,
            ["body.bare", "body.custom", "body.loose", "body.tags[]"],
            "{:#?}",
            walk.problems
        );
    }

    #[test]
    fn whitespace_class_is_rusts_whitespace() {
        let re = Regex::new(&format!("^[{}]$", rules::WHITESPACE)).unwrap();
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            assert_eq!(re.is_match(&c.to_string()), c.is_whitespace(), "{c:?}");
        }
    }

    #[test]
    fn non_blank_is_what_trimming_leaves_something_of() {
        let re = Regex::new(&rules::non_blank()).unwrap();
        for s in ["a", " a ", "\u{3000}x", "\t\n.\r"] {
            assert!(re.is_match(s), "{s:?}");
        }
        for s in ["", " ", "\t\r\n\u{85}\u{a0}\u{2028}\u{3000}", "a\0"] {
            assert!(!re.is_match(s), "{s:?}");
        }
    }

    /// The email pattern agrees with `validate_email` (on ASCII, where the byte limit is the
    /// character limit `maxLength` states).
    #[test]
    fn email_pattern_is_validate_email() {
        use crate::auth::users::validate_email;
        let strict = Regex::new(&rules::email(false)).unwrap();
        let blank_ok = Regex::new(&rules::email(true)).unwrap();
        let long = format!("{}@example.com", "a".repeat(242));
        let too_long = format!("{}@example.com", "a".repeat(243));
        let samples = [
            "a@b.co",
            " a@b.co\t",
            "A.B+c@sub.example.org",
            "ü@ë.de",
            "a@b",
            "a@.b",
            "a@b.",
            "a@b..c",
            "@b.co",
            "a@@b.co",
            "a@b@c.de",
            "a b@c.de",
            "a@b.c\u{a0}d",
            "a\0@b.co",
            "",
            " ",
            "a@b.c.d",
            &long,
            &too_long,
        ];
        for s in samples {
            let schema_ok =
                strict.is_match(s) && s.chars().count() <= crate::auth::users::MAX_EMAIL;
            let server_ok = validate_email(s).is_ok() && !s.contains('\0');
            assert_eq!(schema_ok, server_ok, "{s:?}");
            let blank = s.trim().is_empty();
            assert_eq!(blank_ok.is_match(s), strict.is_match(s) || blank, "{s:?}");
        }
    }
}
