//! Which tenant a request is for, and the door to its data.
//!
//! `host` turns a `Host` header into a target, `directory` resolves slugs and ids to tenants
//! (cached per process, cleared across replicas by `invalidation`), `door` is the only way to a
//! connection for tenant data, `provision` creates a tenant and `lifecycle` changes or deletes
//! one, and `manifest` applies declarative tenant files (`tessera tenants apply`).

pub mod directory;
pub mod door;
pub mod handlers;
pub mod host;
pub mod invalidation;
pub mod lifecycle;
pub mod manifest;
pub mod model;
pub mod provision;
pub mod rules;

pub use door::{Door, PlatformDoor, TenantTx, TxScope};
pub use model::Tenant;
