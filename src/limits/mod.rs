//! Plans, quotas, rate limits and usage metering: the request path's limits and what billing
//! reads.

pub mod admission;
pub mod metering;
pub mod plans;
pub mod quota;
pub mod rate;
pub mod reconcile;
pub mod usage;
