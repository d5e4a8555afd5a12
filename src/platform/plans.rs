//! `GET /v1/platform/plans`: what operators can put tenants on.

use actix_web::{HttpResponse, get, web};

use super::auth::PlatformCaller;
use super::keys::Scope;
use super::view::{PlanList, PlanView};
use crate::app::AppState;
use crate::error::AppResult;

/// The configured plans (scope `tenants:read`), by name, including those signup cannot pick.
#[utoipa::path(
    tag = "platform",
    security(("platform_key" = [])),
    responses((status = 200, description = "Every configured plan", body = PlanList))
)]
#[get("/v1/platform/plans")]
pub async fn list_plans(
    state: web::Data<AppState>,
    caller: PlatformCaller,
) -> AppResult<HttpResponse> {
    caller.require(Scope::TenantsRead)?;
    let data = state
        .config
        .plans
        .iter()
        .map(|(name, plan)| PlanView {
            name: name.to_string(),
            plan: plan.clone(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(PlanList { data }))
}
