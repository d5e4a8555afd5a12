//! The operator API and its credentials, under `/v1/platform` on the root host.
//!
//! `keys` creates, lists, revokes and verifies platform keys (`tpk_…`); `auth` turns a request
//! into a [`PlatformCaller`] with scopes; `tenants`, `plans` and `usage` (billing reads and export) are the handlers, `view` their
//! request and response shapes; `purge` removes the data of tenants deleted long enough ago.
//! Everything here runs on the platform path ([`crate::tenancy::PlatformDoor`]); changes to a
//! tenant go through [`crate::tenancy::lifecycle`], which audits and announces them.

pub mod auth;
pub mod keys;
pub mod plans;
pub mod purge;
pub mod tenants;
pub mod usage;
pub mod view;

pub use auth::PlatformCaller;
pub use keys::Scope;
