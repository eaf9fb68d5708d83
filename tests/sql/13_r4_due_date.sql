-- R4: a task's due_date cannot be in the past — today (UTC) is allowed — on
-- create and when changed: 400 (MC400 tasks_due_date_past). A task whose
-- due_date has meanwhile passed can still be edited as long as its due_date
-- is left as it is.
BEGIN;
SELECT plan(26);
\ir pipeline_fixture.psql

SELECT count(*) AS tasks_before FROM crm.tasks \gset
SELECT count(*) AS task_events_before FROM crm.activities WHERE type = 'task_created' \gset

-- Create, refused: yesterday (UTC) and long ago, through the API and directly.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_create(%L, ''Late'', NULL, %L)', :'d_max', :'yesterday')),
  'MC400', 'due_date cannot be in the past', 'api.tasks_create with due_date yesterday is refused');
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.tasks_create(%L, ''Late'', NULL, %L)', :'d_max', :'yesterday')),
  'MC400 tasks_due_date_past', '... with the machine code tasks_due_date_past');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('INSERT INTO crm.tasks (organization_id, deal_id, title, due_date) VALUES (%L, %L, ''Late'', %L)',
                :'org_a', :'d_max', :'yesterday')),
  'MC400', 'due_date cannot be in the past', 'a direct INSERT with due_date yesterday is refused');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
         format('SELECT api.tasks_create(%L, ''Ancient'', NULL, ''2000-01-01'')', :'d_olga')),
  'MC400', 'due_date cannot be in the past', 'a due_date years ago is refused, for the owner too');
-- The UTC date counts, whatever the session's time zone: at UTC-12 the local
-- date may still be "yesterday (UTC)", and yesterday (UTC) is still refused.
SET LOCAL TimeZone = 'Etc/GMT+12';
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_create(%L, ''Late'', NULL, %L)', :'d_max', :'yesterday')),
  'MC400', 'due_date cannot be in the past', 'in a session at UTC-12, due_date yesterday (UTC) is still refused');
SET LOCAL TimeZone = DEFAULT;
SELECT is((SELECT count(*) FROM crm.tasks), :'tasks_before'::bigint, 'the refused creates made no task');
SELECT is((SELECT count(*) FROM crm.activities WHERE type = 'task_created'), :'task_events_before'::bigint,
  '... and no task_created activity');

-- Create, allowed: today (UTC) and later.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_create(%L, ''Due today'', NULL, %L)', :'d_max', :'today')),
  'api.tasks_create with due_date today (UTC) is allowed');
SELECT is((SELECT due_date FROM crm.tasks WHERE title = 'Due today'), :'today'::date, 'the task is due today');
SELECT is(pg_temp.exec_as(:'max', :'org_a',
         format('INSERT INTO crm.tasks (organization_id, deal_id, title, due_date) VALUES (%L, %L, ''Due tomorrow'', %L)',
                :'org_a', :'d_max', :'tomorrow')),
  1::bigint, 'a direct INSERT with due_date tomorrow is allowed');
-- At UTC+14 the local date may already be tomorrow; today (UTC) is still allowed.
SET LOCAL TimeZone = 'Pacific/Kiritimati';
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_create(%L, ''Due today east'', NULL, %L)', :'d_max', :'today')),
  'in a session at UTC+14, due_date today (UTC) is allowed');
SET LOCAL TimeZone = DEFAULT;

-- Change, refused: moving an existing task's due_date into the past.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_update(%L, ARRAY[''due_date''], NULL, NULL, %L, NULL)', :'t_max', :'yesterday')),
  'MC400', 'due_date cannot be in the past', 'api.tasks_update moving due_date to yesterday is refused');
SELECT is(pg_temp.try_as(:'max', :'org_a',
         format('SELECT api.tasks_update(%L, ARRAY[''due_date''], NULL, NULL, %L, NULL)', :'t_max', :'yesterday')),
  'MC400 tasks_due_date_past', '... with the machine code tasks_due_date_past');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'mia', :'org_a',
         format('UPDATE crm.tasks SET due_date = %L, title = ''Moved'' WHERE id = %L', :'yesterday', :'t_rita')),
  'MC400', 'due_date cannot be in the past', 'a direct UPDATE moving due_date to yesterday is refused');
SELECT is((SELECT due_date::text || ' ' || title FROM crm.tasks WHERE id = :'t_max'), :'next_week' || ' Max''s task',
  'Max''s task is unchanged');
SELECT is((SELECT due_date::text || ' ' || title FROM crm.tasks WHERE id = :'t_rita'), :'next_week' || ' Rita''s task',
  'Rita''s task is unchanged');

-- Change, allowed: to today, and editing other fields of a task.
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_update(%L, ARRAY[''due_date''], NULL, NULL, %L, NULL)', :'t_max', :'today')),
  'moving a task''s due_date to today is allowed');
SELECT is((SELECT due_date FROM crm.tasks WHERE id = :'t_max'), :'today'::date, 'Max''s task is now due today');

-- A task that was due yesterday (created back then; inserted here with the
-- triggers off, since it could not be created today).
\set t_old 'a0000000-0000-0000-0000-000000000e04'
SET LOCAL session_replication_role = replica;
INSERT INTO crm.tasks (organization_id, id, deal_id, title, due_date)
VALUES (:'org_a', :'t_old', :'d_max', 'Overdue', :'yesterday');
SET LOCAL session_replication_role = origin;

SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_update(%L, ARRAY[''title'', ''description''], ''Overdue, chased'', ''called twice'', NULL, NULL)', :'t_old')),
  'an overdue task''s title and description can be changed (due_date untouched)');
SELECT is(pg_temp.exec_as(:'max', :'org_a', format('UPDATE crm.tasks SET is_done = true WHERE id = %L', :'t_old')), 1::bigint,
  'an overdue task can be marked done with a direct UPDATE');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_update(%L, ARRAY[''due_date'', ''is_done''], NULL, NULL, %L, false)', :'t_old', :'yesterday')),
  'sending the unchanged (past) due_date along with another field is allowed');
SELECT is((SELECT due_date::text || ' ' || title || ' ' || is_done FROM crm.tasks WHERE id = :'t_old'),
  :'yesterday' || ' Overdue, chased false', 'the overdue task kept its due_date and took the other changes');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_update(%L, ARRAY[''due_date''], NULL, NULL, %L, NULL)', :'t_old', (:'yesterday'::date - 1)::text)),
  'MC400', 'due_date cannot be in the past', 'an overdue task cannot be moved to another past date');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('UPDATE crm.tasks SET due_date = due_date - 1 WHERE id = %L', :'t_old')),
  'MC400', 'due_date cannot be in the past', '... nor further into the past with a direct UPDATE');
SELECT lives_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.tasks_update(%L, ARRAY[''due_date''], NULL, NULL, %L, NULL)', :'t_old', :'tomorrow')),
  'an overdue task can be rescheduled to tomorrow');
SELECT is((SELECT due_date FROM crm.tasks WHERE id = :'t_old'), :'tomorrow'::date, 'the overdue task is now due tomorrow');

SELECT * FROM finish();
ROLLBACK;
