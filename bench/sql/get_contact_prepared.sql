-- The server's GET /v1/contacts/{id} transaction with the server's round trips AND its prepared
-- SELECT: `-M prepared`.
--   round trip 1: BEGIN READ ONLY + set the tenant context (a two-statement pipeline; SET takes
--                 no bind parameters in the extended protocol, so set_config(..., true), which is
--                 what SET LOCAL does)
--   round trip 2: the prepared SELECT of every contact column by (tenant_id, id), live rows only
--                 (diesel-async caches it as a prepared statement per connection, as here)
--   round trip 3: COMMIT
-- The difference to get_contact_simple.sql: the SELECT is parsed and planned once per connection,
-- not once per transaction, exactly as in the server. Run as the app role (tessera_app).
-- `\gset` aborts the client when the SELECT finds no row.
-- Variables from the command line: -D ntenants=N -D ncontacts=M.
\set t random(1, :ntenants)
\set c random(1, :ncontacts)
\set tid 100000000000 + :t
\set cpre 10000000 + :t
\set cid 100000000000 + :c
\startpipeline
BEGIN READ ONLY;
SELECT set_config('app.tenant_id', '00000000-0000-7000-8000-' || CAST(:tid AS text), true);
\endpipeline
SELECT tenant_id, id, first_name, last_name, email, phone, title, account_id, owner_id,
       lifecycle_stage, tags, custom, created_at, updated_at, deleted_at, version
  FROM contacts
 WHERE tenant_id = CAST('00000000-0000-7000-8000-' || CAST(:tid AS text) AS uuid)
   AND id = CAST(CAST(:cpre AS text) || '-0000-7000-8000-' || CAST(:cid AS text) AS uuid)
   AND deleted_at IS NULL
\gset r_
COMMIT;
