-- The deals created per day (V14) behind the summary's new_deals always equal
-- a fresh count over the deals, through inserts, pipeline moves, a DBA's
-- change of created_at, deletes, compaction and organization deletion; and a
-- window's count is exact at its partial first day.
BEGIN;
SELECT plan(10);
SELECT setseed(0.42);  -- writers fold deltas at random (1 in 100 writes)

SELECT (api.auth_register('created@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'C', 'Created',
        '\x7702'::bytea, now() + interval '1 day') -> 'organization' ->> 'id') AS org,
       app.user_id() AS owner
  FROM app.act_as(NULL) \gset
RESET ROLE;

CREATE FUNCTION pg_temp.days_match(p_org uuid) RETURNS boolean LANGUAGE sql AS $$
  WITH counted AS (
    SELECT pipeline_id, day, sum(deals) AS deals
      FROM (SELECT pipeline_id, day, deals FROM crm.deal_created_days WHERE organization_id = p_org
            UNION ALL
            SELECT pipeline_id, day, deals FROM crm.deal_created_days_delta WHERE organization_id = p_org) x
     GROUP BY 1, 2 HAVING sum(deals) <> 0
  ), fresh AS (
    SELECT pipeline_id, app.created_day(created_at) AS day, count(*) AS deals
      FROM crm.deals WHERE organization_id = p_org GROUP BY 1, 2
  )
  SELECT NOT EXISTS ((SELECT * FROM counted EXCEPT SELECT * FROM fresh)
                     UNION ALL (SELECT * FROM fresh EXCEPT SELECT * FROM counted))
$$;

SELECT app.act_as(:'owner', :'org');
SELECT (api.contacts_create('C') ->> 'id') AS contact \gset
SELECT (api.pipelines_create('Renewals', '[{"key": "open", "name": "Open", "probability": 50}]') ->> 'id') AS renewals \gset
SELECT count(*) FROM (SELECT api.deals_create(:'contact', 'D' || n, n, 'EUR') FROM generate_series(1, 80) n) x;
-- A DBA spreads the deals over the last 100 days, at every hour of the day.
UPDATE crm.deals SET created_at = now() - (substr(title, 2)::int * interval '1 day' + substr(title, 2)::int % 24 * interval '1 hour')
 WHERE organization_id = :'org';
SELECT api.deals_update(p_id => id, p_status => NULL, p_stage => NULL, p_title => NULL, p_amount => NULL,
                        p_currency => NULL, p_contact_id => NULL, p_owner_id => NULL, p_pipeline_id => :'renewals')
  FROM crm.deals WHERE title LIKE 'D1%';
DELETE FROM crm.deals WHERE title LIKE 'D2%';
SELECT count(*) AS deltas_before FROM crm.deal_created_days_delta \gset
UPDATE crm.deals SET title = title || '!' WHERE title LIKE 'D3%';
SELECT count(*) AS deltas_after FROM crm.deal_created_days_delta \gset
RESET ROLE;  -- assertions as the test's superuser; the context stays set

SELECT ok(pg_temp.days_match(:'org'), 'counts plus deltas equal the deals per pipeline and day');
SELECT is(:deltas_after::int, :deltas_before::int, 'a change that moves no deal between days or pipelines writes no delta');

-- Read as the request role (under RLS), asserted as the test's superuser.
SET ROLE minicrm_api;
SELECT (SELECT array_agg(app.deals_created_since(now() - n * interval '1 day' - n * interval '37 minutes', NULL) ORDER BY n)
          FROM generate_series(1, 120, 7) n) AS since_any,
       (SELECT array_agg(app.deals_created_since(now() - n * interval '1 day', :'renewals') ORDER BY n)
          FROM generate_series(1, 120, 9) n) AS since_renewals,
       (api.analytics_summary(p_days => 30) ->> 'new_deals') AS summary_30,
       (api.analytics_summary(p_days => 3650, p_pipeline_id => :'renewals') ->> 'new_deals') AS summary_renewals \gset
RESET ROLE;
-- Windows whose first day is partial, at several cutoffs.
SELECT is(:'since_any'::bigint[],
          (SELECT array_agg((SELECT count(*) FROM crm.deals d WHERE d.organization_id = :'org'
                              AND d.created_at >= now() - n * interval '1 day' - n * interval '37 minutes') ORDER BY n)
             FROM generate_series(1, 120, 7) n),
          'deals created since a moment: exact, whatever the moment of its first day');
SELECT is(:'since_renewals'::bigint[],
          (SELECT array_agg((SELECT count(*) FROM crm.deals d WHERE d.organization_id = :'org' AND d.pipeline_id = :'renewals'
                              AND d.created_at >= now() - n * interval '1 day') ORDER BY n)
             FROM generate_series(1, 120, 9) n),
          'and per pipeline');
SELECT is(:'summary_30'::bigint,
          (SELECT count(*) FROM crm.deals WHERE organization_id = :'org' AND created_at >= now() - interval '30 days'),
          'the summary''s new_deals is that count');
SELECT is(:'summary_renewals'::bigint,
          (SELECT count(*) FROM crm.deals WHERE organization_id = :'org' AND pipeline_id = :'renewals'),
          'per pipeline too');

SELECT app.deal_created_days_compact(:'org');
SELECT is((SELECT count(*)::int FROM crm.deal_created_days_delta WHERE organization_id = :'org'), 0,
          'compaction folds every delta into the counts');
SELECT ok(pg_temp.days_match(:'org'), 'and the counts still match');

SELECT app.act_as(:'owner', :'org');
SELECT api.organizations_delete();
RESET ROLE;
SELECT is((SELECT count(*)::int FROM crm.deal_created_days WHERE organization_id = :'org'), 0,
          'deleting the organization removes its counts');
SELECT is((SELECT count(*)::int FROM crm.deal_created_days_delta WHERE organization_id = :'org'), 0, 'and its deltas');

SELECT * FROM finish();
ROLLBACK;
