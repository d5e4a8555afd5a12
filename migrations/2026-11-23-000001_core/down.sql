DROP TABLE IF EXISTS idempotency_keys, audit_events, audit_heads, contacts, refresh_tokens,
    user_roles, role_permissions, roles, users, tenants CASCADE;
DROP FUNCTION IF EXISTS audit_events_refuse_change();
