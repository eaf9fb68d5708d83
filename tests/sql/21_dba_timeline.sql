-- SPEC §1: "A DBA who changes a deal in psql (with a user context set) gets
-- the same rules and the same timeline rows as an API client." The DBA's
-- statements below are plain psql statements after `SELECT app.act_as(...)`,
-- exactly as typed at a psql prompt; pgTAP asserts afterwards, as the
-- superuser again (RESET ROLE), in the same transaction.
BEGIN;
SELECT plan(21);
\ir pipeline_fixture.psql

SELECT pg_temp.n_activities(:'d_rita') AS rita_before \gset

-- 1. A manager, in psql, wins Rita's deal and moves it to proposal in one UPDATE.
SELECT app.act_as(:'mia', :'org_a') AS dba_role \gset
UPDATE crm.deals SET status = 'won', stage = 'proposal' WHERE id = :'d_rita';
-- (still the DBA, before any commit: the timeline rows are already there for him)
SELECT current_user AS dba_user,
       (SELECT count(*) FROM crm.activities WHERE deal_id = :'d_rita' AND type IN ('status_changed', 'stage_changed')) AS dba_sees \gset
RESET ROLE;

SELECT is(:'dba_role' || ' ' || :'dba_user', 'manager minicrm_api', 'the DBA acted as the manager, as minicrm_api');
SELECT is((SELECT status::text || ' ' || stage FROM crm.deals WHERE id = :'d_rita'), 'won proposal', 'the UPDATE took effect');
SELECT is(pg_temp.n_activities(:'d_rita', 'status_changed'), 1, 'exactly one status_changed activity');
SELECT is((SELECT payload FROM crm.activities WHERE deal_id = :'d_rita' AND type = 'status_changed'),
  '{"from": "new", "to": "won"}'::jsonb, '... with payload {"from": "new", "to": "won"}');
SELECT is(pg_temp.n_activities(:'d_rita', 'stage_changed'), 1, 'exactly one stage_changed activity');
SELECT is((SELECT payload FROM crm.activities WHERE deal_id = :'d_rita' AND type = 'stage_changed'),
  '{"from": "qualification", "to": "proposal"}'::jsonb, '... with payload {"from": "qualification", "to": "proposal"}');
SELECT is((SELECT array_agg(DISTINCT author_id) FROM crm.activities WHERE deal_id = :'d_rita' AND type IN ('status_changed', 'stage_changed')),
  ARRAY[:'mia'::uuid], 'both are authored by the acting user (the manager), not the deal''s owner');
SELECT is(pg_temp.n_activities(:'d_rita'), :'rita_before'::int + 2, 'and nothing else was written');
SELECT is(:'dba_sees'::int, 2, 'the DBA saw both rows inside his transaction, right after his UPDATE');
SELECT ok((SELECT bool_and(a.xmin::text = d.xmin::text) FROM crm.activities a JOIN crm.deals d ON d.id = a.deal_id
            WHERE a.deal_id = :'d_rita' AND a.type IN ('status_changed', 'stage_changed')),
  'the rows were written by the transaction that changed the deal');

-- 2. Rolled back with the change: an admin's UPDATE inside a savepoint, then ROLLBACK TO.
SAVEPOINT dba;
SELECT app.act_as(:'adam', :'org_a') AS dba_role \gset
UPDATE crm.deals SET stage = 'negotiation' WHERE id = :'d_rita';
SELECT count(*) AS sp_sees FROM crm.activities WHERE deal_id = :'d_rita' AND type = 'stage_changed' \gset
ROLLBACK TO SAVEPOINT dba;
SELECT is(:'sp_sees'::int, 2, 'inside the savepoint, the second stage change had its row');
SELECT is(pg_temp.n_activities(:'d_rita', 'stage_changed') || ' ' || (SELECT stage FROM crm.deals WHERE id = :'d_rita'),
  '1 proposal', 'ROLLBACK TO removed the row together with the change');

-- 3. A rejected UPDATE (R1: won with amount 0) writes no activity at all,
-- not even for the stage it would also have changed.
SELECT pg_temp.n_activities(:'d_mia') AS mia_before \gset
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('UPDATE crm.deals SET status = ''won'', stage = ''closed'', amount = 0 WHERE id = %L', :'d_mia')),
  'MC400', 'a won deal needs an amount greater than 0', 'the DBA''s UPDATE to won with amount 0 is refused (R1)');
SELECT is(pg_temp.n_activities(:'d_mia'), :'mia_before'::int, 'it wrote no activity');
SELECT is((SELECT status::text || ' ' || stage || ' ' || amount FROM crm.deals WHERE id = :'d_mia'), 'new qualification 300.00',
  'and changed nothing');

-- 4. A direct INSERT INTO crm.tasks writes task_created.
SELECT app.act_as(:'max', :'org_a') AS dba_role \gset
INSERT INTO crm.tasks (organization_id, deal_id, title, description, due_date)
VALUES (:'org_a', :'d_max', 'Send contract', 'from psql', :'tomorrow');
RESET ROLE;
SELECT id AS new_task FROM crm.tasks WHERE title = 'Send contract' \gset
SELECT is((SELECT jsonb_agg(payload || jsonb_build_object('author', author_id, 'deal', deal_id))
             FROM crm.activities WHERE type = 'task_created' AND payload ->> 'task_id' = :'new_task'),
  jsonb_build_array(jsonb_build_object('task_id', :'new_task'::uuid, 'title', 'Send contract', 'due_date', :'tomorrow',
                                       'author', :'max'::uuid, 'deal', :'d_max'::uuid)),
  'the direct INSERT wrote one task_created on the deal, with task_id, title and due_date, authored by the DBA''s user');

-- 5. A direct UPDATE moving the deal back by a manager fails (R5) and writes nothing.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('UPDATE crm.deals SET stage = ''qualification'' WHERE id = %L', :'d_rita')),
  'MC403', 'only an owner or admin may move a deal back from proposal to qualification',
  'a manager''s direct UPDATE moving the deal back (proposal → qualification) is refused');
SELECT is(pg_temp.try_as(:'mia', :'org_a', format('UPDATE crm.deals SET stage = ''qualification'' WHERE id = %L', :'d_rita')),
  'MC403 stage_rollback_forbidden', '... with the machine code stage_rollback_forbidden');
SELECT is(pg_temp.n_activities(:'d_rita', 'stage_changed') || ' ' || (SELECT stage FROM crm.deals WHERE id = :'d_rita'),
  '1 proposal', 'the deal stayed in proposal, with no new stage_changed row');

-- 6. The same direct UPDATE by an admin, in psql, goes through and is on the timeline.
SELECT app.act_as(:'adam', :'org_a') AS dba_role \gset
UPDATE crm.deals SET stage = 'qualification' WHERE id = :'d_rita';
RESET ROLE;
SELECT is((SELECT jsonb_agg(payload || jsonb_build_object('author', author_id)) FROM crm.activities
            WHERE deal_id = :'d_rita' AND type = 'stage_changed' AND payload ->> 'to' = 'qualification'),
  jsonb_build_array(jsonb_build_object('from', 'proposal', 'to', 'qualification', 'author', :'adam'::uuid)),
  'an admin''s direct UPDATE moving it back wrote stage_changed {"from": "proposal", "to": "qualification"} by the admin');

-- 7. A direct UPDATE of other fields writes nothing.
SELECT pg_temp.n_activities(:'d_rita') AS rita_mid \gset
SELECT app.act_as(:'adam', :'org_a') AS dba_role \gset
UPDATE crm.deals SET title = 'Rita''s big deal', amount = 12345 WHERE id = :'d_rita';
RESET ROLE;
SELECT is(pg_temp.n_activities(:'d_rita'), :'rita_mid'::int, 'a direct UPDATE of title and amount wrote no activity');

SELECT * FROM finish();
ROLLBACK;
