-- The audit head only moves forward.
--
-- `audit_heads.last_seq` hands out the gap-free per-tenant `audit_events.seq` that the hash chain
-- will hang from. The app role needs INSERT and UPDATE on the head (audit::record bumps it), and
-- with plain grants that also let it write any value: `SET last_seq = 0` would make the next
-- events collide with history or, once the chain exists, fork it. The trigger admits exactly the
-- two moves audit::record makes: a new head at 1, and a bump by one.
--
-- It fires for every role, the owner and superusers included, like the append-only trigger on
-- audit_events: a rewound head is equally wrong whoever rewinds it, and a repair that really
-- needs to move a head can say so in a migration that drops and recreates the trigger, in the
-- open. DELETE is not covered: the app role has no DELETE grant, and a deleted head re-inserted at
-- 1 collides with the tenant's existing event 1 (PRIMARY KEY (tenant_id, seq)).
--
-- On Citus, a table with a trigger needs `citus.enable_unsafe_triggers = on` to be distributed;
-- audit_events already has one, so this adds no new requirement.
ALTER TABLE audit_heads ADD CONSTRAINT audit_heads_last_seq_positive CHECK (last_seq >= 1);

CREATE FUNCTION audit_heads_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.last_seq IS DISTINCT FROM 1 THEN
            RAISE EXCEPTION 'audit_heads only moves forward: a new head starts at 1, not %',
                NEW.last_seq;
        END IF;
    ELSIF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
        RAISE EXCEPTION 'audit_heads only moves forward: a head stays with its tenant';
    ELSIF NEW.last_seq IS DISTINCT FROM OLD.last_seq + 1 THEN
        RAISE EXCEPTION 'audit_heads only moves forward: last_seq % may only become %, not %',
            OLD.last_seq, OLD.last_seq + 1, NEW.last_seq;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_heads_forward_only BEFORE INSERT OR UPDATE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION audit_heads_forward_only();
