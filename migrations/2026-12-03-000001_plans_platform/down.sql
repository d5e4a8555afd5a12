DROP TABLE platform_keys;
DROP TABLE usage_adjustments;
DROP TABLE usage_receipts;
DROP TABLE usage_windows;
DROP TABLE quota_counters;
DROP POLICY tenant_isolation ON tenants;
ALTER TABLE tenants NO FORCE ROW LEVEL SECURITY;
ALTER TABLE tenants DISABLE ROW LEVEL SECURITY;
ALTER TABLE tenants DROP CONSTRAINT tenants_status_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_status_check
    CHECK (status IN ('active', 'suspended', 'deleted'));
ALTER TABLE tenants DROP COLUMN purge_after;
ALTER TABLE tenants DROP COLUMN rate_overrides;
ALTER TABLE tenants DROP COLUMN quota_overrides;
ALTER TABLE tenants DROP COLUMN settings;
