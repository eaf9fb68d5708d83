-- R3: a member cannot create a task on another user's deal: 403 (MC403
-- deal_not_owned). On their own deal they can; managers, admins and owners can
-- on anyone's deal.
BEGIN;
SELECT plan(21);
\ir pipeline_fixture.psql

SELECT count(*) AS tasks_before FROM crm.tasks \gset
SELECT count(*) AS task_events_before FROM crm.activities WHERE type = 'task_created' \gset

-- Refused: Max (member) on Rita's deal (another member) and on Olga's (the owner's).
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_create(%L, ''Call'', NULL, %L)', :'d_rita', :'tomorrow')),
  'MC403', 'members may only add tasks to their own deals', 'a member cannot create a task on another member''s deal');
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.tasks_create(%L, ''Call'', NULL, %L)', :'d_rita', :'tomorrow')),
  'MC403 deal_not_owned', '... with the machine code deal_not_owned');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_create(%L, ''Call'', NULL, %L)', :'d_olga', :'tomorrow')),
  'MC403', 'members may only add tasks to their own deals', 'a member cannot create a task on the owner''s deal');
-- A direct INSERT (a DBA in psql acting as the member) meets the same rule.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('INSERT INTO crm.tasks (organization_id, deal_id, title, due_date) VALUES (%L, %L, ''Call'', %L)',
                :'org_a', :'d_rita', :'tomorrow')),
  'MC403', 'members may only add tasks to their own deals', 'a direct INSERT of a task on another''s deal by a member is refused');
SELECT is(pg_temp.try_as(:'rita', :'org_a',
         format('INSERT INTO crm.tasks (organization_id, deal_id, title, due_date) VALUES (%L, %L, ''Call'', %L)',
                :'org_a', :'d_max', :'tomorrow')),
  'MC403 deal_not_owned', 'the other member cannot add a task to Max''s deal either');
-- Nor can a member move one of their tasks onto another user's deal.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('UPDATE crm.tasks SET deal_id = %L WHERE id = %L', :'d_rita', :'t_max')),
  'MC403', 'members may only add tasks to their own deals', 'a member cannot move his task onto another''s deal');

-- The refused statements wrote nothing: no task, no task_created activity.
SELECT is((SELECT count(*) FROM crm.tasks), :'tasks_before'::bigint, 'no task was created by the refused statements');
SELECT is((SELECT count(*) FROM crm.activities WHERE type = 'task_created'), :'task_events_before'::bigint,
  'no task_created activity was written by the refused statements');
SELECT is((SELECT deal_id FROM crm.tasks WHERE id = :'t_max'), :'d_max'::uuid, 'Max''s task is still on his deal');

-- Allowed: the member on his own deal, through the API and directly.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_create(%L, ''Own via API'', NULL, %L)', :'d_max', :'tomorrow')),
  'a member creates a task on his own deal through the API');
SELECT is(pg_temp.exec_as(:'max', :'org_a',
         format('INSERT INTO crm.tasks (organization_id, deal_id, title, due_date) VALUES (%L, %L, ''Own direct'', %L)',
                :'org_a', :'d_max', :'tomorrow')),
  1::bigint, 'a member creates a task on his own deal with a direct INSERT');
SELECT is((SELECT count(*)::int FROM crm.tasks WHERE deal_id = :'d_max' AND title IN ('Own via API', 'Own direct')), 2,
  'both tasks are on Max''s deal');
-- A deal handed to the member becomes his: then he may add tasks to it.
UPDATE crm.deals SET owner_id = :'max' WHERE id = :'d_rita';
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_create(%L, ''Inherited'', NULL, %L)', :'d_rita', :'tomorrow')),
  'once the deal is reassigned to him, the member may add tasks to it');
UPDATE crm.deals SET owner_id = :'rita' WHERE id = :'d_rita';

-- Allowed: a manager, an admin and the owner on another member's deal.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('SELECT api.tasks_create(%L, ''By manager'', NULL, %L)', :'d_rita', :'tomorrow')),
  'a manager creates a task on a member''s deal');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'adam', :'org_a',
         format('SELECT api.tasks_create(%L, ''By admin'', NULL, %L)', :'d_rita', :'tomorrow')),
  'an admin creates a task on a member''s deal');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
         format('SELECT api.tasks_create(%L, ''By owner'', NULL, %L)', :'d_rita', :'tomorrow')),
  'the owner creates a task on a member''s deal');
SELECT is(pg_temp.exec_as(:'mia', :'org_a',
         format('INSERT INTO crm.tasks (organization_id, deal_id, title, due_date) VALUES (%L, %L, ''Direct by manager'', %L)',
                :'org_a', :'d_olga', :'tomorrow')),
  1::bigint, 'a manager creates a task on the owner''s deal with a direct INSERT');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('UPDATE crm.tasks SET deal_id = %L WHERE id = %L', :'d_olga', :'t_rita')),
  'a manager may move a member''s task onto another deal');
SELECT is((SELECT string_agg(title, ', ' ORDER BY title) FROM crm.tasks WHERE deal_id = :'d_rita' AND title LIKE 'By %'),
  'By admin, By manager, By owner', 'the three tasks are on Rita''s deal');
SELECT is((SELECT string_agg(t.title || ':' || u.name, ', ' ORDER BY t.title)
             FROM crm.activities a JOIN crm.tasks t ON t.id = (a.payload ->> 'task_id')::uuid
             JOIN crm.users u ON u.id = a.author_id
            WHERE a.type = 'task_created' AND a.deal_id = :'d_rita' AND t.title LIKE 'By %'),
  'By admin:Adam, By manager:Mia, By owner:Olga', 'each of them wrote its task_created activity, authored by its creator');
SELECT is(pg_temp.value_as(:'mia', :'org_a', 'SELECT current_user'), 'minicrm_api', 'the statements ran as minicrm_api');

SELECT * FROM finish();
ROLLBACK;
