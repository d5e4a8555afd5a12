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
