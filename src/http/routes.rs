//! The route table: every endpoint, in one place.

use utoipa_actix_web::UtoipaApp;

use crate::auth::handlers as auth;
use crate::crm::contacts::handlers as contacts;
use crate::http::health;
use crate::platform::{plans, tenants as platform_tenants, usage as platform_usage};
use crate::tenancy::handlers as tenant;

/// Mounts every handler (each annotated for OpenAPI) on `app`.
pub fn mount<T>(app: UtoipaApp<T>) -> UtoipaApp<T>
where
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Error = actix_web::Error,
            InitError = (),
        >,
{
    app.service(health::livez)
        .service(health::readyz)
        .service(health::openapi_json)
        .service(health::docs)
        .service(auth::jwks)
        .service(auth::signup)
        .service(auth::login)
        .service(auth::refresh_tokens)
        .service(auth::logout)
        .service(auth::me)
        .service(tenant::get_tenant)
        .service(tenant::update_tenant)
        .service(tenant::get_tenant_usage)
        .service(contacts::list_contacts)
        .service(contacts::create_contact)
        .service(contacts::get_contact)
        .service(contacts::update_contact)
        .service(contacts::delete_contact)
        .service(contacts::restore_contact)
        .service(platform_tenants::list_tenants)
        .service(platform_tenants::create_tenant)
        .service(platform_tenants::get_tenant)
        .service(platform_tenants::update_tenant)
        .service(platform_tenants::delete_tenant)
        .service(plans::list_plans)
        .service(platform_usage::list_usage)
        .service(platform_usage::export_usage)
}
