//! Authentication: passwords, users, signing keys and access tokens, refresh-token families,
//! throttles, and the auth endpoints.

pub mod handlers;
pub mod keys;
pub mod login_throttle;
pub mod password;
pub mod refresh;
pub mod throttle;
pub mod tokens;
pub mod users;
