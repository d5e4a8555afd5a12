//! Database plumbing: the pool, the diesel schema, the migration runner (one statement per query
//! string) with the app role's grants, table placement on Citus, and the RLS guard. Tenant data
//! is reached only through [`crate::tenancy::door`].

pub mod citus;
pub mod grants;
pub mod guard;
pub mod migrate;
pub mod pool;
pub mod schema;
pub mod statements;

/// The constraint an integrity error names. Citus re-raises a worker's error on the coordinator
/// with its message but without the constraint field, so the name is then read from PostgreSQL's
/// message (`… violates unique constraint "contacts_email_live_102192"`; English messages, which
/// `doctor` checks for).
pub fn constraint_of(info: &dyn diesel::result::DatabaseErrorInformation) -> Option<String> {
    info.constraint_name().map(str::to_owned).or_else(|| {
        let quoted = info.message().split("constraint \"").nth(1)?;
        quoted.split('"').next().map(str::to_owned)
    })
}

/// Whether the integrity error `info` is about the constraint `name` (see [`is_constraint`]).
pub fn violates(info: &dyn diesel::result::DatabaseErrorInformation, name: &str) -> bool {
    is_constraint(constraint_of(info).as_deref(), name)
}

/// Whether a constraint named in a database error is `name`. On Citus the error comes from a
/// shard, whose constraints carry the shard id (`contacts_email_live_102192`), so that suffix is
/// accepted too.
pub fn is_constraint(reported: Option<&str>, name: &str) -> bool {
    reported.is_some_and(|r| {
        r == name
            || r.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::is_constraint;

    #[test]
    fn constraint_names_match_exactly_or_with_a_shard_suffix() {
        assert!(is_constraint(
            Some("contacts_email_live"),
            "contacts_email_live"
        ));
        assert!(is_constraint(
            Some("contacts_email_live_102192"),
            "contacts_email_live"
        ));
        for other in [
            None,
            Some("contacts_email"),
            Some("contacts_email_live_x"),
            Some("contacts_email_live_"),
        ] {
            assert!(!is_constraint(other, "contacts_email_live"), "{other:?}");
        }
    }
}
