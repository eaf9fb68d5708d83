-- The running totals behind analytics always equal a fresh aggregate over the
-- deals, through inserts, updates, deletes, compaction and organization deletion.
BEGIN;
SELECT plan(8);
-- Writers fold deltas at random (1 in 100 writes): a fixed seed makes this
-- file see the same folds on every run.
SELECT setseed(0.42);

SELECT (api.auth_register('totals@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'T', 'Totals',
        '\x7701'::bytea, now() + interval '1 day') -> 'organization' ->> 'id') AS org,
       app.user_id() AS owner
  FROM app.act_as(NULL) \gset
RESET ROLE;

CREATE FUNCTION pg_temp.totals_match(p_org uuid) RETURNS boolean LANGUAGE sql AS $$
  SELECT NOT EXISTS (
    (SELECT status, stage, currency, deals, amount FROM app.deal_totals()
     EXCEPT SELECT status, stage, currency, count(*), sum(amount) FROM crm.deals WHERE organization_id = p_org GROUP BY 1, 2, 3)
    UNION ALL
    (SELECT status, stage, currency, count(*), sum(amount) FROM crm.deals WHERE organization_id = p_org GROUP BY 1, 2, 3
     EXCEPT SELECT status, stage, currency, deals, amount FROM app.deal_totals()))
$$;

-- Writes as the request role, through the API functions and plain SQL.
SELECT app.act_as(:'owner', :'org');
SELECT (api.contacts_create('C') ->> 'id') AS contact \gset
SELECT count(*) FROM (
  SELECT api.deals_create(:'contact', 'D' || n, n * 10, (ARRAY['EUR', 'USD', 'GBP'])[1 + n % 3])
    FROM generate_series(1, 60) n) x;
UPDATE crm.deals SET status = 'in_progress', stage = 'proposal' WHERE title LIKE 'D1%';
UPDATE crm.deals SET status = 'won', stage = 'closed', amount = amount + 0.5 WHERE title LIKE 'D2%';
UPDATE crm.deals SET title = title || '!' WHERE title LIKE 'D3%';
DELETE FROM crm.deals WHERE title LIKE 'D4%';
UPDATE crm.deals SET currency = 'JPY' WHERE title LIKE 'D5%';
SELECT count(*) AS deltas_before FROM crm.deal_totals_delta \gset
UPDATE crm.deals SET title = title || '?' WHERE title LIKE 'D7%';
SELECT count(*) AS deltas_after FROM crm.deal_totals_delta \gset
RESET ROLE;  -- assertions as the test's superuser; the context stays set

SELECT ok(pg_temp.totals_match(:'org'), 'totals plus deltas equal the deals after inserts, updates and deletes');
SELECT cmp_ok((SELECT count(*)::int FROM crm.deal_totals_delta), '>', 0, 'changes are appended as deltas');
SELECT is((SELECT count(*)::int FROM crm.deal_totals_delta WHERE deals NOT IN (-1, 1)), 0, 'each delta is one deal in or out');
SELECT is(:deltas_after::int, :deltas_before::int, 'a change that touches no total (a title) writes no delta');

SELECT app.deal_totals_compact(:'org');
SELECT is((SELECT count(*)::int FROM crm.deal_totals_delta), 0, 'compaction folds every delta into the totals');
SELECT ok(pg_temp.totals_match(:'org'), 'and the totals still match');

RESET ROLE;
SELECT app.act_as(:'owner', :'org');
SELECT api.deals_update(id, 'lost', NULL, NULL, NULL, NULL, NULL, NULL) FROM crm.deals WHERE title LIKE 'D6%';
SELECT api.organizations_delete();
RESET ROLE;
SELECT is((SELECT count(*)::int FROM crm.deal_totals WHERE organization_id = :'org'), 0, 'deleting the organization removes its totals');
SELECT is((SELECT count(*)::int FROM crm.deal_totals_delta WHERE organization_id = :'org'), 0, 'and its deltas');

SELECT * FROM finish();
ROLLBACK;
