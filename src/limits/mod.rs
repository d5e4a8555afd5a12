//! Limits on what a client may do: rate limiting now; plans, quotas and metering later.

pub mod rate;
