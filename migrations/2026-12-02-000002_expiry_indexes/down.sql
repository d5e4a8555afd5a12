CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
DROP INDEX IF EXISTS refresh_tokens_tenant_expiry;
DROP INDEX IF EXISTS idempotency_keys_tenant_expiry;
