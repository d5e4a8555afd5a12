//! Diesel table definitions, kept by hand in step with `migrations/`.
#![allow(missing_docs)]

diesel::table! {
    tenants (id) {
        id -> Uuid,
        slug -> Text,
        name -> Text,
        plan -> Text,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        version -> Int8,
        settings -> Jsonb,
        quota_overrides -> Jsonb,
        rate_overrides -> Jsonb,
        purge_after -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    users (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        email -> Text,
        name -> Text,
        password_hash -> Nullable<Text>,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        version -> Int8,
    }
}

diesel::table! {
    roles (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        name -> Text,
        description -> Text,
        is_system -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        version -> Int8,
    }
}

diesel::table! {
    role_permissions (tenant_id, role_id, permission) {
        tenant_id -> Uuid,
        role_id -> Uuid,
        permission -> Text,
    }
}

diesel::table! {
    user_roles (tenant_id, user_id, role_id) {
        tenant_id -> Uuid,
        user_id -> Uuid,
        role_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        family_id -> Uuid,
        user_id -> Uuid,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        consumed_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    contacts (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        first_name -> Nullable<Text>,
        last_name -> Nullable<Text>,
        email -> Nullable<Text>,
        phone -> Nullable<Text>,
        title -> Nullable<Text>,
        account_id -> Nullable<Uuid>,
        owner_id -> Nullable<Uuid>,
        lifecycle_stage -> Nullable<Text>,
        tags -> Array<Text>,
        custom -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        version -> Int8,
    }
}

diesel::table! {
    audit_events (tenant_id, seq) {
        tenant_id -> Uuid,
        seq -> Int8,
        id -> Uuid,
        occurred_at -> Timestamptz,
        action -> Text,
        actor_type -> Text,
        actor_id -> Nullable<Uuid>,
        target_type -> Nullable<Text>,
        target_id -> Nullable<Uuid>,
        changes -> Jsonb,
        request_id -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    idempotency_keys (tenant_id, key) {
        tenant_id -> Uuid,
        key -> Text,
        request_hash -> Bytea,
        state -> Text,
        response_status -> Nullable<Int4>,
        response_headers -> Nullable<Jsonb>,
        response_body -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        locked_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    audit_heads (tenant_id) {
        tenant_id -> Uuid,
        last_seq -> Int8,
    }
}

diesel::table! {
    quota_counters (tenant_id) {
        tenant_id -> Uuid,
        records -> Int8,
        seats -> Int8,
        webhook_endpoints -> Int8,
    }
}

diesel::table! {
    usage_windows (tenant_id, meter, window_start) {
        tenant_id -> Uuid,
        meter -> Text,
        window_start -> Timestamptz,
        value -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    usage_receipts (tenant_id, event_id) {
        tenant_id -> Uuid,
        event_id -> Text,
        recorded_at -> Timestamptz,
    }
}

diesel::table! {
    usage_adjustments (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        meter -> Text,
        window_start -> Timestamptz,
        value -> Int8,
        event_id -> Text,
        recorded_at -> Timestamptz,
    }
}

diesel::table! {
    platform_keys (id) {
        id -> Uuid,
        name -> Text,
        prefix -> Text,
        key_hash -> Bytea,
        scopes -> Array<Text>,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    users,
    roles,
    role_permissions,
    user_roles,
    refresh_tokens,
    contacts,
    audit_events,
    audit_heads,
    idempotency_keys,
    quota_counters,
    usage_windows,
    usage_receipts,
    usage_adjustments,
    platform_keys,
);
