//! Tessera: a multi-tenant CRM backend whose tenant isolation is enforced by Postgres row-level
//! security. See `docs/ARCHITECTURE.md` for the map of modules and the request path.

pub mod access;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod crm;
pub mod db;
pub mod deadline;
pub mod devdb;
pub mod devredis;
pub mod error;
pub mod http;
pub mod ids;
pub mod limits;
pub mod maintenance;
pub mod platform;
pub mod tenancy;
