-- The server's GET /v1/contacts/{id} transaction, as pgbench runs it: `-M simple`.
--   round trip 1: BEGIN READ ONLY; SET LOCAL app.tenant_id = '<uuid>'  (one Query message: `\;`)
--   round trip 2: the SELECT of every contact column by (tenant_id, id), live rows only
--   round trip 3: COMMIT
-- Run as the app role (tessera_app), so forced RLS filters exactly as it does for the server.
-- `\gset` makes pgbench abort the client when the SELECT finds no row, so a benchmark that
-- silently read nothing (wrong ids, RLS filtering everything) cannot pass as a result.
-- Variables from the command line: -D ntenants=N -D ncontacts=M.
-- Ids (see bench/sql/seed_contacts.sql): pgbench's \set only makes integers and simple mode
-- substitutes :var as text, hence fixed-width offsets instead of zero padding.
\set t random(1, :ntenants)
\set c random(1, :ncontacts)
\set tid 100000000000 + :t
\set cpre 10000000 + :t
\set cid 100000000000 + :c
BEGIN READ ONLY \; SET LOCAL app.tenant_id = '00000000-0000-7000-8000-:tid';
SELECT tenant_id, id, first_name, last_name, email, phone, title, account_id, owner_id,
       lifecycle_stage, tags, custom, created_at, updated_at, deleted_at, version
  FROM contacts
 WHERE tenant_id = '00000000-0000-7000-8000-:tid' AND id = ':cpre-0000-7000-8000-:cid'
   AND deleted_at IS NULL
\gset r_
COMMIT;
