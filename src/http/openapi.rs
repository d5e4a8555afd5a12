//! The OpenAPI document's fixed parts; paths are collected from the route table
//! (utoipa-actix-web), so every mounted handler is described.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{FieldError, Problem};

/// Info, tags, shared schemas, security schemes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera API",
        description = "Multi-tenant CRM. Tenants are addressed by subdomain (`{slug}.{base_domain}`) or by the credential on the root host. Every error is application/problem+json.",
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&Bearer),
    tags(
        (name = "auth", description = "Signup, login, tokens"),
        (name = "contacts", description = "Contacts"),
        (name = "ops", description = "Health and API description"),
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
    }
}

/// Adds the responses every operation of a kind can give, so no operation's list is missing one
/// (API.md §1–§3): credentials (401), tenant host (403 `tenant_suspended`, 404
/// `tenant_not_found`), permissions (403 `forbidden`), JSON bodies (400, 413, 415, 422) and the
/// database (503). Handler annotations keep the responses particular to them.
pub fn complete(api: &mut utoipa::openapi::OpenApi) {
    for (path, item) in api.paths.paths.iter_mut() {
        let tenant_scoped = path.starts_with("/v1/") && path != "/v1/signup";
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
            if secured {
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

    /// Canonical ids: lower-case, hyphenated UUIDs, as the server writes them.
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
