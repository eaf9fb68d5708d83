-- Stage history, closed_at and expected_close_date (SPEC §10): stays opened
-- and closed by the triggers on deals, for the API and a DBA in psql alike;
-- one current stay per deal; the history is read-only to the request role;
-- GET /deals/{id}/stage-history; closed_at kept by the database.
BEGIN;
SELECT plan(51);
\ir pipeline_fixture.psql

SELECT id AS sales_a FROM crm.pipelines WHERE organization_id = :'org_a' \gset

-- A deal's stays, oldest first: "stage" or "stage*" for the current one.
CREATE FUNCTION pg_temp.stays(p_deal uuid) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT string_agg(h.stage || CASE WHEN h.left_at IS NULL THEN '*' ELSE '' END, ' '
                    ORDER BY h.entered_at, h.seq)
    FROM crm.deal_stage_history h WHERE h.deal_id = p_deal
$$;
CREATE FUNCTION pg_temp.current_stay(p_deal uuid) RETURNS crm.deal_stage_history LANGUAGE sql STABLE AS $$
  SELECT h FROM crm.deal_stage_history h WHERE h.deal_id = p_deal AND h.left_at IS NULL
$$;

-- Opening the first stay --------------------------------------------------------

SELECT is(pg_temp.stays(:'d_olga'), 'qualification*', 'a deal inserted in psql (the fixture) has one stay, current');
SELECT ok((SELECT h.entered_at = d.created_at AND h.entered_by IS NULL AND h.deal_open AND h.pipeline_id = d.pipeline_id
             FROM crm.deals d, pg_temp.current_stay(d.id) h WHERE d.id = :'d_olga'),
  'entered at the deal''s created_at, by nobody known (no context), in its pipeline, open');
SELECT (pg_temp.value_as(:'max', :'org_a', format('SELECT api.deals_create(%L, %L, 250, %L) ->> ''id''', :'c_max', 'New', 'EUR'))) AS d_new \gset
SELECT is(pg_temp.stays(:'d_new'), 'qualification*', 'a deal created through the API opens its first stay');
SELECT ok((SELECT h.entered_at = now() AND h.entered_by = :'max' FROM pg_temp.current_stay(:'d_new') h),
  'entered now, by the acting user');

-- Stage and pipeline changes ----------------------------------------------------

-- Stays entered a day ago, so that closing them is visible.
UPDATE crm.deal_stage_history SET entered_at = now() - interval '1 day' WHERE deal_id = :'d_max';
SELECT pg_temp.exec_as(:'max', :'org_a', format('SELECT api.deals_update(%L, NULL, %L, NULL, NULL, NULL, NULL, NULL)', :'d_max', 'proposal'));
SELECT is(pg_temp.stays(:'d_max'), 'qualification proposal*', 'a stage change closes the current stay and opens the next');
SELECT ok((SELECT left_at = now() FROM crm.deal_stage_history WHERE deal_id = :'d_max' AND stage = 'qualification'),
  'the old stay ends now');
SELECT ok((SELECT h.entered_at = now() AND h.entered_by = :'max' AND h.pipeline_id = :'sales_a' FROM pg_temp.current_stay(:'d_max') h),
  'the new one begins now, entered by the acting user');
SELECT is((SELECT count(*)::int FROM crm.deal_stage_history WHERE deal_id = :'d_max' AND left_at IS NULL), 1,
  'one current stay');

-- A DBA in psql, under a context: the same.
SELECT pg_temp.exec_as(:'mia', :'org_a', format('UPDATE crm.deals SET stage = %L WHERE id = %L', 'negotiation', :'d_max'));
SELECT is(pg_temp.stays(:'d_max'), 'qualification proposal negotiation*', 'a psql UPDATE of the stage records the stay too');
SELECT is((pg_temp.current_stay(:'d_max')).entered_by, :'mia'::uuid, 'entered by the DBA''s acting user');

-- Another pipeline, with the stage given and without (its first stage).
SELECT (pg_temp.value_as(:'olga', :'org_a', $$SELECT api.pipelines_create('Renewals',
  '[{"key": "due", "name": "Due", "probability": 40}, {"key": "quoted", "name": "Quoted", "probability": 70}]') ->> 'id'$$)) AS renewals \gset
SELECT pg_temp.exec_as(:'max', :'org_a', format('SELECT api.deals_update(%L, NULL, %L, NULL, NULL, NULL, NULL, NULL, %L)', :'d_max', 'quoted', :'renewals'));
SELECT is(pg_temp.stays(:'d_max'), 'qualification proposal negotiation quoted*', 'a pipeline change closes the stay and opens one in the new pipeline');
SELECT ok((SELECT h.pipeline_id = :'renewals' AND h.entered_at = now() FROM pg_temp.current_stay(:'d_max') h), 'in that pipeline, now');
SELECT ok((SELECT pipeline_id = :'sales_a' AND left_at = now() FROM crm.deal_stage_history WHERE deal_id = :'d_max' AND stage = 'negotiation'),
  'the closed stay keeps its pipeline');
SELECT pg_temp.exec_as(:'max', :'org_a', format('SELECT api.deals_update(%L, NULL, NULL, NULL, NULL, NULL, NULL, NULL, %L)', :'d_max', :'sales_a'));
SELECT is(pg_temp.stays(:'d_max'), 'qualification proposal negotiation quoted qualification*',
  'back to Sales without a stage: its first stage (no step back across pipelines)');
-- Two moves in one transaction share its now(): the one in between lasts 0 s.
SELECT is((SELECT left_at - entered_at FROM crm.deal_stage_history WHERE deal_id = :'d_max' AND stage = 'quoted'), interval '0',
  'two moves in one transaction: the stay in between lasts zero seconds');

-- Status changes: no new stay; the current one knows whether the deal is open.
SELECT pg_temp.exec_as(:'adam', :'org_a', format('UPDATE crm.deals SET status = %L WHERE id = %L', 'in_progress', :'d_adam'));
SELECT is(pg_temp.stays(:'d_adam'), 'qualification*', 'a status change opens no stay');
SELECT ok((pg_temp.current_stay(:'d_adam')).deal_open, 'in_progress is open');
SELECT pg_temp.exec_as(:'adam', :'org_a', format('UPDATE crm.deals SET status = %L WHERE id = %L', 'lost', :'d_adam'));
SELECT ok(NOT (pg_temp.current_stay(:'d_adam')).deal_open, 'lost is not: deal_open follows the status');
SELECT pg_temp.exec_as(:'adam', :'org_a', format('UPDATE crm.deals SET status = %L WHERE id = %L', 'new', :'d_adam'));
SELECT ok((pg_temp.current_stay(:'d_adam')).deal_open, 'reopened: open again');
SELECT count(*) AS deltas_before FROM crm.velocity_delta \gset
SELECT pg_temp.exec_as(:'adam', :'org_a', format('UPDATE crm.deals SET title = %L WHERE id = %L', 'Renamed', :'d_adam'));
SELECT is(pg_temp.stays(:'d_adam') || ' ' || (SELECT count(*) FROM crm.velocity_delta)::text, 'qualification* ' || :deltas_before,
  'a change of neither stage, pipeline nor status writes no stay and no velocity delta');

-- The history's own rules ----------------------------------------------------------

SELECT throws_ok(format($$INSERT INTO crm.deal_stage_history (organization_id, deal_id, pipeline_id, stage, entered_at, deal_open)
                          VALUES (%L, %L, %L, 'proposal', now(), true)$$, :'org_a', :'d_olga', :'sales_a'),
  '23505', NULL, 'one current stay per deal (deal_stage_history_deal_id_taken)');
SELECT throws_ok(format($$UPDATE crm.deal_stage_history SET left_at = entered_at - interval '1 second' WHERE deal_id = %L$$, :'d_olga'),
  '23514', NULL, 'a stay cannot end before it began (deal_stage_history_left_at_invalid)');
SELECT throws_ok(format($$INSERT INTO crm.deal_stage_history (organization_id, deal_id, pipeline_id, stage, entered_at, left_at, deal_open)
                          VALUES (%L, %L, %L, 'nowhere', now(), now(), true)$$, :'org_a', :'d_olga', :'sales_a'),
  '23503', NULL, 'a stay is in a stage of its pipeline (deal_stage_history_stage_not_found)');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format($$INSERT INTO crm.deal_stage_history (organization_id, deal_id, pipeline_id, stage, entered_at, deal_open)
                                                     VALUES (%L, %L, %L, 'proposal', now(), false)$$, :'org_a', :'d_olga', :'sales_a')),
  '42501', 'the request role cannot write the history: INSERT');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('UPDATE crm.deal_stage_history SET entered_at = now() WHERE deal_id = %L', :'d_olga')),
  '42501', 'nor UPDATE');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('DELETE FROM crm.deal_stage_history WHERE deal_id = %L', :'d_olga')),
  '42501', 'nor DELETE');
SELECT is(pg_temp.try_as(:'olga', :'org_a', 'INSERT INTO crm.velocity_delta (organization_id, kind, pipeline_id, at, n) VALUES (app.org_id(), ''open'', app.org_id(), now(), 1)'),
  '42501', 'nor the velocity totals');
SELECT is(pg_temp.value_as(:'zed', :'org_b', 'SELECT count(*) FROM crm.deal_stage_history'), '1',
  'RLS: another organization sees its own stays only');

-- GET /deals/{id}/stage-history --------------------------------------------------------

UPDATE crm.deal_stage_history SET entered_at = now() - interval '2 hours', left_at = now() - interval '1 hour'
 WHERE deal_id = :'d_max' AND stage = 'qualification' AND left_at IS NOT NULL AND entered_at < now();
UPDATE crm.deal_stage_history SET entered_at = now() - interval '90 minutes' WHERE deal_id = :'d_mia';
SELECT pg_temp.value_as(:'rita', :'org_a', format('SELECT api.deals_stage_history(%L)', :'d_max')) AS history \gset
SELECT is((SELECT string_agg(i ->> 'stage', ' ' ORDER BY n) FROM jsonb_array_elements(:'history'::jsonb -> 'items') WITH ORDINALITY x (i, n)),
  'qualification proposal negotiation quoted qualification', 'every stay, oldest first (any member may read it)');
SELECT is((:'history'::jsonb -> 'items' -> 0), jsonb_build_object('pipeline_id', :'sales_a'::uuid, 'stage', 'qualification',
            'entered_at', app.ts(now() - interval '2 hours'), 'left_at', app.ts(now() - interval '1 hour'),
            'duration_seconds', 3600, 'entered_by', NULL),
  'a finished stay: its times, its duration in seconds, who moved the deal there (nobody known for the first)');
SELECT is(pg_temp.value_as(:'rita', :'org_a', format('SELECT api.deals_stage_history(%L) -> ''items'' -> 0 ->> ''duration_seconds''', :'d_mia')),
  '5400', 'the current stay lasts up to now');
SELECT is((:'history'::jsonb -> 'items' -> 4 -> 'left_at'), 'null'::jsonb, 'and has no left_at');
SELECT is((:'history'::jsonb -> 'items' -> 3 ->> 'pipeline_id')::uuid, :'renewals'::uuid, 'each stay names its pipeline');
SELECT is(pg_temp.try_as(:'olga', :'org_a', format('SELECT api.deals_stage_history(%L)', :'d_zed')), 'MC404 deal_not_found',
  'another organization''s deal: 404');

-- Deletions ----------------------------------------------------------------------------

SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.pipeline_stages_create(%L, %L, %L, 50)', :'sales_a', 'review', 'Review'));
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.deals_update(%L, NULL, %L, NULL, NULL, NULL, NULL, NULL)', :'d_olga', 'review'));
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.deals_update(%L, NULL, %L, NULL, NULL, NULL, NULL, NULL)', :'d_olga', 'proposal'));
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.pipeline_stages_delete(%L, %L)', :'sales_a', 'review'));
SELECT is(pg_temp.stays(:'d_olga'), 'qualification proposal*', 'deleting a stage (no deal left in it) takes its past stays along');
SELECT pg_temp.exec_as(:'max', :'org_a', format('SELECT api.deals_delete(%L)', :'d_new'));
SELECT pg_temp.exec_as(:'olga', :'org_a', format('SELECT api.trash_erase(''deal'', %L)', :'d_new'));
SELECT is((SELECT count(*)::int FROM crm.deal_stage_history WHERE deal_id = :'d_new'), 0, 'erasing a deal deletes its stays');

-- closed_at ----------------------------------------------------------------------------

SELECT pg_temp.exec_as(:'rita', :'org_a', format('SELECT api.deals_update(%L, %L, NULL, NULL, NULL, NULL, NULL, NULL)', :'d_rita', 'won'));
SELECT is((SELECT closed_at FROM crm.deals WHERE id = :'d_rita'), now(), 'won: closed_at is now');
UPDATE crm.deals SET closed_at = now() - interval '3 days' WHERE id = :'d_rita';  -- no context: a correction, kept
SELECT is((SELECT closed_at FROM crm.deals WHERE id = :'d_rita'), now() - interval '3 days', 'without a context, a given closed_at is kept');
SELECT pg_temp.exec_as(:'rita', :'org_a', format('SELECT api.deals_update(%L, NULL, NULL, %L, NULL, NULL, NULL, NULL)', :'d_rita', 'Still won'));
SELECT is((SELECT closed_at FROM crm.deals WHERE id = :'d_rita'), now() - interval '3 days', 'other changes keep it');
SELECT pg_temp.exec_as(:'mia', :'org_a', format('UPDATE crm.deals SET closed_at = now() - interval ''9 days'' WHERE id = %L', :'d_rita'));
SELECT is((SELECT closed_at FROM crm.deals WHERE id = :'d_rita'), now() - interval '3 days', 'a writer with a context cannot set it');
SELECT pg_temp.exec_as(:'mia', :'org_a', format('UPDATE crm.deals SET status = %L WHERE id = %L', 'lost', :'d_rita'));
SELECT is((SELECT closed_at FROM crm.deals WHERE id = :'d_rita'), now(), 'won -> lost closes it again (psql UPDATE, under a context)');
SELECT pg_temp.exec_as(:'rita', :'org_a', format('SELECT api.deals_update(%L, %L, NULL, NULL, NULL, NULL, NULL, NULL)', :'d_rita', 'in_progress'));
SELECT is((SELECT closed_at FROM crm.deals WHERE id = :'d_rita'), NULL, 'reopened: cleared');
SELECT is(pg_temp.value_as(:'rita', :'org_a', format('SELECT api.deals_get(%L) -> ''closed_at''', :'d_rita')), 'null', 'and null in the deal''s JSON');
INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency, status, closed_at)
VALUES (:'org_a', :'c_olga', :'olga', 'Imported', 10, 'EUR', 'won', now() - interval '1 year'),
       (:'org_a', :'c_olga', :'olga', 'Imported 2', 10, 'EUR', 'lost', NULL);
SELECT is((SELECT string_agg(title || ':' || (closed_at = now() - interval '1 year')::text || ':' || (closed_at = now())::text, ' ' ORDER BY title)
             FROM crm.deals WHERE title LIKE 'Imported%'),
  'Imported:true:false Imported 2:false:true', 'a DBA inserting closed deals without a context: its closed_at, or now');
ALTER TABLE crm.deals DISABLE TRIGGER deals_closed_at;
SELECT throws_ok(format($$UPDATE crm.deals SET closed_at = now() WHERE id = %L$$, :'d_olga'), '23514', NULL,
  'an open deal with a closed_at is refused even with the trigger off (deals_closed_at_invalid)');
SELECT throws_ok($$UPDATE crm.deals SET closed_at = NULL WHERE title = 'Imported'$$, '23514', NULL,
  'and so is a closed deal without one');
ALTER TABLE crm.deals ENABLE TRIGGER deals_closed_at;

-- expected_close_date ------------------------------------------------------------------

SELECT (pg_temp.value_as(:'max', :'org_a', format('SELECT api.deals_create(%L, %L, 10, %L, p_expected_close_date => %L) ->> ''id''',
        :'c_max', 'Dated', 'EUR', '2031-05-17'))) AS d_dated \gset
SELECT is((SELECT expected_close_date FROM crm.deals WHERE id = :'d_dated'), '2031-05-17'::date, 'created with an expected_close_date');
SELECT pg_temp.exec_as(:'max', :'org_a', format('SELECT api.deals_update(%L, NULL, NULL, %L, NULL, NULL, NULL, NULL)', :'d_dated', 'x'));
SELECT is((SELECT expected_close_date FROM crm.deals WHERE id = :'d_dated'), '2031-05-17'::date, 'a PATCH without it keeps it');
SELECT pg_temp.exec_as(:'max', :'org_a', format('SELECT api.deals_update(%L, NULL, NULL, NULL, NULL, NULL, NULL, NULL, p_expected_close_date => %L, p_fields => %L)',
  :'d_dated', '2030-01-01', '{expected_close_date}'));
SELECT is((SELECT expected_close_date FROM crm.deals WHERE id = :'d_dated'), '2030-01-01'::date, 'a PATCH with it changes it');
SELECT pg_temp.exec_as(:'max', :'org_a', format('SELECT api.deals_update(%L, NULL, NULL, NULL, NULL, NULL, NULL, NULL, p_expected_close_date => NULL, p_fields => %L)',
  :'d_dated', '{expected_close_date}'));
SELECT is((SELECT expected_close_date FROM crm.deals WHERE id = :'d_dated'), NULL, 'a PATCH with null clears it');
SELECT is(pg_temp.value_as(:'max', :'org_a', format('SELECT api.deals_get(%L) -> ''expected_close_date''', :'d_olga')), 'null',
  'the deal''s JSON has it, null when unscheduled');

SELECT * FROM finish();
ROLLBACK;
