-- Plans, quotas and usage metering, behind a platform door.
--
-- 1. `tenants` gets row-level security like every tenant table, keyed by its own `id`: a tenant
--    transaction sees only its own row. The app role keeps SELECT and a column-level UPDATE of
--    the self-service fields (name, settings); plan, status and overrides are written only by the
--    platform role (src/db/grants.rs adds its policies, because the role's name is
--    configuration).
-- 2. `quota_counters`: one row per tenant, the O(1) accounting quotas are enforced against, in
--    the write transaction (`UPDATE … SET records = records + 1 WHERE records < limit`).
-- 3. Usage metering: `usage_windows` (hourly totals per tenant and meter), `usage_receipts`
--    (the event ids already counted: a retried flush or a replayed action never counts twice)
--    and `usage_adjustments` (increments that arrive after a window became final).
-- 4. `platform_keys`: the operator API's credentials, hashed. Not a tenant table.

ALTER TABLE tenants ADD COLUMN settings jsonb NOT NULL DEFAULT '{}';
ALTER TABLE tenants ADD COLUMN quota_overrides jsonb NOT NULL DEFAULT '{}';
ALTER TABLE tenants ADD COLUMN rate_overrides jsonb NOT NULL DEFAULT '{}';
-- A soft-deleted tenant is purged (`tessera platform purge`) after this moment.
ALTER TABLE tenants ADD COLUMN purge_after timestamptz;
-- `provisioning`: signup has reserved the slug but not yet committed the owner; not served.
ALTER TABLE tenants DROP CONSTRAINT tenants_status_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_status_check
    CHECK (status IN ('provisioning', 'active', 'suspended', 'deleted'));

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);

CREATE TABLE quota_counters (
    tenant_id         uuid   PRIMARY KEY REFERENCES tenants (id),
    records           bigint NOT NULL DEFAULT 0 CHECK (records >= 0),
    seats             bigint NOT NULL DEFAULT 0 CHECK (seats >= 0),
    webhook_endpoints bigint NOT NULL DEFAULT 0 CHECK (webhook_endpoints >= 0)
);
-- Every existing tenant starts from what its tables hold now. (Run by a superuser, as `dev` and
-- the tests do, this sees every row; an owner that RLS binds sees none, and a missing row counts
-- as zero until `tessera usage reconcile --fix` recomputes it: README, "Quotas".)
INSERT INTO quota_counters (tenant_id, records, seats)
SELECT t.id, coalesce(c.n, 0), coalesce(u.n, 0)
FROM tenants t
LEFT JOIN (SELECT tenant_id, count(*) AS n FROM contacts WHERE deleted_at IS NULL
           GROUP BY tenant_id) c ON c.tenant_id = t.id
LEFT JOIN (SELECT tenant_id, count(*) AS n FROM users WHERE status = 'active'
           GROUP BY tenant_id) u ON u.tenant_id = t.id;

CREATE TABLE usage_windows (
    tenant_id    uuid        NOT NULL REFERENCES tenants (id),
    meter        text        NOT NULL CHECK (meter IN
        ('api_requests', 'records', 'seats', 'webhook_deliveries', 'import_rows')),
    window_start timestamptz NOT NULL,
    value        bigint      NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, meter, window_start)
);

CREATE TABLE usage_receipts (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id),
    event_id    text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX usage_receipts_tenant_recorded ON usage_receipts (tenant_id, recorded_at);

CREATE TABLE usage_adjustments (
    tenant_id    uuid        NOT NULL REFERENCES tenants (id),
    id           uuid        NOT NULL,
    meter        text        NOT NULL CHECK (meter IN
        ('api_requests', 'records', 'seats', 'webhook_deliveries', 'import_rows')),
    window_start timestamptz NOT NULL,
    value        bigint      NOT NULL,
    event_id     text        NOT NULL,
    recorded_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX usage_adjustments_window ON usage_adjustments (tenant_id, meter, window_start);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['quota_counters', 'usage_windows', 'usage_receipts',
                             'usage_adjustments'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
    END LOOP;
END
$$;

CREATE TABLE platform_keys (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL,
    -- The first characters after `tpk_`, to find the row; the whole key is only ever hashed.
    prefix       text        NOT NULL UNIQUE,
    key_hash     bytea       NOT NULL,
    scopes       text[]      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
