-- R5 generalised (SPEC §9): backwards means a stage of lower position in the
-- same pipeline, read from the stages table when the deal moves, so it
-- follows a reorder; owner/admin only (403 stage_rollback_forbidden). Moving
-- to another pipeline is free for whoever may update the deal and writes one
-- pipeline_changed activity {"from": {pipeline_id, stage}, "to": {...}}
-- instead of stage_changed. The totals behind analytics and the funnel
-- follow pipelines and positions.
BEGIN;
SELECT plan(27);
\ir pipeline_fixture.psql

SELECT id AS sales FROM crm.pipelines WHERE organization_id = :'org_a' \gset
SELECT pg_temp.value_as(:'olga', :'org_a', $$SELECT api.pipelines_create('Onboarding', '[
    {"key": "a", "name": "A", "probability": 10}, {"key": "b", "name": "B", "probability": 20},
    {"key": "c", "name": "C", "probability": 30}]') ->> 'id'$$) AS onboarding \gset
-- Max's deal sits in b (put there by the superuser, which no rule stops).
UPDATE crm.deals SET pipeline_id = :'onboarding', stage = 'b' WHERE id = :'d_max';

CREATE FUNCTION pg_temp.move(p_deal uuid, p_stage text) RETURNS text LANGUAGE sql AS $$
  SELECT format('SELECT api.deals_update(%L, NULL, %L, NULL, NULL, NULL, NULL, NULL)', p_deal, p_stage)
$$;

-- By position, in the stages' order a, b, c.
SELECT is(pg_temp.try_as(:'max', :'org_a', pg_temp.move(:'d_max', 'a')), 'MC403 stage_rollback_forbidden',
  'a member cannot move his deal to a lower position (b → a)');
SELECT is(pg_temp.try_as(:'mia', :'org_a', pg_temp.move(:'d_max', 'a')), 'MC403 stage_rollback_forbidden',
  'nor can a manager');
SELECT is(pg_temp.try_as(:'max', :'org_a', format('UPDATE crm.deals SET stage = ''a'' WHERE id = %L', :'d_max')),
  'MC403 stage_rollback_forbidden', 'nor with a direct UPDATE');
SELECT is(pg_temp.try_as(:'adam', :'org_a', pg_temp.move(:'d_max', 'a')), 'ok', 'an admin can');
SELECT is(pg_temp.try_as(:'olga', :'org_a', pg_temp.move(:'d_max', 'a')), 'ok', 'the owner can');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a', pg_temp.move(:'d_max', 'c')),
  'a member moves forward (b → c)');

-- The owner reorders: c first. Positions decide, not the order of creation.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
  format('SELECT api.pipeline_stages_update(%L, ''c'', p_position => 1)', :'onboarding')), 'the owner moves stage c first');
SELECT is((SELECT string_agg(key, ',' ORDER BY position) FROM crm.pipeline_stages WHERE pipeline_id = :'onboarding'), 'c,a,b',
  'the order is c, a, b');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a', pg_temp.move(:'d_max', 'b')),
  'after the reorder, c → b is forward for a member');
SELECT is((SELECT payload FROM crm.activities WHERE deal_id = :'d_max' AND type = 'stage_changed' AND payload ->> 'to' = 'b'),
  '{"from": "c", "to": "b"}'::jsonb, 'a stage_changed activity, from c to b');
SELECT is(pg_temp.try_as(:'max', :'org_a', pg_temp.move(:'d_max', 'c')), 'MC403 stage_rollback_forbidden',
  'and b → c, forward before the reorder, is now backwards');
SELECT is(pg_temp.try_as(:'max', :'org_a', pg_temp.move(:'d_max', 'a')), 'MC403 stage_rollback_forbidden', 'so is b → a');
SELECT is(pg_temp.try_as(:'max', :'org_a', pg_temp.move(:'d_max', 'b')), 'ok', 'staying in b is no move');

-- Another pipeline: free, one pipeline_changed, no stage_changed.
SELECT pg_temp.n_activities(:'d_max', 'stage_changed') AS stage_rows \gset
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
  format('SELECT api.deals_update(%L, NULL, NULL, NULL, NULL, NULL, NULL, NULL, %L)', :'d_max', :'sales')),
  'a member moves his deal to another pipeline, without a stage');
SELECT is((SELECT pipeline_id || '/' || stage FROM crm.deals WHERE id = :'d_max'), :'sales' || '/qualification',
  'it lands in that pipeline''s first stage');
SELECT is((SELECT payload || jsonb_build_object('author', author_id) FROM crm.activities WHERE deal_id = :'d_max' AND type = 'pipeline_changed'
            AND author_id = :'max'),
  jsonb_build_object('from', jsonb_build_object('pipeline_id', :'onboarding'::uuid, 'stage', 'b'),
                     'to', jsonb_build_object('pipeline_id', :'sales'::uuid, 'stage', 'qualification'), 'author', :'max'::uuid),
  'one pipeline_changed activity {"from": {pipeline_id, stage}, "to": {...}}, by the member');
SELECT is(pg_temp.n_activities(:'d_max', 'stage_changed'), :'stage_rows'::int, 'and no stage_changed');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
  format('SELECT api.deals_update(%L, NULL, ''a'', NULL, NULL, NULL, NULL, NULL, %L)', :'d_max', :'onboarding')),
  'back to Onboarding into a stage of its choice (a, lower than where it was: another pipeline is no step back)');
SELECT is((SELECT stage FROM crm.deals WHERE id = :'d_max'), 'a', 'it is in a');
SELECT is(pg_temp.exec_as(:'max', :'org_a', format('UPDATE crm.deals SET pipeline_id = %L, stage = ''negotiation'' WHERE id = %L', :'sales', :'d_max')),
  1::bigint, 'a member moves it in psql too');
SELECT is(pg_temp.n_activities(:'d_max', 'pipeline_changed'), 4, 'every move between pipelines is on the timeline (the superuser''s too)');
SELECT is(pg_temp.try_as(:'max', :'org_a',
    format('SELECT api.deals_update(%L, NULL, NULL, NULL, NULL, NULL, NULL, NULL, %L)', :'d_rita', :'onboarding')),
  'MC403 role_forbidden', 'a member cannot move another member''s deal to another pipeline');
SELECT is(pg_temp.try_as(:'mia', :'org_a',
    format('SELECT api.deals_update(%L, NULL, NULL, NULL, NULL, NULL, NULL, NULL, %L)', :'d_rita', :'onboarding')),
  'ok', 'a manager can');

-- Totals and the funnel follow pipelines and positions.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
  format('UPDATE crm.deals SET pipeline_id = %L, stage = ''b'' WHERE id IN (%L, %L)', :'onboarding', :'d_rita', :'d_mia')),
  'two more deals go to Onboarding, stage b');
SELECT is(pg_temp.value_as(:'olga', :'org_a', $$
  SELECT count(*) FROM ((SELECT pipeline_id, status, stage, currency, deals, amount FROM app.deal_totals()
          EXCEPT SELECT pipeline_id, status, stage, currency, count(*), sum(amount) FROM crm.deals GROUP BY 1, 2, 3, 4)
         UNION ALL
         (SELECT pipeline_id, status, stage, currency, count(*), sum(amount) FROM crm.deals GROUP BY 1, 2, 3, 4
          EXCEPT SELECT pipeline_id, status, stage, currency, deals, amount FROM app.deal_totals())) x$$), '0',
  'the running totals equal the deals, per pipeline and stage');
SELECT is(pg_temp.value_as(:'olga', :'org_a', format($$
  SELECT jsonb_agg(jsonb_build_array(s ->> 'stage', s -> 'count', s -> 'conversion_pct'))
    FROM jsonb_array_elements(api.analytics_funnel(%L) -> 'stages') s$$, :'onboarding')),
  '[["c", 0, null], ["a", 0, 100.00], ["b", 2, 100.00]]',
  'the funnel lists the pipeline''s stages by position; reached counts the later positions (c: 2, a: 2, b: 2)');
SELECT is(pg_temp.value_as(:'olga', :'org_a', 'SELECT api.analytics_funnel() #>> ''{stages,0,stage}'''), 'qualification',
  'without a pipeline, the funnel is the first pipeline''s');

SELECT * FROM finish();
ROLLBACK;
