-- `tessera platform purge` removes a tenant's data once its grace period is over. The audit
-- trail stays append-only for everyone else: the trigger admits a DELETE only of a tenant that
-- is deleted with `purge_after` in the past, or of a signup abandoned while provisioning (more
-- than an hour old, never served). No role but the owner has DELETE on audit_events anyway
-- (src/db/grants.rs); the trigger is the backstop against the owner's mistakes.
CREATE OR REPLACE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM tenants t
        WHERE t.id = OLD.tenant_id
          AND ((t.status = 'deleted' AND t.purge_after < now())
               OR (t.status = 'provisioning' AND t.created_at < now() - interval '1 hour'))
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only';
END
$$;
