-- Indexes for purging expired idempotency keys and refresh tokens (src/maintenance/purge.rs),
-- which deletes per tenant, `WHERE tenant_id = $1 AND expires_at < now()`, in bounded batches.
-- The old `(expires_at)` index on idempotency_keys crossed tenants, which no statement does (and
-- which could not route to one shard on Citus): it goes.
CREATE INDEX idempotency_keys_tenant_expiry ON idempotency_keys (tenant_id, expires_at);
CREATE INDEX refresh_tokens_tenant_expiry ON refresh_tokens (tenant_id, expires_at);
DROP INDEX idempotency_keys_expiry;
