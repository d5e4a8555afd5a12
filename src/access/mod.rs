//! Who may do what. Permissions are data (`role_permissions` rows); the catalogue and the system
//! roles live in code; the check happens in one place, [`crate::http::principal::Principal::require`].

pub mod catalogue;
pub mod grants;
pub mod roles;
