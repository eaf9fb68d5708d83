-- R7: creating a task writes a `task_created` activity on its deal, with
-- payload {task_id, title, due_date}, authored by the acting user, in the same
-- transaction. A refused creation, and any later change to the task, writes none.
BEGIN;
SELECT plan(16);
\ir pipeline_fixture.psql

-- Through the API, as the member who owns the deal.
SELECT pg_temp.n_activities(:'d_max', 'task_created') AS max_before \gset
SELECT pg_temp.value_as(:'max', :'org_a',
         format('SELECT api.tasks_create(%L, ''  Send the offer  '', ''with prices'', %L) ->> ''id''', :'d_max', :'tomorrow'))
  AS task1 \gset
SELECT ok(EXISTS (SELECT 1 FROM crm.tasks WHERE id = :'task1' AND deal_id = :'d_max'), 'a member creates a task on his deal through the API');
SELECT is(pg_temp.n_activities(:'d_max', 'task_created'), :'max_before'::int + 1, 'exactly one task_created activity was written');
SELECT is((SELECT payload FROM crm.activities WHERE deal_id = :'d_max' AND type = 'task_created' AND payload ->> 'task_id' = :'task1'),
  jsonb_build_object('task_id', :'task1'::uuid, 'title', 'Send the offer', 'due_date', :'tomorrow'),
  'its payload is {task_id, title, due_date} of the new task (title as stored, date as YYYY-MM-DD)');
SELECT is((SELECT author_id::text || ' ' || organization_id FROM crm.activities WHERE payload ->> 'task_id' = :'task1'),
  :'max' || ' ' || :'org_a', 'its author is the acting user, its organization the deal''s');
SELECT is((SELECT (a.xmin::text = t.xmin::text)
             FROM crm.activities a JOIN crm.tasks t ON t.id = (a.payload ->> 'task_id')::uuid
            WHERE t.id = :'task1'), true, 'it was written by the transaction that created the task');

-- A direct INSERT (a DBA in psql under a context): the same row.
SELECT is(pg_temp.exec_as(:'mia', :'org_a',
         format('INSERT INTO crm.tasks (organization_id, deal_id, title, due_date) VALUES (%L, %L, ''Check in'', %L)',
                :'org_a', :'d_rita', :'today')),
  1::bigint, 'a manager inserts a task on a member''s deal directly');
SELECT id AS task2 FROM crm.tasks WHERE title = 'Check in' \gset
SELECT is((SELECT jsonb_agg(payload || jsonb_build_object('author', author_id, 'deal', deal_id))
             FROM crm.activities WHERE type = 'task_created' AND payload ->> 'task_id' = :'task2'),
  jsonb_build_array(jsonb_build_object('task_id', :'task2'::uuid, 'title', 'Check in', 'due_date', :'today',
                                       'author', :'mia'::uuid, 'deal', :'d_rita'::uuid)),
  'exactly one task_created on the task''s deal, with its id, title and due_date, authored by the manager');

-- Several tasks in one statement: one activity each.
SELECT is(pg_temp.exec_as(:'olga', :'org_a',
         format($q$INSERT INTO crm.tasks (organization_id, deal_id, title, due_date)
                   SELECT %L, %L, 'Batch ' || g, %L::date + g FROM generate_series(1, 3) g$q$, :'org_a', :'d_olga', :'today')),
  3::bigint, 'the owner inserts three tasks in one statement');
SELECT is((SELECT count(*)::int FROM crm.activities a JOIN crm.tasks t ON t.id = (a.payload ->> 'task_id')::uuid
            WHERE a.type = 'task_created' AND t.title LIKE 'Batch %' AND a.author_id = :'olga'
              AND a.payload ->> 'title' = t.title AND a.payload ->> 'due_date' = t.due_date::text), 3,
  'three task_created activities, one per task, each with its own title and due_date');

-- A refused creation writes nothing.
SELECT count(*) AS events_before FROM crm.activities \gset
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_create(%L, ''Too late'', NULL, %L)', :'d_max', :'yesterday')),
  'MC400', NULL, 'a task due yesterday is refused (R4)');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_create(%L, ''Not mine'', NULL, %L)', :'d_rita', :'tomorrow')),
  'MC403', NULL, 'a member''s task on another''s deal is refused (R3)');
SELECT is((SELECT count(*) FROM crm.activities), :'events_before'::bigint, 'the refused creations wrote no activity');

-- Changing or deleting a task writes no task_created.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_update(%L, ARRAY[''title'', ''due_date'', ''is_done''], ''Offer sent'', NULL, %L, true)', :'task1', :'next_week')),
  'the member updates his task');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_delete(%L)', :'t_max')),
  'the member deletes another of his tasks');
SELECT is((SELECT count(*) FROM crm.activities), :'events_before'::bigint, 'updating and deleting tasks wrote no activity');
SELECT is((SELECT payload ->> 'title' FROM crm.activities WHERE type = 'task_created' AND payload ->> 'task_id' = :'task1'),
  'Send the offer', 'the task_created row keeps the title the task was created with');

SELECT * FROM finish();
ROLLBACK;
