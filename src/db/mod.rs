//! Database plumbing: the pool, the diesel schema, the migration runner with the app role's
//! grants, and the RLS guard. Tenant data is reached only through [`crate::tenancy::door`].

pub mod grants;
pub mod guard;
pub mod migrate;
pub mod pool;
pub mod schema;
