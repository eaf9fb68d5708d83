-- R6: every status change writes exactly one `status_changed` activity and
-- every stage change exactly one `stage_changed`, with payload
-- {"from": old, "to": new}, authored by the acting user, in the same
-- transaction as the change (it commits or rolls back with it). Updates that
-- change neither write nothing.
BEGIN;
SELECT plan(29);
\ir pipeline_fixture.psql

-- A status change alone (API, as the member who owns the deal).
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, ''in_progress'', NULL, NULL, NULL, NULL, NULL, NULL)', :'d_max')),
  'a member changes the status of his deal (new → in_progress)');
SELECT is(pg_temp.n_activities(:'d_max', 'status_changed'), 1, 'exactly one status_changed activity was written');
SELECT is((SELECT payload FROM crm.activities WHERE deal_id = :'d_max' AND type = 'status_changed'),
  '{"from": "new", "to": "in_progress"}'::jsonb, 'its payload is {"from": "new", "to": "in_progress"}');
SELECT is((SELECT author_id FROM crm.activities WHERE deal_id = :'d_max' AND type = 'status_changed'), :'max'::uuid,
  'its author is the acting user');
SELECT is((SELECT organization_id FROM crm.activities WHERE deal_id = :'d_max' AND type = 'status_changed'), :'org_a'::uuid,
  'it belongs to the deal''s organization');
SELECT is(pg_temp.n_activities(:'d_max', 'stage_changed'), 0, 'no stage_changed activity for a status-only change');

-- A stage change alone.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, NULL, ''proposal'', NULL, NULL, NULL, NULL, NULL)', :'d_max')),
  'a member moves his deal forward (qualification → proposal)');
SELECT is(pg_temp.n_activities(:'d_max', 'stage_changed'), 1, 'exactly one stage_changed activity was written');
SELECT is((SELECT payload || jsonb_build_object('author', author_id) FROM crm.activities WHERE deal_id = :'d_max' AND type = 'stage_changed'),
  jsonb_build_object('from', 'qualification', 'to', 'proposal', 'author', :'max'::uuid),
  'its payload is {"from": "qualification", "to": "proposal"}, its author the acting user');
SELECT is(pg_temp.n_activities(:'d_max', 'status_changed'), 1, 'no further status_changed activity for a stage-only change');

-- Both in one update: one row each.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, ''won'', ''closed'', NULL, NULL, NULL, NULL, NULL)', :'d_max')),
  'a member wins and closes his deal in one update');
SELECT is(pg_temp.n_activities(:'d_max', 'status_changed') || '/' || pg_temp.n_activities(:'d_max', 'stage_changed'), '2/2',
  'exactly one more status_changed and one more stage_changed');
SELECT is((SELECT jsonb_agg(payload || jsonb_build_object('type', type, 'author', author_id) ORDER BY type)
             FROM crm.activities WHERE deal_id = :'d_max' AND type IN ('status_changed', 'stage_changed')
              AND payload ->> 'to' IN ('won', 'closed')),
  jsonb_build_array(
    jsonb_build_object('type', 'status_changed', 'from', 'in_progress', 'to', 'won', 'author', :'max'::uuid),
    jsonb_build_object('type', 'stage_changed', 'from', 'proposal', 'to', 'closed', 'author', :'max'::uuid)),
  'with {"from": "in_progress", "to": "won"} and {"from": "proposal", "to": "closed"}, by the acting user');

-- Updates that change neither status nor stage write nothing.
SELECT pg_temp.n_activities(:'d_max') AS max_events \gset
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.deals_update(%L, ''won'', ''closed'', ''Renamed'', 450, NULL, NULL, NULL)', :'d_max')),
  'an update that re-sends the current status and stage, with a new title and amount');
SELECT is(pg_temp.exec_as(:'max', :'org_a', format('UPDATE crm.deals SET status = status, stage = stage, amount = 460 WHERE id = %L', :'d_max')),
  1::bigint, 'a direct UPDATE that sets status and stage to themselves');
SELECT is(pg_temp.n_activities(:'d_max'), :'max_events'::int, 'wrote no activity');

-- The author is whoever acts, not the deal's owner.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('SELECT api.deals_update(%L, ''lost'', NULL, NULL, NULL, NULL, NULL, NULL)', :'d_rita')),
  'a manager changes the status of a member''s deal');
SELECT is((SELECT author_id FROM crm.activities WHERE deal_id = :'d_rita' AND type = 'status_changed'), :'mia'::uuid,
  'the status_changed activity is authored by the manager');
SELECT is(pg_temp.exec_as(:'adam', :'org_a', format('UPDATE crm.deals SET stage = ''negotiation'' WHERE id = %L', :'d_rita')),
  1::bigint, 'an admin moves the same deal with a direct UPDATE');
SELECT is((SELECT author_id FROM crm.activities WHERE deal_id = :'d_rita' AND type = 'stage_changed'), :'adam'::uuid,
  'the stage_changed activity is authored by the admin');

-- A bulk UPDATE writes one row per changed deal (and none for unchanged ones).
SELECT pg_temp.exec_as(:'olga', :'org_a',
  format('UPDATE crm.deals SET status = ''in_progress'' WHERE organization_id = %L AND status IN (''new'', ''in_progress'')', :'org_a'))
  AS bulk_rows \gset
SELECT is(:'bulk_rows'::int, 3, 'the owner''s bulk UPDATE touched the 3 deals that were new');
SELECT is((SELECT count(*)::int FROM crm.activities
            WHERE organization_id = :'org_a' AND type = 'status_changed' AND author_id = :'olga'
              AND payload = '{"from": "new", "to": "in_progress"}'), 3,
  'it wrote exactly one status_changed per deal, authored by the owner');

-- Same transaction: inside a savepoint, the change and its timeline row are
-- written by the same (sub)transaction, and rolling it back removes both.
SELECT pg_temp.n_activities(:'d_olga', 'stage_changed') AS olga_stage_before \gset
SAVEPOINT r6;
SELECT pg_temp.exec_as(:'olga', :'org_a', format('UPDATE crm.deals SET stage = ''proposal'' WHERE id = %L', :'d_olga')) AS sp_rows \gset
SELECT pg_temp.n_activities(:'d_olga', 'stage_changed') AS sp_stage_events,
       (SELECT a.xmin::text = d.xmin::text AND d.xmin::text <> txid_current()::text
          FROM crm.activities a JOIN crm.deals d ON d.id = a.deal_id
         WHERE a.deal_id = :'d_olga' AND a.type = 'stage_changed') AS sp_same_xid \gset
ROLLBACK TO SAVEPOINT r6;
SELECT is(:'sp_stage_events'::int, :'olga_stage_before'::int + 1, 'inside the savepoint, the stage change had its activity');
SELECT ok(:'sp_same_xid'::boolean, '... written by the very (sub)transaction that changed the deal');
SELECT is(pg_temp.n_activities(:'d_olga', 'stage_changed'), :'olga_stage_before'::int,
  'rolling the change back removed its activity too');
SELECT is((SELECT stage::text FROM crm.deals WHERE id = :'d_olga'), 'qualification', '... and the deal is back in qualification');

-- A refused change writes nothing (R1 here): the activity count is unchanged.
SELECT pg_temp.n_activities(:'d_olga') AS olga_events \gset
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
         format('UPDATE crm.deals SET status = ''won'', stage = ''closed'', amount = 0 WHERE id = %L', :'d_olga')),
  'MC400', NULL, 'a status and stage change refused by R1');
SELECT is(pg_temp.n_activities(:'d_olga'), :'olga_events'::int, 'wrote no activity');

-- The request role reads the timeline through the API, newest first.
SELECT is(pg_temp.value_as(:'max', :'org_a',
         format($q$SELECT string_agg(i ->> 'type', ',' ORDER BY o) FROM jsonb_array_elements(api.activities_list(%L, 1, 20) -> 'items') WITH ORDINALITY e(i, o)$q$, :'d_max')),
  'stage_changed,status_changed,stage_changed,status_changed,task_created,system',
  'api.activities_list shows the deal''s whole timeline to the member, newest first');

SELECT * FROM finish();
ROLLBACK;
