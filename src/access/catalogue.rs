//! The permission catalogue (../shared/API.md §7). Strings are `<resource>:<action>`.

/// `contacts:read`
pub const CONTACTS_READ: &str = "contacts:read";
/// `contacts:write`
pub const CONTACTS_WRITE: &str = "contacts:write";
/// `contacts:delete`
pub const CONTACTS_DELETE: &str = "contacts:delete";

/// CRM resources that share the read/write/delete triple.
pub const CRM_RESOURCES: &[&str] = &["accounts", "contacts", "deals", "activities", "tasks"];

/// Every permission that exists, in a stable order.
pub const ALL: &[&str] = &[
    "accounts:read",
    "accounts:write",
    "accounts:delete",
    "contacts:read",
    "contacts:write",
    "contacts:delete",
    "deals:read",
    "deals:write",
    "deals:delete",
    "activities:read",
    "activities:write",
    "activities:delete",
    "tasks:read",
    "tasks:write",
    "tasks:delete",
    "pipelines:manage",
    "custom_fields:manage",
    "workflows:manage",
    "reports:read",
    "imports:run",
    "exports:run",
    "users:read",
    "users:manage",
    "roles:manage",
    "api_keys:manage",
    "webhooks:manage",
    "audit:read",
    "tenant:manage",
    "billing:read",
];

/// Whether `p` is a known permission.
pub fn exists(p: &str) -> bool {
    ALL.contains(&p)
}

#[cfg(test)]
mod tests {
    #[test]
    fn crm_triples_are_in_the_catalogue() {
        for r in super::CRM_RESOURCES {
            for a in ["read", "write", "delete"] {
                assert!(super::exists(&format!("{r}:{a}")), "{r}:{a}");
            }
        }
    }
}
