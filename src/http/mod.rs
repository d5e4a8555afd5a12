//! Everything HTTP-shaped: request ids and logging, problem+json for actix's own errors, body and
//! credential extractors, the route table and the OpenAPI document. Domain modules never see
//! these types.

pub mod body;
pub mod conn;
pub mod edge;
pub mod fallback;
pub mod health;
pub mod idempotency;
pub mod openapi;
pub mod payload;
pub mod precondition;
pub mod principal;
pub mod request_id;
pub mod routes;
