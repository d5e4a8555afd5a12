//! Requests no route matched: 405 with `Allow` when the path exists under another method, else
//! 404 — both as problem+json. The path list comes from the OpenAPI document, which is generated
//! from the same route table, so the two cannot drift.

use actix_web::{HttpRequest, HttpResponse, web};
use regex::Regex;
use utoipa::openapi::OpenApi;

use crate::error::AppError;

/// Known path templates and their methods.
pub struct RouteTable {
    routes: Vec<(Regex, Vec<String>)>,
}

impl RouteTable {
    /// Builds the table from the generated OpenAPI paths.
    pub fn from_openapi(api: &OpenApi) -> Self {
        let routes = api
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let mut pattern = String::from("^");
                for part in template.split('/').filter(|p| !p.is_empty()) {
                    pattern.push('/');
                    if part.starts_with('{') {
                        pattern.push_str("[^/]+");
                    } else {
                        pattern.push_str(&regex::escape(part));
                    }
                }
                pattern.push('$');
                let mut methods = Vec::new();
                for (name, op) in [
                    ("GET", &item.get),
                    ("POST", &item.post),
                    ("PUT", &item.put),
                    ("PATCH", &item.patch),
                    ("DELETE", &item.delete),
                ] {
                    if op.is_some() {
                        methods.push(name.to_string());
                    }
                }
                if methods.iter().any(|m| m == "GET") {
                    methods.push("HEAD".into());
                }
                (
                    Regex::new(&pattern).expect("route templates are valid patterns"),
                    methods,
                )
            })
            .collect();
        Self { routes }
    }

    /// Methods allowed on `path`, if the path is known.
    pub fn allowed(&self, path: &str) -> Option<String> {
        self.routes
            .iter()
            .find(|(re, _)| re.is_match(path))
            .map(|(_, methods)| methods.join(", "))
    }
}

/// The app's default service.
pub async fn handle(
    req: HttpRequest,
    table: web::Data<RouteTable>,
) -> Result<HttpResponse, AppError> {
    Err(match table.allowed(req.path()) {
        Some(allow) => AppError::MethodNotAllowed(allow),
        None => AppError::NotFound,
    })
}
