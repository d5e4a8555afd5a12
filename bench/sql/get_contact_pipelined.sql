-- The server's own shape (Door::read_one): the same transaction with all four statements in ONE
-- round trip (pipeline mode; run with `-M prepared`, and `-M extended` for the unprepared
-- reference). SET takes no bind parameters in the extended protocol, so the tenant context is set
-- with set_config(..., is_local => true), which is what SET LOCAL does. No client can send this
-- transaction in fewer round trips, so it is also the ceiling on this machine.
-- Run as the app role (tessera_app). pgbench refuses `\gset` inside a pipeline, so bench/run.sh
-- first runs a check copy of this file without the pipeline and with `\gset` after the SELECT
-- (made by sed: keep the SELECT's last line ending in "deleted_at IS NULL;").
-- Variables from the command line: -D ntenants=N -D ncontacts=M.
\set t random(1, :ntenants)
\set c random(1, :ncontacts)
\set tid 100000000000 + :t
\set cpre 10000000 + :t
\set cid 100000000000 + :c
\startpipeline
BEGIN READ ONLY;
SELECT set_config('app.tenant_id', '00000000-0000-7000-8000-' || CAST(:tid AS text), true);
SELECT tenant_id, id, first_name, last_name, email, phone, title, account_id, owner_id,
       lifecycle_stage, tags, custom, created_at, updated_at, deleted_at, version
  FROM contacts
 WHERE tenant_id = CAST('00000000-0000-7000-8000-' || CAST(:tid AS text) AS uuid)
   AND id = CAST(CAST(:cpre AS text) || '-0000-7000-8000-' || CAST(:cid AS text) AS uuid)
   AND deleted_at IS NULL;
COMMIT;
\endpipeline
