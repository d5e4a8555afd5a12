//! Housekeeping: today, purging expired idempotency keys and refresh tokens ([`purge`]).

pub mod purge;

pub use purge::{BATCH, Purged, TENANT_PAGE, purge_expired};
