//! Contacts: people a tenant does business with.

pub mod handlers;
pub mod model;
pub mod repo;
