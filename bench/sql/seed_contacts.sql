-- Bulk-inserts :contacts contacts for each bench tenant :first_tenant..:last_tenant in ONE
-- set-based statement. Run by bench/seed.sh via psql as a superuser (or BYPASSRLS role): RLS is
-- forced on contacts, and one statement spans many tenants.
--
-- Id scheme (shared with bench/wrk/get_contact.lua and bench/sql/get_contact_*.sql):
--   tenant  t (1..N): 00000000-0000-7000-8000-{100000000000 + t}
--   contact c (1..M): {10000000 + t}-0000-7000-8000-{100000000000 + c}
-- Every group has a fixed width without zero padding (pgbench cannot pad), all digits are valid
-- hex, and a contact id names its tenant, so tenant A's contact id is never found under tenant B.
--
-- Values are deterministic functions of (t, c): a re-seed produces the same rows.
INSERT INTO contacts (tenant_id, id, first_name, last_name, email, phone, title, account_id,
                      owner_id, lifecycle_stage, tags, custom, created_at, updated_at, deleted_at,
                      version)
SELECT
    v.tenant_id,
    format('%s-0000-7000-8000-%s', 10000000 + v.t, 100000000000 + v.c)::uuid,
    v.first_name,
    v.last_name,
    -- Unique per tenant (c is in it); lower case, as the API stores it.
    lower(v.first_name || '.' || v.last_name || '.' || v.c) || '@customer-' || v.t || '.example',
    '+1-555-' || lpad(((v.c * 7919) % 10000000)::text, 7, '0'),
    (ARRAY['CEO', 'CTO', 'VP Sales', 'Account Executive', 'Engineer', 'Marketing Manager',
           'Office Manager', 'Founder', 'Buyer', 'Consultant'])[1 + (v.c * 7) % 10],
    NULL::uuid,                                  -- accounts arrive with the CRM domain issue
    CASE WHEN v.c % 10 < 7 THEN v.owner_id END,  -- 70 % owned by the tenant's owner user
    (ARRAY['subscriber', 'lead', 'mql', 'sql', 'opportunity', 'customer', 'evangelist',
           'other'])[1 + (v.c * 3 + v.t) % 8],
    -- 0 to 3 tags (an empty slice when c % 4 = 0).
    (ARRAY['vip', 'newsletter', 'partner', 'trade-show', 'inbound', 'churn-risk', 'beta',
           'referral'])[1 + v.c % 5 : v.c % 5 + v.c % 4],
    jsonb_build_object(
        'source', (ARRAY['web', 'referral', 'event', 'import', 'partner'])[1 + v.c % 5],
        'score', (v.c * 31 + v.t) % 100,
        'newsletter', v.c % 2 = 0,
        'region', (ARRAY['emea', 'amer', 'apac'])[1 + (v.c + v.t) % 3]),
    v.created_at,
    v.created_at + make_interval(secs => (v.c % 86400)),
    NULL::timestamptz,                           -- all live: every GET in the benchmark is a hit
    1 + v.c % 3
-- Plain subqueries and joins only, no LATERAL or correlated subquery: Citus plans neither next to
-- generate_series, and bench/citus.sh seeds a cluster with this file too.
FROM (
    SELECT tn.t, tn.tenant_id, tn.owner_id, c,
           (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Margaret', 'Ken',
                  'Dennis', 'Frances', 'John', 'Radia', 'Leslie', 'Tim', 'Sophie', 'Linus',
                  'Hedy', 'Niklaus', 'Katherine', 'Bjarne'])[1 + (c * 13 + tn.t) % 20] AS first_name,
           (ARRAY['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Hamilton',
                  'Thompson', 'Ritchie', 'Allen', 'McCarthy', 'Perlman', 'Lamport', 'Berners-Lee',
                  'Wilson', 'Torvalds', 'Lamarr', 'Wirth', 'Johnson', 'Stroustrup',
                  'Goldberg', 'Kay', 'Backus', 'Codd', 'Stonebraker', 'Gray', 'Cerf', 'Kahn',
                  'Shannon', 'Hoare'])[1 + (c * 17 + tn.t * 3) % 30] AS last_name,
           timestamptz '2025-01-01 00:00:00+00' + make_interval(secs => c * 60 + tn.t) AS created_at
    FROM (
        -- The owner is each tenant's first user.
        SELECT s.t, s.tenant_id, o.id AS owner_id
        FROM (SELECT t, ('00000000-0000-7000-8000-' || (100000000000 + t))::uuid AS tenant_id
              FROM generate_series(:first_tenant::int, :last_tenant::int) AS t) AS s
        LEFT JOIN (SELECT DISTINCT ON (tenant_id) tenant_id, id FROM users
                   ORDER BY tenant_id, created_at, id) AS o ON o.tenant_id = s.tenant_id
    ) AS tn
    CROSS JOIN generate_series(1, :contacts::int) AS c
) AS v;
