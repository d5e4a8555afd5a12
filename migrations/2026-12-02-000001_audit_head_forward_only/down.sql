DROP TRIGGER IF EXISTS audit_heads_forward_only ON audit_heads;
DROP FUNCTION IF EXISTS audit_heads_forward_only();
ALTER TABLE audit_heads DROP CONSTRAINT IF EXISTS audit_heads_last_seq_positive;
