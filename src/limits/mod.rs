//! Plans, quotas, rate limits and usage metering: the request path's limits and what billing
//! reads.

pub mod plans;
pub mod quota;
