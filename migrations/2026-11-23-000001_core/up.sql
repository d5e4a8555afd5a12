-- Tessera core schema.
--
-- Rules every tenant table follows (see docs/ARCHITECTURE.md, "The tenant door"):
--   * `tenant_id` leads the primary key, every unique key and every foreign key, so integrity
--     checks (which bypass RLS) can never reveal another tenant's values, and so the schema can be
--     distributed by tenant_id on Citus unchanged;
--   * row-level security is ENABLED and FORCED (the owner is filtered too) with one policy whose
--     USING and WITH CHECK both compare against the transaction-local `app.tenant_id`;
--   * no ON DELETE SET NULL / SET DEFAULT, no ON UPDATE CASCADE, no subqueries in policies.
-- The app role's grants are applied by `tessera migrate` (src/db/grants.rs), not here, because
-- its name is configuration.

-- Platform table: reached only through the platform path, never through the tenant door.
CREATE TABLE tenants (
    id          uuid        PRIMARY KEY,
    slug        text        NOT NULL,
    name        text        NOT NULL,
    plan        text        NOT NULL DEFAULT 'free',
    status      text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    version     bigint      NOT NULL DEFAULT 1
);
-- Unique over all rows, deleted ones included: a slug is never handed to a new owner while the
-- old tenant's row is kept (30 days after deletion).
CREATE UNIQUE INDEX tenants_slug_key ON tenants (slug);

CREATE TABLE users (
    tenant_id     uuid        NOT NULL REFERENCES tenants (id),
    id            uuid        NOT NULL,
    email         text        NOT NULL CHECK (email = lower(email)),
    name          text        NOT NULL,
    password_hash text,
    status        text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    version       bigint      NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email)
);

CREATE TABLE roles (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id),
    id          uuid        NOT NULL,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    is_system   boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint      NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

-- Permissions are data: one row per (role, permission string).
CREATE TABLE role_permissions (
    tenant_id  uuid NOT NULL,
    role_id    uuid NOT NULL,
    permission text NOT NULL,
    PRIMARY KEY (tenant_id, role_id, permission),
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE user_roles (
    tenant_id  uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    role_id    uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, role_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, role_id) REFERENCES roles (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX user_roles_role ON user_roles (tenant_id, role_id);

-- Only SHA-256 hashes of refresh tokens are stored. A family is one login session; presenting a
-- consumed token revokes the whole family (RFC 9700 reuse detection).
CREATE TABLE refresh_tokens (
    tenant_id   uuid        NOT NULL,
    id          uuid        NOT NULL,
    family_id   uuid        NOT NULL,
    user_id     uuid        NOT NULL,
    token_hash  bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    consumed_at timestamptz,
    revoked_at  timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (tenant_id, family_id);

CREATE TABLE contacts (
    tenant_id       uuid        NOT NULL REFERENCES tenants (id),
    id              uuid        NOT NULL,
    first_name      text,
    last_name       text,
    email           text,
    phone           text,
    title           text,
    -- accounts arrive with the CRM domain issue; the composite FK is added then (expand/contract).
    account_id      uuid,
    owner_id        uuid,
    lifecycle_stage text CHECK (lifecycle_stage IN
        ('subscriber', 'lead', 'mql', 'sql', 'opportunity', 'customer', 'evangelist', 'other')),
    tags            text[]      NOT NULL DEFAULT '{}',
    custom          jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    version         bigint      NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, owner_id) REFERENCES users (tenant_id, id)
);
-- Email is unique per tenant among live contacts only: a deleted contact frees its address.
CREATE UNIQUE INDEX contacts_email_live ON contacts (tenant_id, lower(email))
    WHERE deleted_at IS NULL AND email IS NOT NULL;
-- Keyset pagination indexes, one per sortable field, ties broken by id.
CREATE INDEX contacts_by_created ON contacts (tenant_id, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX contacts_by_updated ON contacts (tenant_id, updated_at, id) WHERE deleted_at IS NULL;
CREATE INDEX contacts_by_last_name ON contacts (tenant_id, (coalesce(lower(last_name), '')), id) WHERE deleted_at IS NULL;
CREATE INDEX contacts_by_first_name ON contacts (tenant_id, (coalesce(lower(first_name), '')), id) WHERE deleted_at IS NULL;
CREATE INDEX contacts_by_email ON contacts (tenant_id, (coalesce(lower(email), '')), id) WHERE deleted_at IS NULL;
-- Simple filters.
CREATE INDEX contacts_owner ON contacts (tenant_id, owner_id) WHERE deleted_at IS NULL;
CREATE INDEX contacts_account ON contacts (tenant_id, account_id) WHERE deleted_at IS NULL;
-- `q` prefix search on names and email.
CREATE INDEX contacts_first_name_prefix ON contacts (tenant_id, lower(first_name) text_pattern_ops) WHERE deleted_at IS NULL;
CREATE INDEX contacts_last_name_prefix ON contacts (tenant_id, lower(last_name) text_pattern_ops) WHERE deleted_at IS NULL;
CREATE INDEX contacts_email_prefix ON contacts (tenant_id, lower(email) text_pattern_ops) WHERE deleted_at IS NULL;
-- Keeps `custom.<key>` filters indexable for the rich search that comes later.
CREATE INDEX contacts_custom ON contacts USING gin (custom jsonb_path_ops);

-- Audit trail. Insert-only for the app role: no UPDATE/DELETE grant, and a trigger refuses them.
-- `seq` is a gap-free per-tenant sequence (from audit_heads) so a hash chain can later be laid
-- over existing rows without rewriting history.
CREATE TABLE audit_heads (
    tenant_id uuid   PRIMARY KEY REFERENCES tenants (id),
    last_seq  bigint NOT NULL
);

CREATE TABLE audit_events (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id),
    seq         bigint      NOT NULL,
    id          uuid        NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    action      text        NOT NULL,
    actor_type  text        NOT NULL,
    actor_id    uuid,
    target_type text,
    target_id   uuid,
    changes     jsonb       NOT NULL DEFAULT '{}',
    request_id  text,
    ip          text,
    user_agent  text,
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, id)
);
CREATE INDEX audit_events_target ON audit_events (tenant_id, target_type, target_id);

CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();

-- Idempotency-Key records (API.md §4): per tenant and key, kept 24 h.
CREATE TABLE idempotency_keys (
    tenant_id        uuid        NOT NULL REFERENCES tenants (id),
    key              text        NOT NULL,
    request_hash     bytea       NOT NULL,
    state            text        NOT NULL CHECK (state IN ('in_progress', 'completed')),
    response_status  integer,
    response_headers jsonb,
    response_body    jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    locked_at        timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- Row-level security: enabled, forced, one policy with USING and WITH CHECK on every tenant table.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'roles', 'role_permissions', 'user_roles', 'refresh_tokens',
                             'contacts', 'audit_heads', 'audit_events', 'idempotency_keys'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;
