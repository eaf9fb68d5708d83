-- R9: only `comment` activities can be created (through the API, or directly
-- by the request role); the payload must carry a non-empty `text`: 400
-- (MC400 activity_type_forbidden / comment_text_required). An accepted comment
-- is authored by the acting user, whatever author the statement names.
BEGIN;
SELECT plan(27);
\ir pipeline_fixture.psql

SELECT count(*) AS events_before FROM crm.activities \gset

-- Refused: every other type, through the API (as the member who owns the deal).
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.activities_create(%L, %L, %L)', :'d_max', t, '{"from": "new", "to": "won", "text": "x"}')),
  'MC400', 'only comment activities can be created', format('api.activities_create of type %s is refused', t))
  FROM unnest(ARRAY['status_changed', 'stage_changed', 'task_created', 'system']) t;
SELECT is(pg_temp.try_as(:'max', :'org_a',
         format('SELECT api.activities_create(%L, ''status_changed'', ''{"from": "new", "to": "won"}'')', :'d_max')),
  'MC400 activity_type_forbidden', '... with the machine code activity_type_forbidden');
-- Refused: a direct INSERT of a non-comment activity by the request role, even by the owner.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'olga', :'org_a',
         format('INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload) VALUES (%L, %L, %L, ''status_changed'', ''{"from": "new", "to": "won"}'')',
                :'org_a', :'d_olga', :'olga')),
  'MC400', 'only comment activities can be created', 'a direct INSERT of a status_changed activity is refused, for the owner too');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'adam', :'org_a',
         format('INSERT INTO crm.activities (organization_id, deal_id, type, payload) VALUES (%L, %L, ''task_created'', %L)',
                :'org_a', :'d_adam', jsonb_build_object('task_id', :'t_adam'::uuid, 'title', 'Fake', 'due_date', :'tomorrow'))),
  'MC400', 'only comment activities can be created', 'a forged task_created activity is refused');

-- Refused: comments without a usable text.
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.activities_create(%L, ''comment'', %L)', :'d_max', p)),
  'MC400', 'a comment needs a non-empty text', format('a comment with payload %s is refused', p))
  FROM unnest(ARRAY['{}', '{"text": ""}', '{"text": "   "}', '{"text": null}', '{"text": 42}', '{"text": ["hi"]}',
                    '{"body": "hi"}', '"hi"', 'null']) p;
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.activities_create(%L, ''comment'', ''{"text": ""}'')', :'d_max')),
  'MC400 comment_text_required', '... with the machine code comment_text_required');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('SELECT api.activities_create(%L, ''comment'', NULL)', :'d_max')),
  'MC400', 'a comment needs a non-empty text', 'a comment with no payload at all is refused');
-- (try_as: whatever the outcome, it leaves no row behind for the counts below.)
SELECT is(pg_temp.try_as(:'max', :'org_a',
         format('SELECT api.activities_create(%L, ''comment'', %L)', :'d_max', jsonb_build_object('text', E' \t\n '))),
  'MC400 comment_text_required', 'a comment whose text is only whitespace (tab, newline) is refused');
SELECT throws_ok(format($$SELECT pg_temp.exec_as(%L, %L, %L)$$, :'max', :'org_a',
         format('INSERT INTO crm.activities (organization_id, deal_id, type) VALUES (%L, %L, ''comment'')', :'org_a', :'d_max')),
  'MC400', 'a comment needs a non-empty text', 'a direct INSERT of a comment without payload is refused');

SELECT is((SELECT count(*) FROM crm.activities), :'events_before'::bigint, 'the refused statements wrote no activity');

-- Allowed: a comment with a text, through the API, authored by the acting user.
SELECT pg_temp.value_as(:'max', :'org_a',
         format('SELECT api.activities_create(%L, ''comment'', ''{"text": "Called, left a message"}'')', :'d_max'))
  AS created \gset
SELECT is((:'created'::jsonb) - 'id' - 'created_at',
  jsonb_build_object('organization_id', :'org_a'::uuid, 'deal_id', :'d_max'::uuid, 'author_id', :'max'::uuid,
                     'type', 'comment', 'payload', '{"text": "Called, left a message"}'::jsonb),
  'api.activities_create of a comment with a text answers the new comment, authored by the caller');
SELECT is((SELECT author_id::text || ' ' || type || ' ' || (payload ->> 'text') FROM crm.activities WHERE id = (:'created'::jsonb ->> 'id')::uuid),
  :'max' || ' comment Called, left a message', 'and it is stored so');
-- Any member may comment on any deal of the organization.
SELECT is(pg_temp.try_as(:'max', :'org_a', format('SELECT api.activities_create(%L, ''comment'', ''{"text": "FYI"}'')', :'d_rita')),
  'ok', 'a member may comment on another member''s deal');
-- A direct INSERT naming another author is stored under the acting user.
SELECT is(pg_temp.exec_as(:'max', :'org_a',
         format('INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload) VALUES (%L, %L, %L, ''comment'', ''{"text": "Signed: Olga"}'')',
                :'org_a', :'d_olga', :'olga')),
  1::bigint, 'a member inserts a comment directly, naming the owner as its author');
SELECT is((SELECT author_id FROM crm.activities WHERE payload ->> 'text' = 'Signed: Olga'), :'max'::uuid,
  'the comment is authored by the acting user, not by the named one');
SELECT is((SELECT count(*) FROM crm.activities), :'events_before'::bigint + 2, 'two comments were added in all');

SELECT * FROM finish();
ROLLBACK;
